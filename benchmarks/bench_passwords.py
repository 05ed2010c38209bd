"""The password file: what recording one new user's password costs, early and late in a run.

Each ``random_password`` call for a new user is one append (flock, read of what other
processes appended since, one write, fsync). Measured:

(a) ``MIGRATOR_BENCH_PASSWORD_USERS`` (default 10,000) new users recorded one after the other
    in one process: the median time per append of the first 100 and of the last 100; their
    ratio is the target (flat: the cost must not grow with the file). The yardstick, measured
    in the same run before and after: a bare append of a record of the same size (open with
    O_APPEND, write, fsync, close), the least a durable per-user record can cost.
(b) the first call of a new process on that file (it reads every entry once).
(c) 4 processes appending 250 new users each at once to one new file: the aggregate time per
    append, and every user recorded exactly once.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.harness import Metric, benchmark

USERS = int(os.environ.get("MIGRATOR_BENCH_PASSWORD_USERS", "10000"))
WINDOW = 100
FLAT_TARGET = 2.0  # last 100 / first 100
PROCESSES, PER_PROCESS = 4, 250


def _bare_appends(path: Path, n: int, record: bytes) -> list[float]:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, record)
            os.fsync(fd)
        finally:
            os.close(fd)
        times.append(time.perf_counter() - began)
    return times


def _append_users(path: Path, worker: int, n: int) -> float:
    from migrator.handlers.passwords import random_password

    began = time.perf_counter()
    for i in range(n):
        random_password(path, f"p{worker}-user{i:06d}")
    return time.perf_counter() - began


def _import() -> None:
    import migrator.handlers.passwords  # noqa: F401 - imported before the clock starts


def _first_call(path: Path) -> float:
    from migrator.handlers.passwords import random_password

    began = time.perf_counter()
    random_password(path, "user000000")  # recorded: the answer comes from the file
    return time.perf_counter() - began


def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


@benchmark("passwords", "password file: one append per new user, flat from the first user to "
                        "the last, threads and processes at once")
def run() -> list[Metric]:
    from migrator.handlers.passwords import format_entry, random_password

    ms = 1000.0
    with tempfile.TemporaryDirectory(prefix="migrator-bench-passwords-") as tmp:
        root = Path(tmp)
        record = format_entry("user000000", "x" * 24).encode()
        floor_before = _bare_appends(root / "bare.txt", WINDOW, record)
        path = root / "passwords.yaml"
        times = []
        for i in range(USERS):
            began = time.perf_counter()
            random_password(path, f"user{i:06d}")
            times.append(time.perf_counter() - began)
        floor_after = _bare_appends(root / "bare.txt", WINDOW, record)
        recorded = yaml.safe_load(path.read_text())
        if len(recorded) != USERS:
            raise RuntimeError(f"{len(recorded)} entries for {USERS} users")
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(1, initializer=_import) as pool:
            pool.apply(_first_call, (root / "warm.yaml",))  # the first call's own costs
            first_call = pool.apply(_first_call, (path,))
        shared = root / "shared.yaml"
        with spawn.Pool(PROCESSES, initializer=_import) as pool:
            pool.map(time.sleep, [0.5] * PROCESSES, chunksize=1)  # every worker started
            began = time.perf_counter()
            pool.starmap(_append_users, [(shared, w, PER_PROCESS) for w in range(PROCESSES)])
            parallel_s = time.perf_counter() - began
        together = yaml.safe_load(shared.read_text())
        lines = [x for x in shared.read_text().splitlines() if not x.startswith("#")]
        fs = _filesystem(path)
    first, last = times[:WINDOW], times[-WINDOW:]
    floor = statistics.median(floor_before + floor_after)
    total = PROCESSES * PER_PROCESS
    return [
        Metric(f"append, first {WINDOW} users", statistics.median(first) * ms, "ms/user",
               note=f"median; mean {statistics.mean(first) * ms:.2f} ms; {fs} file system, "
                    "fsync per user"),
        Metric(f"append, last {WINDOW} of {USERS:,} users", statistics.median(last) * ms,
               "ms/user", note=f"median; mean {statistics.mean(last) * ms:.2f} ms; the whole "
                               f"run {sum(times):.1f} s ({sum(times) / USERS * ms:.2f} ms/user)"),
        Metric(f"append cost, last {WINDOW} / first {WINDOW}",
               statistics.median(last) / statistics.median(first), "ratio",
               target=FLAT_TARGET, better="lower",
               note="flat: the cost of a new user does not grow with the file (rewriting the "
                    "whole file, as before, took 2.1 s for 100 users and 134 s for 1,000)"),
        Metric("bare durable append (yardstick)", floor * ms, "ms/append",
               note=f"median of {2 * WINDOW}: open O_APPEND, write {len(record)} bytes, fsync, "
                    f"close, before and after (a); migrator's last {WINDOW}: "
                    f"{statistics.median(last) / floor:.2f}x this"),
        Metric(f"first call of a new process on {USERS:,} entries", first_call * ms, "ms",
               note="reads every entry once (libyaml); later calls read only what was "
                    "appended since"),
        Metric(f"{PROCESSES} processes x {PER_PROCESS} new users at once", parallel_s / total * ms,
               "ms/user", note=f"{total} users in {parallel_s:.2f} s into one file; "
                              f"{len(together)} entries in {len(lines)} lines (each once: "
                              f"{len(together) == len(lines) == total})"),
    ]
