"""What keeps the tests independent of the machine's speed: deadlines that scale, and random
seeds that are fixed by default, printed, and overridable to replay a failure.

- :func:`scaled` stretches a wall-clock deadline by ``$MIGRATOR_TEST_TIME_SCALE`` (default 1):
  on a loaded or slow machine run the suite with ``MIGRATOR_TEST_TIME_SCALE=3``. Only bounds
  that guard against a hang scale; what a test asserts about time itself uses an injected
  clock instead (tests/transfer/test_limits.py).
- :func:`replay_seed` returns ``$<NAME>`` when set, else the test's fixed default, and prints
  it with the line that replays it (pytest shows it with the failure).
"""

from __future__ import annotations

import os

TIME_SCALE_ENV = "MIGRATOR_TEST_TIME_SCALE"


def time_scale() -> float:
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"${TIME_SCALE_ENV} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"${TIME_SCALE_ENV} must be positive, not {raw!r}")
    return value


def scaled(seconds: float) -> float:
    """A deadline of ``seconds`` on an idle machine, stretched by the time scale."""
    return seconds * time_scale()


def replay_seed(env: str, default: int) -> int:
    """The seed of a randomised test: ``$env`` or ``default``, printed for a replay."""
    raw = os.environ.get(env, "").strip()
    seed = int(raw) if raw else default
    print(f"seed {seed} (replay: {env}={seed})")
    return seed

