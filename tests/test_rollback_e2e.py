"""``migrator rollback`` end to end, through the CLI against the simulator (the image and
volume world of tests/handlers/data_world.py: two Liberty tenants with every tenant kind,
images and volumes):

- a run SIGKILLed halfway (a real ``migrator execute`` process) is rolled back: every
  collection of the target is as it was before the run;
- a rollback SIGKILLed halfway (a real ``migrator rollback`` process) and run again
  finishes the same rollback run, removing nothing twice;
- a project that existed on the target before the run and was adopted by decision survives
  the rollback (so does everything of the target that the run did not create), and the
  rollback asks before deleting when not given ``--yes``.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from migrator.cli.main import cli
from migrator.sim.server import SimServer
from migrator.store.db import make_engine
from migrator.store.models import Event, Run, Step
from tests.handlers.data_world import DataWorld, world  # noqa: F401 - the module's world
from tests.sim.conftest import Admin
from tests.timing import scaled

REPO = Path(__file__).resolve().parents[1]
# Fields a cloud changes by itself on records the run only used (the external network the
# routers' gateways were on, the admin's token bookkeeping): not "the target changed".
VOLATILE = frozenset({"updated_at", "revision_number", "_last_used"})


def target_state(sim: SimServer, cloud: str = "target") -> dict[str, dict[str, Any]]:
    """Every collection of the simulated target (or ``cloud``), record by record (a deep
    copy)."""
    state = sim.cloud(cloud).state
    return sim.call(lambda: copy.deepcopy(state.data))  # type: ignore[no-any-return]


def differences(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
                ) -> list[str]:
    out = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, {}), after.get(name, {})
        for rid in sorted(set(old) - set(new)):
            out.append(f"{name}: {rid} is gone")
        for rid in sorted(set(new) - set(old)):
            out.append(f"{name}: {rid} was left: {json.dumps(new[rid], default=str)[:300]}")
        for rid in sorted(set(old) & set(new)):
            a = {k: v for k, v in old[rid].items() if k not in VOLATILE}
            b = {k: v for k, v in new[rid].items() if k not in VOLATILE}
            if a != b:
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                out.append(f"{name}: {rid} changed: {keys}")
    return out


class Cli:
    def __init__(self, data_world: DataWorld, url: str) -> None:
        self.world, self.url, self.runner = data_world, url, CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        extra = ["--clouds-yaml", str(self.world.sim.clouds_yaml)] if args[0] in (
            "plan", "execute", "rollback") else []
        return self.runner.invoke(cli, ["--db", self.url, *args, *extra], input=input,
                                  prog_name="migrator")

    def process(self, *args: str) -> subprocess.Popen[str]:
        """``migrator ARGS`` in a process of its own (to be SIGKILLed)."""
        cmd = [sys.executable, "-m", "migrator", "--db", self.url, *args,
               "--clouds-yaml", str(self.world.sim.clouds_yaml)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def scalar(url: str, query: Any) -> Any:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar()
    finally:
        engine.dispose()


def rows(url: str, query: Any) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(query))
    finally:
        engine.dispose()


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + scaled(120)
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended before {what}: {out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(scaled(30))


def steps_in(url: str, run: str, *states: str) -> int:
    return int(scalar(url, select(func.count()).select_from(Step).join(Run).where(
        Run.name == run, Step.state.in_(states))))


@pytest.fixture
def faults(world: DataWorld) -> Iterator[Admin]:  # noqa: F811
    admin = Admin(world.sim, "target")
    yield admin
    admin.clear_faults()


def plan(c: Cli, tmp_path: Path, name: str, **replace: str) -> Path:
    config = c.world.config(tmp_path, **replace)
    path = tmp_path / "plans" / f"{name}.yaml"
    result = c("plan", "--config", str(config), "-o", str(path))
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("done_before_kill", [6, 20, 34])
def test_rollback_of_a_sigkilled_run_leaves_the_target_as_before(
        world: DataWorld, tmp_path: Path, faults: Admin,  # noqa: F811
        done_before_kill: int) -> None:
    """Killed early (projects and users), midway (networks, first copies) and late (volumes
    in their phases): each time the rollback leaves both clouds as they were."""
    c = Cli(world, world.url(tmp_path))
    path = plan(c, tmp_path, "half")
    before = target_state(world.sim)
    source = target_state(world.sim, "legacy")
    # Slow the target down so that the kill lands mid-run: some steps done, some running.
    faults.add_fault(match="* /*", latency_ms=20)
    proc = c.process("execute", str(path), "--workers", "4")
    kill_when(proc, lambda: steps_in(c.url, "half", "done") >= done_before_kill
              and steps_in(c.url, "half", "running", "verifying") >= 1,
              "a run half done")
    faults.clear_faults()
    assert steps_in(c.url, "half", "pending") > 0, "the run was not half-finished"
    assert differences(before, target_state(world.sim)), "the run wrote nothing"

    result = c("rollback", "--run", "half", "--yes", "--format", "json")
    assert result.exit_code == 0, rows(c.url, select(Step.key, Step.state, Step.last_error)
                                       .join(Run).where(Run.name == "half-rollback",
                                                        Step.state != "done"))
    report = json.loads(result.stdout)
    assert report["status"] == "finished" and report["rollback_run"] == "half-rollback"
    assert differences(before, target_state(world.sim)) == []
    # The source as it was too: the temporary images a volume copy cut short left there
    # were the run's, and went with the rollback.
    assert differences(source, target_state(world.sim, "legacy")) == []
    # Each removal is an audit event of the rollback run, and the undone steps that were
    # done went done -> rolled_back in the run's own trail.
    removed = [r for r in rows(c.url, select(Event.detail).join(Run).where(
        Run.name == "half-rollback", Event.trigger == "checkpoint"))
               if r.detail.get("data", {}).get("outcome") == "removed"]
    assert len(removed) == report["outcomes"]["removed"] > 0
    audit = c("audit", "--run", "half", "--format", "json", "--section", "events")
    assert audit.exit_code == 0, audit.output
    rolled = [e for e in json.loads(audit.stdout)["events"] if e["trigger"] == "rollback"]
    assert rolled and all(e["to_state"] == "rolled_back" for e in rolled)
    assert scalar(c.url, select(Run.status).where(Run.name == "half")) == "rolled_back"
    # Nothing is left to undo.
    again = c("rollback", "--run", "half", "--yes")
    assert again.exit_code == 0, again.output
    assert "created nothing that is still to remove" in again.stdout


def test_rollback_killed_halfway_then_run_again_finishes(
        world: DataWorld, tmp_path: Path, faults: Admin) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    path = plan(c, tmp_path, "whole")
    before = target_state(world.sim)
    done = c("execute", str(path), "--workers", "4")
    assert done.exit_code == 0, done.output
    faults.add_fault(match="DELETE /*", latency_ms=40)
    proc = c.process("rollback", "--run", "whole", "--yes", "--workers", "2")
    kill_when(proc, lambda: steps_in(c.url, "whole-rollback", "done") >= 5,
              "the rollback half done")
    faults.clear_faults()
    left = steps_in(c.url, "whole-rollback", "pending", "running", "verifying")
    assert left > 0, "the rollback had finished already"
    again = c("rollback", "--run", "whole", "--yes")
    assert again.exit_code == 0, again.output
    assert "was interrupted; it continues where it stopped" in again.stdout
    assert "Rollback run whole-rollback: finished" in again.stdout
    assert differences(before, target_state(world.sim)) == []
    # One rollback run, each of its steps completed once.
    runs = rows(c.url, select(Run.name).where(Run.name.like("whole-rollback%")))
    assert [r.name for r in runs] == ["whole-rollback"]
    completes = rows(c.url, select(Step.key, func.count()).join(Event, Event.step_id == Step.id)
                     .join(Run, Run.id == Step.run_id)
                     .where(Run.name == "whole-rollback", Event.trigger == "complete")
                     .group_by(Step.key))
    assert completes and all(n == 1 for _k, n in completes)


def test_adopted_pre_existing_project_survives_and_rollback_asks(
        world: DataWorld, tmp_path: Path) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    existing = world.target.identity.create_project(name="physics", domain_id="default",
                                                    description="ours, before the migration")
    try:
        path = plan(c, tmp_path, "adopting", **{"projects: {}                     # per name":
                                                 "projects: {physics: adopt}  # per name"})
        before = target_state(world.sim)
        done = c("execute", str(path), "--workers", "4")
        assert done.exit_code == 0, done.output

        asked = c("rollback", "--run", "adopting", input="n\n")
        assert asked.exit_code == 0, asked.output
        assert "To remove from the target (run adopting)" in asked.stdout
        assert "Left alone" in asked.stdout and "adopted by decision" in asked.stdout
        assert "quotas of a project that existed before the run" in asked.stdout
        assert "Delete these resources from the target? [y/N]" in asked.stdout
        assert "Nothing was deleted." in asked.stdout
        assert steps_in(c.url, "adopting-rollback", "pending", "done") == 0

        result = c("rollback", "--run", "adopting", input="y\n")
        assert result.exit_code == 0, result.output
        after = target_state(world.sim)
        project = after["projects"].get(existing.id)
        assert project is not None and project["name"] == "physics"
        # Everything else is as before. What stays of the run is on the adopted project only,
        # each listed under "Left alone": the source id tag it was marked with, the quotas
        # set on it (their earlier values were never recorded), and the default security
        # group Neutron made for it when the run first used it.
        kept = {k["kind"] for k in json.loads(c("rollback", "--run", "adopting", "--yes",
                                                 "--format", "json").stdout)["plan"]["kept"]}
        assert kept == {"project", "quota"}
        for name, records in after.items():
            for rid, record in records.items():
                if rid in before.get(name, {}):
                    continue
                assert existing.id in (record.get("project_id"), rid.partition(":")[2]), \
                    (name, record)
        changed = [d for d in differences(before, after) if " changed" in d]
        assert changed == [f"projects: {existing.id} changed: ['tags']"]
    finally:
        world.target.identity.delete_project(existing.id)
