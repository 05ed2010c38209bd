"""Round trips to PostgreSQL per claim and per transition, counted in libpq's own protocol
trace (every exchange ends with the server's ReadyForQuery), so that BEGIN, COMMIT, pings
and row reads count as much as the statements SQLAlchemy shows: the count cannot creep back
unnoticed."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import IO, Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.leases import ClaimLimits, claim_steps, complete_and_claim
from migrator.engine.runs import StepSpec, create_run
from migrator.engine.steps import advance, checkpoint_step
from migrator.errors import ConcurrencyError
from migrator.store.db import make_engine, session_factory
from migrator.store.models import Event, Step

pytestmark = pytest.mark.postgres


class Trace:
    """libpq's trace of every connection the engine opens, in one file."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file

    def attach(self, dbapi_conn: Any, _record: Any) -> None:
        from psycopg import pq

        dbapi_conn.pgconn.trace(self.file.fileno())
        dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def lines(self) -> list[str]:
        self.file.flush()
        self.file.seek(0)
        return self.file.read().splitlines()

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        """The frontend messages of what runs inside, one entry per round trip; a ping of
        a connection left idle in the pool (engine/db.py) is left out."""
        before = len(self.lines())
        trips: list[str] = []
        yield trips
        request: list[str] = []
        for line in self.lines()[before:]:
            if line[:2] not in ("F\t", "B\t"):
                continue  # the further lines of a statement's text
            direction, _, message = line.split("\t", 2)
            if direction == "F":
                request.append(message)
            elif message.startswith("ReadyForQuery"):
                if request != ['Query\t "SELECT 1"']:
                    trips.append(" | ".join(request))
                request = []


@pytest.fixture
def traced(pg_url: str) -> Iterator[tuple[sessionmaker[Session], Trace]]:
    engine = make_engine(pg_url)
    with tempfile.TemporaryFile(mode="w+") as file:
        trace = Trace(file)
        event.listen(engine, "connect", trace.attach)
        yield session_factory(engine), trace
        engine.dispose()


def test_a_claim_is_one_round_trip_and_a_completion_with_the_next_claim_one(
    traced: tuple[sessionmaker[Session], Trace],
) -> None:
    factory, trace = traced
    run_id = create_run(factory, "r", [StepSpec(f"s{i:03d}", "x") for i in range(50)]
                        + [StepSpec("after", "x")], [("after", "s000")])
    claim_steps(factory, run_id, "warm-up", 1, reclaim=False)  # the pool's first connect

    with trace.counting() as trips:
        (first,) = claim_steps(factory, run_id, "w1", 1, reclaim=False)
    assert len(trips) == 1, trips
    assert first.step.key == "s001" and first.step.state == "running"
    assert first.step.lease_token == 1

    with trace.counting() as trips:
        several = claim_steps(factory, run_id, "w1", 3, reclaim=False)
    assert len(trips) == 1, trips
    assert [c.step.key for c in several] == ["s002", "s003", "s004"]

    with trace.counting() as trips:
        verified = advance(factory, first.step, "verify")
    assert len(trips) == 1, trips

    with trace.counting() as trips:
        done, (following,) = complete_and_claim(factory, verified, "w1", 1, reclaim=False)
    assert len(trips) == 1, trips
    assert done.state == "done" and following.step.key == "s005"
    assert done.version == verified.version + 1

    # What one statement wrote is what the transactions of several wrote: the version
    # moved once per trigger, one event each, the lease token one higher.
    with factory() as s:
        row = s.execute(select(Step.version, Step.lease_owner, Step.lease_token, Step.waiting)
                        .where(Step.id == done.id)).one()
        triggers = [t for (t,) in s.execute(select(Event.trigger).where(
            Event.step_id == done.id).order_by(Event.id))]
    assert triggers == ["start", "verify", "complete"]
    assert (row.version, row.lease_owner, row.lease_token) == (4, None, 1)


def test_completing_a_step_makes_its_dependent_claimable_in_the_same_call(
    traced: tuple[sessionmaker[Session], Trace],
) -> None:
    factory, trace = traced
    run_id = create_run(factory, "r", [StepSpec("a", "x"), StepSpec("b", "x")], [("b", "a")])
    (a,) = claim_steps(factory, run_id, "w1", 2, reclaim=False)  # b waits for a
    verified = advance(factory, a.step, "verify")
    with trace.counting() as trips:
        done, (b,) = complete_and_claim(factory, verified, "w1", 1, reclaim=False)
    assert done.state == "done" and b.step.key == "b" and b.step.state == "running"
    # The completion's statement could not see b ready: a second one claimed it.
    assert len(trips) == 2, trips
    with factory() as s:
        waiting = s.execute(select(Step.waiting).where(Step.id == b.step.id)).scalar_one()
    assert waiting == 0


def test_a_fenced_completion_claims_nothing(
    traced: tuple[sessionmaker[Session], Trace],
) -> None:
    factory, _ = traced
    run_id = create_run(factory, "r", [StepSpec("a", "x"), StepSpec("b", "x")], [])
    (a,) = claim_steps(factory, run_id, "w1", 1, reclaim=False)
    verified = advance(factory, a.step, "verify")
    # Taken over meanwhile (the version moved on): this worker's completion is refused.
    (taken,) = claim_steps(factory, run_id, "w2", 1, reclaim=True,
                           now=verified_expiry(factory, a.step.id))
    assert taken.reclaimed and taken.step.key == "a"
    with pytest.raises(ConcurrencyError):
        complete_and_claim(factory, verified, "w1", 1, reclaim=False)
    with factory() as s:
        states = dict(s.execute(select(Step.key, Step.state).where(Step.run_id == run_id)).all())
        triggers = [t for (t,) in s.execute(select(Event.trigger).where(
            Event.step_id == a.step.id).order_by(Event.id))]
    assert states == {"a": "verifying", "b": "pending"}
    assert triggers == ["start", "verify", "reclaim"]


def verified_expiry(factory: sessionmaker[Session], step_id: int) -> datetime:
    """An instant after the step's lease ends."""
    with factory() as s:
        expires = s.execute(select(Step.lease_expires_at).where(Step.id == step_id)
                            ).scalar_one()
    return expires + timedelta(seconds=1)


def test_claims_with_a_transfer_limit_or_a_look_for_expired_leases_take_a_transaction(
    traced: tuple[sessionmaker[Session], Trace],
) -> None:
    factory, trace = traced
    run_id = create_run(factory, "r", [StepSpec(f"s{i}", "x") for i in range(5)], [])
    claim_steps(factory, run_id, "warm-up", 1, reclaim=False)
    with trace.counting() as trips:
        claims = claim_steps(factory, run_id, "w1", 1, reclaim=True)
    assert len(claims) == 1
    # BEGIN, the expired leases, the ready steps, the UPDATE, the event, COMMIT.
    assert len(trips) <= 6, trips
    with trace.counting() as trips:
        claims = claim_steps(factory, run_id, "w1", 1, reclaim=False,
                             limits=ClaimLimits(frozenset({"image"}), 2))
    assert len(claims) == 1 and len(trips) <= 6, trips


def test_a_last_checkpoint_with_its_verify_is_one_round_trip_and_stays_fenced(
    traced: tuple[sessionmaker[Session], Trace],
) -> None:
    factory, trace = traced
    run_id = create_run(factory, "r", [StepSpec("a", "x"), StepSpec("b", "x")], [])
    (a,) = claim_steps(factory, run_id, "w1", 1, reclaim=False)
    with trace.counting() as trips:
        verified = checkpoint_step(factory, a.step, "apply", {"made": "t-1"}, then="verify")
    assert len(trips) == 1, trips
    assert (verified.state, verified.version, verified.checkpoint) == \
        ("verifying", a.step.version + 2, {"made": "t-1"})
    with factory() as s:
        events = s.execute(select(Event.trigger, Event.from_state, Event.to_state).where(
            Event.step_id == a.step.id).order_by(Event.id)).all()
    assert [tuple(e) for e in events] == [("start", "pending", "running"),
                                          ("checkpoint", "running", "running"),
                                          ("verify", "running", "verifying")]
    # The snapshot it was given is stale now: the same write is refused, nothing written.
    with pytest.raises(ConcurrencyError):
        checkpoint_step(factory, a.step, "apply", {"made": "t-2"}, then="verify")
    with factory() as s:
        assert s.scalar(select(Step.version).where(Step.id == a.step.id)) == verified.version
