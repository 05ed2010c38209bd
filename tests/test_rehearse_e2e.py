"""``migrator rehearse`` end to end against the simulator (the image and volume world of
tests/handlers/data_world.py): the plan runs for real into the rehearsal namespace, its time
is measured and reported, everything it created is removed (every collection of the target
as before), a rehearsal SIGKILLed halfway finishes when run again, and the real run of the
plan afterwards is not affected by what the rehearsal left in the state database."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy import select

from migrator.store.models import IdMap, Run, Step
from tests.handlers.data_world import DataWorld, world  # noqa: F401 - the module's world
from tests.test_rollback_e2e import (
    Cli,
    differences,
    kill_when,
    plan,
    rows,
    steps_in,
    target_state,
)


def test_rehearsal_leaves_the_target_as_before_and_reports_its_time(
        world: DataWorld, tmp_path: Path) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    path = plan(c, tmp_path, "night")
    before = target_state(world.sim)
    result = c("rehearse", str(path), "--clouds-yaml", str(world.sim.clouds_yaml))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Rehearsal night-rehearsal of plan night (suffix -rehearsal): "
                          "finished\n"), out
    measured = re.search(r"^Measured: ([0-9.]+) s \(estimate [+-][0-9]+%\), ([0-9]+) bytes "
                         r"copied at [0-9.]+ MiB/s$", out, re.M)
    assert measured and float(measured[1]) > 0 and int(measured[2]) > 0, out
    assert "Time per step kind" in out and re.search(r"^  volume +4 ", out, re.M), out
    assert re.search(r"^Removed: night-rehearsal-rollback finished \(.*[0-9]+ removed", out,
                     re.M), out
    assert differences(before, target_state(world.sim)) == []
    # What it made was in the rehearsal namespace: every name the rollback removed carries
    # the suffix (the default security groups keep Neutron's name).
    removed = rows(c.url, select(Step.kind, Step.name).join(Run).where(
        Run.name == "night-rehearsal-rollback"))
    named = [(k, n) for k, n in removed if k in ("undo_project", "undo_user", "undo_network",
                                                  "undo_image", "undo_volume")]
    assert named and all(n.endswith("-rehearsal") for _k, n in named), named

    # The real run afterwards: registered as the plan's own first run, nothing of the
    # rehearsal adopted (its id map points at nothing the rehearsal made).
    done = c("execute", str(path), "--workers", "4")
    assert done.exit_code == 0, done.output
    assert "Run night: finished" in done.stdout
    real = {r.target_id for r in rows(c.url, select(IdMap.target_id).join(Run).where(
        Run.name == "night"))}
    rehearsed = {r.target_id for r in rows(c.url, select(IdMap.target_id).join(Run).where(
        Run.name == "night-rehearsal"))}
    assert real and rehearsed and not real & rehearsed
    status = c("status", "--run", "night", "--format", "json")
    assert status.exit_code == 0, status.output
    shown = json.loads(status.stdout)
    assert shown["run"] == "night" and "rehearsal" not in json.dumps(shown["runs"])
    c("rollback", "--run", "night", "--yes")
    assert differences(before, target_state(world.sim)) == []


def test_rehearsal_killed_halfway_finishes_when_run_again(
        world: DataWorld, tmp_path: Path) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    path = plan(c, tmp_path, "dress")
    before = target_state(world.sim)
    proc = c.process("rehearse", str(path), "--workers", "2")
    kill_when(proc, lambda: steps_in(c.url, "dress-rehearsal", "done") >= 10,
              "the rehearsal half done")
    # Meanwhile the real run waits: the rehearsal's resources carry the same source ids.
    refused = c("execute", str(path))
    assert refused.exit_code == 7, refused.output
    assert "rehearsal dress-rehearsal of plan dress is running and its resources are still " \
           "on the target" in refused.stderr
    result = c("rehearse", str(path), "--clouds-yaml", str(world.sim.clouds_yaml),
               "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["run"] == "dress-rehearsal"
    assert report["cleanup_status"] == "finished"
    assert differences(before, target_state(world.sim)) == []
    assert [r.name for r in rows(c.url, select(Run.name).where(
        Run.name.like("dress-rehearsal%")).order_by(Run.id))] == [
        "dress-rehearsal", "dress-rehearsal-rollback"]
