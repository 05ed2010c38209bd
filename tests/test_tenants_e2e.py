"""Issue 4 end to end: three Liberty tenants discovered (one readable only with its own
credentials), planned and executed onto the modern simulator through the real commands, then
every migrated resource checked on the target through openstacksdk; the same plan killed
with SIGKILL and resumed; the same plan under injected faults; the clean refusals.

The world (tests/e2e_support.py): ``legacy-operator`` is a non-admin operator (member of
physics and chemistry), biology is read only with ``legacy-biology-user0``; biology's router
has an interface on the admin's shared network (mapped to the target's ``shared-net``);
chemistry's ``db`` group has a rule whose remote group is physics's ``web`` group.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.operations.plan import load_plan
from tests.e2e_support import (
    TENANTS,
    World,
    assert_migrated,
    assert_no_duplicates,
    connect,
    db_rows,
    run_events,
    run_steps,
    start_world,
    target_inventory,
)
from tests.timing import replay_seed, scaled

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = start_world(tmp_path / "world")
    try:
        yield w
    finally:
        w.stop()


def discover_and_plan(world: World, name: str = "tenants") -> Path:
    """``migrator discover`` and ``migrator plan`` through the CLI; the plan file's path."""
    result = world.cli("discover", "--config", str(world.config))
    assert result.exit_code == 0, result.output
    assert "[limited credentials]" in result.stdout
    plan_path = world.root / "plans" / f"{name}.yaml"
    result = world.cli("plan", "--config", str(world.config), "-o", str(plan_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Plan {name}: ")
    return plan_path


def test_three_tenants_migrate_through_the_cli(world: World) -> None:
    # The operator cannot see biology: only biology's own credentials read it.
    operator = connect(world.clouds_yaml, "legacy-operator")
    visible = {p["name"] for p in operator.identity.get(
        f"/users/{operator.current_user_id}/projects").json()["projects"]}
    assert visible == {"physics", "chemistry"}
    plan_path = discover_and_plan(world)
    plan = load_plan(plan_path)
    assert sorted(plan.selection["tenants"]) == sorted(TENANTS)
    assert plan.mappings["shared_networks"]["shared-net"]["target"] == "shared-net"
    assert plan.mappings["roles"]["_member_"]["target"] == "member"
    began = time.monotonic()
    result = world.cli("execute", str(plan_path))
    elapsed = time.monotonic() - began
    assert result.exit_code == 0, result.output
    assert "Run tenants: finished" in result.stdout
    report = assert_migrated(world, plan, world.db_url, "tenants")
    counts = assert_no_duplicates(world.target)
    print(f"{len(plan.steps)} steps executed in {elapsed:.1f} s; checked "
          f"{dict(sorted(report.checked.items()))}; migrated on the target {counts}")
    assert report.checked["id_map"] == len(plan.steps)
    # Executing again: refused without --resume, nothing left to do with it.
    again = world.cli("execute", str(plan_path))
    assert again.exit_code != 0 and again.stderr.count("\n") == 1
    assert "already executed as run tenants" in again.stderr
    resumed = world.cli("execute", str(plan_path), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert assert_no_duplicates(world.target) == counts


# -- SIGKILL and resume ------------------------------------------------------------------------


def execute_process(world: World, plan_path: Path, *, resume: bool) -> subprocess.Popen[str]:
    """``migrator execute PLAN [--resume]`` in its own process (the console script's main)."""
    cmd = [sys.executable, "-c", "from migrator.cli.main import main; main()",
           "--db", world.db_url, "execute", str(plan_path), "--clouds-yaml",
           str(world.clouds_yaml), "--workers", "4", *(["--resume"] if resume else [])]
    return subprocess.Popen(cmd, cwd=world.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def event_count(url: str) -> int:
    return db_rows(url)["events"]


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(world: World) -> None:
    rng = random.Random(replay_seed("MIGRATOR_CRASH_SEED", 4_231))
    plan_path = discover_and_plan(world, "killed")
    plan = load_plan(plan_path)
    # A slower target, so that kills land mid-run and mid-step.
    world.admin("target").add_fault(match="* /*", latency_ms=20)
    kills, began, moments = 0, time.monotonic(), []
    while kills < 5:
        proc = execute_process(world, plan_path, resume=kills > 0)
        before = event_count(world.db_url)
        deadline = time.monotonic() + scaled(30)
        # Killed after a random number of new events (not a random time: how many steps a
        # second holds depends on the machine, and a fast one finished the run before the fifth
        # kill). The first kill waits for the run to be registered (so --resume has a run).
        wanted = before + 2 + rng.randint(1, 30)  # 5 kills stay within the run's ~230 events
        while event_count(world.db_url) < wanted and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.005)
        if proc.poll() is not None:
            out, err = proc.communicate()
            assert proc.returncode == 0, (out, err)
            break  # finished before this kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        _, steps = run_steps(world.db_url, "killed")
        moments.append(dict(Counter(s.state for s in steps.values())))
    world.admin("target").clear_faults()
    proc = execute_process(world, plan_path, resume=True)
    out, err = proc.communicate(timeout=scaled(120))
    assert proc.returncode == 0, (out, err[-3000:])
    assert "Run killed: finished" in out
    print(f"kills {kills} in {time.monotonic() - began:.1f} s; step states at each kill: "
          f"{moments}")
    assert kills >= 5
    run_id, steps = run_steps(world.db_url, "killed")
    in_doubt = [k for k, s in steps.items() if s.checkpoint.get("adopted") == "in-doubt"]
    restarts = Counter(e.trigger for e in run_events(world.db_url, run_id))
    print(f"in-doubt steps adopted: {len(in_doubt)}; triggers {dict(restarts)}")
    report = assert_migrated(world, plan, world.db_url, "killed")
    counts = assert_no_duplicates(world.target)
    assert report.checked["id_map"] == len(plan.steps)
    print(f"migrated on the target: {counts}")


# -- faults ------------------------------------------------------------------------------------

FAULTS = [
    {"match": "* /network/*", "rate": 0.05, "status": 503, "retry_after": 0},
    {"match": "* /compute/*", "rate": 0.05, "status": 500},
    # Keystone's token route is left alone (a token request failing is not a resource call).
    {"match": "* /identity/v3/[!a]*", "rate": 0.05, "status": 503, "retry_after": 0},
    # Connections cut after the request was carried out: a create whose answer is lost.
    {"match": "POST /network/*", "rate": 0.1, "drop_after_bytes": 0},
    {"match": "GET /network/*", "rate": 0.02, "drop_after_bytes": 0},
    {"match": "* /compute/*", "rate": 0.03, "drop_after_bytes": 0},
]


def test_faults_on_the_target_are_retried_and_audited(world: World) -> None:
    plan_path = discover_and_plan(world, "faults")
    plan = load_plan(plan_path)
    admin = world.admin("target")
    for rule in FAULTS:
        admin.add_fault(**rule)
    admin.reset_calls()
    outcome = execute_plan(world.db_url, plan_path,
        ExecuteOptions(clouds_yaml=world.clouds_yaml, handle_sigint=False, backoff_base=0.05,
                       workers=4))
    fired = [r["fired"] for r in requests.get(f"{admin.base}/faults",
                                              timeout=10).json()["faults"]]
    calls = sum(admin.calls().values())
    admin.clear_faults()
    assert outcome.run is not None
    assert outcome.run.status == "finished", outcome.run.failed_steps
    errors = sum(n for rule, n in zip(FAULTS, fired, strict=True) if "status" in rule)
    drops = sum(n for rule, n in zip(FAULTS, fired, strict=True) if "status" not in rule)
    events = run_events(world.db_url, outcome.run.run_id)
    in_call = sum(v for e in events for k, v in (e.detail.get("data") or {}).items()
                  if k.endswith("_retries"))
    step_retries = [e for e in events if e.trigger == "retry"]
    print(f"{calls} target calls; faults fired: {errors} error answers, {drops} dropped "
          f"connections; audit: {in_call} in-call retries in checkpoints, "
          f"{len(step_retries)} step retries")
    assert errors > 0 and drops > 0
    assert in_call > 0
    assert in_call + len(step_retries) >= (errors + drops) // 3
    report = assert_migrated(world, plan, world.db_url, "faults")
    assert report.checked["id_map"] == len(plan.steps)
    assert_no_duplicates(world.target)


# -- clean refusals ----------------------------------------------------------------------------


def test_refusals_are_one_line_and_write_nothing(world: World) -> None:
    """Unknown tenant, missing mappings, name clashes without a decision (at plan time, and
    appearing after planning), a stale plan: each one line on stderr, a non-zero exit, no
    plan file, no row of a plan or run in the state database, nothing on the target (every
    kind listed before and after)."""
    assert world.cli("discover", "--config", str(world.config)).exit_code == 0
    target = world.target
    plans = world.root / "plans"

    def refused(args: list[str], *fragments: str, plan_file: Path | None = None) -> str:
        db_before, target_before = db_rows(world.db_url), target_inventory(target)
        result = world.cli(*args)
        assert result.exit_code != 0, result.output
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, (
            result.stderr)
        for fragment in fragments:
            assert fragment in result.stderr, (fragment, result.stderr)
        assert db_rows(world.db_url) == db_before
        assert target_inventory(target) == target_before
        if plan_file is not None:
            assert not plan_file.exists()
        print(result.stderr.strip())
        return result.stderr

    def plan(name: str) -> list[str]:
        return ["plan", "--config", str(world.config), "-o", str(plans / f"{name}.yaml")]

    # An unknown tenant.
    refused([*plan("unknown"), "--tenant", "physics", "--tenant", "nosuch"],
            "unknown tenant 'nosuch': not in inventory snapshot 1 of legacy-operator",
            plan_file=plans / "unknown.yaml")

    # Missing mappings: the shared network (both ends named), an external network mapped to
    # a network the target does not have.
    world.write_config(mappings__shared_networks={})
    refused(plan("shared"), "router_interface ", "of tenant biology refers to subnet "
            "shared-subnet", "which is not selected", "mappings.shared_networks",
            plan_file=plans / "shared.yaml")
    world.write_config(mappings__external_networks={"public": "internet"})
    refused(plan("external"), "mappings.external_networks: legacy network public maps to "
            "'internet', which does not exist on the target", plan_file=plans / "external.yaml")
    world.write_config()

    # Name clashes without a decision: a project and a network made by hand on the target.
    project = target.identity.create_project(name="chemistry", domain_id="default")
    refused(plan("clash"), f"project 'chemistry' (legacy chemistry) already exists on the "
            f"target ({project.id})", "decide in conflicts.projects.chemistry: adopt, rename "
            "or fail", plan_file=plans / "clash.yaml")
    target.identity.delete_project(project)
    net = target.network.create_network(name="physics-net", is_shared=True)
    refused(plan("clash"), "network 'physics-net'", "decide in conflicts.networks.physics-net",
            plan_file=plans / "clash.yaml")
    target.network.delete_network(net)

    # A clash appearing after planning: execute refuses before writing anything.
    assert world.cli(*plan("later")).exit_code == 0
    project = target.identity.create_project(name="biology", domain_id="default")
    refused(["execute", str(plans / "later.yaml")], "project 'biology' now exists on the "
            f"target ({project.id}) and was not created by migrator",
            "nothing was changed on the target")
    target.identity.delete_project(project)

    # A stale plan: the legacy inventory changed and was discovered again.
    assert world.cli(*plan("stale")).exit_code == 0
    biology = world.legacy.identity.find_project("biology")
    assert biology is not None
    world.legacy.network.create_network(name="biology-extra", tenant_id=biology.id)
    assert world.cli("discover", "--config", str(world.config)).exit_code == 0
    message = refused(["execute", str(plans / "stale.yaml")], "stale plan: the inventory of "
                      "legacy-operator changed since planning (planned from snapshot 1, "
                      "latest is snapshot 2", "plan again or pass --replan")
    assert message.count(" ") > 10
    assert not any(p.name in TENANTS for p in target.identity.projects())
