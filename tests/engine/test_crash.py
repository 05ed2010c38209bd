"""Crash safety: SIGKILL at random moments, Ctrl-C once and twice, all through subprocesses.

The executor runs in a child process (``tests/engine/runner.py``) over a real SQLite file; the
test kills it and resumes it, and checks what the state database and the side effects say.
Replay a failure with ``MIGRATOR_CRASH_SEED=<seed printed by the test>``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.runs import StepSpec, create_run
from migrator.store.db import make_engine
from migrator.store.models import Event
from tests.engine.helpers import (
    active_workers,
    assert_event_chains,
    leases,
    run_status,
    states,
    steps_by_key,
)
from tests.engine.kinds import chains_with_fan_in, read_effects
from tests.timing import replay_seed, scaled

Factory = sessionmaker[Session]
REPO = Path(__file__).resolve().parents[2]


def start_runner(
    url: str, effects: Path, *, resume: bool, workers: int = 8, log: Path | None = None
) -> subprocess.Popen[str]:
    """The runner in a child process; its stderr piped, or written to ``log`` (which the
    test can read while the child runs)."""
    cmd = [sys.executable, "-m", "tests.engine.runner", url, "run", str(effects)]
    cmd += ["--workers", str(workers)] + (["--resume"] if resume else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    if log is None:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    with log.open("w") as err:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )


def event_count(engine: Engine, trigger: str | None = None) -> int:
    query = select(func.count()).select_from(Event)
    if trigger:
        query = query.where(Event.trigger == trigger)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    """Until ``predicate()``; at most ``timeout`` seconds on an idle machine (scaled)."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {limit:g} s")


INTERRUPTED = "interrupt: finishing the running phases"


def acknowledged(log: Path) -> Callable[[], bool]:
    """Whether the child's SIGINT handler has run (it logs as it asks the executor to
    stop): what the test measures from, not the moment the signal was sent."""
    return lambda: INTERRUPTED in log.read_text()


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, object]:
    out, err = proc.communicate(timeout=scaled(timeout))
    assert proc.returncode == 0, f"runner exited {proc.returncode}: {err[-2000:]}"
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(
    db_url: str, factory: Factory, tmp_path: Path
) -> None:
    seed = replay_seed("MIGRATOR_CRASH_SEED", 4_231)
    rng = random.Random(seed)
    steps, deps = chains_with_fan_in(20, 15, sleep_ms=(20, 120), seed=seed)
    assert len(steps) >= 300
    run_id = create_run(factory, "run", steps, deps)
    engine = make_engine(db_url)
    effects = tmp_path / "effects.log"
    # At each kill: the steps whose done was committed, and their side-effect counts then.
    done_at_kill: list[tuple[set[str], dict[str, int]]] = []

    kills = 0
    while kills < 10:
        proc = start_runner(db_url, effects, resume=kills > 0)
        if rng.random() < 0.25:
            # Anywhere at all, start-up and resume preparation included.
            time.sleep(rng.uniform(0.0, 0.8))
        else:
            # Mid-execution: once this process has committed something, a little later.
            before = event_count(engine)

            def progressed(p: subprocess.Popen[str] = proc, n: int = before) -> bool:
                return event_count(engine) > n or p.poll() is not None

            wait_for(progressed, 20)
            time.sleep(rng.uniform(0.0, 0.3))
        assert proc.poll() is None, "the run finished before the kill: make it longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        got = states(engine, run_id)
        counts = read_effects(effects)
        done = {k for k, s in got.items() if s == "done"}
        done_at_kill.append((done, {k: counts[k] for k in done}))

    result = finish(start_runner(db_url, effects, resume=True))

    assert result["status"] == "finished"
    assert set(states(engine, run_id).values()) == {"done"}
    assert run_status(engine, run_id) == "finished"
    assert leases(engine) == [] and active_workers(engine) == []
    counts = read_effects(effects)
    # At least once for every step; and in fact exactly once, because a step killed between
    # its side effect and its checkpoint is reconciled (adopted), not redone.
    assert {s.key for s in steps} == set(counts)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    for done, counts_then in done_at_kill:
        assert {k: counts[k] for k in done} == counts_then  # done steps never ran again
    assert_event_chains(engine, run_id)
    progress = [len(d) for d, _ in done_at_kill]
    assert progress == sorted(progress)
    print(
        f"done at each kill: {progress}; in-doubt steps adopted: "
        f"{sum('adopted' in r['checkpoint'] for r in steps_by_key(engine, run_id).values())}"
    )


def slow_run(factory: Factory, n: int, sleep_ms: int) -> int:
    specs = [StepSpec(f"s{i}", "append", {"sleep_ms": sleep_ms}) for i in range(n)]
    return create_run(factory, "run", specs, [])


@pytest.mark.slow
def test_ctrl_c_stops_taking_steps_and_resume_finishes(
    db_url: str, factory: Factory, tmp_path: Path
) -> None:
    run_id = slow_run(factory, 24, 400)
    engine = make_engine(db_url)
    effects = tmp_path / "effects.log"
    log = tmp_path / "runner.log"
    proc = start_runner(db_url, effects, resume=False, workers=4, log=log)
    wait_for(lambda: event_count(engine, "complete") >= 4, 20)

    proc.send_signal(signal.SIGINT)
    wait_for(acknowledged(log), 10)
    interrupted_at = datetime.now(UTC)
    out, _ = proc.communicate(timeout=scaled(10))
    err = log.read_text()

    assert proc.returncode == 3, err
    assert json.loads(out)["status"] == "interrupted"
    assert INTERRUPTED in err
    assert run_status(engine, run_id) == "interrupted"
    got = states(engine, run_id)
    assert "running" not in got.values() and "verifying" not in got.values()
    assert "pending" in got.values()
    with engine.connect() as conn:
        late_starts = conn.execute(
            select(func.count())
            .select_from(Event)
            .where(Event.trigger == "start", Event.at > interrupted_at + timedelta(seconds=0.2))
        ).scalar_one()
    assert late_starts == 0
    assert leases(engine) == [] and active_workers(engine) == []

    result = finish(start_runner(db_url, effects, resume=True, workers=8))
    assert result["status"] == "finished"
    assert read_effects(effects) == {f"s{i}": 1 for i in range(24)}
    assert_event_chains(engine, run_id)


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once_and_the_database_stays_consistent(
    db_url: str, factory: Factory, tmp_path: Path
) -> None:
    # Phases far longer than the test: whatever the machine's speed, both workers are
    # inside their first phase when the second Ctrl-C comes.
    phase_s = scaled(20)
    run_id = slow_run(factory, 2, int(phase_s * 2000))
    engine = make_engine(db_url)
    effects = tmp_path / "effects.log"
    log = tmp_path / "runner.log"
    proc = start_runner(db_url, effects, resume=False, workers=2, log=log)
    wait_for(lambda: event_count(engine, "start") == 2, 20)

    proc.send_signal(signal.SIGINT)
    # Two signals before the handler runs would count as one: wait until the first is in.
    wait_for(acknowledged(log), 10)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=phase_s)

    assert proc.returncode == 130, log.read_text()
    assert time.monotonic() - began < phase_s / 2  # not waiting for the phases to end
    assert set(states(engine, run_id).values()) == {"running"}  # in doubt, for resume
    assert_event_chains(engine, run_id, final_state=None)
    # Left behind by a process that is gone: its leases are taken over on resume.
    assert len(active_workers(engine)) == 1 and len(leases(engine)) == 2
