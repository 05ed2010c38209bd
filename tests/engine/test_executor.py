"""The executor in-process: dependencies, retries, blocking, resume, reconcile, skip."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.executor import Progress
from migrator.engine.handlers import (
    Handler,
    HandlerRegistry,
    Reconciliation,
    SkipStep,
    StepContext,
)
from migrator.engine.leases import ClaimLimits
from migrator.engine.runs import StepSpec, create_run
from migrator.engine.steps import StepSnapshot, checkpoint, fire
from migrator.errors import ConfigError
from migrator.operations.execute import execute_run
from migrator.store.db import make_engine
from tests.engine.helpers import assert_event_chains, run_status, states, step_events, steps_by_key
from tests.engine.kinds import FlakyHandler

Factory = sessionmaker[Session]

# a -> b -> c ; a -> d -> h ; e -> f ; g needs c and f ; i alone
KEYS = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
DEPS = [("b", "a"), ("c", "b"), ("d", "a"), ("h", "d"), ("f", "e"), ("g", "c"), ("g", "f")]


@pytest.fixture
def engine(db_url: str) -> Engine:
    return make_engine(db_url)


def flaky_run(factory: Factory, flaky: FlakyHandler) -> tuple[int, HandlerRegistry]:
    registry = HandlerRegistry()
    registry.register("flaky", flaky)
    return create_run(factory, "r", [StepSpec(k, "flaky") for k in KEYS], DEPS), registry


def triggers(engine: Engine, run_id: int, key: str) -> list[str]:
    step_id = steps_by_key(engine, run_id)[key]["id"]
    return [e["trigger"] for e in step_events(engine, run_id)[step_id]]


def test_a_failing_step_blocks_exactly_its_descendants_then_resume_finishes(
    db_url: str, factory: Factory, engine: Engine
) -> None:
    flaky = FlakyHandler()
    flaky.always = {"b"}
    run_id, registry = flaky_run(factory, flaky)

    result = execute_run(db_url, "r", workers=3, registry=registry, backoff_base=0.01)

    assert result.status == "failed"
    assert result.failed_steps == ["b"]
    got = states(engine, run_id)
    assert {k for k, s in got.items() if s == "blocked"} == {"c", "g"}
    assert {k for k, s in got.items() if s == "done"} == {"a", "d", "e", "f", "h", "i"}
    b = steps_by_key(engine, run_id)["b"]
    assert b["attempts"] == 3
    assert b["last_error"] == "RuntimeError: b cannot be created: quota exceeded"
    assert flaky.runs["b"] == 3
    assert triggers(engine, run_id, "b") == ["start", "fail", "retry"] * 2 + ["start", "fail"]
    events = step_events(engine, run_id)[b["id"]]
    assert [e["detail"]["backoff_s"] for e in events if e["trigger"] == "retry"] == [0.01, 0.02]
    assert run_status(engine, run_id) == "failed"

    flaky.always.clear()  # the operator fixed the quota
    result = execute_run(db_url, "r", resume=True, workers=3, registry=registry)

    assert result.status == "finished"
    assert set(states(engine, run_id).values()) == {"done"}
    assert flaky.runs["b"] == 4
    assert all(flaky.runs[k] == 1 for k in KEYS if k != "b")  # done steps never ran again
    assert triggers(engine, run_id, "c") == ["block", "unblock", "start", "checkpoint",
                                             "verify", "complete"]  # fmt: skip
    assert steps_by_key(engine, run_id)["b"]["attempts"] == 0  # a fresh budget on resume
    assert_event_chains(engine, run_id)


def test_a_cloud_that_cannot_be_reached_stops_the_run_without_failing_steps(
    db_url: str, factory: Factory, engine: Engine
) -> None:
    flaky = FlakyHandler()
    flaky.gone = {"b"}
    run_id, registry = flaky_run(factory, flaky)

    result = execute_run(db_url, "r", workers=1, registry=registry, backoff_base=0.01,
                         max_attempts=2)

    # b spent its attempts on a cloud that was not there: the run stopped, nothing failed.
    assert result.status == "interrupted"
    assert result.stopped_by is not None and result.stopped_by.stops_run
    assert str(result.stopped_by) == ("cloud target: create b: cannot connect: Connection "
                                      "refused")
    assert result.failed_steps == []
    got = states(engine, run_id)
    assert "failed" not in got.values() and "blocked" not in got.values()
    b = steps_by_key(engine, run_id)["b"]
    assert (b["state"], b["attempts"], flaky.runs["b"]) == ("pending", 0, 2)  # a fresh budget
    assert triggers(engine, run_id, "b") == ["start", "fail", "retry"] * 2
    assert run_status(engine, run_id) == "interrupted"

    flaky.gone.clear()  # the cloud is back
    result = execute_run(db_url, "r", resume=True, workers=3, registry=registry)
    assert result.status == "finished" and result.stopped_by is None
    assert set(states(engine, run_id).values()) == {"done"}
    assert_event_chains(engine, run_id)


def test_transient_failures_are_retried_with_backoff(
    db_url: str, factory: Factory, engine: Engine
) -> None:
    flaky = FlakyHandler()
    flaky.times = {"a": 2, "f": 1}
    run_id, registry = flaky_run(factory, flaky)
    result = execute_run(db_url, "r", registry=registry, backoff_base=0.01)
    assert result.status == "finished"
    assert result.completed == len(KEYS)
    rows = steps_by_key(engine, run_id)
    assert (rows["a"]["attempts"], rows["f"]["attempts"], rows["b"]["attempts"]) == (2, 1, 0)
    assert rows["a"]["checkpoint"] == {"created": "target-a"}
    assert_event_chains(engine, run_id)


def test_a_final_error_fails_the_step_at_once_and_resume_tries_it_again(
    db_url: str, factory: Factory, engine: Engine
) -> None:
    flaky = FlakyHandler()
    flaky.final = {"b"}
    run_id, registry = flaky_run(factory, flaky)

    result = execute_run(db_url, "r", workers=3, registry=registry, backoff_base=0.01)

    assert result.status == "failed"
    assert result.failed_steps == ["b"]
    assert flaky.runs["b"] == 1  # no retry spent on it
    assert triggers(engine, run_id, "b") == ["start", "fail"]
    b = steps_by_key(engine, run_id)["b"]
    fail = [e for e in step_events(engine, run_id)[b["id"]] if e["trigger"] == "fail"]
    assert fail[0]["detail"]["final"] is True
    assert {k for k, s in states(engine, run_id).items() if s == "blocked"} == {"c", "g"}

    flaky.final.clear()  # the operator detached the volume
    result = execute_run(db_url, "r", resume=True, workers=3, registry=registry)
    assert result.status == "finished"
    assert flaky.runs["b"] == 2
    assert_event_chains(engine, run_id)


def test_unknown_kind_is_refused_before_anything_runs(
    db_url: str, factory: Factory, engine: Engine
) -> None:
    run_id = create_run(factory, "r", [StepSpec("a", "flaky"), StepSpec("b", "nope")], [])
    registry = HandlerRegistry()
    registry.register("flaky", FlakyHandler())
    with pytest.raises(ConfigError, match="kind\\(s\\) nope with no handler registered"):
        execute_run(db_url, "r", registry=registry)
    assert set(states(engine, run_id).values()) == {"pending"}
    assert run_status(engine, run_id) == "created"


def test_an_executed_run_needs_resume(db_url: str, factory: Factory) -> None:
    flaky = FlakyHandler()
    _, registry = flaky_run(factory, flaky)
    assert execute_run(db_url, "r", registry=registry).status == "finished"
    with pytest.raises(ConfigError, match="already executed \\(status finished\\); use --resume"):
        execute_run(db_url, "r", registry=registry)
    assert execute_run(db_url, "r", registry=registry, resume=True).completed == 0


class Phased(Handler):
    """Three phases; reconcile answers what the step's spec says."""

    phases = ("create", "upload", "tag")

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.verified: list[str] = []
        self._lock = threading.Lock()

    def run_phase(
        self, ctx: StepContext, step: StepSnapshot, phase: str
    ) -> Mapping[str, Any] | None:
        with self._lock:
            self.calls.append((step.key, phase))
        if step.spec.get("skip"):
            raise SkipStep("identical image already on the target")
        return {phase: True}

    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        with self._lock:
            self.verified.append(step.key)

    def reconcile(self, ctx: StepContext, step: StepSnapshot) -> Reconciliation:
        return Reconciliation(step.spec["reconcile"])


def test_in_doubt_steps_are_reconciled_by_their_handler(
    db_url: str, factory: Factory, engine: Engine
) -> None:
    handler = Phased()
    registry = HandlerRegistry()
    registry.register("phased", handler)
    specs = [
        StepSpec("adopt", "phased", {"reconcile": "done"}),
        StepSpec("resume", "phased", {"reconcile": "resume"}),
        StepSpec("restart", "phased", {"reconcile": "restart"}),
        StepSpec("after", "phased", {"reconcile": "resume"}),
    ]
    run_id = create_run(factory, "r", specs, [("after", "adopt")])
    ids = {k: r["id"] for k, r in steps_by_key(engine, run_id).items()}
    # What a crash leaves behind: steps running, some phases checkpointed, the run "running".
    for key in ("adopt", "resume", "restart"):
        fire(factory, ids[key], "start")
        checkpoint(factory, ids[key], "create", {"create": True})
        checkpoint(factory, ids[key], "upload", {"upload": True})

    result = execute_run(db_url, "r", resume=True, registry=registry)

    assert result.status == "finished"
    calls = sorted(handler.calls)
    assert [c for c in calls if c[0] == "adopt"] == []  # adopted: verified, not redone
    assert [c for c in calls if c[0] == "resume"] == [("resume", "tag")]
    assert [c for c in calls if c[0] == "restart"] == [
        ("restart", "create"),
        ("restart", "tag"),
        ("restart", "upload"),
    ]
    assert sorted(handler.verified) == ["adopt", "after", "restart", "resume"]
    assert triggers(engine, run_id, "adopt")[-2:] == ["verify", "complete"]
    assert "requeue" in triggers(engine, run_id, "restart")
    assert_event_chains(engine, run_id)


def test_a_transfer_requeued_behind_the_claims_cursor_is_still_run(
    db_url: str, factory: Factory, engine: Engine
) -> None:
    """Transfers are claimed first, each claim looking after the last transfer found; a
    transfer taken over from a crash and requeued by its reconcile sits behind that cursor.
    The run must look again from the start, not end as failed with the step pending."""
    handler = Phased()
    registry = HandlerRegistry()
    registry.register("phased", handler)
    run_id = create_run(factory, "r", [StepSpec("copy", "phased", {"reconcile": "restart"})],
                        [])
    (step_id,) = steps_by_key(engine, run_id)["copy"]["id"],
    fire(factory, step_id, "start")  # what a crash leaves: the transfer running, no lease
    checkpoint(factory, step_id, "create", {"create": True})
    limits = ClaimLimits(transfer_kinds=frozenset({"phased"}), transfer_limit=2)

    result = execute_run(db_url, "r", resume=True, registry=registry, limits=limits,
                         workers=1)

    assert result.status == "finished", result
    fired = triggers(engine, run_id, "copy")
    assert fired[-2:] == ["verify", "complete"]
    assert "start" in fired[fired.index("requeue"):]  # claimed again after its requeue


def test_skipped_steps_satisfy_their_dependents_and_observer_hears_everything(
    db_url: str, factory: Factory, engine: Engine
) -> None:
    handler = Phased()
    registry = HandlerRegistry()
    registry.register("phased", handler)
    specs = [StepSpec("img", "phased", {"skip": True}), StepSpec("member", "phased")]
    run_id = create_run(factory, "r", specs, [("member", "img")])
    heard: list[Progress] = []

    result = execute_run(db_url, "r", registry=registry, observer=heard.append)

    assert result.status == "finished"
    assert states(engine, run_id) == {"img": "skipped", "member": "done"}
    assert [(p.event, p.step) for p in heard] == [
        ("run-started", None),
        ("step-started", "img"),
        ("step-skipped", "img"),
        ("step-started", "member"),
        ("step-done", "member"),
        ("run-finished", None),
    ]
    assert heard[-1].counts == {"pending": 0, "running": 0, "skipped": 1, "done": 1}
    assert heard[2].message == "identical image already on the target"
    assert_event_chains(engine, run_id, final_state=None)


def test_a_completion_whose_own_claim_found_nothing_wakes_no_other_thread(
    factory: Factory, engine: Engine
) -> None:
    """The claim made with a completion sees every step it made ready: when it found none,
    the waiting threads are left alone (they would all claim in vain); when it found one,
    claims under way look again; when no step is busy any more, every thread is woken to
    find out whether the run is over."""
    from migrator.engine.executor import Executor
    from migrator.engine.steps import get_step

    run_id = create_run(factory, "r", [StepSpec(k, "flaky") for k in ("a", "b", "c")], [])
    executor = Executor(factory, "r")
    ids = [row["id"] for row in steps_by_key(engine, run_id).values()]
    step = get_step(factory, ids[0])
    woken: list[int] = []

    def waiter(timeout: float) -> None:
        with executor._wake:
            ready.set()  # (the lock is given up only inside wait: no notify comes before)
            woken.append(int(executor._wake.wait(timeout)))

    executor._busy = 3
    ready = threading.Event()
    thread = threading.Thread(target=waiter, args=(1.0,))
    thread.start()
    ready.wait(5)
    executor._finished(step, found=False)
    assert executor._generation == 0 and executor._busy == 2
    executor._finished(step, found=True)
    assert executor._generation == 1 and executor._busy == 1
    thread.join()
    assert woken == [0]  # waited its whole timeout: neither completion woke it

    ready.clear()
    thread = threading.Thread(target=waiter, args=(30.0,))
    thread.start()
    ready.wait(5)
    executor._finished(step, found=False)  # the last busy step: everyone re-evaluates
    thread.join()
    assert executor._generation == 2 and executor._busy == 0 and woken == [0, 1]
