"""The rehearsal's copy of a plan (operations/rehearse.py ``rehearsal_plan``): server
cutovers, which stop their source servers, and what depends on them are left out; the rest
is renamed into the rehearsal namespace. The end-to-end rehearsal is in
tests/test_rehearse_e2e.py and tests/test_rollback_servers_e2e.py."""

from __future__ import annotations

from migrator.operations.rehearse import not_rehearsed, rehearsal_plan
from migrator.plan.model import Plan, PlanStep
from migrator.spec import Spec


def step(key: str, *after: str, name: str | None = None) -> PlanStep:
    kind, _, source = key.partition(":")
    return PlanStep(key, kind, "physics", source, name or source, 1, list(after),
                    Spec(attrs={"name": name or source}))


def test_servers_and_what_depends_on_them_are_not_rehearsed() -> None:
    steps = [step("project:p"), step("network:n", "project:p"),
             step("server:s", "project:p", "network:n"),
             step("volume:late", "server:s"), step("image:i", "project:p")]
    plan = Plan("night", "now", {}, {}, {}, {}, {}, steps)
    plan.content_hash = "h"
    assert not_rehearsed(plan) == ["server:s", "volume:late"]
    copy = rehearsal_plan(plan, "-r")
    assert [s.key for s in copy.steps] == ["project:p", "network:n", "image:i"]
    assert [s.name for s in copy.steps] == ["p-r", "n-r", "i-r"]
    assert copy.content_hash != plan.content_hash
    # Without servers nothing is left out.
    plain = Plan("day", "now", {}, {}, {}, {}, {}, steps[:2])
    assert not_rehearsed(plain) == []
