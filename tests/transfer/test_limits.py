"""BandwidthLimiter and TransferSlots: rates shared by threads, stop events, slot counts."""

from __future__ import annotations

import threading
import time

import pytest

from migrator.transfer import BandwidthLimiter, TransferSlots

MiB = 1 << 20


def test_limiter_paces_one_caller() -> None:
    limiter = BandwidthLimiter(4 * MiB)
    began = time.monotonic()
    for _ in range(2):
        assert limiter.acquire(MiB)
    elapsed = time.monotonic() - began
    assert 0.45 <= elapsed < 1.0  # 2 MiB at 4 MiB/s, less the 50 ms burst allowance


def test_limiter_is_shared_by_threads() -> None:
    limiter = BandwidthLimiter(16 * MiB)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(4):
            limiter.acquire(MiB // 2)
            with lock:
                granted.append(MiB // 2)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    assert sum(granted) == 8 * MiB
    assert 0.45 <= elapsed < 1.2  # 8 MiB at 16 MiB/s whatever the number of threads


def test_idle_time_is_not_banked() -> None:
    limiter = BandwidthLimiter(10 * MiB)
    limiter.acquire(MiB)
    time.sleep(0.3)  # idle: must not allow a 3 MiB burst afterwards
    began = time.monotonic()
    for _ in range(3):
        limiter.acquire(MiB)
    assert time.monotonic() - began >= 0.2


def test_limiter_stop_interrupts_the_wait() -> None:
    limiter = BandwidthLimiter(MiB)
    stop = threading.Event()
    limiter.acquire(MiB)
    threading.Timer(0.1, stop.set).start()
    began = time.monotonic()
    assert limiter.acquire(10 * MiB, stop) is False
    assert time.monotonic() - began < 1.0


def test_limiter_rejects_a_zero_rate() -> None:
    with pytest.raises(ValueError):
        BandwidthLimiter(0)


def test_slots_cap_concurrency() -> None:
    slots = TransferSlots(3)
    active = 0
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal active, peak
        with slots:
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.05)
            with lock:
                active -= 1

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3 and slots.in_use == 0


def test_slots_acquire_gives_up_on_stop() -> None:
    slots = TransferSlots(1)
    assert slots.acquire()
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert slots.acquire(stop, poll_s=0.02) is False
    assert slots.in_use == 1
    slots.release()
    with pytest.raises(RuntimeError):
        slots.release()


def test_unlimited_slots() -> None:
    slots = TransferSlots(None)
    for _ in range(50):
        slots.acquire()
    assert slots.in_use == 50 and slots.limit is None
