"""The dry run's estimate against the measured duration of the run it estimated.

A generated Liberty inventory (``SeedShape(tenants=2, images_per_tenant=4, image_size=8 MiB,
volumes_per_tenant=0, mislabelled=0)``: every tenant kind, 8 images, 64 MiB in all) is served
by one ``migrator sim serve`` process (a legacy and a modern cloud); the configuration caps
the run's bandwidth (``transfer.bandwidth``, 4 MiB/s by default,
``MIGRATOR_BENCH_ESTIMATE_BANDWIDTH``). In fresh processes:

1. ``migrator init``, ``discover``, ``plan``;
2. ``migrator execute PLAN --dry-run --format json``: the estimate (configured bandwidth, no
   earlier run measured: the default time per step);
3. ``migrator execute PLAN --format json``: the run's measured duration (``elapsed_s``: from
   the executor's start to its end, interpreter start excluded);
4. ``migrator execute PLAN --dry-run`` again: the estimate with the step times this run
   measured (informative: calibrated on the run it is compared with).

The metric is estimate / measured for step 2; the target is within 30% (0.7 to 1.3).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_execute import prepare_target, run_measured
from benchmarks.harness import Metric, benchmark
from benchmarks.simulator_process import serve, stop

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
BANDWIDTH = int(os.environ.get("MIGRATOR_BENCH_ESTIMATE_BANDWIDTH", str(4 * MiB)))
TOLERANCE = 0.30


def _json(stdout: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(stdout)
    return data


def measure() -> dict[str, Any]:
    from migrator.config import SAMPLE
    from migrator.sim.seed_gen import SeedShape, generate

    tmp = Path(tempfile.mkdtemp(prefix="migrator-bench-estimate-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIGRATOR_DB": f"sqlite:///{tmp}/state.db"}
    migrator = [str(Path(sys.executable).parent / "migrator")]
    try:
        seed = tmp / "seed.json"
        seed.write_text(json.dumps(generate(SeedShape(
            tenants=2, images_per_tenant=4, image_size=8 * MiB, volumes_per_tenant=0,
            mislabelled=0))))
        config = yaml.safe_load(SAMPLE)
        config["users"]["password_file"] = str(tmp / "passwords.yaml")
        config["transfer"]["bandwidth"] = BANDWIDTH
        (tmp / "migrator.yaml").write_text(yaml.safe_dump(config))
        process, info = serve(seed, tmp / "sim", ["legacy:liberty", "target:modern"])
        try:
            clouds_yaml = Path(str(info["clouds_yaml"]))
            prepare_target(clouds_yaml, "target")
            cy = ["--clouds-yaml", str(clouds_yaml)]
            out: dict[str, Any] = {}
            for key, args in (
                    ("init", ["init"]), ("discover", ["discover", "--cloud", "legacy", *cy]),
                    ("plan", ["plan", *cy, "-o", "plans/estimate.yaml"]),
                    ("dry_run", ["execute", "plans/estimate.yaml", "--dry-run", *cy,
                                 "--format", "json"]),
                    ("run", ["execute", "plans/estimate.yaml", *cy, "--format", "json"]),
                    ("dry_run_after", ["execute", "plans/estimate.yaml", "--dry-run", *cy,
                                       "--format", "json"])):
                step = run_measured([*migrator, *args], tmp, env)
                if key == "dry_run_after":
                    # The plan's run exists now: the dry run says so (exit 7), with its
                    # estimate all the same.
                    out[key] = _json(step.stdout)["dry_run"]
                    continue
                if step.returncode != 0:
                    raise RuntimeError(f"migrator {' '.join(args)} failed: "
                                       f"{step.stderr[-2000:]}")
                if key == "dry_run":
                    out[key] = _json(step.stdout)["dry_run"]
                elif key == "run":
                    out[key] = _json(step.stdout)["run"]
        finally:
            stop(process)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@benchmark("dry_run_estimate", "execute --dry-run's estimated duration against the measured "
           "run (2 tenants, 8 images of 8 MiB, bandwidth capped), simulator in its own process")
def dry_run_estimate() -> list[Metric]:
    out = measure()
    first, after, run = out["dry_run"]["estimate"], out["dry_run_after"]["estimate"], out["run"]
    measured = float(run["elapsed_s"])
    ratio = first["seconds"] / measured
    return [
        Metric("measured_run_s", measured, "s", better="lower",
               note=f"run {run['name']}: {run['status']}, {sum(run['counts'].values())} steps, "
                    f"{first['bytes']} bytes at a cap of {BANDWIDTH} B/s"),
        Metric("estimate_s", first["seconds"], "s", better="lower",
               note=f"copies {first['transfer_seconds']} s, other steps "
                    f"{first['steps_seconds']} s; {first['basis']}"),
        Metric("estimate_over_measured", round(ratio, 3), "x", target=1.0 + TOLERANCE,
               better="lower",
               note=f"within {TOLERANCE:.0%}: {abs(ratio - 1) <= TOLERANCE} (also at least "
                    f"{1 - TOLERANCE:.2f})"),
        Metric("estimate_after_measurement_over_measured",
               round(after["seconds"] / measured, 3), "x",
               note=f"a dry run after the run, with the step times it measured: "
                    f"{after['seconds']} s; {after['basis']}"),
    ]
