"""The image data path: ``migrator.transfer.copy_image_data`` between a Liberty and a modern
simulated cloud on loopback, against the cheapest copy that moves the same bytes.

The simulator runs in its own process (``python -m migrator.sim serve`` with a seed file of
generated images: no disk until uploaded); every copy runs in a fresh child process so that
its peak RSS (VmHWM: imports, connections and the copy) and its CPU are the copy's own.
Nothing is pinned: the simulator and the copier share the machine's cores, as they come.

(a) one big image (``MIGRATOR_BENCH_TRANSFER_MIB``, default 2048), ``MIGRATOR_BENCH_REPEAT``
    rounds (default 3), each round in this order: copy_image_data (md5 + sha512 in one hasher
    thread, the shipped default), the pipelined raw copy, copy_image_data hashing inline,
    copy_image_data hashing in one thread per hash. The raw copy is the yardstick: plain
    requests, a reader thread (GET stream, ``iter_content`` of the copier's chunk size) and
    the writer (PUT of a generator with Content-Length) joined by a queue of the copier's
    depth, no hashing, no verification. Reported: the median throughput of each, the ratio
    copier / raw, and the copier's CPU per GiB against its floor, the raw copy's CPU per GiB
    plus md5 and sha512 of the same number of bytes measured in the same run (``hash``
    child, one per round, between the copies).
(b) peak RSS of the copying process for two sizes (``MIGRATOR_BENCH_RSS_MIB``, "1024,8192").
(c) 1, 4 and 16 parallel transfers (``MIGRATOR_BENCH_STREAMS``) of an image of
    ``MIGRATOR_BENCH_PARALLEL_MIB`` (default 32) each, the simulator limiting every download
    stream to ``MIGRATOR_BENCH_STREAM_MIBS`` MiB/s (a ``bandwidth`` fault rule), with a shared
    BandwidthLimiter cap of ``MIGRATOR_BENCH_CAP_MIBS`` MiB/s: the aggregate against
    min(streams x per-stream, cap); and 16 streams without the cap for reference.

A quick run (under two minutes): ``MIGRATOR_BENCH_TRANSFER_MIB=256 MIGRATOR_BENCH_RSS_MIB=128,512
MIGRATOR_BENCH_PARALLEL_MIB=8 MIGRATOR_BENCH_REPEAT=1 python -m benchmarks --only transfer``.
A profile of one copy: ``python -m benchmarks.bench_transfer profile [MODE]`` starts the
simulator, prints the child's command line and waits, so that ``py-spy record --native -p PID``
or ``py-spy dump`` can be pointed at it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Metric, benchmark

MiB = 1 << 20
GiB = 1 << 30
ROOT = Path(__file__).resolve().parent.parent
BIG_MIB = int(os.environ.get("MIGRATOR_BENCH_TRANSFER_MIB", "2048"))
RSS_MIB = [int(x) for x in os.environ.get("MIGRATOR_BENCH_RSS_MIB", "1024,8192").split(",")]
PARALLEL_MIB = int(os.environ.get("MIGRATOR_BENCH_PARALLEL_MIB", "32"))
STREAMS = [int(x) for x in os.environ.get("MIGRATOR_BENCH_STREAMS", "1,4,16").split(",")]
STREAM_MIBS = float(os.environ.get("MIGRATOR_BENCH_STREAM_MIBS", "4"))
CAP_MIBS = float(os.environ.get("MIGRATOR_BENCH_CAP_MIBS", "48"))
REPEAT = int(os.environ.get("MIGRATOR_BENCH_REPEAT", "3"))
# One round: the shipped copier first, then the yardstick, then the other hashing modes.
ROUND = ("thread", "raw", "inline", "split")
HASH_SAMPLE_MIB = 512  # bytes hashed (md5 + sha512) by each "hash" child
RSS_TARGET_MB = 150.0
# The copier may spend this much CPU above its floor (queue hand-offs, keystoneauth, the
# verification read): more is waste in migrator's own code.
CPU_OVER_FLOOR_TARGET = 1.10
FILE_GET = "GET /image/v2/images/*/file"


# -- the simulator process ----------------------------------------------------------------------
def peak_rss_kib() -> int:
    """VmHWM: the peak resident set of this process image (``ru_maxrss`` would also count
    the parent's pages when the child was forked rather than spawned)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU of a live process (every thread), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ThreadCPU:
    """The CPU seconds of every thread started while installed, by thread name, each read by
    the thread itself (``time.thread_time``) as its ``run`` returns: exact, and free (no
    sampling). A benchmark-only wrapper of ``threading.Thread.run``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._original = threading.Thread.run

    def __enter__(self) -> ThreadCPU:
        original, record = self._original, self._record

        def run_timed(thread: threading.Thread) -> None:
            try:
                original(thread)
            finally:
                record(thread.name, time.thread_time())

        self._install(run_timed)
        return self

    def __exit__(self, *exc: object) -> None:
        self._install(self._original)

    @staticmethod
    def _install(run: Any) -> None:
        threading.Thread.run = run  # type: ignore[method-assign]

    def _record(self, name: str, cpu: float) -> None:
        label = "caller (uploader)" if name.startswith("Thread-") else name
        with self._lock:
            self.seconds[label] = self.seconds.get(label, 0.0) + cpu


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
        env=env, stdout=subprocess.PIPE)
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
def raw_copy(legacy: Any, target: Any, source_id: str, target_id: str) -> int:
    """The yardstick: the same bytes over the same endpoints with plain requests, pipelined
    as the copier is (a reader thread feeding a bounded queue of the copier's depth, chunks
    of its size, the writer sending them with Content-Length), with nothing else: no
    hashing, no size or checksum checks, no held-back last chunk, no verification."""
    import queue

    import requests

    from migrator.transfer.glance_io import SizedBody
    from migrator.transfer.stream import QUEUE_DEPTH

    chunk = MiB  # copy_image_data's default chunk_size
    src = f"{legacy.image.get_endpoint().rstrip('/')}/images/{source_id}/file"
    dst = f"{target.image.get_endpoint().rstrip('/')}/images/{target_id}/file"
    pieces: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
    done = object()
    sent = 0
    with requests.get(src, headers={"X-Auth-Token": legacy.auth_token}, stream=True,
                      timeout=300) as down:
        down.raise_for_status()

        def read() -> None:
            try:
                for piece in down.iter_content(chunk):
                    pieces.put(piece)
                pieces.put(done)
            except BaseException as exc:  # handed to the writer
                pieces.put(exc)

        def body() -> Any:
            nonlocal sent
            while (item := pieces.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                sent += len(item)
                yield item

        reader = threading.Thread(target=read, name="raw-reader", daemon=True)
        reader.start()
        up = requests.put(dst, data=SizedBody(body(), int(down.headers["Content-Length"])),
                          timeout=300, headers={"X-Auth-Token": target.auth_token,
                                                "Content-Type": "application/octet-stream"})
        up.raise_for_status()
        reader.join(60)
    return sent


def hash_cost(mib: int) -> dict[str, Any]:
    """CPU seconds of md5 + sha512 over ``mib`` MiB, 1 MiB at a time, as the copier hashes."""
    from migrator.transfer.hashing import StreamHasher

    # Not one hot 1 MiB block: the copier hashes fresh chunks, so cycle through 64 MiB.
    pool = os.urandom(64 * MiB)
    blocks = [pool[i * MiB:(i + 1) * MiB] for i in range(64)]
    hasher = StreamHasher()
    began_cpu, began = time.process_time(), time.perf_counter()
    for i in range(mib):
        hasher.update(blocks[i % 64])
    hasher.finish()
    return {"seconds": time.perf_counter() - began, "cpu_s": time.process_time() - began_cpu,
            "bytes": mib * MiB}


def child(args: dict[str, Any]) -> dict[str, Any]:
    """Copy ``args['image']`` to ``args['streams']`` new target images at once (or, for the
    mode ``hash``, only hash)."""
    if args["mode"] == "hash":
        return hash_cost(args["hash_mib"])

    import openstack

    from migrator.transfer import BandwidthLimiter, copy_image_data

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
            if args["mode"] == "raw":
                moved[i] = raw_copy(legacy, target, source.id, targets[i].id)
            else:
                moved[i] = copy_image_data(
                    legacy, source.id, target, targets[i].id, expected_md5=source.checksum,
                    expected_size=source.size, limiter=limiter, hashing=args["mode"]).bytes
        except BaseException as exc:
            errors.append(exc)

    rss_before = peak_rss_kib()
    sim_pid = args.get("sim_pid")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    sim_cpu = cpu_seconds_of(sim_pid) if sim_pid else 0.0
    with ThreadCPU() as per_thread:
        began_cpu, began = time.process_time(), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
        cpu_s = time.process_time() - began_cpu
    sim_cpu = cpu_seconds_of(sim_pid) - sim_cpu if sim_pid else 0.0
    peak = peak_rss_kib()
    if errors:
        raise errors[0]
    for (_, target), image in zip(pairs, targets, strict=True):
        fresh = target.image.get_image(image.id)
        if fresh.status != "active" or fresh.size != source.size:
            raise RuntimeError(f"copy {image.id}: {fresh.status}, {fresh.size} bytes")
        target.image.delete_image(image.id)  # frees the simulator's disk
    return {"seconds": seconds, "bytes": sum(moved), "cpu_s": cpu_s, "sim_cpu_s": sim_cpu,
            "thread_cpu_s": per_thread.seconds, "maxrss_kib": peak,
            "maxrss_before_kib": rss_before}


def child_command(args: dict[str, Any]) -> list[str]:
    code = ("import json, sys; from benchmarks.bench_transfer import child; "
            "print(json.dumps(child(json.loads(sys.argv[1]))))")
    return [sys.executable, "-c", code, json.dumps(args)]


def child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))


def measure(clouds_yaml: str, image: str, mode: str, streams: int = 1,
            cap: float | None = None, sim_pid: int | None = None) -> dict[str, Any]:
    args = {"clouds_yaml": clouds_yaml, "image": image, "mode": mode, "streams": streams,
            "cap": cap, "sim_pid": sim_pid, "hash_mib": HASH_SAMPLE_MIB}
    out = subprocess.run(child_command(args), env=child_env(), capture_output=True, text=True,
                         timeout=3600)
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"copy ({mode}, {streams} streams) failed: {tail}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["mibs"] = result["bytes"] / MiB / result["seconds"]
    result["cpu_per_gib"] = result["cpu_s"] / (result["bytes"] / GiB)
    result["sim_cpu_per_gib"] = result.get("sim_cpu_s", 0.0) / (result["bytes"] / GiB)
    return result


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} (1/5 min) on {os.cpu_count()} cores, nothing pinned"


# -- the benchmark ------------------------------------------------------------------------------
@benchmark("transfer", "image data path: copy_image_data legacy -> modern against a pipelined "
                       "raw copy (throughput, CPU per GiB against its floor, RSS, parallel "
                       "streams)")
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
            metrics += bench_throughput(clouds_yaml, proc.pid)
            metrics += bench_rss(clouds_yaml)
            metrics += bench_parallel(clouds_yaml, legacy_url)
        finally:
            stop_simulator(proc)
    return metrics


def bench_throughput(clouds_yaml: str, sim_pid: int) -> list[Metric]:
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in (*ROUND, "hash")}
    for _ in range(REPEAT):  # interleaved, so that load changes hit every variant alike
        for mode in ROUND:
            runs[mode].append(measure(clouds_yaml, "big", mode, sim_pid=sim_pid))
            if mode == "raw":
                runs["hash"].append(measure(clouds_yaml, "big", "hash"))
    load = load_note()

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    def listed(mode: str, key: str = "mibs", fmt: str = ".0f") -> str:
        return ", ".join(f"{r[key]:{fmt}}" for r in runs[mode])

    for r in runs["hash"]:
        r["cpu_per_gib"] = r["cpu_s"] / (r["bytes"] / GiB)

    def threads(mode: str) -> str:
        names = sorted({name for r in runs[mode] for name in r.get("thread_cpu_s", {})})
        per = {name: statistics.median(r.get("thread_cpu_s", {}).get(name, 0.0)
                                       / (r["bytes"] / GiB) for r in runs[mode])
               for name in names}
        shown = [f"{name} {value:.2f}" for name, value in per.items() if value >= 0.01]
        return "per thread (median CPU-s/GiB): " + ", ".join(shown)
    copier, raw = median("thread", "mibs"), median("raw", "mibs")
    ratios = [c["mibs"] / r["mibs"] for c, r in zip(runs["thread"], runs["raw"], strict=True)]
    cpu_copier, cpu_raw = median("thread", "cpu_per_gib"), median("raw", "cpu_per_gib")
    cpu_hash = median("hash", "cpu_per_gib")
    floor = cpu_raw + cpu_hash
    cpu_bound = ((median("raw", "sim_cpu_per_gib") + cpu_raw)
                 / (median("thread", "sim_cpu_per_gib") + cpu_copier))
    n = f"median of {REPEAT}"
    return [
        Metric(f"copy_image_data {BIG_MIB} MiB", copier, "MiB/s",
               note=f"{n} ({listed('thread')}); md5 + sha512 in a hasher thread, source "
                    "checks, target verified; simulator CPU "
                    f"{median('thread', 'sim_cpu_per_gib'):.2f} s/GiB; {load}"),
        Metric(f"pipelined raw copy {BIG_MIB} MiB", raw, "MiB/s",
               note=f"{n} ({listed('raw')}); plain requests, reader thread -> queue of the "
                    "copier's depth -> PUT with Content-Length, 1 MiB chunks, no hashing; "
                    f"simulator CPU {median('raw', 'sim_cpu_per_gib'):.2f} s/GiB"),
        Metric("copy_image_data / pipelined raw copy", copier / raw, "ratio",
               note=f"ratio of the medians; per round: {', '.join(f'{x:.2f}' for x in ratios)}"
                    f"; if the cores are the limit: {cpu_bound:.2f} = (simulator + raw copy "
                    "CPU per GiB) / (simulator + copier CPU per GiB), the copier's hashing "
                    "competing with the simulator for the same cores"),
        Metric("copy_image_data CPU per GiB", cpu_copier, "CPU-s/GiB", better="lower",
               note=f"{n} ({listed('thread', 'cpu_per_gib', '.2f')}); every thread of the "
                    "copying process, from the first request to the verification read; "
                    f"{threads('thread')}"),
        Metric("raw copy CPU per GiB", cpu_raw, "CPU-s/GiB", better="lower",
               note=f"{n} ({listed('raw', 'cpu_per_gib', '.2f')}); {threads('raw')}"),
        Metric("md5 + sha512 CPU per GiB", cpu_hash, "CPU-s/GiB", better="lower",
               note=f"{n} ({listed('hash', 'cpu_per_gib', '.2f')}); {HASH_SAMPLE_MIB} MiB "
                    "hashed 1 MiB at a time in one thread, hashlib (OpenSSL)"),
        Metric("copy_image_data CPU / floor", cpu_copier / floor, "ratio",
               target=CPU_OVER_FLOOR_TARGET, better="lower",
               note=f"floor {floor:.2f} CPU-s/GiB = raw copy {cpu_raw:.2f} + md5 and sha512 "
                    f"{cpu_hash:.2f}; the copier spends {cpu_copier - floor:+.2f} CPU-s/GiB "
                    "beyond it"),
        *[Metric(f"copy_image_data {BIG_MIB} MiB, hashing {mode}", median(mode, "mibs"),
                 "MiB/s",
                 note=f"{n} ({listed(mode)}); CPU {median(mode, 'cpu_per_gib'):.2f} s/GiB "
                      f"({listed(mode, 'cpu_per_gib', '.2f')})")
          for mode in ROUND if mode not in ("thread", "raw")],
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


# -- a profile of one copy ----------------------------------------------------------------------
def profile(mode: str, out: str, mib: int) -> dict[str, Any]:
    """One copy of ``mib`` MiB in ``mode`` under ``py-spy record --native`` (collapsed stacks,
    ``--format raw``, written to ``out``); returns the copy's measurement."""
    with tempfile.TemporaryDirectory(prefix="migrator-bench-transfer-") as tmp:
        seed = Path(tmp) / "seed.json"
        write_seed(seed, {"big": mib * MiB})
        proc, info = start_simulator(Path(tmp), seed)
        try:
            args = {"clouds_yaml": info["clouds_yaml"], "image": "big", "mode": mode,
                    "streams": 1, "cap": None, "sim_pid": proc.pid, "hash_mib": mib}
            command = ["py-spy", "record", "--native", "--format", "raw", "--rate", "250",
                       "-o", out, "--", *child_command(args)]
            done = subprocess.run(command, env=child_env(), capture_output=True, text=True,
                                  timeout=3600)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.strip()[-500:])
            lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
            return dict(json.loads(lines[-1]))
        finally:
            stop_simulator(proc)


if __name__ == "__main__":
    # python -m benchmarks.bench_transfer profile MODE OUT [MIB]
    if len(sys.argv) < 4 or sys.argv[1] != "profile":
        sys.exit("usage: python -m benchmarks.bench_transfer profile MODE OUT [MIB]")
    print(json.dumps(profile(sys.argv[2], sys.argv[3],
                             int(sys.argv[4]) if len(sys.argv) > 4 else 1024)))
