"""Limits shared by every transfer of a run: a bandwidth cap and a number of parallel transfers.

Both are plain thread-safe objects made once per run (per cloud pair, if wanted) and handed to
each ``copy_image_data`` call; they only limit the threads of one process.

- :class:`BandwidthLimiter` is a token bucket: ``acquire(n)`` blocks until ``n`` bytes may
  pass. Concurrent transfers share the rate; ``burst_s`` worth of bytes may pass ahead of
  the schedule, which absorbs sleep jitter without letting an idle spell be made up later.
- :class:`TransferSlots` is a counting semaphore for "at most N transfers at a time", separate
  from the limit on metadata calls; a released slot wakes a waiter at once, and a waiter
  looks at its stop event every ``poll_s``.

Both take a :class:`Clock` (default :data:`SYSTEM_CLOCK`): what time it is and how to wait.
Tests give them a clock of their own, so that what they assert about time does not depend on
how busy the machine is.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait ``seconds``; False when ``stop`` was set first."""
        ...

    def wait(self, condition: threading.Condition, seconds: float) -> None:
        """Wait on ``condition`` (whose lock the caller holds) at most ``seconds``."""
        ...


class SystemClock:
    """Time as the operating system keeps it."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(max(seconds, 0.0))
            return True
        return not stop.wait(max(seconds, 0.0))

    def wait(self, condition: threading.Condition, seconds: float) -> None:
        condition.wait(seconds)


SYSTEM_CLOCK = SystemClock()


class BandwidthLimiter:
    """At most ``bytes_per_second`` across all threads that call :meth:`acquire`.

    Implemented as a virtual clock (GCRA, equivalent to a token bucket): each grant moves the
    time at which the bucket is next empty by ``n / rate``; a caller sleeps until its grant is
    due. Grants are handed out in call order, so no transfer starves.
    """

    def __init__(self, bytes_per_second: float, *, burst_s: float = 0.05,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.rate = float(bytes_per_second)
        self.burst_s = burst_s
        self.clock = clock
        self._lock = threading.Lock()
        self._due = clock.monotonic()  # when everything granted so far has "passed"

    def acquire(self, n: int, stop: threading.Event | None = None) -> bool:
        """Wait until ``n`` bytes may pass; False if ``stop`` was set while waiting."""
        if n <= 0:
            return True
        with self._lock:
            now = self.clock.monotonic()
            # An idle bucket does not bank time: grants start from now at the earliest.
            self._due = max(self._due, now) + n / self.rate
            wait = self._due - self.burst_s - now
        if wait <= 0:
            return True
        return self.clock.sleep(wait, stop)


class TransferSlots:
    """At most ``n`` transfers at a time (``None`` or 0: no limit). Use as a context manager
    or with :meth:`acquire` / :meth:`release`."""

    def __init__(self, n: int | None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.limit = n if n else None
        self.clock = clock
        self._cond = threading.Condition()
        self._in_use = 0

    @property
    def in_use(self) -> int:
        with self._cond:
            return self._in_use

    def acquire(self, stop: threading.Event | None = None, poll_s: float = 0.2) -> bool:
        """Take a slot, waiting as long as it takes; False if ``stop`` was set first (looked
        at every ``poll_s`` while waiting)."""
        with self._cond:
            while self.limit is not None and self._in_use >= self.limit:
                if stop is not None and stop.is_set():
                    return False
                self.clock.wait(self._cond, poll_s)
            self._in_use += 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._in_use == 0:
                raise RuntimeError("TransferSlots.release() without acquire()")
            self._in_use -= 1
            self._cond.notify()

    def __enter__(self) -> TransferSlots:
        self.acquire()
        return self

    def __exit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.release()
