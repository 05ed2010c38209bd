"""Discovery: API calls per tenant and seconds for N tenants, against a simulator subprocess.

A generated Liberty inventory (``SeedShape(tenants=N, content_pool=8, image_size=65536,
volume_data_size=65536)``: per tenant 2 users, a network, subnet, router, 2 security groups
with 5 rules, a keypair, 2 images, 2 volumes, 3 quota sets) is served by ``migrator sim
serve`` in its own process; discovery (``LegacySource`` with its thread pool, then
``save_snapshot`` into a fresh SQLite file) runs here.

- benchmark ``discovery``: N = ``MIGRATOR_BENCH_DISCOVERY_TENANTS`` (default 1000, about
  half a minute);
- benchmark ``discovery_large``, registered only with ``MIGRATOR_BENCH_DISCOVERY_LARGE=1``:
  10,000 tenants (>= 200,000 items)::

      MIGRATOR_BENCH_DISCOVERY_LARGE=1 python -m benchmarks --only discovery_large

Calls per tenant are the goal that matters: list calls over everything, and per owner only
what the APIs offer per owner alone (Nova and Cinder quotas per project, keypairs per user,
members per shared image).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Metric, benchmark
from benchmarks.simulator_process import serve, stop
from migrator.clouds.connection import open_cloud
from migrator.clouds.source import LegacySource
from migrator.sim.seed_gen import SeedShape, generate
from migrator.store import schema
from migrator.store.db import make_engine, session_factory
from migrator.store.inventory import save_snapshot

LARGE = os.environ.get("MIGRATOR_BENCH_DISCOVERY_LARGE", "") not in ("", "0")
TENANTS = int(os.environ.get("MIGRATOR_BENCH_DISCOVERY_TENANTS", "1000"))
LARGE_TENANTS = 10_000
WORKERS = int(os.environ.get("MIGRATOR_BENCH_DISCOVERY_WORKERS", "8"))
CALLS_PER_TENANT_TARGET = 6.0  # 2 quotas + 2 users' keypairs + 1 shared image + list calls


@benchmark("discovery", f"discover a generated Liberty cloud of {TENANTS} tenants "
           "(simulator subprocess): API calls per tenant, seconds, snapshot save")
def discovery() -> list[Metric]:
    return measure(TENANTS, large=False)


if LARGE:

    @benchmark("discovery_large", f"discover a generated Liberty cloud of {LARGE_TENANTS} "
               "tenants (>= 200,000 items, simulator subprocess)")
    def discovery_large() -> list[Metric]:
        return measure(LARGE_TENANTS, large=True)


def measure(tenants: int, *, large: bool) -> list[Metric]:
    tmp = Path(tempfile.mkdtemp(prefix="migrator-bench-discovery-"))
    try:
        seed = tmp / "seed.json"
        seed.write_text(json.dumps(generate(SeedShape(
            tenants=tenants, content_pool=8, image_size=65536, volume_data_size=65536))))
        started = time.perf_counter()
        process, info = serve(seed, tmp / "sim", ["legacy:liberty"])
        sim_start = time.perf_counter() - started
        try:
            handle = open_cloud("legacy", config_file=str(info["clouds_yaml"]))
            began = time.perf_counter()
            result = LegacySource(handle, workers=WORKERS).read()
            read_s = time.perf_counter() - began
            calls = handle.calls
        finally:
            stop(process)
        url = f"sqlite:///{tmp / 'state.db'}"
        engine = make_engine(url, create_dir=True)
        schema.upgrade(engine)
        began = time.perf_counter()
        save_snapshot(session_factory(engine), "legacy", result.items, {}, calls)
        save_s = time.perf_counter() - began
        engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    items = len(result.items)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        Metric("tenants", tenants, "tenants", note=f"{items} items"),
        Metric("calls_per_tenant", calls / tenants, "calls", target=CALLS_PER_TENANT_TARGET,
               better="lower", note=f"{calls} calls in all, {WORKERS} workers"),
        Metric("discovery_s", read_s, "s",
               note=f"{items / read_s:,.0f} items/s; simulator started in {sim_start:.1f} s"),
        Metric("per_tenant_ms", read_s / tenants * 1000, "ms"),
        Metric("snapshot_save_s", save_s, "s", target=10.0 if large else None, better="lower",
               note=f"{items} items, SQLite"),
        Metric("client_peak_rss", rss_mib, "MiB", target=2048.0, better="lower"),
    ]
