"""Injectable faults, deterministic under a seed.

A rule matches requests by ``"METHOD /path"`` (shell-style pattern, e.g.
``"GET /image/v2/images/*/file"``) and carries one or more effects: an error status (with
Retry-After for 503), added latency, a per-stream bandwidth limit, a connection dropped after N
body bytes, or a corrupted byte in a response body. ``rate`` is the chance that a matching
request is hit and ``times`` caps how often the rule fires. Each rule draws from its own
random generator seeded from the cloud's fault seed and the rule's position, so the same
requests in the same order meet the same faults.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass, field
from typing import Any

ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 504)
RULE_KEYS = {
    "match",
    "rate",
    "times",
    "status",
    "retry_after",
    "latency_ms",
    "bandwidth",
    "drop_after_bytes",
    "corrupt_offset",
}


class FaultSpecError(ValueError):
    """A fault rule is malformed; the message names the key, ``index`` the rule."""

    def __init__(self, message: str, index: int = -1) -> None:
        super().__init__(message)
        self.index = index


def _bad(index: int, message: str) -> FaultSpecError:
    return FaultSpecError(message, index)


@dataclass
class FaultRule:
    match: str
    rate: float = 1.0
    times: int | None = None
    status: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    bandwidth: int | None = None
    drop_after_bytes: int | None = None
    corrupt_offset: int | None = None
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_dict(cls, raw: Any, seed: int, index: int) -> FaultRule:
        if not isinstance(raw, dict):
            raise _bad(index, f"fault #{index + 1} must be a mapping")
        unknown = set(raw) - RULE_KEYS
        if unknown:
            raise _bad(index, f"fault #{index + 1}: unknown key {sorted(unknown)[0]!r}")
        match = raw.get("match")
        if not isinstance(match, str) or " " not in match:
            raise _bad(index,
                f"fault #{index + 1}: 'match' must be 'METHOD /path-pattern', got {match!r}"
            )
        rule = cls(match=match)
        for key in ("times", "status", "retry_after", "latency_ms", "bandwidth",
                    "drop_after_bytes", "corrupt_offset"):
            if key in raw and raw[key] is not None:
                value = raw[key]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise _bad(index,
                        f"fault #{index + 1}: {key!r} must be a non-negative integer"
                    )
                setattr(rule, key, value)
        if "rate" in raw:
            rate = raw["rate"]
            if not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise _bad(index, f"fault #{index + 1}: 'rate' must be between 0 and 1")
            rule.rate = float(rate)
        if rule.status is not None and rule.status not in ERROR_STATUSES:
            raise _bad(index,
                f"fault #{index + 1}: 'status' must be one of {list(ERROR_STATUSES)}"
            )
        rule.rng = random.Random(f"{seed}:{index}:{match}")
        return rule

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"match": self.match, "rate": self.rate, "fired": self.fired}
        for key in ("times", "status", "retry_after", "latency_ms", "bandwidth",
                    "drop_after_bytes", "corrupt_offset"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    def matches(self, method: str, path: str) -> bool:
        pat_method, _, pat_path = self.match.partition(" ")
        if pat_method not in ("*", method):
            return False
        return fnmatch.fnmatchcase(path, pat_path)

    def draw(self) -> bool:
        """Decide whether this matching request is hit (and count it)."""
        if self.times is not None and self.fired >= self.times:
            return False
        if self.rate < 1.0 and self.rng.random() >= self.rate:
            return False
        self.fired += 1
        return True


@dataclass
class Effects:
    """What the matched rules do to one request."""

    status: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    bandwidth: int | None = None
    drop_after_bytes: int | None = None
    corrupt_offset: int | None = None
    rules: list[str] = field(default_factory=list)


class FaultBook:
    """The rules of one cloud."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rules: list[FaultRule] = []

    def load(self, raw_rules: list[Any]) -> None:
        self.rules = [FaultRule.from_dict(r, self.seed, i) for i, r in enumerate(raw_rules)]

    def add(self, raw: Any) -> FaultRule:
        rule = FaultRule.from_dict(raw, self.seed, len(self.rules))
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules = []

    def effects_for(self, method: str, path: str) -> Effects | None:
        effects: Effects | None = None
        for rule in self.rules:
            if not rule.matches(method, path) or not rule.draw():
                continue
            effects = effects or Effects()
            effects.rules.append(rule.match)
            if rule.status is not None and effects.status is None:
                effects.status = rule.status
                effects.retry_after = rule.retry_after
            effects.latency_ms += rule.latency_ms
            if rule.bandwidth:
                effects.bandwidth = min(effects.bandwidth or rule.bandwidth, rule.bandwidth)
            if rule.drop_after_bytes is not None:
                effects.drop_after_bytes = rule.drop_after_bytes
            if rule.corrupt_offset is not None:
                effects.corrupt_offset = rule.corrupt_offset
        return effects
