"""``migrator rollback`` of a run that cut servers over, through the CLI against the
simulator (the world of tests/servers_world.py: one Liberty tenant with an image-backed web
server with two data volumes, a volume-backed database with a data volume, both ACTIVE, and a
server left SHUTOFF):

- after a whole run, ``rollback --yes`` leaves every collection of the target as it was
  before the run (servers, ports, images, volumes and the rest), starts again the source
  servers that were ACTIVE before their cutover, leaves the SHUTOFF one stopped, and the
  cutovers' snapshot and temporary images are gone from the source;
- a run SIGKILLed inside a cutover (the source stopped, its copy under way, no target server
  yet) is rolled back the same way;
- the deep dry run of the plan checks each server's flavor, counts the servers against the
  quotas and reads the source servers, writing nothing on either cloud.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select

from migrator.cli.main import cli
from migrator.store.models import Run, Step
from tests.servers_world import (
    TARGET_FLAVORS,
    ServersWorld,
    raw_servers,
    servers_world,
    target_by_source,
)
from tests.sim.conftest import Admin
from tests.test_rollback_e2e import REPO, differences, kill_when, rows, scalar, target_state

TOKEN = "POST /identity/v3/auth/tokens"
SERVER_ACTION = "/servers/{server_id}/action"
# Source records a cutover and its rollback change by themselves: a server stopped and
# started again (its power and task states, its timestamps), the volumes it holds.
SOURCE_VOLATILE = frozenset({"status", "vm_state", "power_state", "task_state", "updated_at",
                             "launched_at", "terminated_at", "OS-SRV-USG:launched_at"})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServersWorld]:
    with servers_world(tmp_path_factory.mktemp("rollback-servers")) as built:
        yield built


def cli_(world: ServersWorld, url: str, *args: str) -> Result:
    return world.runner.invoke(cli, ["--db", url, *args, "--clouds-yaml",
                                     str(world.sim.clouds_yaml)], prog_name="migrator")


def plan(world: ServersWorld, url: str, where: Path, name: str) -> Path:
    config = world.config(where)
    path = where / "plans" / f"{name}.yaml"
    result = world.cli(url, "plan", "--config", str(config), "-o", str(path))
    assert result.exit_code == 0, result.output
    return path


def source_without_power(state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {rid: {k: v for k, v in record.items() if k not in SOURCE_VOLATILE}
                   for rid, record in records.items()} for name, records in state.items()}


def rollback(world: ServersWorld, url: str, run: str) -> dict[str, Any]:
    result = cli_(world, url, "rollback", "--run", run, "--yes", "--format", "json")
    assert result.exit_code == 0, (result.output, rows(url, select(
        Step.key, Step.state, Step.last_error).join(Run).where(
        Run.name == f"{run}-rollback", Step.state != "done")))
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["status"] == "finished", report
    return report


def test_rollback_of_a_server_run_restores_both_clouds(world: ServersWorld,
                                                       tmp_path: Path) -> None:
    url = world.url(tmp_path)
    path = plan(world, url, tmp_path, "cutover")
    before = target_state(world.sim)
    legacy_before = raw_servers(world.legacy)
    source_before = target_state(world.sim, "legacy")
    assert {n: s["status"] for n, s in legacy_before.items()} == {
        "physics-vm0": "ACTIVE", "physics-vm1": "ACTIVE", "physics-vm2": "SHUTOFF"}

    legacy = Admin(world.sim, "legacy")
    legacy.reset_calls()
    done = world.cli(url, "execute", str(path))
    assert done.exit_code == 0, done.output
    # The cutovers' stops and snapshots are server actions on the source.
    assert [k for k in legacy.calls() if k.endswith(SERVER_ACTION)], legacy.calls()
    moved = target_by_source(world.target)
    assert sorted(len(v) for v in moved.values()) == [1, 1, 1]
    assert {s["status"] for s in raw_servers(world.legacy).values()} == {"SHUTOFF"}

    report = rollback(world, url, "cutover")
    undone = {u["key"]: u for u in report["plan"]["undo"]}
    servers = sorted(k for k in undone if k.startswith("server:"))
    assert len(servers) == 3 and all(undone[k]["target_id"] != "-" for k in servers)
    # The target: servers, ports, images, volumes and everything else as before the run.
    assert differences(before, target_state(world.sim)) == []
    assert target_by_source(world.target) == {}
    # The source: running again where it ran before, the SHUTOFF one left stopped, and
    # nothing else changed (no snapshot or temporary image left).
    after = raw_servers(world.legacy)
    assert {n: s["status"] for n, s in after.items()} == {
        n: s["status"] for n, s in legacy_before.items()}
    assert differences(source_without_power(source_before),
                       source_without_power(target_state(world.sim, "legacy"))) == []
    assert scalar(url, select(Run.status).where(Run.name == "cutover")) == "rolled_back"
    # Each server step's undo says what it removed and that the source was started.
    details = {r.key: r.checkpoint for r in rows(url, select(Step.key, Step.checkpoint).join(
        Run).where(Run.name == "cutover-rollback", Step.kind == "undo_server"))}
    started = {k for k, cp in details.items() if cp["restored"]["started"]}
    assert len(started) == 2
    assert all(cp["outcome"] == "removed" and cp["server_removed"] for cp in details.values())
    assert sum(len(cp["volumes_removed"]) for cp in details.values()) == 4


def test_rollback_of_a_run_killed_inside_a_cutover(world: ServersWorld,
                                                   tmp_path: Path) -> None:
    url = world.url(tmp_path)
    path = plan(world, url, tmp_path, "killed")
    before = target_state(world.sim)
    legacy_before = raw_servers(world.legacy)
    source_before = target_state(world.sim, "legacy")
    cmd = [sys.executable, "-m", "migrator", "--db", url, "execute", str(path),
           "--clouds-yaml", str(world.sim.clouds_yaml)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    # Uploads to the target slowed down, so that the kill lands inside a copy.
    target = Admin(world.sim, "target")
    target.add_fault(match="PUT /*", latency_ms=200)
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

        def copying() -> bool:
            found = rows(url, select(Step.phase, Step.checkpoint).join(Run).where(
                Run.name == "killed", Step.kind == "server"))
            return any(r.phase in ("snapshot", "copy") and (r.checkpoint or {}).get(
                "power_state") == "ACTIVE" for r in found)

        kill_when(proc, copying, "a server cutover copying")
    finally:
        target.clear_faults()
    assert differences(before, target_state(world.sim)), "the run wrote nothing"
    stopped = {n for n, s in raw_servers(world.legacy).items()
               if s["status"] == "SHUTOFF" and legacy_before[n]["status"] == "ACTIVE"}
    assert stopped, "no source server was stopped by the killed run"

    report = rollback(world, url, "killed")
    servers = [u for u in report["plan"]["undo"] if u["key"].startswith("server:")]
    # A cutover killed before its boot is undone too (no target server: id "-").
    assert any(u["target_id"] == "-" for u in servers), servers
    assert differences(before, target_state(world.sim)) == []
    assert target_by_source(world.target) == {}
    # The source servers stopped by the killed cutovers run again.
    statuses = {n: s["status"] for n, s in raw_servers(world.legacy).items()}
    assert statuses == {n: s["status"] for n, s in legacy_before.items()}
    assert differences(source_without_power(source_before),
                       source_without_power(target_state(world.sim, "legacy"))) == []


def test_dry_run_of_servers_checks_flavor_quota_and_source_without_writing(
        world: ServersWorld, tmp_path: Path) -> None:
    """The deep dry run of a plan with servers: the flavor a server maps to, removed from
    the target after planning, is an error naming the step; instances, ports and the moved
    volumes are counted against the quotas; the source servers are read; neither cloud sees
    a write (the token requests aside)."""
    url = world.url(tmp_path)
    path = plan(world, url, tmp_path, "dry")
    flavor = world.target.compute.find_flavor("a2.large", ignore_missing=False)
    world.target.compute.delete_flavor(flavor.id)
    admins = {name: Admin(world.sim, name) for name in ("legacy", "target")}
    try:
        for admin in admins.values():
            admin.reset_calls()
        result = cli_(world, url, "execute", str(path), "--dry-run", "--format", "json")
        for name, admin in admins.items():
            writes = {k: n for k, n in admin.calls().items()
                      if not k.startswith(("GET ", "HEAD ")) and k != TOKEN}
            assert writes == {}, (name, writes)
    finally:
        vcpus, ram, disk = TARGET_FLAVORS["a2.large"]
        world.target.compute.create_flavor(name="a2.large", vcpus=vcpus, ram=ram, disk=disk)
    assert result.exit_code != 0, result.output
    data = json.loads(result.stdout)
    deep = data["dry_run"]
    found = [(f["check"], f["result"], f["message"]) for items in deep["tenants"].values()
             for f in items]
    flavors = [m for c, r, m in found if c == "flavors" and r == "error"]
    assert len(flavors) == 1 and "'a2.large'" in flavors[0] and "step server:" in flavors[0]
    quota = [m for c, r, m in found if c == "quota"]
    assert quota and "3 instances" in quota[0], quota
    assert not [m for c, r, m in found if c == "source" and r == "error"]
    assert sum(deep["per_tenant_bytes"].values()) > 0


def test_rehearsal_leaves_server_cutovers_out_and_the_sources_running(
        world: ServersWorld, tmp_path: Path) -> None:
    """A rehearsal of a plan with servers: everything but the server cutovers is rehearsed
    and removed, no source server is stopped (no server action on the source), and the
    report lists the server steps it left out."""
    url = world.url(tmp_path)
    path = plan(world, url, tmp_path, "night")
    before = target_state(world.sim)
    legacy_before = raw_servers(world.legacy)
    legacy = Admin(world.sim, "legacy")
    legacy.reset_calls()
    result = cli_(world, url, "rehearse", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["cleanup_status"] == "finished", report
    assert len(report["not_rehearsed"]) == 3
    assert all(k.startswith("server:") for k in report["not_rehearsed"])
    actions = {k: n for k, n in legacy.calls().items() if k.endswith(SERVER_ACTION)}
    assert actions == {}, actions
    assert {n: s["status"] for n, s in raw_servers(world.legacy).items()} == {
        n: s["status"] for n, s in legacy_before.items()}
    assert differences(before, target_state(world.sim)) == []
    steps = rows(url, select(Step.kind).join(Run).where(Run.name == report["run"]))
    assert steps and "server" not in {r.kind for r in steps}
