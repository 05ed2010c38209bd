"""BandwidthLimiter and TransferSlots: rates shared by threads, stop events, slot counts.

Time is a :class:`FakeClock`: the limiter's sleeps move it forward (threads sleeping side by
side end at the latest wake-up, as they would on a wall clock), so the rates are asserted
exactly whatever the machine's load. One test per class runs on the system clock, asserting
only that it waits at least what it must."""

from __future__ import annotations

import threading
import time

import pytest

from migrator.transfer import BandwidthLimiter, TransferSlots
from migrator.transfer.limits import SYSTEM_CLOCK
from tests.timing import scaled

MiB = 1 << 20


class FakeClock:
    """Virtual seconds. ``sleep`` and ``wait`` return at once, time moved to the end of the
    wait; an event scheduled with :meth:`at` inside the wait is set when time reaches it, and
    a sleep whose stop event that is ends there."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()
        self._events: list[tuple[float, threading.Event]] = []
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def at(self, when: float, event: threading.Event) -> None:
        """Set ``event`` when virtual time reaches ``when``."""
        with self._lock:
            self._events.append((when, event))

    def advance(self, seconds: float) -> None:
        self._run_until(self.monotonic() + seconds, None)

    def _run_until(self, when: float, stop: threading.Event | None) -> None:
        with self._lock:
            for entry in sorted(self._events, key=lambda e: e[0]):
                if entry[0] > when:
                    break
                self.now = max(self.now, entry[0])
                entry[1].set()
                self._events.remove(entry)
                if stop is not None and stop.is_set():
                    return
            # Threads sleeping side by side: time ends at the latest wake-up.
            self.now = max(self.now, when)

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        with self._lock:
            self.waits.append(seconds)
            wake = self.now + seconds
        self._run_until(wake, stop)
        return not (stop is not None and stop.is_set())

    def wait(self, condition: threading.Condition, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            wake = self.now + seconds
        self._run_until(wake, None)


def test_limiter_paces_one_caller() -> None:
    clock = FakeClock()
    limiter = BandwidthLimiter(4 * MiB, clock=clock)
    for _ in range(2):
        assert limiter.acquire(MiB)
    # 2 MiB at 4 MiB/s, less the 50 ms burst allowance.
    assert clock.now == pytest.approx(0.45)
    assert clock.waits == pytest.approx([0.2, 0.25])


def test_limiter_is_shared_by_threads() -> None:
    clock = FakeClock()
    limiter = BandwidthLimiter(16 * MiB, clock=clock)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(4):
            limiter.acquire(MiB // 2)
            with lock:
                granted.append(MiB // 2)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 8 * MiB
    # 8 MiB at 16 MiB/s whatever the number of threads (less the burst allowance).
    assert clock.now == pytest.approx(0.45)


def test_idle_time_is_not_banked() -> None:
    clock = FakeClock()
    limiter = BandwidthLimiter(10 * MiB, clock=clock)
    limiter.acquire(MiB)
    clock.advance(0.3)  # idle: must not allow a 3 MiB burst afterwards
    began = clock.now
    for _ in range(3):
        limiter.acquire(MiB)
    assert clock.now - began == pytest.approx(0.25)


def test_limiter_stop_interrupts_the_wait() -> None:
    clock = FakeClock()
    limiter = BandwidthLimiter(MiB, clock=clock)
    stop = threading.Event()
    limiter.acquire(MiB)
    clock.at(clock.now + 0.1, stop)
    began = clock.now
    assert limiter.acquire(10 * MiB, stop) is False
    assert clock.now - began == pytest.approx(0.1)


def test_limiter_waits_on_the_system_clock() -> None:
    assert BandwidthLimiter(MiB).clock is SYSTEM_CLOCK
    limiter = BandwidthLimiter(4 * MiB)
    began = time.monotonic()
    for _ in range(2):
        assert limiter.acquire(MiB)
    assert time.monotonic() - began >= 0.44  # never less than the rate allows


def test_limiter_rejects_a_zero_rate() -> None:
    with pytest.raises(ValueError):
        BandwidthLimiter(0)


def test_slots_cap_concurrency() -> None:
    slots = TransferSlots(3)
    inside = threading.Semaphore(0)
    leave = threading.Event()
    active = 0
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal active, peak
        with slots:
            with lock:
                active += 1
                peak = max(peak, active)
            inside.release()
            leave.wait()
            with lock:
                active -= 1

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert inside.acquire(timeout=scaled(10))
    # Three are in; the other seven wait for a slot, however long we look.
    assert not inside.acquire(timeout=0.2)
    assert slots.in_use == 3
    leave.set()
    for _ in range(7):
        assert inside.acquire(timeout=scaled(10))
    for t in threads:
        t.join()
    assert peak == 3 and slots.in_use == 0


def test_slots_acquire_gives_up_on_stop() -> None:
    clock = FakeClock()
    slots = TransferSlots(1, clock=clock)
    assert slots.acquire()
    stop = threading.Event()
    clock.at(1.0, stop)
    assert slots.acquire(stop, poll_s=0.25) is False
    assert clock.now == 1.0 and clock.waits == [0.25] * 4
    assert slots.in_use == 1
    slots.release()
    with pytest.raises(RuntimeError):
        slots.release()


def test_a_released_slot_wakes_a_waiter_on_the_system_clock() -> None:
    slots = TransferSlots(1)
    assert slots.acquire()
    got = threading.Event()
    waiter = threading.Thread(target=lambda: slots.acquire(poll_s=3600) and got.set())
    waiter.start()
    assert not got.wait(0.1)
    slots.release()  # not the hour-long poll: the release itself wakes the waiter
    assert got.wait(scaled(10))
    waiter.join()
    assert slots.in_use == 1


def test_unlimited_slots() -> None:
    slots = TransferSlots(None)
    for _ in range(50):
        slots.acquire()
    assert slots.in_use == 50 and slots.limit is None
