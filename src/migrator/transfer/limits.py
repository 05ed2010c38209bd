"""Limits shared by every transfer of a run: a bandwidth cap and a number of parallel transfers.

Both are plain thread-safe objects made once per run (per cloud pair, if wanted) and handed to
each ``copy_image_data`` call; they only limit the threads of one process.

- :class:`BandwidthLimiter` is a token bucket: ``acquire(n)`` blocks until ``n`` bytes may
  pass. Concurrent transfers share the rate; ``burst_s`` worth of bytes may pass ahead of
  the schedule, which absorbs sleep jitter without letting an idle spell be made up later.
- :class:`TransferSlots` is a counting semaphore for "at most N transfers at a time", separate
  from the limit on metadata calls.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType


class BandwidthLimiter:
    """At most ``bytes_per_second`` across all threads that call :meth:`acquire`.

    Implemented as a virtual clock (GCRA, equivalent to a token bucket): each grant moves the
    time at which the bucket is next empty by ``n / rate``; a caller sleeps until its grant is
    due. Grants are handed out in call order, so no transfer starves.
    """

    def __init__(self, bytes_per_second: float, *, burst_s: float = 0.05) -> None:
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.rate = float(bytes_per_second)
        self.burst_s = burst_s
        self._lock = threading.Lock()
        self._due = time.monotonic()  # when everything granted so far has "passed"

    def acquire(self, n: int, stop: threading.Event | None = None) -> bool:
        """Wait until ``n`` bytes may pass; False if ``stop`` was set while waiting."""
        if n <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            # An idle bucket does not bank time: grants start from now at the earliest.
            self._due = max(self._due, now) + n / self.rate
            wait = self._due - self.burst_s - now
        if wait <= 0:
            return True
        if stop is None:
            time.sleep(wait)
            return True
        return not stop.wait(wait)


class TransferSlots:
    """At most ``n`` transfers at a time (``None`` or 0: no limit). Use as a context manager
    or with :meth:`acquire` / :meth:`release`."""

    def __init__(self, n: int | None) -> None:
        self.limit = n if n else None
        self._sem = threading.BoundedSemaphore(n) if n else None
        self._lock = threading.Lock()
        self._in_use = 0

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    def acquire(self, stop: threading.Event | None = None, poll_s: float = 0.2) -> bool:
        """Take a slot, waiting as long as it takes; False if ``stop`` was set first."""
        if self._sem is not None:
            while not self._sem.acquire(timeout=poll_s):
                if stop is not None and stop.is_set():
                    return False
        with self._lock:
            self._in_use += 1
        return True

    def release(self) -> None:
        with self._lock:
            if self._in_use == 0:
                raise RuntimeError("TransferSlots.release() without acquire()")
            self._in_use -= 1
        if self._sem is not None:
            self._sem.release()

    def __enter__(self) -> TransferSlots:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
