"""One image copied by migrator's data path (``migrator.transfer.copy_image_data``: md5 + sha512
while streaming, verification after) from the Liberty simulator into REAL Glance 33 and into
the modern simulator, side by side in the same run: MiB/s, median of
``MIGRATOR_BENCH_REAL_REPEAT`` (3) copies each, interleaved.

The image is ``MIGRATOR_BENCH_REAL_MIB`` (256) MiB of generated raw content served by the
simulator in a process of its own; real Glance (with Keystone and Cinder, tests/real/services.py,
from the services' cached virtualenv, tests/real/venv.py) stores it in a file store on the same
disk, as a Kolla Glance with a file backend would, and checks its format
(``require_image_format_match``) and computes its md5 and sha512 itself. The copy runs in this
process; Glance and the simulator in theirs.

Needs what the real-services lane needs (PostgreSQL, RabbitMQ, PyPI the first time); without
them the real metric is n/a with the reason.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_transfer import start_simulator, stop_simulator, write_seed
from benchmarks.harness import Metric, benchmark

MiB = 1 << 20
SIZE_MIB = int(os.environ.get("MIGRATOR_BENCH_REAL_MIB", "256"))
REPEAT = int(os.environ.get("MIGRATOR_BENCH_REAL_REPEAT", "3"))


def copy_once(legacy: Any, target: Any, source: Any) -> float:
    """Seconds to copy ``source`` into a new image on ``target`` (verified, then deleted)."""
    from migrator.transfer import copy_image_data

    image = target.image.create_image(f"bench-{time.monotonic_ns()}", disk_format="raw",
                                      container_format="bare", allow_duplicates=True)
    try:
        began = time.perf_counter()
        result = copy_image_data(legacy, source.id, target, image.id,
                                 expected_md5=source.checksum, expected_size=source.size)
        seconds = time.perf_counter() - began
        fresh = target.image.get_image(image.id)
        if (fresh.status, fresh.size, fresh.checksum) != ("active", source.size,
                                                          source.checksum):
            raise RuntimeError(f"copy {image.id}: {fresh.status}, {fresh.size} bytes")
        if result.bytes != source.size:
            raise RuntimeError(f"copy {image.id}: {result.bytes} bytes moved")
        return seconds
    finally:
        target.image.delete_image(image.id)


@benchmark("real_glance", "one image through migrator's data path into real Glance 33 vs the "
           "modern simulator (MiB/s, median)")
def run() -> list[Metric]:
    import openstack
    from tests.real.services import RealServices, ServicesError, ServicesUnavailable
    from tests.real.venv import VenvError, ensure_venv

    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        root = Path(tmp)
        seed = root / "seed.json"
        write_seed(seed, {"big": SIZE_MIB * MiB})
        sim, _ = start_simulator(root, seed)
        services: RealServices | None = None
        reason = ""
        try:
            try:
                services = RealServices(root / "real", ensure_venv()).start()
            except (VenvError, ServicesUnavailable, ServicesError) as exc:
                reason = str(exc).splitlines()[0]
            sim_clouds = root / "sim" / "clouds.yaml"
            clouds = {"legacy": sim_clouds, "sim": sim_clouds}
            if services is not None:
                import yaml
                others = yaml.safe_load(sim_clouds.read_text())["clouds"]
                clouds["real"] = services.write_clouds_yaml(root / "clouds.yaml",
                                                            others=others)

            def connect(name: str, cloud: str) -> Any:
                config = openstack.config.loader.OpenStackConfig(
                    config_files=[str(clouds[name])], secure_files=[], load_envvars=False)
                return openstack.connection.Connection(config=config.get_one(cloud=cloud))

            legacy = connect("legacy", "legacy")
            source = legacy.image.find_image("big", ignore_missing=False)
            targets = {"sim": connect("sim", "target")}
            if services is not None:
                targets["real"] = connect("real", "target")
            times: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(REPEAT):
                for name, target in targets.items():
                    times[name].append(copy_once(legacy, target, source))
        finally:
            if services is not None:
                services.stop()
            stop_simulator(sim)
    rate = {name: SIZE_MIB / statistics.median(seconds) for name, seconds in times.items()}
    spread = {name: ", ".join(f"{SIZE_MIB / s:.0f}" for s in seconds)
              for name, seconds in times.items()}
    load = os.getloadavg()[0]
    metrics = [
        Metric("into_modern_simulator_mib_s", round(rate["sim"], 1), "MiB/s",
               note=f"{SIZE_MIB} MiB raw image, median of {REPEAT} ({spread['sim']} MiB/s); "
                    f"1-min load average {load:.1f}"),
    ]
    if "real" in rate:
        metrics += [
            Metric("into_real_glance_mib_s", round(rate["real"], 1), "MiB/s",
                   note=f"Glance 33 under gunicorn, file store, format check on; median of "
                        f"{REPEAT} ({spread['real']} MiB/s)"),
            Metric("real_over_simulator", round(rate["real"] / rate["sim"], 2), "x",
                   note="how much of the simulator's rate real Glance reaches"),
        ]
    else:
        metrics.append(Metric("into_real_glance_mib_s", None, "MiB/s",
                              note=f"not measured: {reason}"))
    return metrics
