"""Execute with several worker processes: ``migrator execute PLAN --processes N`` for N = 1,
2 and 4, on SQLite and on PostgreSQL, on the same generated inventory as bench_execute
(``MIGRATOR_BENCH_WORKERS_TENANTS``, default 100 tenants, 2 small images each, no volumes).

Each measurement gets a fresh simulator process (a legacy cloud and an empty target) and a
fresh state database; discover and plan run first (not measured), then ``execute`` in a fresh
process: its wall time, steps/s, and the CPU of the simulator over the run (user + sys of its
process), which tells when the simulator's one core is the limit: at a simulator CPU share
near 1.0 (one core busy for the whole run) more workers cannot help.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.bench_engine import postgres_db
from benchmarks.bench_execute import (
    prepare_target,
    process_cpu,
    run_measured,
)
from benchmarks.harness import Metric, benchmark
from benchmarks.simulator_process import serve, stop

TENANTS = int(os.environ.get("MIGRATOR_BENCH_WORKERS_TENANTS", "100"))
PROCESSES = (1, 2, 4)


def measure(url: str | None, processes: int) -> dict[str, float]:
    """One execute of the plan with ``processes`` workers; ``url`` None: a SQLite file."""
    from migrator.config import SAMPLE
    from migrator.sim.seed_gen import SeedShape, generate

    tmp = Path(tempfile.mkdtemp(prefix="migrator-bench-workers-"))
    db_url = url or f"sqlite:///{tmp}/state.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "MIGRATOR_DB": db_url}
    migrator = [str(Path(sys.executable).parent / "migrator")]
    try:
        seed = tmp / "seed.json"
        seed.write_text(json.dumps(generate(SeedShape(
            tenants=TENANTS, volumes_per_tenant=0, image_size=65536, content_pool=8))))
        config = yaml.safe_load(SAMPLE)
        config["users"]["password_file"] = str(tmp / "passwords.yaml")
        config["address_plan"]["ipv6_prefix"] = "2001:db8:100::/40"
        (tmp / "migrator.yaml").write_text(yaml.safe_dump(config))
        process, info = serve(seed, tmp / "sim", ["legacy:liberty", "target:modern"])
        try:
            clouds_yaml = Path(str(info["clouds_yaml"]))
            prepare_target(clouds_yaml, "target")
            cy = ["--clouds-yaml", str(clouds_yaml)]
            for args in (["init"], ["discover", "--cloud", "legacy", *cy],
                         ["plan", *cy, "-o", "plans/bench.yaml"]):
                step = run_measured([*migrator, *args], tmp, env)
                if step.returncode != 0:
                    raise RuntimeError(f"migrator {args[0]} failed: {step.stderr[-2000:]}")
            sim_cpu = process_cpu(process.pid)
            run = run_measured([*migrator, "execute", "plans/bench.yaml", *cy, "--processes",
                                str(processes), "--workers", "8"], tmp, env)
            sim_cpu = process_cpu(process.pid) - sim_cpu
            if run.returncode != 0:
                raise RuntimeError(f"execute failed: {run.stderr[-2000:]}")
        finally:
            stop(process)
        steps, span = _done(db_url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"wall": run.wall, "steps": steps, "span": span, "sim_share": sim_cpu / run.wall}


def _done(url: str) -> tuple[int, float]:
    """Steps done, and the seconds from the first step event to the last: the part of the
    run spent on steps, without the processes' start and exit."""
    from sqlalchemy import func, select

    from migrator.store.db import make_engine
    from migrator.store.models import Event, Step

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            done = int(conn.execute(select(func.count()).select_from(Step)
                                    .where(Step.state == "done")).scalar_one())
            first, last = conn.execute(select(func.min(Event.at), func.max(Event.at))
                                       .where(Event.step_id.is_not(None))).one()
            return done, (last - first).total_seconds()
    finally:
        engine.dispose()


@benchmark("execute_workers", f"migrator execute --processes 1, 2 and 4 on SQLite and "
           f"PostgreSQL ({TENANTS} generated tenants, simulator in its own process)")
def execute_workers() -> list[Metric]:
    metrics: list[Metric] = []
    for backend in ("sqlite", "postgresql"):
        base: float | None = None
        base_span: float | None = None
        for processes in PROCESSES:
            if backend == "sqlite":
                r = measure(None, processes)
            else:
                with postgres_db() as url:
                    r = measure(url, processes)
            rate = r["steps"] / r["wall"]
            span_rate = r["steps"] / r["span"]
            base = base or rate
            base_span = base_span or span_rate
            metrics.append(Metric(
                f"{backend}_{processes}_processes_steps_per_s", rate, "steps/s",
                note=f"{r['steps']:.0f} steps in {r['wall']:.1f} s (execute process, start "
                     f"and exit included); speed-up {rate / base:.2f}x over 1 process; "
                     f"between the first and the last step event {r['span']:.1f} s "
                     f"({span_rate:.1f} steps/s, {span_rate / base_span:.2f}x); simulator "
                     f"CPU {r['sim_share']:.2f} of one core; load {os.getloadavg()[0]:.1f}"))
    return metrics
