"""Retrying with backoff: the one helper behind every retry migrator makes.

Three levels use it, each with its own numbers (all settings, docs/configuration.md
``retries``):

- a cloud call (clouds/connection.py, clouds/target_base.py, transfer/volume_api.py,
  transfer/glance_io.py, token requests in clouds/session.py): an idempotent request answered
  429/500/502/503/504, or whose connection dropped, is sent again a few times
  (``retries.call_retries``) with a short exponential backoff;
- a handler phase that is safe to run again (it looks the resource up by its source id before
  it creates anything, or it uploads from a fresh stream): run again on a transient error;
- a step (engine/executor.py): tried ``retries.step_attempts`` times with a long backoff.

Call and phase retries of one cloud draw from that cloud's :class:`RetryBudget`, so a cloud
that is down is not hammered: once the budget is spent, calls fail at their first error and
the steps' own (slower) retries take over until successes refill it.

``sleep`` is injectable everywhere, so tests run the backoff on a fake clock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Answers after which the same idempotent request may succeed later.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Backoff:
    """Retry ``n`` (1-based) waits ``base * 2**(n-1)`` seconds, at least what a Retry-After
    header asked for, at most ``cap``."""

    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int, retry_after: str | float | None = None) -> float:
        wait = self.base * 2 ** max(attempt - 1, 0)
        if retry_after is not None:
            with contextlib.suppress(ValueError, TypeError):
                wait = max(wait, float(retry_after))
        return max(0.0, min(wait, self.cap))


class RetryBudget:
    """The retries one cloud may still make: starts at ``capacity``; every retry takes one,
    every call that succeeds gives back ``refill`` (never above ``capacity``). With the
    default numbers a cloud failing up to about one call in six keeps its budget; a dead cloud
    gets ``capacity`` retries in all, not ``capacity`` per call."""

    def __init__(self, capacity: float = 100.0, refill: float = 0.2, *, name: str = "?"
                 ) -> None:
        if capacity < 0 or refill < 0:
            raise ValueError("a retry budget's capacity and refill must not be negative")
        self.capacity = float(capacity)
        self.refill = float(refill)
        self.name = name
        self._left = float(capacity)
        self._lock = threading.Lock()
        self._warned = False
        self.spent = 0  # retries taken so far
        self.refused = 0  # retries refused because the budget was empty

    @property
    def left(self) -> float:
        with self._lock:
            return self._left

    def take(self) -> bool:
        """One retry, if the budget allows it."""
        with self._lock:
            if self._left >= 1.0:
                self._left -= 1.0
                self.spent += 1
                return True
            self.refused += 1
            warn = not self._warned
            self._warned = True
        if warn:
            log.warning("cloud %s: retry budget spent (%d retries); its calls fail at the "
                        "first error until successful calls refill it", self.name, self.spent)
        return False

    def credit(self) -> None:
        """A call succeeded."""
        if self.refill:
            with self._lock:
                self._left = min(self.capacity, self._left + self.refill)
                if self._left >= 1.0:
                    self._warned = False


@dataclass
class RetryPolicy:
    """How the calls of one cloud are retried: at most ``retries`` more tries per call, each
    after ``backoff``, each taken from ``budget``."""

    retries: int = 4
    backoff: Backoff = field(default_factory=Backoff)
    budget: RetryBudget = field(default_factory=RetryBudget)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, not {self.retries}")


@dataclass(frozen=True)
class Failed:
    """What one try that did not succeed hands back to :func:`call_with_retries`: the error
    to raise if no retry follows, whether a retry may help, and the server's Retry-After."""

    error: BaseException
    retryable: bool
    retry_after: str | None = None


OnRetry = Callable[[int, float, BaseException], None]


def call_with_retries(once: Callable[[], T | Failed], policy: RetryPolicy, *,
                      on_retry: OnRetry | None = None) -> T:
    """``once()`` until it returns a value (the budget is credited) or a :class:`Failed` that
    is not retryable, or the policy's retries or its budget are spent (its error is raised).
    ``on_retry(attempt, delay, error)`` hears of each retry before its backoff."""
    attempt = 0
    while True:
        outcome = once()
        if not isinstance(outcome, Failed):
            policy.budget.credit()
            return outcome
        if (not outcome.retryable or attempt >= policy.retries
                or not policy.budget.take()):
            raise outcome.error
        attempt += 1
        delay = policy.backoff.delay(attempt, outcome.retry_after)
        if on_retry is not None:
            on_retry(attempt, delay, outcome.error)
        policy.sleep(delay)
