"""Simulator streaming: one big image down and up through openstacksdk, and the simulator's
memory while it serves them.

The simulator runs in its own process (so its peak RSS is its own): a Liberty cloud holding a
generated image and an empty modern cloud. The client downloads the image with
``download_image(stream=True)`` and 1 MiB ``iter_content`` reads, then uploads the same
amount from a generator (chunked transfer) into a new image on the modern cloud, which hashes
(md5 + sha512) and writes it to disk. These throughputs are the ceiling later benchmarks of
the image pipeline compare against.

``MIGRATOR_BENCH_IMAGE_MIB`` sets the image size (default 4096) for a quick run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import Metric, benchmark

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
SIZE_MIB = int(os.environ.get("MIGRATOR_BENCH_IMAGE_MIB", "4096"))
RSS_TARGET_MB = 200.0
SEED = 4242


# -- the simulator process ----------------------------------------------------------------------
def serve(data_dir: Path, size: int) -> None:
    """Run in the child: start both clouds, seed the image, report, serve until SIGTERM."""
    from migrator.sim import images
    from migrator.sim.server import CloudSpec, SimServer

    server = SimServer(
        [CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")], data_dir
    ).start()
    legacy = server.cloud("legacy")
    spec = {"kind": "generated", "seed": SEED, "size": size}
    digest = legacy.digest(spec)  # hashed once here, streamed from the seed afterwards

    def seed() -> str:
        owner = legacy.state.find_one("projects", name="admin")
        assert owner is not None
        record = images.new_image(
            legacy,
            name="bench-big",
            owner=owner["id"],
            visibility="public",
            disk_format="raw",
            container_format="bare",
        )
        images.set_content(legacy, record, spec, digest)
        return str(record["id"])

    image_id = server.call(seed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ready = {"clouds_yaml": str(server.clouds_yaml), "image_id": image_id, "md5": digest.md5}
    (data_dir / "ready.json").write_text(json.dumps(ready))
    stop.wait()
    server.stop()


# -- the client side ----------------------------------------------------------------------------
class RssSampler:
    """Samples a process's resident set; VmHWM gives the kernel's own peak."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.peak_sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def field_kib(self, name: str) -> int:
        for line in self.status.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise KeyError(name)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak_sampled = max(self.peak_sampled, self.field_kib("VmRSS"))
            except (OSError, KeyError):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_simulator(data_dir: Path, size: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    code = (
        "import sys; from pathlib import Path; from benchmarks.bench_sim_streaming "
        "import serve; serve(Path(sys.argv[1]), int(sys.argv[2]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(data_dir), str(size)], env=env)
    ready = data_dir / "ready.json"
    deadline = time.monotonic() + 600  # hashing the seeded image takes a while
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("simulator did not get ready")
        time.sleep(0.1)
    return proc


def generator(size: int) -> Iterator[bytes]:
    block = os.urandom(MiB)
    sent = 0
    while sent < size:
        piece = block if size - sent >= MiB else block[: size - sent]
        sent += len(piece)
        yield piece


def measure(size: int) -> dict[str, Any]:
    import openstack

    with tempfile.TemporaryDirectory(prefix="migrator-bench-sim-") as tmp:
        data_dir = Path(tmp)
        proc = start_simulator(data_dir, size)
        try:
            ready = json.loads((data_dir / "ready.json").read_text())
            os.environ["OS_CLIENT_CONFIG_FILE"] = ready["clouds_yaml"]
            legacy = openstack.connect(cloud="legacy")
            target = openstack.connect(cloud="target")
            with RssSampler(proc.pid) as rss:
                baseline_kib = rss.field_kib("VmRSS")
                began = time.perf_counter()
                resp = legacy.image.download_image(ready["image_id"], stream=True)
                received = sum(len(p) for p in resp.iter_content(MiB))
                download_s = time.perf_counter() - began
                if received != size:
                    raise RuntimeError(f"downloaded {received} of {size} bytes")
                image = target.image.create_image(
                    "bench-upload", disk_format="raw", container_format="bare"
                )
                began = time.perf_counter()
                answer = image.upload(target.image, data=generator(size))
                upload_s = time.perf_counter() - began
                if answer.status_code != 204:
                    raise RuntimeError(f"upload answered {answer.status_code}")
                if target.image.get_image(image.id).size != size:
                    raise RuntimeError("uploaded image has the wrong size")
                peak_kib = rss.field_kib("VmHWM")
            return {
                "download_s": download_s,
                "upload_s": upload_s,
                "peak_kib": peak_kib,
                "sampled_kib": rss.peak_sampled,
                "baseline_kib": baseline_kib,
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


@benchmark("sim_streaming", "simulator: one image streamed down and up through openstacksdk")
def run() -> list[Metric]:
    size = SIZE_MIB * MiB
    got = measure(size)
    mib = size / MiB
    return [
        Metric(
            f"download {SIZE_MIB} MiB, SDK stream=True",
            mib / got["download_s"],
            "MiB/s",
            note="Liberty cloud, generated content, 1 MiB iter_content reads",
        ),
        Metric(
            f"upload {SIZE_MIB} MiB from a generator (chunked)",
            mib / got["upload_s"],
            "MiB/s",
            note="modern cloud: md5 + sha512 and disk write in a worker thread",
        ),
        Metric(
            "simulator peak RSS (VmHWM)",
            got["peak_kib"] / 1024,
            "MiB",
            target=RSS_TARGET_MB,
            better="lower",
            note=f"{got['baseline_kib'] / 1024:.0f} MiB before the transfers; sampled "
            f"peak {got['sampled_kib'] / 1024:.0f} MiB",
        ),
    ]
