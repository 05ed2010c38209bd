"""The id map (handlers/idmap.py): a step's mapping written in its checkpoint's transaction
(fenced with it), references served from the run's committed mappings once read, earlier
runs' mappings always read again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.handlers import StepContext
from migrator.engine.leases import claim_steps
from migrator.engine.runs import StepSpec, create_run
from migrator.engine.steps import utcnow
from migrator.errors import ConcurrencyError
from migrator.handlers import idmap
from migrator.store.db import make_engine, session_factory
from migrator.store.models import IdMap

Factory = sessionmaker[Session]


@pytest.fixture(params=["db_url", pytest.param("pg_url", marks=pytest.mark.postgres)])
def factory(request: pytest.FixtureRequest) -> Iterator[Factory]:
    engine = make_engine(request.getfixturevalue(request.param))
    yield session_factory(engine)
    engine.dispose()


def rows(factory: Factory) -> dict[tuple[int, str, str], str]:
    with factory() as s:
        return {(r.run_id, r.kind, r.source_id): r.target_id
                for r in s.scalars(select(IdMap))}


def test_the_mapping_is_written_with_the_checkpoint(factory: Factory) -> None:
    run_id = create_run(factory, "r", [StepSpec("network:n1", "network")], [])
    (claim,) = claim_steps(factory, run_id, "w1", 1)
    ctx = StepContext(factory, claim.step, threading.Event(), "r")
    idmap.record_target(ctx, "n1", "t-1")
    assert rows(factory) == {}  # nothing yet: it goes with the checkpoint
    ctx.checkpoint("create", {"target_id": "t-1"}, last=True)
    assert rows(factory) == {(run_id, "network", "n1"): "t-1"}
    assert ctx.step.state == "verifying"


def test_a_step_taken_over_writes_no_mapping(factory: Factory) -> None:
    run_id = create_run(factory, "r", [StepSpec("network:n1", "network")], [])
    now = utcnow()
    (claim,) = claim_steps(factory, run_id, "w1", 1, lease_seconds=1, now=now)
    (taken,) = claim_steps(factory, run_id, "w2", 1, now=now + timedelta(seconds=5))
    assert taken.reclaimed
    ctx = StepContext(factory, claim.step, threading.Event(), "r")
    idmap.record_target(ctx, "n1", "late")
    with pytest.raises(ConcurrencyError):
        ctx.checkpoint("create", {"target_id": "late"})
    assert rows(factory) == {}


def test_references_of_the_run_are_read_once_earlier_runs_every_time(
        factory: Factory) -> None:
    earlier = create_run(factory, "wave-1", [StepSpec("project:p0", "project")], [])
    run_id = create_run(factory, "wave-2", [StepSpec("network:n1", "network")], [])
    with factory.begin() as s:
        s.add(IdMap(run_id=earlier, kind="project", source_id="p0", target_id="old",
                    created_at=utcnow()))
        s.add(IdMap(run_id=run_id, kind="network", source_id="n1", target_id="t-1",
                    created_at=utcnow()))
    assert idmap.target_of(factory, run_id, "network:n1") == "t-1"
    assert idmap.target_of(factory, run_id, "project:p0") == "old"
    with factory.begin() as s:
        # Behind the run's back: this run's committed mapping is final (a done step's), an
        # earlier run's may be replaced by a later run and is read again.
        s.execute(delete(IdMap).where(IdMap.run_id == run_id))
        s.execute(update(IdMap).where(IdMap.run_id == earlier).values(target_id="new"))
    assert idmap.target_of(factory, run_id, "network:n1") == "t-1"
    assert idmap.target_of(factory, run_id, "project:p0") == "new"
    # Another database (another engine) knows nothing of it.
    other = make_engine(str(factory.kw["bind"].url))
    try:
        with pytest.raises(Exception, match="no target id yet"):
            idmap.target_of(session_factory(other), run_id, "network:n1")
    finally:
        other.dispose()


def test_a_mapping_recorded_again_replaces_the_target(factory: Factory) -> None:
    """An image replaced by a new one (its first took refused bytes): the row follows."""
    run_id = create_run(factory, "r", [StepSpec("image:i1", "image")], [])
    (claim,) = claim_steps(factory, run_id, "w1", 1)
    ctx = StepContext(factory, claim.step, threading.Event(), "r")
    idmap.record_target(ctx, "i1", "first")
    ctx.checkpoint("create", {"target_id": "first"})
    idmap.record_target(ctx, "i1", "second")
    ctx.checkpoint("upload", {"target_id": "second"})
    assert rows(factory) == {(run_id, "image", "i1"): "second"}
