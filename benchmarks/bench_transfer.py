"""The image data path: ``migrator.transfer.copy_image_data`` between a Liberty and a modern
simulated cloud on loopback.

The simulator runs in its own process (``python -m migrator.sim serve`` with a seed file of
generated images: no disk until uploaded); every copy runs in a fresh child process so that
its peak RSS (VmHWM: imports, connections and the copy) is the copy's own.

(a) one big image (``MIGRATOR_BENCH_TRANSFER_MIB``, default 2048): copy_image_data (md5 +
    sha512, verification) against a raw streamed copy between the same endpoints with plain
    requests (GET stream -> PUT generator, no hashing); best of ``MIGRATOR_BENCH_REPEAT`` runs
    each, interleaved. Also the three hashing modes (inline, one thread, one thread per hash).
(b) peak RSS of the copying process for two sizes (``MIGRATOR_BENCH_RSS_MIB``, "1024,8192").
(c) 1, 4 and 16 parallel transfers (``MIGRATOR_BENCH_STREAMS``) of an image of
    ``MIGRATOR_BENCH_PARALLEL_MIB`` (default 32) each, the simulator limiting every download
    stream to ``MIGRATOR_BENCH_STREAM_MIBS`` MiB/s (a ``bandwidth`` fault rule), with a shared
    BandwidthLimiter cap of ``MIGRATOR_BENCH_CAP_MIBS`` MiB/s: the aggregate against
    min(streams x per-stream, cap); and 16 streams without the cap for reference.

A quick run (under a minute): ``MIGRATOR_BENCH_TRANSFER_MIB=256 MIGRATOR_BENCH_RSS_MIB=128,512
MIGRATOR_BENCH_PARALLEL_MIB=8 MIGRATOR_BENCH_REPEAT=1 python -m benchmarks --only transfer``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Metric, benchmark

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
BIG_MIB = int(os.environ.get("MIGRATOR_BENCH_TRANSFER_MIB", "2048"))
RSS_MIB = [int(x) for x in os.environ.get("MIGRATOR_BENCH_RSS_MIB", "1024,8192").split(",")]
PARALLEL_MIB = int(os.environ.get("MIGRATOR_BENCH_PARALLEL_MIB", "32"))
STREAMS = [int(x) for x in os.environ.get("MIGRATOR_BENCH_STREAMS", "1,4,16").split(",")]
STREAM_MIBS = float(os.environ.get("MIGRATOR_BENCH_STREAM_MIBS", "4"))
CAP_MIBS = float(os.environ.get("MIGRATOR_BENCH_CAP_MIBS", "48"))
REPEAT = int(os.environ.get("MIGRATOR_BENCH_REPEAT", "2"))
# The simulator on one core, the copying process on another: on real clouds the migrator's
# hashing does not take CPU from the Glance servers (set to 0 to share every core).
PIN = os.environ.get("MIGRATOR_BENCH_PIN", "1") == "1" and len(os.sched_getaffinity(0)) >= 2
HASH_MODES = ("inline", "thread", "split")
RSS_TARGET_MB = 150.0
FILE_GET = "GET /image/v2/images/*/file"


# -- the simulator process ----------------------------------------------------------------------
def core(index: int) -> int | None:
    return sorted(os.sched_getaffinity(0))[index] if PIN else None


def pinned_to(index: int) -> Any:
    """A ``preexec_fn`` pinning the simulator to one of our cores (None when not pinning)."""
    chosen = core(index)
    return None if chosen is None else lambda: os.sched_setaffinity(0, {chosen})


def peak_rss_kib() -> int:
    """VmHWM: the peak resident set of this process image (``ru_maxrss`` would also count
    the parent's pages when the child was forked rather than spawned)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def write_seed(path: Path, sizes: dict[str, int]) -> None:
    images = [
        {"name": name, "visibility": "public", "disk_format": "raw", "container_format": "bare",
         "content": {"generated": {"size": size, "seed": 100 + i}}}
        for i, (name, size) in enumerate(sizes.items())
    ]
    doc = {"clouds": {"legacy": {"tenants": [{"name": "admin", "images": images}]},
                      "target": {"tenants": []}}}
    path.write_text(json.dumps(doc))


def start_simulator(data_dir: Path, seed: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator.sim", "serve", "--cloud", "legacy:liberty",
         "--cloud", "target:modern", "--seed", str(seed), "--data-dir", str(data_dir / "sim"),
         "--format", "json"],
        env=env, stdout=subprocess.PIPE, preexec_fn=pinned_to(0))
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once every port listens (after seeding)
    if not line:
        raise RuntimeError(f"simulator exited with {proc.wait()}")
    return proc, json.loads(line)


def stop_simulator(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def sim_admin(url: str, method: str, path: str, body: Any = None) -> Any:
    import requests

    resp = requests.request(method, f"{url}/_sim/{path}", json=body, timeout=30)
    resp.raise_for_status()
    return resp.json() if resp.content else None


# -- one measurement, in a child process --------------------------------------------------------
def raw_copy(legacy: Any, target: Any, source_id: str, target_id: str, sized: bool) -> int:
    """Plain requests: GET stream -> PUT from a generator (chunked), no hashing; ``sized``:
    the generator wrapped with its length, sent with Content-Length as copy_image_data does."""
    import requests

    from migrator.transfer.glance_io import SizedBody

    src = f"{legacy.image.get_endpoint().rstrip('/')}/images/{source_id}/file"
    dst = f"{target.image.get_endpoint().rstrip('/')}/images/{target_id}/file"
    sent = 0
    with requests.get(src, headers={"X-Auth-Token": legacy.auth_token}, stream=True,
                      timeout=300) as down:
        down.raise_for_status()

        def chunks() -> Any:
            nonlocal sent
            for piece in down.iter_content(MiB):
                sent += len(piece)
                yield piece

        body = SizedBody(chunks(), int(down.headers["Content-Length"])) if sized else chunks()
        up = requests.put(dst, data=body, timeout=300, headers={
            "X-Auth-Token": target.auth_token, "Content-Type": "application/octet-stream"})
        up.raise_for_status()
    return sent


def child(args: dict[str, Any]) -> dict[str, Any]:
    """Copy ``args['image']`` to ``args['streams']`` new target images at once."""
    import openstack

    from migrator.transfer import BandwidthLimiter, copy_image_data

    if args.get("core") is not None:  # before any thread starts: they inherit it
        os.sched_setaffinity(0, {args["core"]})
    os.environ["OS_CLIENT_CONFIG_FILE"] = args["clouds_yaml"]
    n = args["streams"]
    pairs = [(openstack.connect(cloud="legacy"), openstack.connect(cloud="target"))
             for _ in range(n)]
    source = pairs[0][0].image.find_image(args["image"], ignore_missing=False)
    targets = [t.image.create_image(f"copy-{i}", disk_format="raw", container_format="bare",
                                    allow_duplicates=True) for i, (_, t) in enumerate(pairs)]
    for legacy, _ in pairs[1:]:  # authenticated and discovered before the clock starts
        legacy.image.get_image(source.id)
    limiter = BandwidthLimiter(args["cap"]) if args.get("cap") else None
    errors: list[BaseException] = []
    moved = [0] * n

    def one(i: int) -> None:
        legacy, target = pairs[i]
        try:
            if args["mode"].startswith("raw"):
                moved[i] = raw_copy(legacy, target, source.id, targets[i].id,
                                    sized=args["mode"] == "raw-sized")
            else:
                moved[i] = copy_image_data(
                    legacy, source.id, target, targets[i].id, expected_md5=source.checksum,
                    expected_size=source.size, limiter=limiter, hashing=args["mode"]).bytes
        except BaseException as exc:
            errors.append(exc)

    rss_before = peak_rss_kib()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    peak = peak_rss_kib()
    if errors:
        raise errors[0]
    for (_, target), image in zip(pairs, targets, strict=True):
        fresh = target.image.get_image(image.id)
        if fresh.status != "active" or fresh.size != source.size:
            raise RuntimeError(f"copy {image.id}: {fresh.status}, {fresh.size} bytes")
        target.image.delete_image(image.id)  # frees the simulator's disk
    return {"seconds": seconds, "bytes": sum(moved), "maxrss_kib": peak,
            "maxrss_before_kib": rss_before}


def measure(clouds_yaml: str, image: str, mode: str, streams: int = 1,
            cap: float | None = None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    args = {"clouds_yaml": clouds_yaml, "image": image, "mode": mode, "streams": streams,
            "cap": cap, "core": core(1)}
    code = ("import json, sys; from benchmarks.bench_transfer import child; "
            "print(json.dumps(child(json.loads(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], env=env,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"copy ({mode}, {streams} streams) failed: {tail}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["mibs"] = result["bytes"] / MiB / result["seconds"]
    return result


def load_note() -> str:
    one, five, _ = os.getloadavg()
    pin = "; simulator and copier pinned to one core each" if PIN else ""
    return f"load {one:.1f}/{five:.1f} (1/5 min) on {os.cpu_count()} cores{pin}"


# -- the benchmark ------------------------------------------------------------------------------
@benchmark("transfer", "image data path: copy_image_data legacy -> modern (throughput, RSS, "
                       "parallel streams)")
def run() -> list[Metric]:
    sizes = {"big": BIG_MIB * MiB, "parallel": PARALLEL_MIB * MiB}
    sizes.update({f"rss-{m}": m * MiB for m in RSS_MIB})
    metrics: list[Metric] = []
    with tempfile.TemporaryDirectory(prefix="migrator-bench-transfer-") as tmp:
        seed = Path(tmp) / "seed.json"
        write_seed(seed, sizes)
        proc, info = start_simulator(Path(tmp), seed)
        try:
            clouds_yaml = info["clouds_yaml"]
            legacy_url = info["clouds"]["legacy"]["url"]
            metrics += bench_throughput(clouds_yaml)
            metrics += bench_rss(clouds_yaml)
            metrics += bench_parallel(clouds_yaml, legacy_url)
        finally:
            stop_simulator(proc)
    return metrics


def bench_throughput(clouds_yaml: str) -> list[Metric]:
    runs: dict[str, list[float]] = {"raw": [], "raw-sized": [], "thread": []}
    for _ in range(REPEAT):  # interleaved, so that load changes hit every variant alike
        for mode, rates in runs.items():
            rates.append(measure(clouds_yaml, "big", mode)["mibs"])
    load = load_note()
    for mode in HASH_MODES:
        if mode not in runs:
            runs[mode] = [measure(clouds_yaml, "big", mode)["mibs"]]

    def listed(mode: str) -> str:
        return ", ".join(f"{x:.0f}" for x in runs[mode])

    best = {mode: max(rates) for mode, rates in runs.items()}
    return [
        Metric(f"raw streamed copy {BIG_MIB} MiB, chunked", best["raw"], "MiB/s",
               note=f"best of {REPEAT} ({listed('raw')}); plain requests GET stream -> PUT "
                    "generator, no hashing"),
        Metric(f"raw streamed copy {BIG_MIB} MiB, Content-Length", best["raw-sized"], "MiB/s",
               note=f"best of {REPEAT} ({listed('raw-sized')}); the same with the size "
                    "declared, as copy_image_data sends it"),
        Metric(f"copy_image_data {BIG_MIB} MiB", best["thread"], "MiB/s",
               note=f"best of {REPEAT} ({listed('thread')}); md5 + sha512 in a hasher thread, "
                    f"target verified; {load}"),
        Metric("copy_image_data / raw copy (chunked)", best["thread"] / best["raw"], "ratio",
               target=0.9,
               note=f"{best['thread'] / best['raw-sized']:.2f} against the Content-Length raw "
                    "copy"),
        *[Metric(f"copy_image_data {BIG_MIB} MiB, hashing {mode}", best[mode], "MiB/s",
                 note=f"runs: {listed(mode)}")
          for mode in HASH_MODES if mode != "thread"],
    ]


def bench_rss(clouds_yaml: str) -> list[Metric]:
    peaks: dict[int, float] = {}
    before: dict[int, float] = {}
    rates: dict[int, float] = {}
    for mib in RSS_MIB:
        got = measure(clouds_yaml, f"rss-{mib}", "thread")
        peaks[mib] = got["maxrss_kib"] / 1024
        before[mib] = got["maxrss_before_kib"] / 1024
        rates[mib] = got["mibs"]
    metrics = [
        Metric(f"peak RSS copying {mib} MiB", peaks[mib], "MiB", target=RSS_TARGET_MB,
               better="lower",
               note=f"copying process VmHWM; {before[mib]:.0f} MiB after imports and "
                    f"connecting; {rates[mib]:.0f} MiB/s")
        for mib in RSS_MIB
    ]
    low, high = min(peaks.values()), max(peaks.values())
    metrics.append(Metric(f"peak RSS spread {min(RSS_MIB)} vs {max(RSS_MIB)} MiB",
                          (high - low) / low * 100, "%", target=10.0, better="lower"))
    return metrics


def bench_parallel(clouds_yaml: str, legacy_url: str) -> list[Metric]:
    per_stream = STREAM_MIBS * MiB
    cap = CAP_MIBS * MiB
    sim_admin(legacy_url, "POST", "faults", {"match": FILE_GET, "bandwidth": int(per_stream)})
    metrics = []
    try:
        for n in STREAMS:
            got = measure(clouds_yaml, "parallel", "thread", streams=n, cap=cap)
            expected = min(n * STREAM_MIBS, CAP_MIBS)
            metrics.append(Metric(
                f"{n} parallel transfers, {STREAM_MIBS:g} MiB/s each, cap {CAP_MIBS:g} MiB/s",
                got["mibs"] / expected, "x expected", target=0.9,
                note=f"{got['mibs']:.1f} MiB/s aggregate, expected {expected:g} "
                     f"(min(streams x per-stream, cap)); {load_note()}"))
            if n * STREAM_MIBS > CAP_MIBS:
                metrics.append(Metric(
                    f"{n} parallel transfers: aggregate / cap", got["mibs"] / CAP_MIBS,
                    "ratio", target=1.05, better="lower",
                    note=f"the BandwidthLimiter holds {n} x {STREAM_MIBS:g} MiB/s to the cap"))
        top = max(STREAMS)
        got = measure(clouds_yaml, "parallel", "thread", streams=top)
        metrics.append(Metric(
            f"{top} parallel transfers, no cap", got["mibs"] / (top * STREAM_MIBS),
            "x linear", target=0.9,
            note=f"{got['mibs']:.1f} MiB/s aggregate, linear {top * STREAM_MIBS:g}"))
    finally:
        sim_admin(legacy_url, "DELETE", "faults")
    return metrics
