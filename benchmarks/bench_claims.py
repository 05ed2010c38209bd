"""Claims of many workers on one run, on PostgreSQL (engine/leases.py).

- ``claim_latency_ms``: one claim as a worker makes it (a lease on the next ready step: one
  statement picking it ``FOR UPDATE SKIP LOCKED``, starting it with a new fencing token and
  writing its event, engine/one_statement.py) when 10,000 steps are ready, the median of 200
  claims (target < 10 ms); the note gives the claim that also looks for expired leases;
- ``throughput_N``: no-op steps per second with N worker processes of 4 threads each
  (``benchmarks/claim_worker.py``, the real Executor) sharing one run of 4,000 steps, from the
  start of the first worker to the end of the last (target >= 500 steps/s with 4). What a step
  costs there is the engine's own: claim, checkpoint, verify, complete, the heartbeat; and
  each process's start-up (about 1 CPU-s: interpreter, imports, engine), which the note
  separates, with the rate from the first step's start to the last one's completion.

The machine's two cores are shared by the workers and the database server: the note says how
busy the server was.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from benchmarks.bench_engine import postgres_db
from benchmarks.harness import Metric, benchmark
from migrator.engine.leases import claim_steps
from migrator.engine.runs import StepSpec, create_run
from migrator.store.db import make_engine, session_factory
from migrator.store.models import Event

ROOT = Path(__file__).resolve().parent.parent
READY_STEPS = 10_000
THROUGHPUT_STEPS = 4_000
SLOTS = 4
LATENCY_TARGET_MS = 10.0
THROUGHPUT_TARGET = 500.0


def claim_latency(reclaim: bool = False) -> tuple[float, float]:
    """Median and worst of 200 claims (ms). ``reclaim``: each claim also looks for expired
    leases, which a worker's claims do at most once a second (ExecutorConfig)."""
    with postgres_db() as url:
        engine = make_engine(url)
        factory = session_factory(engine)
        try:
            run_id = create_run(factory, "ready", [
                StepSpec(f"s{i:05d}", "noop") for i in range(READY_STEPS)], [])
            times = []
            for _ in range(200):
                began = time.perf_counter()
                claimed = claim_steps(factory, run_id, "bench", 1, reclaim=reclaim)
                times.append(time.perf_counter() - began)
                assert len(claimed) == 1
            return statistics.median(times) * 1000, max(times) * 1000
        finally:
            engine.dispose()


@dataclass(frozen=True)
class Throughput:
    steps_per_s: float  # from the start of the first worker process to the end of the last
    steady_steps_per_s: float  # from the first step's start to the last one's completion
    cpu_ms: float  # the workers' CPU per step, their start-up included
    startup_cpu_ms: float  # of which before the run (interpreter, imports, engine), per step


def throughput(workers: int) -> Throughput:
    """Steps/s of ``workers`` processes on one run, and their CPU per step."""
    with postgres_db() as url:
        engine = make_engine(url)
        try:
            create_run(session_factory(engine), "run", [
                StepSpec(f"s{i:05d}", "noop") for i in range(THROUGHPUT_STEPS)], [])
        finally:
            engine.dispose()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        began = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.claim_worker", url, "run",
                                   str(SLOTS)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  text=True) for _ in range(workers)]
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            results.append(json.loads(out.strip().splitlines()[-1]))
        wall = time.monotonic() - began
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                first, last = conn.execute(select(
                    func.min(Event.at).filter(Event.trigger == "start"),
                    func.max(Event.at).filter(Event.trigger == "complete"))).one()
        finally:
            engine.dispose()
    assert sum(r["completed"] for r in results) == THROUGHPUT_STEPS, results
    cpu = sum(r["cpu_s"] for r in results)
    startup = sum(r.get("startup_cpu_s", 0.0) for r in results)
    return Throughput(THROUGHPUT_STEPS / wall,
                      THROUGHPUT_STEPS / (last - first).total_seconds(),
                      1000 * cpu / THROUGHPUT_STEPS, 1000 * startup / THROUGHPUT_STEPS)


@benchmark("claims", f"claims on PostgreSQL: latency at {READY_STEPS:,} ready steps, no-op "
           f"step throughput with 1, 2, 4 and 8 worker processes of {SLOTS} threads")
def claims() -> list[Metric]:
    median, worst = claim_latency()
    reclaiming, _ = claim_latency(reclaim=True)
    metrics = [Metric("claim_latency_ms", median, "ms", target=LATENCY_TARGET_MS,
                      better="lower", note=f"median of 200 claims (one statement each), worst "
                      f"{worst:.1f} ms; a claim that also looks for expired leases (at most "
                      f"once a second per worker): median {reclaiming:.1f} ms; load average "
                      f"{os.getloadavg()[0]:.1f}")]
    for workers in (1, 2, 4, 8):
        measured = throughput(workers)
        metrics.append(Metric(
            f"throughput_{workers}_workers", measured.steps_per_s, "steps/s",
            target=THROUGHPUT_TARGET if workers == 4 else None,
            note=f"{THROUGHPUT_STEPS:,} no-op steps; first start to last completion "
                 f"{measured.steady_steps_per_s:.0f} steps/s (without the processes' "
                 f"start-up); worker CPU {measured.cpu_ms:.2f} ms per step, of which "
                 f"{measured.startup_cpu_ms:.2f} before the run; load average "
                 f"{os.getloadavg()[0]:.1f}"))
    return metrics
