"""fire() and checkpoint(): one transaction each, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.runs import StepSpec, create_run
from migrator.engine.steps import advance, checkpoint, checkpoint_step, fire, get_step
from migrator.errors import ConcurrencyError, IllegalTransitionError
from migrator.store.models import Event, Step

Factory = sessionmaker[Session]


def one_step(factory: Factory, key: str = "image:abc") -> int:
    run_id = create_run(factory, "r", [StepSpec(key, "image")], [])
    with factory() as s:
        return int(s.execute(select(Step.id).where(Step.run_id == run_id)).scalar_one())


def event_count(factory: Factory, step_id: int) -> int:
    with factory() as s:
        return int(s.execute(select(func.count()).where(Event.step_id == step_id)).scalar_one())


def test_fire_changes_state_version_and_appends_one_event(any_factory: Factory) -> None:
    step_id = one_step(any_factory)
    snap = fire(any_factory, step_id, "start", detail={"why": "test"}, lease_owner="w1")
    assert (snap.state, snap.version) == ("running", 2)
    row = get_step(any_factory, step_id)
    assert (row.state, row.version) == ("running", 2)
    with any_factory() as s:
        ev = s.execute(select(Event).where(Event.step_id == step_id)).scalar_one()
    assert (ev.from_state, ev.to_state, ev.trigger) == ("pending", "running", "start")
    assert ev.pid == os.getpid()
    assert "@" in ev.actor
    assert ev.detail == {"why": "test"}


def test_illegal_transition_names_step_state_trigger_and_changes_nothing(
    any_factory: Factory,
) -> None:
    step_id = one_step(any_factory, "volume:42")
    with pytest.raises(IllegalTransitionError) as err:
        fire(any_factory, step_id, "complete", last_error="should not be written")
    assert str(err.value) == (
        "step 'volume:42' is pending: trigger 'complete' is not allowed there "
        "(allowed: block, skip, start)"
    )
    row = get_step(any_factory, step_id)
    assert (row.state, row.version, row.last_error) == ("pending", 1, None)
    assert event_count(any_factory, step_id) == 0


def test_version_mismatch_raises_and_changes_nothing(any_factory: Factory) -> None:
    step_id = one_step(any_factory)
    fire(any_factory, step_id, "start")
    with pytest.raises(ConcurrencyError, match="at version 2, not 1"):
        fire(any_factory, step_id, "verify", expected_version=1)
    row = get_step(any_factory, step_id)
    assert (row.state, row.version) == ("running", 2)
    assert event_count(any_factory, step_id) == 1


def test_checkpoint_merges_data_and_is_audited(any_factory: Factory) -> None:
    step_id = one_step(any_factory)
    snap = fire(any_factory, step_id, "start")
    snap = checkpoint(any_factory, step_id, "upload", {"target_id": "t1"}, expected_version=2)
    snap = checkpoint(any_factory, step_id, "verify_bytes", {"bytes": 10}, lease_token=0)
    assert snap.checkpoint == {"target_id": "t1", "bytes": 10}
    assert (snap.phase, snap.version, snap.state) == ("verify_bytes", 4, "running")
    assert get_step(any_factory, step_id).checkpoint == {"target_id": "t1", "bytes": 10}
    with any_factory() as s:
        evs = s.execute(select(Event).where(Event.step_id == step_id).order_by(Event.id))
        triggers = [(e.trigger, e.from_state, e.to_state) for e in evs.scalars()]
    assert triggers[1:] == [("checkpoint", "running", "running")] * 2
    with pytest.raises(ConcurrencyError, match="token 0, not 7"):
        checkpoint(any_factory, step_id, "x", {"bytes": 11}, lease_token=7)
    assert get_step(any_factory, step_id).checkpoint["bytes"] == 10


def test_checkpoint_needs_a_running_step(factory: Factory) -> None:
    step_id = one_step(factory)
    with pytest.raises(IllegalTransitionError, match="is pending: only a running"):
        checkpoint(factory, step_id, "upload", {"x": 1})
    assert get_step(factory, step_id).version == 1


def test_fire_refuses_unknown_columns(factory: Factory) -> None:
    step_id = one_step(factory)
    with pytest.raises(TypeError, match="state"):
        fire(factory, step_id, "start", state="done")


def test_concurrent_writers_with_the_same_version_one_wins(any_factory: Factory) -> None:
    step_id = one_step(any_factory)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def contender() -> None:
        barrier.wait()
        try:
            fire(any_factory, step_id, "start", expected_version=1)
            outcomes.append("won")
        except (ConcurrencyError, IllegalTransitionError) as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=contender) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1
    assert get_step(any_factory, step_id).version == 2
    assert event_count(any_factory, step_id) == 1


def test_advance_from_a_stale_snapshot_raises_and_changes_nothing(any_factory: Factory) -> None:
    step_id = one_step(any_factory)
    stale = fire(any_factory, step_id, "start")
    fresh = checkpoint_step(any_factory, stale, "upload", {"target_id": "t1"})
    with pytest.raises(ConcurrencyError, match="at version 3, not 2"):
        advance(any_factory, stale, "verify")
    with pytest.raises(ConcurrencyError, match="at version 3, not 2"):
        checkpoint_step(any_factory, stale, "upload", {"target_id": "t2"})
    with pytest.raises(IllegalTransitionError, match="trigger 'complete' is not allowed"):
        advance(any_factory, fresh, "complete")
    assert get_step(any_factory, step_id) == fresh
    assert event_count(any_factory, step_id) == 2
    done = advance(any_factory, advance(any_factory, fresh, "verify"), "complete")
    assert get_step(any_factory, step_id) == done
    assert (done.state, done.version, done.checkpoint) == ("done", 5, {"target_id": "t1"})


def test_a_disposed_sqlite_engine_leaves_its_writes_in_the_database_file(db_url: str) -> None:
    """The threads' shared write connection is closed with its engine: SQLite then folds its
    WAL into the file, so a copy of the file alone (a backup, a move) holds every write."""
    import sqlite3
    from pathlib import Path

    from migrator.store.db import make_engine, session_factory

    path = Path(db_url.removeprefix("sqlite:///"))
    engine = make_engine(db_url)
    run_id = create_run(session_factory(engine), "r", [StepSpec("image:abc", "image")], [])
    engine.dispose()
    assert not path.with_name(path.name + "-wal").exists()
    # immutable=1: the file alone, whatever WAL might lie beside it.
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM steps WHERE run_id = ?",
                            (run_id,)).fetchone() == (1,)


def test_a_read_connection_takes_no_sqlite_write_lock(db_url: str, factory: Factory) -> None:
    """Reads (an id map lookup, the run's counts) take a snapshot: while one is open another
    process still writes at once, and a write transaction of this process still holds the
    write lock."""
    import sqlite3
    from pathlib import Path

    from migrator.engine.steps import read_connection, write_transaction

    run_id = create_run(factory, "r", [StepSpec("image:abc", "image")], [])
    path = Path(db_url.removeprefix("sqlite:///"))
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with read_connection(factory) as conn:
            assert conn.execute(select(func.count()).select_from(Step).where(
                Step.run_id == run_id)).scalar_one() == 1
            assert conn.in_transaction()
            other.execute("BEGIN IMMEDIATE")  # would raise "database is locked"
            other.execute("UPDATE steps SET name = 'written' WHERE run_id = ?", (run_id,))
            other.execute("COMMIT")
            # Still the snapshot the read began with.
            assert conn.execute(select(Step.name).where(Step.run_id == run_id)
                                ).scalar_one() is None
        with write_transaction(factory) as conn:
            conn.execute(select(Step.id)).all()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
