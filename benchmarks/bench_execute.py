"""Execute throughput against an outside yardstick: ``migrator execute`` versus a naive
sequential openstacksdk script (benchmarks/naive_copy.py) moving the same inventory, in the
same run of the benchmark, from the same simulator process.

The inventory is the generated Liberty one of the discover_plan benchmark without volumes
(``SeedShape(tenants=N, volumes_per_tenant=0, image_size=64 KiB, content_pool=8)``: per tenant
a project with 3 quota sets, 2 users and their role assignments, a network, an IPv6 subnet, a
router with its gateway and interface, 2 security groups with 5 rules, a keypair, 2 small
images, an image member; about 24 resources). One ``migrator sim serve`` process serves the
legacy cloud and two empty modern targets: ``target`` for migrator, ``naive`` for the script.

Per size (``MIGRATOR_BENCH_EXECUTE_TENANTS``, default ``50,200``; ``MIGRATOR_BENCH_LARGE=1``
adds 1,000), each size with the naive baseline measured ``MIGRATOR_BENCH_EXECUTE_REPEATS``
times (default 3, the median reported; larger sizes once):

1. migrator: ``init``, ``discover``, ``plan`` (reported, not part of the comparison), then
   ``migrator execute PLAN`` in a fresh process, its wall time, CPU (user + sys of that
   process) and peak RSS from ``wait4``;
2. the naive script in a fresh process, the same figures;
3. both targets' collections compared (counts per kind): the two moved the same resources;
4. steps/s over the whole run and per tenth of the steps (from the ``done`` events' times in
   the state database), migrator CPU per step, simulator CPU per call (the simulator process's
   user + sys over the calls it answered), target calls per migrated resource (per kind from
   the simulator's own count of the calls it answered, attributed to kinds by route:
   benchmarks/call_kinds.py; tokens and discovery apart), and the naive script's calls per
   resource.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from benchmarks.call_kinds import calls_by_kind
from benchmarks.harness import Metric, benchmark, median_of
from benchmarks.simulator_process import serve, stop

ROOT = Path(__file__).resolve().parent.parent
LARGE = os.environ.get("MIGRATOR_BENCH_LARGE", "") not in ("", "0")
SIZES = [int(n) for n in os.environ.get("MIGRATOR_BENCH_EXECUTE_TENANTS", "50,200").split(",")
         if n.strip()] + ([1000] if LARGE else [])
SPEEDUP_TARGET = 3.0  # at 200 tenants: migrator at least 3x faster than the naive script
CPU_PER_STEP_TARGET_MS = 4.0
CALLS_PER_RESOURCE_TARGET = 2.5
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A folder: migrator execute runs under py-spy (a speedscope profile per size; the wall and
# CPU figures then include py-spy's sampling, so they are not comparable).
PROFILE = os.environ.get("MIGRATOR_BENCH_EXECUTE_PROFILE", "")
# Sizes above this run migrator alone (the sequential baseline takes about 2 s a tenant here,
# more than half an hour at 1,000 tenants): their figures are migrator's, with no ratio.
NAIVE_UP_TO = int(os.environ.get("MIGRATOR_BENCH_EXECUTE_NAIVE_UP_TO", "200"))
# Each size up to NAIVE_UP_TO is measured this many times from scratch (a fresh simulator,
# migrator and the naive script side by side in each) and reported as the median; larger
# sizes once (a run of 1,000 tenants takes minutes).
REPEATS = int(os.environ.get("MIGRATOR_BENCH_EXECUTE_REPEATS", "3"))


@dataclass(frozen=True)
class Process:
    """A finished child process: wall seconds, CPU seconds (user + sys), peak RSS, output."""

    wall: float
    cpu: float
    rss_mib: float
    stdout: str
    stderr: str
    returncode: int


def run_measured(args: list[str], cwd: Path, env: dict[str, str]) -> Process:
    """Run ``args`` to the end; its own rusage from wait4 (not the benchmark's)."""
    out, err = cwd / ".stdout", cwd / ".stderr"
    with out.open("w") as o, err.open("w") as e:
        began = time.monotonic()
        child = subprocess.Popen(args, cwd=cwd, env=env, stdout=o, stderr=e,
                                 stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    return Process(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                   out.read_text(), err.read_text(), child.returncode)


def process_cpu(pid: int) -> float:
    """user + sys seconds of a live process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Clouds:
    """The simulator's admin endpoints (call counts, collection counts) per cloud."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.urls = {name: c["url"] for name, c in info["clouds"].items()}

    def reset(self) -> None:
        for url in self.urls.values():
            requests.delete(f"{url}/_sim/calls", timeout=30).raise_for_status()

    def calls(self, cloud: str) -> int:
        calls = requests.get(f"{self.urls[cloud]}/_sim/calls", timeout=30).json()["calls"]
        return sum(calls.values())

    def calls_by_kind(self, cloud: str) -> Counter[str]:
        """The cloud's calls attributed to kinds by route (benchmarks/call_kinds.py)."""
        calls = requests.get(f"{self.urls[cloud]}/_sim/calls", params={"resolved": "1"},
                             timeout=30).json()["calls"]
        return calls_by_kind(calls)

    def counts(self, cloud: str) -> dict[str, int]:
        summary = requests.get(f"{self.urls[cloud]}/_sim/summary", timeout=30).json()
        return {k: v for k, v in summary["counts"].items() if v}


def prepare_target(clouds_yaml: Path, cloud: str) -> None:
    """The target's ``public`` and ``shared-net`` networks, which the plan maps to."""
    from benchmarks.naive_copy import connect

    conn = connect(str(clouds_yaml), cloud)
    public = conn.network.create_network(name="public", is_router_external=True)
    conn.network.create_subnet(network_id=public.id, ip_version=6, cidr="2001:db8:ffff::/64")
    shared = conn.network.create_network(name="shared-net", is_shared=True)
    conn.network.create_subnet(network_id=shared.id, ip_version=6, cidr="2001:db8:fffe::/64")
    conn.close()


def done_times(db: Path) -> list[float]:
    """Seconds since the first claim of the run at which each step reached done."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT at, to_state FROM events WHERE step_id IS NOT NULL "
                            "ORDER BY id").fetchall()
    stamps = [(datetime.fromisoformat(str(at)), state) for at, state in rows]
    started = min(at for at, _ in stamps)
    return sorted((at - started).total_seconds() for at, state in stamps if state == "done")


def per_tenth(times: list[float]) -> list[float]:
    """Steps/s in each tenth of the steps (by count, in completion order)."""
    rates, n = [], len(times)
    edges = [round(i * n / 10) for i in range(11)]
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        start = times[a - 1] if a > 0 else 0.0
        span = times[b - 1] - start
        rates.append((b - a) / span if span > 0 else float("inf"))
    return rates


def calls_per_kind(db: Path, calls: Counter[str]) -> dict[str, float]:
    """Target calls per step of each kind, from the simulator's count of the calls it answered
    (attributed to kinds by route), and the calls of no kind (tokens, discovery) in total."""
    with sqlite3.connect(db) as conn:
        steps = dict(conn.execute("SELECT kind, count(*) FROM steps GROUP BY kind").fetchall())
    out = {kind: calls.get(kind, 0) / steps[kind] for kind in sorted(steps)}
    out.update({kind: float(n) for kind, n in sorted(calls.items()) if kind not in steps})
    return out


def measure(tenants: int) -> list[Metric]:
    from migrator.config import SAMPLE
    from migrator.sim.seed_gen import SeedShape, generate

    tmp = Path(tempfile.mkdtemp(prefix="migrator-bench-execute-"))
    # This tree's code in the child processes (the simulator's too), whatever is installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "MIGRATOR_DB": f"sqlite:///{tmp}/state.db"}
    migrator = [str(Path(sys.executable).parent / "migrator")]
    try:
        seed = tmp / "seed.json"
        seed.write_text(json.dumps(generate(SeedShape(
            tenants=tenants, volumes_per_tenant=0, image_size=65536, content_pool=8,
            mislabelled=0))))
        config = yaml.safe_load(SAMPLE)
        config["users"]["password_file"] = str(tmp / "passwords.yaml")
        config["address_plan"]["ipv6_prefix"] = "2001:db8:100::/40"
        (tmp / "migrator.yaml").write_text(yaml.safe_dump(config))
        process, info = serve(seed, tmp / "sim", ["legacy:liberty", "target:modern",
                                                  "naive:modern"])
        try:
            clouds_yaml = Path(str(info["clouds_yaml"]))
            clouds = Clouds(info)
            for cloud in ("target", "naive"):
                prepare_target(clouds_yaml, cloud)
            cy = ["--clouds-yaml", str(clouds_yaml)]
            for args in (["init"], ["discover", "--cloud", "legacy", *cy],
                         ["plan", *cy, "-o", "plans/bench.yaml"]):
                step = run_measured([*migrator, *args], tmp, env)
                if step.returncode != 0:
                    raise RuntimeError(f"migrator {args[0]} failed: {step.stderr[-2000:]}")
            naive: Process | None = None
            naive_sim_cpu, naive_calls, naive_source_calls = 0.0, 0, 0
            naive_result: dict[str, Any] = {}
            if tenants <= NAIVE_UP_TO:
                clouds.reset()
                sim_cpu = process_cpu(process.pid)
                naive = run_measured([sys.executable, "-m", "benchmarks.naive_copy",
                                      str(clouds_yaml), "legacy", "naive"], tmp, env)
                naive_sim_cpu = process_cpu(process.pid) - sim_cpu
                if naive.returncode != 0:
                    raise RuntimeError(f"the naive script failed: {naive.stderr[-2000:]}")
                naive_calls = clouds.calls("naive")
                naive_source_calls = clouds.calls("legacy")
                naive_result = json.loads(naive.stdout.strip().splitlines()[-1])

            clouds.reset()
            sim_cpu = process_cpu(process.pid)
            command = [*migrator, "execute", "plans/bench.yaml", *cy]
            if PROFILE:
                # py-spy samples the whole process (threads included, idle ones left out).
                Path(PROFILE).mkdir(parents=True, exist_ok=True)
                command = [str(Path(sys.executable).parent / "py-spy"), "record", "-o",
                           f"{PROFILE}/execute-{tenants}t.json", "--format", "speedscope",
                           "-r", "200", "--", *command]
            mig = run_measured(command, tmp, env)
            mig_sim_cpu = process_cpu(process.pid) - sim_cpu
            if mig.returncode != 0:
                raise RuntimeError(f"migrator execute failed: {mig.stderr[-2000:]}")
            target_calls = clouds.calls("target")
            target_kinds = clouds.calls_by_kind("target")
            source_calls = clouds.calls("legacy")
            same = naive is not None and clouds.counts("target") == clouds.counts("naive")
            differences = {} if naive is None else {
                k: (clouds.counts("target").get(k), v)
                for k, v in clouds.counts("naive").items()
                if clouds.counts("target").get(k) != v}
        finally:
            stop(process)
        times = done_times(tmp / "state.db")
        per_kind = calls_per_kind(tmp / "state.db", target_kinds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    steps = len(times)
    rates = per_tenth(times)
    span = times[-1] if times else 0.0
    tag = f"{tenants}t"
    note_rates = " ".join(f"{r:.0f}" for r in rates)
    kinds = ", ".join(f"{k} {v:.1f}" if not k.startswith("(") else f"{k} {v:.0f} in all"
                      for k, v in per_kind.items())
    if naive is None:
        return [
            Metric(f"{tag}_steps", steps, "steps",
                   note=f"migrator alone (no sequential baseline above {NAIVE_UP_TO} tenants)"),
            Metric(f"{tag}_migrator_execute_s", mig.wall, "s", better="lower",
                   note="migrator execute in a fresh process, interpreter start included"),
            Metric(f"{tag}_steps_per_s", steps / span if span else None, "steps/s",
                   note=f"per tenth of the run: {note_rates}; last/first "
                        f"{rates[-1] / rates[0]:.2f}" if rates else ""),
            Metric(f"{tag}_migrator_cpu_ms_per_step", 1000 * mig.cpu / steps, "ms",
                   target=CPU_PER_STEP_TARGET_MS, better="lower"),
            Metric(f"{tag}_target_calls_per_resource", target_calls / steps, "calls",
                   target=CALLS_PER_RESOURCE_TARGET, better="lower",
                   note=f"source calls {source_calls}; per kind (simulator, by route): {kinds}"),
            Metric(f"{tag}_sim_cpu_ms_per_call",
                   1000 * mig_sim_cpu / max(1, target_calls + source_calls), "ms",
                   better="lower"),
            Metric(f"{tag}_migrator_peak_rss_mib", mig.rss_mib, "MiB", better="lower"),
        ]
    resources = int(naive_result["resources"])
    speedup = naive.wall / mig.wall
    naive_sim_per_call = naive_sim_cpu / max(1, naive_calls + naive_source_calls)
    return [
        Metric(f"{tag}_steps", steps, "steps", note=f"naive script created {resources} "
               f"resources; targets identical per collection: {same}"
               + (f" (differences target/naive: {differences})" if differences else "")),
        Metric(f"{tag}_migrator_execute_s", mig.wall, "s", better="lower",
               note="migrator execute in a fresh process, interpreter start included"),
        Metric(f"{tag}_naive_s", naive.wall, "s", better="lower",
               note="naive sequential openstacksdk script, same inventory, fresh process"),
        Metric(f"{tag}_speedup_vs_naive", speedup, "x",
               target=SPEEDUP_TARGET if tenants == 200 else None,
               note="naive wall / migrator wall (>1: migrator faster)"),
        Metric(f"{tag}_steps_per_s", steps / span if span else None, "steps/s",
               note=f"per tenth of the run: {note_rates}; last/first "
                    f"{rates[-1] / rates[0]:.2f}" if rates else ""),
        Metric(f"{tag}_migrator_cpu_ms_per_step", 1000 * mig.cpu / steps, "ms",
               target=CPU_PER_STEP_TARGET_MS, better="lower",
               note=f"naive script: {1000 * naive.cpu / resources:.2f} ms per resource"),
        Metric(f"{tag}_target_calls_per_resource", target_calls / steps, "calls",
               target=CALLS_PER_RESOURCE_TARGET, better="lower",
               note=f"naive {naive_calls / resources:.2f}; source calls: migrator "
                    f"{source_calls}, naive {naive_source_calls}; per kind (simulator, by route): "
                    + kinds),
        Metric(f"{tag}_sim_cpu_ms_per_call",
               1000 * mig_sim_cpu / max(1, target_calls + source_calls), "ms", better="lower",
               note=f"naive run: {1000 * naive_sim_per_call:.2f} ms"),
        Metric(f"{tag}_migrator_peak_rss_mib", mig.rss_mib, "MiB", better="lower",
               note=f"naive script {naive.rss_mib:.0f} MiB"),
    ]


@benchmark("execute", "migrator execute against a naive sequential openstacksdk script on the "
           f"same generated inventory ({', '.join(map(str, SIZES))} tenants, 2 small images "
           "each, no volumes), simulator in its own process")
def execute() -> list[Metric]:
    metrics: list[Metric] = []
    for tenants in SIZES:
        repeats = REPEATS if tenants <= NAIVE_UP_TO else 1
        metrics += median_of([measure(tenants) for _ in range(max(1, repeats))])
    return metrics
