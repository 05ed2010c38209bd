"""Claims for several threads at once: a worker's claim takes steps for its threads that are
waiting too and queues them; a queued step is leased (renewed with the others) until a thread
starts it, and given back when the worker stops before one does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.executor import Executor, ExecutorConfig, Progress
from migrator.engine.handlers import Handler, HandlerRegistry, StepContext
from migrator.engine.leases import claim_steps, release_unstarted
from migrator.engine.runs import StepSpec, create_run
from migrator.engine.steps import StepSnapshot, utcnow
from migrator.engine.workers import heartbeat, register_worker
from migrator.store.db import make_engine, session_factory
from migrator.store.models import Event, Step
from tests.engine.helpers import assert_event_chains, leases
from tests.engine.kinds import EFFECTS_TABLE, create_effects_table

REPO = Path(__file__).resolve().parents[2]


def step_rows(factory: sessionmaker[Session], run_id: int) -> dict[str, Any]:
    with factory() as s:
        return {row.key: row for row in s.execute(select(Step).where(Step.run_id == run_id))
                .scalars()}


def events_of(factory: sessionmaker[Session], step_id: int) -> list[tuple[str, Any]]:
    with factory() as s:
        return [(e.trigger, e.detail) for e in s.execute(
            select(Event).where(Event.step_id == step_id).order_by(Event.id)).scalars()]


def test_unstarted_claims_are_renewed_and_given_back(
    any_factory: sessionmaker[Session],
) -> None:
    factory = any_factory
    run_id = create_run(factory, "r", [StepSpec(f"s{i}", "x") for i in range(5)], [])
    w1 = register_worker(factory, run_id, 4)
    now = utcnow()
    # s0 was w0's; its lease ended: w1's claim takes it over, with three fresh ones.
    (old,) = claim_steps(factory, run_id, "w0", 1, now=now, lease_seconds=10)
    later = now + timedelta(seconds=11)
    claims = claim_steps(factory, run_id, w1, 4, now=later, lease_seconds=10)
    assert [(c.step.key, c.reclaimed) for c in claims] == [
        ("s0", True), ("s1", False), ("s2", False), ("s3", False)]

    # Not started yet, every one is w1's lease, and its heartbeat renews them all.
    beat_at = later + timedelta(seconds=5)
    beat = heartbeat(factory, w1, run_id, lease_seconds=10, now=beat_at)
    assert set(beat.held) == {c.step.id for c in claims}
    rows = step_rows(factory, run_id)
    for key in ("s0", "s1", "s2", "s3"):
        assert rows[key].lease_owner == w1
        assert rows[key].lease_expires_at.replace(tzinfo=None) == \
            (beat_at + timedelta(seconds=10)).replace(tzinfo=None)

    # s3 is taken over before w1 gives it back (its lease ran out: w1 missed a beat for it):
    # w1 lets it be.
    with factory.begin() as s:
        s.execute(update(Step).where(Step.key == "s3").values(lease_expires_at=beat_at))
    taken_at = beat_at + timedelta(seconds=1)
    (s3,) = claim_steps(factory, run_id, "w2", 1, now=taken_at)
    assert (s3.step.key, s3.reclaimed) == ("s3", True)

    given_back = release_unstarted(factory, claims, w1, now=taken_at)
    assert given_back == 3
    rows = step_rows(factory, run_id)
    for key in ("s1", "s2"):  # fresh claims: pending again, no lease
        assert (rows[key].state, rows[key].lease_owner) == ("pending", None)
        assert events_of(factory, rows[key].id)[-1] == ("requeue", {"reason": "not started"})
    # The takeover stays in doubt (running), its lease over: the next claim takes it over
    # again and reconciles it.
    assert rows["s0"].state == "running" and rows["s0"].lease_owner == w1
    assert rows["s3"].lease_owner == "w2"
    assert old.step.id == rows["s0"].id
    again = claim_steps(factory, run_id, "w3", 1, now=taken_at + timedelta(seconds=1))
    assert [(c.step.key, c.reclaimed, c.previous_owner) for c in again] == [("s0", True, w1)]


class Gate(Handler):
    """Step "root" waits for the test to open the gate; the others do nothing."""

    phases = ("only",)

    def __init__(self) -> None:
        self.open = threading.Event()
        self.started: list[str] = []

    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:
        self.started.append(step.key)
        if step.key == "root":
            assert self.open.wait(60), "the test never opened the gate"
        return None


def test_a_claim_takes_steps_for_the_waiting_threads_and_a_stop_gives_the_unstarted_back(
    any_factory: sessionmaker[Session],
) -> None:
    factory = any_factory
    leaves = [f"leaf{i}" for i in range(4)]
    run_id = create_run(factory, "r", [StepSpec("root", "gate")]
                        + [StepSpec(k, "gate") for k in leaves], [(k, "root") for k in leaves])
    gate = Gate()
    registry = HandlerRegistry()
    registry.register("gate", gate)
    executor: Executor

    def observe(progress: Progress) -> None:
        # The root is done (its thread's claim for itself and the three waiting threads is
        # under way): the worker is told to stop, as SIGTERM's handler does.
        if progress.event == "step-done" and progress.step == "root":
            executor.stop.set()

    # A long poll: the three idle threads wait until the root's thread wakes them.
    executor = Executor(factory, "r", registry=registry, observer=observe,
                        config=ExecutorConfig(workers=4, poll_interval=30.0))
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(r=executor.run()))
    runner.start()
    deadline = time.monotonic() + 60
    while executor._waiting < 3:  # the three other threads found nothing and wait
        assert time.monotonic() < deadline, "the idle threads never waited"
        time.sleep(0.01)
    gate.open.set()
    runner.join(60)
    assert not runner.is_alive()

    rows = step_rows(factory, run_id)
    assert rows["root"].state == "done"
    # One claim took the four leaves (for the root's thread and the three waiting ones);
    # the worker stopped before the waiting threads took theirs: those were given back.
    given_back = [k for k in leaves if events_of(factory, rows[k].id)[-2:] == [
        ("start", {}), ("requeue", {"reason": "not started"})]]
    assert len(given_back) == 3, {k: events_of(factory, rows[k].id) for k in leaves}
    assert all(rows[k].state == "pending" for k in given_back)
    assert not any(k in gate.started for k in given_back)
    assert leases(factory.kw["bind"]) == []
    assert result["r"].status == "interrupted"
    assert len(executor.held) == 0 and executor._busy == 0 and not executor._queued
    assert_event_chains(factory.kw["bind"], run_id, final_state=None)


@pytest.mark.postgres
def test_two_processes_claim_in_batches_and_no_step_is_given_twice(pg_url: str) -> None:
    engine = make_engine(pg_url)
    factory = session_factory(engine)
    try:
        create_effects_table(pg_url)
        # Waves: a slow gate step, then 12 quick steps after it, then the next gate after
        # those. While a gate runs, the other threads of both workers wait; the gate's
        # completion frees 12 steps at once.
        specs: list[StepSpec] = []
        deps: list[tuple[str, str]] = []
        previous: list[str] = []
        for wave in range(4):
            gate = f"g{wave}"
            specs.append(StepSpec(gate, "fenced", spec={"sleep_ms": 300}))
            deps += [(gate, key) for key in previous]
            previous = [f"w{wave}-{i:02d}" for i in range(12)]
            specs += [StepSpec(key, "fenced", spec={"sleep_ms": 10}) for key in previous]
            deps += [(key, gate) for key in previous]
        run_id = create_run(factory, "run", specs, deps)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
        workers = [subprocess.Popen(
            [sys.executable, "-m", "tests.engine.worker_runner", pg_url, "run", "--slots",
             "4", "--lease", "5"], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in workers:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"
        with engine.connect() as conn:
            starts = conn.execute(select(Event.step_id, Event.pid, Event.at)
                                  .where(Event.run_id == run_id, Event.trigger == "start")
                                  ).all()
            effects = Counter(key for (key,) in conn.execute(
                select(Step.key).select_from(Step).join(
                    _effects(), _effects().c.step_key == Step.key)))
        # Every step started once and made its effect once: no step was given twice.
        assert Counter(s.step_id for s in starts).most_common(1)[0][1] == 1
        assert len(starts) == len(specs) and set(effects) == {s.key for s in specs}
        assert max(effects.values()) == 1
        # Some statement started several steps for one worker (one pid, one instant).
        batches = Counter((s.pid, s.at) for s in starts)
        assert max(batches.values()) > 1, batches
        assert leases(engine) == []
        assert_event_chains(engine, run_id)
    finally:
        engine.dispose()


def _effects() -> Any:
    from sqlalchemy import column, table

    return table(EFFECTS_TABLE, column("step_key"))
