"""Several worker processes on one run: kills, a pause past the lease, fencing.

Each worker is ``tests/engine/worker_runner.py`` (the real Executor in its own process, lease
2 s) over a real PostgreSQL database or SQLite file. The steps are ``fenced`` steps
(tests/engine/kinds.py): each writes one row into a table of the same database inside a fenced
transaction, with its fencing token. The random DAG's seed is fixed by default and printed
(``MIGRATOR_WORKERS_SEED`` replays another one).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from migrator.engine.runs import StepSpec, create_run
from migrator.store.db import make_engine, session_factory
from migrator.store.models import Event, Step
from tests.engine.helpers import active_workers, assert_event_chains, leases, run_status
from tests.engine.kinds import EFFECTS_TABLE, create_effects_table

REPO = Path(__file__).resolve().parents[2]
LEASE = 2.0
SEED = int(os.environ.get("MIGRATOR_WORKERS_SEED", "20261203"))


def random_dag(n: int, rng: random.Random) -> tuple[list[StepSpec], list[tuple[str, str]]]:
    """``n`` steps, each depending on up to 3 random earlier ones (about a third on none)."""
    steps = [StepSpec(f"s{i:05d}", "fenced", {"sleep_ms": rng.randint(20, 60)})
             for i in range(n)]
    deps: set[tuple[str, str]] = set()
    for i in range(1, n):
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            deps.add((steps[i].key, steps[rng.randrange(max(0, i - 200), i)].key))
    return steps, sorted(deps)


def start_worker(url: str, *, slots: int = 4) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.worker_runner", url, "run", "--slots", str(slots),
         "--lease", str(LEASE)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def done_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Step)
                                .where(Step.state == "done")).scalar_one())


def reclaims(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Event)
                                .where(Event.trigger == "reclaim")).scalar_one())


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def check_fencing(engine: Engine, run_id: int) -> Counter[str]:
    """Every effect was written while its token was the step's current one: no takeover of
    the step (a reclaim to a higher token) committed before the effect did."""
    with engine.connect() as conn:
        effects = conn.execute(text(f"SELECT step_key, token, at FROM {EFFECTS_TABLE}")).all()
        takeovers = conn.execute(
            select(Step.key, Event.detail, Event.at).join(Step, Step.id == Event.step_id)
            .where(Event.run_id == run_id, Event.trigger == "reclaim")).all()
    superseded: dict[tuple[str, int], float] = {}
    for key, detail, at in takeovers:
        token = int(detail["lease_token"]) - 1  # the token this takeover ended
        stamp = at.timestamp() if at.tzinfo else at.replace(tzinfo=__import__(
            "datetime").UTC).timestamp()
        superseded[(key, token)] = min(stamp, superseded.get((key, token), stamp))
    for key, token, at in effects:
        ended = superseded.get((key, int(token)))
        assert ended is None or at <= ended, (
            f"{key}: effect with token {token} written at {at}, after a takeover at {ended}")
    return Counter(key for key, _, _ in effects)


def run_with_faults(url: str, steps_n: int, *, stop_one: bool, kills: int) -> None:
    print(f"workers test seed: {SEED} (replay: MIGRATOR_WORKERS_SEED={SEED})")
    rng = random.Random(SEED)
    engine = make_engine(url)
    factory = session_factory(engine)
    try:
        create_effects_table(url)
        steps, deps = random_dag(steps_n, rng)
        run_id = create_run(factory, "run", steps, deps)
        workers = [start_worker(url) for _ in range(4)]
        victims = list(range(kills))
        stopped = kills if stop_one else None
        marks = [round(steps_n * f) for f in (0.1, 0.35, 0.6)]
        stderr: dict[int, str] = {}
        for n, mark in enumerate(marks):
            wait_for(lambda m=mark: done_count(engine) >= m, 120, f"{mark} steps done")
            if n < len(victims):
                workers[victims[n]].send_signal(signal.SIGKILL)
                workers[victims[n]].wait()
            elif stopped is not None and n == len(victims):
                before = reclaims(engine)
                workers[stopped].send_signal(signal.SIGSTOP)
                # Its leases run out; the others take its steps over.
                wait_for(lambda b=before: reclaims(engine) > b, 60, "a takeover")
                time.sleep(LEASE)
                workers[stopped].send_signal(signal.SIGCONT)
        for i, proc in enumerate(workers):
            if i in victims:
                continue
            out, err = proc.communicate(timeout=300)
            stderr[i] = err
            assert proc.returncode == 0, f"worker {i} exited {proc.returncode}: {err[-3000:]}"
            assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"
        if stopped is not None:
            # It woke up holding steps that were no longer its own, and let go of them.
            assert "dropped" in stderr[stopped], stderr[stopped][-2000:]
        assert run_status(engine, run_id) == "finished"
        counts = check_fencing(engine, run_id)
        assert set(counts) == {s.key for s in steps}
        assert max(counts.values()) == 1, [k for k, c in counts.items() if c > 1]
        assert leases(engine) == [] and active_workers(engine) == []
        assert reclaims(engine) >= kills
        assert_event_chains(engine, run_id)
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_four_workers_on_postgresql_two_killed_one_paused_past_its_lease(
        pg_url: str) -> None:
    run_with_faults(pg_url, 2000, stop_one=True, kills=2)


@pytest.mark.slow
def test_four_worker_processes_on_one_sqlite_file_two_killed(db_url: str) -> None:
    # No pause here: a process stopped inside a transaction keeps SQLite's one write lock,
    # and every other worker waits for it (PostgreSQL locks rows, not the database).
    run_with_faults(db_url, 600, stop_one=False, kills=2)
