"""The retry helper on a fake clock: backoff, Retry-After, retries per call, the per-cloud
budget (spent by retries, refilled by successes, shared by every caller)."""

from __future__ import annotations

import threading

import pytest

from migrator.retry import Backoff, Failed, RetryBudget, RetryPolicy, call_with_retries


class Clock:
    """``sleep`` that only records."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def flaky(failures: int, *, retryable: bool = True, retry_after: str | None = None):  # type: ignore[no-untyped-def]
    """A call failing ``failures`` times, then answering "ok"; counts its tries."""
    tries = {"n": 0}

    def once() -> str | Failed:
        tries["n"] += 1
        if tries["n"] <= failures:
            return Failed(RuntimeError(f"try {tries['n']} failed"), retryable=retryable,
                          retry_after=retry_after)
        return "ok"

    return once, tries


def test_backoff_doubles_up_to_its_cap_and_honours_retry_after() -> None:
    backoff = Backoff(base=0.5, cap=3.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff.delay(1, "2") == 2.0
    assert backoff.delay(1, "60") == 3.0  # capped
    assert backoff.delay(2, "soon") == 1.0  # unreadable: ignored


def test_transient_failures_are_retried_after_a_backoff() -> None:
    clock = Clock()
    policy = RetryPolicy(retries=4, backoff=Backoff(0.1, 1.0), sleep=clock.sleep)
    once, tries = flaky(3)
    heard: list[tuple[int, float]] = []
    assert call_with_retries(once, policy, on_retry=lambda n, d, e: heard.append((n, d))) \
        == "ok"
    assert tries["n"] == 4
    assert clock.waits == [0.1, 0.2, 0.4] and [n for n, _ in heard] == [1, 2, 3]


def test_retries_per_call_are_bounded_and_the_last_error_is_raised() -> None:
    policy = RetryPolicy(retries=2, sleep=Clock().sleep)
    once, tries = flaky(10)
    with pytest.raises(RuntimeError, match="try 3 failed"):
        call_with_retries(once, policy)
    assert tries["n"] == 3


def test_a_failure_that_cannot_pass_is_raised_at_once() -> None:
    clock = Clock()
    once, tries = flaky(1, retryable=False)
    with pytest.raises(RuntimeError, match="try 1 failed"):
        call_with_retries(once, RetryPolicy(sleep=clock.sleep))
    assert tries["n"] == 1 and clock.waits == []


def test_the_budget_is_per_cloud_not_per_call() -> None:
    # A dead cloud: every call fails. Three retries in all, whatever the number of calls.
    budget = RetryBudget(capacity=3, refill=0.5, name="dead")
    policy = RetryPolicy(retries=4, budget=budget, sleep=Clock().sleep)
    tries = []
    for _ in range(5):
        once, counted = flaky(100)
        with pytest.raises(RuntimeError):
            call_with_retries(once, policy)
        tries.append(counted["n"])
    assert tries == [4, 1, 1, 1, 1]
    assert budget.spent == 3 and budget.refused == 5


def test_successes_refill_the_budget_up_to_its_capacity() -> None:
    budget = RetryBudget(capacity=2, refill=0.5)
    policy = RetryPolicy(retries=4, budget=budget, sleep=Clock().sleep)
    once, _ = flaky(2)
    assert call_with_retries(once, policy) == "ok"  # two retries: empty, then +0.5
    assert budget.left == 0.5
    for _ in range(10):
        call_with_retries(flaky(0)[0], policy)
    assert budget.left == 2.0
    once, tries = flaky(1)
    assert call_with_retries(once, policy) == "ok" and tries["n"] == 2


def test_the_budget_is_shared_by_threads() -> None:
    budget = RetryBudget(capacity=50, refill=0.0)
    policy = RetryPolicy(retries=100, budget=budget, sleep=lambda _s: None)
    refused = []

    def worker() -> None:
        once, counted = flaky(1000)
        with pytest.raises(RuntimeError):
            call_with_retries(once, policy)
        refused.append(counted["n"] - 1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(refused) == 50 == budget.spent


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryBudget(capacity=-1)
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)
