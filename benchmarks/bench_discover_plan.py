"""Discover and plan at scale, end to end: what issue 4's "Planning at scale" asks.

A generated Liberty inventory (``SeedShape(tenants=N, content_pool=8, image_size=65536,
volume_data_size=65536)``: per tenant 2 users, a network, subnet, router, 2 security groups
with 5 rules, a keypair, 2 images, 2 volumes, 3 quota sets, about 27 items) is served by
``migrator sim serve`` in its own process, with a modern ``target`` cloud beside it (its
``public`` network is where the routers' gateways map). The measured part runs in a fresh
migrator subprocess, so that its peak RSS is its own, exactly as the commands do it:

- ``discover_s``: ``operations.discover.discover`` = open the cloud, ``LegacySource.read``
  (list calls, per-owner reads in its thread pool), ``save_snapshot`` into a fresh SQLite file;
- ``plan_s``: ``operations.plan.make_plan`` = load the snapshot, read the target's names,
  rules, DAG built and checked, plan file written;
- ``register_s``: ``operations.plan.register_plan`` = Plan row, Run, steps and dependencies;
- ``total_s`` (target < 60 s for 10,000 tenants), the migrator's peak RSS and the
  simulator's (target < 2 GiB each; the 2 cores are shared between the two processes).

Benchmarks: ``discover_plan`` with N = ``MIGRATOR_BENCH_E2E_TENANTS`` (default 1,000, about a
minute with the set-up) and, with ``MIGRATOR_BENCH_LARGE=1``, ``discover_plan_large``: 10,000
tenants (270,000 items), a few minutes with the seed and the simulator start::

    MIGRATOR_BENCH_LARGE=1 python -m benchmarks --only discover_plan_large
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Metric, benchmark
from benchmarks.simulator_process import peak_rss_mib, serve, stop

LARGE = os.environ.get("MIGRATOR_BENCH_LARGE", "") not in ("", "0")
TENANTS = int(os.environ.get("MIGRATOR_BENCH_E2E_TENANTS", "1000"))
LARGE_TENANTS = 10_000
ROOT = Path(__file__).resolve().parent.parent
TOTAL_TARGET_S = 60.0
RSS_TARGET_MIB = 2048.0


def _child(url: str, config: str, clouds_yaml: str, out: str) -> None:
    """The measured part (run in a subprocess): prints its timings as JSON."""
    from migrator.operations.context import open_state
    from migrator.operations.discover import discover
    from migrator.operations.plan import make_plan, register_plan
    from migrator.store.db import session_factory

    began = time.monotonic()
    found = discover(url, "legacy", clouds_yaml=clouds_yaml)
    discover_s = time.monotonic() - began
    mark = time.monotonic()
    result = make_plan(url, config=config, output=out, name="bench", clouds_yaml=clouds_yaml)
    plan_s = time.monotonic() - mark
    mark = time.monotonic()
    with open_state(url) as engine:
        register_plan(session_factory(engine), result.plan, out)
    register_s = time.monotonic() - mark
    print(json.dumps({
        "discover_s": discover_s, "plan_s": plan_s, "register_s": register_s,
        "items": found.items, "calls": found.api_calls, "steps": len(result.plan.steps),
        "dependencies": sum(len(s.depends_on) for s in result.plan.steps),
        "file_mib": Path(out).stat().st_size / 2**20,
        "cpu_s": time.process_time(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def measure(tenants: int) -> list[Metric]:
    from benchmarks.bench_planning import _external_network
    from migrator.config import SAMPLE
    from migrator.sim.seed_gen import SeedShape, generate
    from migrator.store import schema
    from migrator.store.db import make_engine

    tmp = Path(tempfile.mkdtemp(prefix="migrator-bench-e2e-"))
    try:
        seed = tmp / "seed.json"
        seed.write_text(json.dumps(generate(SeedShape(
            tenants=tenants, content_pool=8, image_size=65536, volume_data_size=65536))))
        url = f"sqlite:///{tmp / 'state.db'}"
        engine = make_engine(url, create_dir=True)
        schema.upgrade(engine)
        engine.dispose()
        config = tmp / "migrator.yaml"
        # A /40 holds a /64 per subnet of 10,000 tenants; the seed's volume types map to the
        # target's default type.
        config.write_text(SAMPLE.replace('"2001:db8:100::/48"', '"2001:db8:100::/40"').replace(
            "volume_types: {}", "volume_types: {standard: __DEFAULT__, ssd: __DEFAULT__}"))
        process, info = serve(seed, tmp / "sim", ["legacy:liberty", "target:modern"])
        try:
            clouds_yaml = Path(str(info["clouds_yaml"]))
            _external_network(clouds_yaml)
            began = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_discover_plan", url, str(config),
                 str(clouds_yaml), str(tmp / "plans" / "bench.yaml")],
                cwd=ROOT, capture_output=True, text=True, check=False,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
            wall = time.monotonic() - began
            sim_rss = peak_rss_mib(process.pid)
        finally:
            stop(process)
        if proc.returncode != 0:
            raise RuntimeError(f"the measured subprocess failed: {proc.stderr.strip()[-2000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = r["discover_s"] + r["plan_s"] + r["register_s"]
    load = os.getloadavg()[0]
    return [
        Metric("tenants", tenants, "tenants", note=f"{r['items']:,} items, {r['calls']:,} "
               f"API calls; {r['steps']:,} steps, {r['dependencies']:,} dependencies"),
        Metric("discover_s", r["discover_s"], "s", better="lower",
               note="list + per-owner reads from the simulator subprocess, snapshot saved"),
        Metric("plan_s", r["plan_s"], "s", better="lower",
               note=f"rules, DAG checks, plan file ({r['file_mib']:.0f} MiB) written"),
        Metric("register_s", r["register_s"], "s", better="lower",
               note="Plan row + Run + steps + dependencies"),
        Metric("total_s", total, "s", target=TOTAL_TARGET_S if tenants >= LARGE_TENANTS
               else None, better="lower",
               note=f"migrator CPU {r['cpu_s']:.1f} s; subprocess wall {wall:.1f} s "
                    f"(with interpreter start); 1-min load average {load:.1f} at the end"),
        Metric("migrator_peak_rss_mib", r["peak_rss_mib"], "MiB", target=RSS_TARGET_MIB,
               better="lower"),
        Metric("simulator_peak_rss_mib", sim_rss, "MiB", target=RSS_TARGET_MIB,
               better="lower", note="the simulator process serving both clouds"),
    ]


@benchmark("discover_plan", f"discover {TENANTS:,} generated Liberty tenants from a simulator "
           "subprocess, then plan, check, write and register (fresh migrator subprocess)")
def discover_plan() -> list[Metric]:
    return measure(TENANTS)


if LARGE:

    @benchmark("discover_plan_large", f"discover {LARGE_TENANTS:,} generated Liberty tenants "
               "(270,000 items) from a simulator subprocess, then plan, check, write and "
               "register: issue 4's < 60 s, < 2 GiB")
    def discover_plan_large() -> list[Metric]:
        return measure(LARGE_TENANTS)


if __name__ == "__main__":
    _child(*sys.argv[1:5])
