"""Planning at scale: 10,000 tenants (about 235,000 inventory items) planned, checked, stored
and written.

The inventory is generated in the shapes discovery stores (tests/plan/synthetic.py) and saved
with ``store.inventory.save_snapshot``; discovering that many tenants from the simulator is
measured by the ``discovery_large`` benchmark (bench_discovery.py), not here. The planning
itself runs in a fresh subprocess so that its peak RSS is its own:

- ``plan_s``: ``make_plan`` = load the snapshot, read the target's names (a modern simulator
  over HTTP: a handful of LIST calls), apply the rules, build and check the DAG (networkx),
  write the plan file;
- ``register_s``: ``register_plan`` = the Plan row, the Run and every step and dependency
  (engine.runs.create_run);
- ``load_s``: ``load_plan`` = reading and validating the plan file back (what execute does);
- ``peak_rss_mib`` of that subprocess.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Metric, benchmark

TENANTS = int(os.environ.get("MIGRATOR_BENCH_PLAN_TENANTS", "10000"))
ROOT = Path(__file__).resolve().parent.parent


def _prepare(tmp: Path) -> tuple[str, Path, int, float]:
    from tests.plan.synthetic import inventory

    from migrator.config import SAMPLE
    from migrator.store import schema
    from migrator.store.db import make_engine, session_factory
    from migrator.store.inventory import save_snapshot

    url = f"sqlite:///{tmp / 'state.db'}"
    engine = make_engine(url, create_dir=True)
    schema.upgrade(engine)
    items = inventory(TENANTS)
    began = time.monotonic()
    save_snapshot(session_factory(engine), "legacy", items, {"tenants": []}, 0)
    saved = time.monotonic() - began
    engine.dispose()
    config = tmp / "migrator.yaml"
    config.write_text(SAMPLE.replace('"2001:db8:100::/48"', '"2001:db8:100::/40"'))
    return url, config, len(items), saved


def _external_network(clouds_yaml: Path) -> None:
    """The target's ``public`` network, which the routers' gateways map to."""
    import openstack

    config = openstack.config.loader.OpenStackConfig(
        config_files=[str(clouds_yaml)], secure_files=[], load_envvars=False)
    conn = openstack.connection.Connection(config=config.get_one(cloud="target"))
    net = conn.network.create_network(name="public", is_router_external=True)
    conn.network.create_subnet(network_id=net.id, ip_version=6, cidr="2001:db8:ffff::/64")
    conn.close()


def _child(url: str, config: str, clouds_yaml: str, out: str) -> None:
    """The measured part (run in a subprocess): prints its timings as JSON."""
    from migrator.operations.context import open_state
    from migrator.operations.plan import load_plan, make_plan, register_plan
    from migrator.store.db import session_factory

    began = time.monotonic()
    result = make_plan(url, config=config, output=out, name="bench", clouds_yaml=clouds_yaml)
    plan_s = time.monotonic() - began
    mark = time.monotonic()
    with open_state(url) as engine:
        register_plan(session_factory(engine), result.plan, out)
    register_s = time.monotonic() - mark
    steps = len(result.plan.steps)
    deps = sum(len(s.depends_on) for s in result.plan.steps)
    del result
    rss_planning = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mark = time.monotonic()
    loaded = load_plan(out)
    load_s = time.monotonic() - mark
    assert len(loaded.steps) == steps
    print(json.dumps({
        "plan_s": plan_s, "register_s": register_s, "load_s": load_s, "steps": steps,
        "dependencies": deps, "file_mib": Path(out).stat().st_size / 2**20,
        "planning_rss_mib": rss_planning,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


@benchmark("planning", f"plan {TENANTS:,} generated tenants: rules, DAG checks, plan file, "
                       "run registration (subprocess, peak RSS)")
def planning() -> list[Metric]:
    from migrator.sim.server import CloudSpec, SimServer

    with tempfile.TemporaryDirectory(prefix="migrator-bench-plan-") as name:
        tmp = Path(name)
        url, config, items, saved = _prepare(tmp)
        sim = SimServer([CloudSpec("target", "modern")], tmp / "sim").start()
        try:
            _external_network(sim.clouds_yaml)
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_planning", url, str(config),
                 str(sim.clouds_yaml), str(tmp / "plans" / "bench.yaml")],
                cwd=ROOT, capture_output=True, text=True, check=False,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
        finally:
            sim.stop()
        if proc.returncode != 0:
            raise RuntimeError(f"planning subprocess failed: {proc.stderr.strip()[-2000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    total = r["plan_s"] + r["register_s"]
    return [
        Metric("tenants", TENANTS, "tenants", note=f"{items:,} inventory items "
               f"(saved in {saved:.1f} s)"),
        Metric("steps", r["steps"], "steps", note=f"{r['dependencies']:,} dependencies; plan "
               f"file {r['file_mib']:.0f} MiB"),
        Metric("plan_s", r["plan_s"], "s", note="snapshot load + target names + rules + DAG "
               "checks + plan file written"),
        Metric("register_s", r["register_s"], "s", note="Plan row + Run + steps + "
               "dependencies (create_run)"),
        Metric("plan_and_store_s", total, "s", target=60.0, better="lower",
               note="without discovery (see discovery_large)"),
        Metric("load_plan_s", r["load_s"], "s", note="reading and validating the plan file "
               "(execute)"),
        Metric("planning_peak_rss_mib", r["planning_rss_mib"], "MiB", target=2048.0,
               better="lower", note="the planning subprocess after plan + register"),
        Metric("peak_rss_mib", r["peak_rss_mib"], "MiB", target=2048.0, better="lower",
               note="the same after loading the plan file back too"),
    ]


if __name__ == "__main__":
    _child(*sys.argv[1:5])
