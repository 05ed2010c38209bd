"""Worker processes through the commands: ``execute --processes``, ``migrator worker``,
``migrator run pause|resume|cancel`` and the workers in ``migrator status``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli.main import cli
from migrator.engine.runs import StepSpec, create_run, state_counts
from migrator.operations.plan import load_plan
from migrator.store.db import make_engine, session_factory
from tests.e2e_support import World, assert_migrated, assert_no_duplicates, start_world
from tests.engine.helpers import active_workers, leases, run_status
from tests.engine.kinds import create_effects_table

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = start_world(tmp_path / "world")
    try:
        yield w
    finally:
        w.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.mark.slow
def test_execute_with_two_worker_processes_migrates_everything_once(world: World) -> None:
    assert world.cli("discover", "--config", str(world.config)).exit_code == 0
    plan_path = world.root / "plans" / "two.yaml"
    planned = world.cli("plan", "--config", str(world.config), "-o", str(plan_path))
    assert planned.exit_code == 0, planned.output
    # Each create answered after 100 ms: the run outlasts the start of both processes (its
    # ~70 steps take a second or two otherwise, less than a loaded machine needs to start a
    # second interpreter, which then finds the run over and does not join).
    world.admin("target").add_fault(match="POST /*", latency_ms=100)
    # The workers are separate processes: they read the database and clouds.yaml by path.
    result = world.cli("execute", str(plan_path), "--processes", "2", "--workers", "3")
    assert result.exit_code == 0, result.output
    assert "Run two: finished" in result.stdout
    plan = load_plan(plan_path)
    report = assert_migrated(world, plan, world.db_url, "two")
    assert report.checked["id_map"] == len(plan.steps)
    assert_no_duplicates(world.target)
    engine = make_engine(world.db_url)
    try:
        assert leases(engine) == [] and active_workers(engine) == []
        with engine.connect() as conn:
            joined = conn.exec_driver_sql(
                "SELECT count(*) FROM events WHERE trigger = 'worker-joined'").scalar()
        assert joined == 2
    finally:
        engine.dispose()


def start_worker(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.worker_runner", url, "run", "--slots", "2",
         "--lease", "5"], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_pause_resume_and_cancel_are_obeyed_by_a_worker(db_url: str) -> None:
    engine = make_engine(db_url)
    factory = session_factory(engine)
    runner = CliRunner()

    def migrator(*args: str) -> dict[str, object]:
        result = runner.invoke(cli, ["--db", db_url, *args, "--format", "json"])
        assert result.exit_code == 0, result.output
        data: dict[str, object] = json.loads(result.stdout)
        return data

    try:
        create_effects_table(db_url)
        run_id = create_run(factory, "run", [
            StepSpec(f"s{i:03d}", "fenced", {"sleep_ms": 200}) for i in range(60)], [])
        proc = start_worker(db_url)
        wait_for(lambda: state_counts(factory, run_id).get("done", 0) >= 4, 60, "4 done")
        status = migrator("status", "--run", "run")
        (worker,) = status["processes"]  # type: ignore[misc]
        assert worker["slots"] == 2 and worker["pid"] == proc.pid
        assert [w["steps"] for w in status["workers"]] in ([1], [2])  # type: ignore[index]

        assert migrator("run", "pause", "run") == {
            "run": "run", "action": "pause", "status": "paused", "workers": 1}
        # Within a heartbeat and a phase, nothing runs and nothing more completes (a step
        # verifying runs too: it completes with its thread's next claim).
        wait_for(lambda: not {"running", "verifying"} & set(state_counts(factory, run_id)),
                 30, "idle")
        done = state_counts(factory, run_id)["done"]
        time.sleep(3)
        assert state_counts(factory, run_id).get("done") == done
        assert state_counts(factory, run_id).get("running") is None
        assert run_status(engine, run_id) == "paused"

        assert migrator("run", "resume", "run")["status"] == "running"
        wait_for(lambda: state_counts(factory, run_id)["done"] >= done + 4, 60, "resumed")

        assert migrator("run", "cancel", "run")["workers"] == 1
        out, err = proc.communicate(timeout=60)
        assert json.loads(out.strip().splitlines()[-1])["status"] == "cancelled", err
        assert run_status(engine, run_id) == "cancelled"
        assert leases(engine) == [] and active_workers(engine) == []
        assert state_counts(factory, run_id).get("pending", 0) > 0
    finally:
        engine.dispose()


def test_controlling_a_finished_run_is_refused_in_one_line(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        create_run(session_factory(engine), "old", [StepSpec("a", "x")], [])
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE runs SET status = 'finished'")
    finally:
        engine.dispose()
    result = CliRunner().invoke(cli, ["--db", db_url, "run", "pause", "old"])
    assert result.exit_code == 5
    assert result.stderr == ("Error: run 'old' is finished: there is nothing to pause "
                             "(continue it with 'migrator execute PLAN --resume')\n")


def test_a_worker_without_a_run_waits_then_says_so(db_url: str) -> None:
    result = CliRunner().invoke(cli, ["--db", db_url, "worker", "--wait", "0"])
    assert result.exit_code == 4
    assert result.stderr == ("Error: no run to join after waiting 0 s (a run is joinable "
                             "while it is created, running or paused)\n")


def test_sigterm_hands_the_steps_back(db_url: str) -> None:
    engine = make_engine(db_url)
    factory = session_factory(engine)
    try:
        create_effects_table(db_url)
        run_id = create_run(factory, "run", [
            StepSpec(f"s{i:03d}", "fenced", {"sleep_ms": 400}) for i in range(20)], [])
        proc = start_worker(db_url)
        wait_for(lambda: state_counts(factory, run_id).get("done", 0) >= 1, 60, "1 done")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert "terminate: finishing the running phases" in err
        assert json.loads(out.strip().splitlines()[-1])["status"] == "interrupted"
        assert leases(engine) == [] and active_workers(engine) == []
        assert not state_counts(factory, run_id).get("running")
    finally:
        engine.dispose()
