"""Changing a step: every trigger and every checkpoint is one database transaction.

The transaction reads the row (``FOR UPDATE`` on PostgreSQL; on SQLite ``BEGIN IMMEDIATE``
already holds the database's write lock), checks the caller's expected version, asks the
machine definition for the destination, writes the new state with ``version + 1`` and appends
one audit event. Either all of it is committed or none of it: a crash at any instant leaves a
consistent row and an event log without gaps, which is what resume relies on.

Invariant kept by this module: ``step.version == 1 + number of events of the step``.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, event, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine import machine, one_statement
from migrator.errors import (
    ConcurrencyError,
    IllegalTransitionError,
    MigratorError,
    NotFoundError,
)
from migrator.spec import Spec
from migrator.store.db import READS_ONLY
from migrator.store.models import Event, Step, StepDependency

STEPS = cast(Table, Step.__table__)
EVENTS = cast(Table, Event.__table__)

# Columns a trigger may change besides state/version/updated_at; anything else is a bug.
CHANGEABLE_COLUMNS = frozenset(
    {
        "phase",
        "checkpoint",
        "attempts",
        "last_error",
        "not_before",
        "lease_owner",
        "lease_token",
        "lease_expires_at",
    }
)
# Big id lists are read in chunks: SQLite caps the number of bound parameters per statement.
_CHUNK = 500

# The hot-path statements are built once: SQLAlchemy then reuses their cache keys and compiled
# forms, which is most of the Python time of a transition.
_SELECT_LOCKED = select(STEPS).where(STEPS.c.id == bindparam("sid")).with_for_update()
_SELECT = select(STEPS).where(STEPS.c.id == bindparam("sid"))
# Without .values(): the SET clause is whatever columns the parameters name.
_UPDATE = update(STEPS).where(
    STEPS.c.id == bindparam("b_id"), STEPS.c.version == bindparam("b_version")
)
_INSERT_EVENT = insert(EVENTS)
DEPS = cast(Table, StepDependency.__table__)
_DEPENDENTS = select(DEPS.c.step_id).where(DEPS.c.depends_on_id == bindparam("sid"))
_DEPENDENTS_DONE = update(STEPS).where(STEPS.c.id.in_(_DEPENDENTS)).values(
    waiting=STEPS.c.waiting - 1)
_DEPENDENTS_UNDONE = update(STEPS).where(STEPS.c.id.in_(_DEPENDENTS)).values(
    waiting=STEPS.c.waiting + 1)


@dataclass(frozen=True)
class StepSnapshot:
    """A step row as committed by the transaction that returned it."""

    id: int
    run_id: int
    key: str
    kind: str
    state: str
    phase: str | None
    checkpoint: dict[str, Any]
    attempts: int
    version: int
    last_error: str | None
    not_before: datetime | None
    spec: Spec
    lease_token: int
    source_id: str | None = None
    tenant: str | None = None
    name: str | None = None
    # The bytes the plan says it copies (None: not a copy, or not known).
    planned_bytes: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StepSnapshot:
        return cls(
            id=row["id"],
            run_id=row["run_id"],
            key=row["key"],
            kind=row["kind"],
            state=row["state"],
            phase=row["phase"],
            checkpoint=dict(row["checkpoint"] or {}),
            attempts=row["attempts"],
            version=row["version"],
            last_error=row["last_error"],
            not_before=as_utc(row["not_before"]),
            spec=cast(Spec, dict(row["spec"] or {})),
            lease_token=row["lease_token"],
            source_id=row["source_id"],
            tenant=row["tenant"],
            name=row["name"],
            planned_bytes=row.get("planned_bytes"),
        )


_SNAPSHOT_FIELDS = tuple(f.name for f in fields(StepSnapshot))


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; every timestamp we write is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@cache
def actor() -> str:
    """``user@host`` for audit events."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


_WRITERS_GUARD = threading.Lock()


class _SqliteWriter:
    """The write side of one SQLite engine in this process: the lock its threads queue on
    and the one connection their write transactions run on, in turn. Writes are serialised
    anyway (SQLite has one writer), and keeping that connection out of the pool saves every
    transaction its checkout, its return and the rollback that resets it."""

    def __init__(self, engine: Engine) -> None:
        self.lock = threading.Lock()
        self._engine = engine
        self._conn: Connection | None = None

    def connection(self) -> Connection:
        """(Under ``lock``.) A connection that was invalidated reconnects on its next use."""
        if self._conn is None or self._conn.closed:
            self._conn = self._engine.connect()
        return self._conn

    def close(self, *_args: Any) -> None:
        # Called once the engine's pool is disposed: a connection returned to that pool now
        # would stay open in it, and SQLite checkpoints its WAL into the database file only
        # when the last connection closes. Detached, closing it closes the file.
        with self.lock:
            if self._conn is not None:
                if not self._conn.closed:
                    self._conn.detach()
                self._conn.close()
                self._conn = None


def _sqlite_writer(engine: Engine) -> _SqliteWriter:
    writer: _SqliteWriter | None = getattr(engine, "_migrator_writer", None)
    if writer is None:
        with _WRITERS_GUARD:
            writer = getattr(engine, "_migrator_writer", None)
            if writer is None:
                writer = _SqliteWriter(engine)
                # engine.dispose() closes it too (tests, and an operation's end).
                event.listen(engine, "engine_disposed", writer.close)
                engine._migrator_writer = writer  # type: ignore[attr-defined]
    return writer


@contextmanager
def write_transaction(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """One write transaction on a connection of the factory's engine (Core, no ORM unit of
    work: the engine's ``begin`` listener still makes it ``BEGIN IMMEDIATE`` on SQLite).

    On SQLite the threads of one process also queue on an in-process lock first: SQLite's busy
    handler polls with sleeps of up to 100 ms, so threads contending for ``BEGIN IMMEDIATE``
    would waste most of their time asleep. Other processes still serialise on SQLite's lock.
    The threads' write transactions then share one connection, one after the other.
    """
    engine: Engine = factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    writer = _sqlite_writer(engine)
    with writer.lock:
        conn = writer.connection()
        with conn.begin():
            yield conn


def read_connection(factory: sessionmaker[Session]) -> Connection:
    """A connection for reads (use as a context manager); no write lock is taken (on SQLite
    its transactions begin DEFERRED: a snapshot of the last commit)."""
    conn: Connection = factory.kw["bind"].connect()
    return conn.execution_options(**{READS_ONLY: True})


def get_step(factory: sessionmaker[Session], step_id: int) -> StepSnapshot:
    with read_connection(factory) as conn:
        row = conn.execute(_SELECT, {"sid": step_id}).mappings().first()
    if row is None:
        raise NotFoundError(f"no step with id {step_id}")
    return StepSnapshot.from_row(row)


def fire(
    factory: sessionmaker[Session],
    step_id: int,
    trigger: str,
    *,
    expected_version: int | None = None,
    detail: Mapping[str, Any] | None = None,
    **changes: Any,
) -> StepSnapshot:
    """Fire ``trigger`` on one step in one transaction and return the committed row.

    ``changes`` sets other columns in the same transaction (``last_error``, ``attempts``,
    ``not_before``, ``phase``, ``checkpoint``, lease columns). Raises
    :class:`IllegalTransitionError` or :class:`ConcurrencyError` with nothing changed.
    """
    _check_changes(changes)
    with write_transaction(factory) as conn:
        row = _locked_row(conn, step_id)
        return apply_trigger(conn, row, trigger, expected_version, detail, changes)


def fire_many(
    factory: sessionmaker[Session],
    step_ids: Iterable[int],
    trigger: str,
    *,
    detail: Mapping[str, Any] | None = None,
    **changes: Any,
) -> list[StepSnapshot]:
    """Fire ``trigger`` on several steps in one transaction (all or none)."""
    _check_changes(changes)
    ids = list(step_ids)
    result: list[StepSnapshot] = []
    with write_transaction(factory) as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = conn.execute(
                select(STEPS).where(STEPS.c.id.in_(chunk)).order_by(STEPS.c.id).with_for_update()
            ).mappings()
            found = {row["id"]: row for row in rows}
            missing = [i for i in chunk if i not in found]
            if missing:
                raise NotFoundError(f"no step with id {missing[0]}")
            for step_id in chunk:
                result.append(apply_trigger(conn, found[step_id], trigger, None, detail, changes))
    return result


def checkpoint(
    factory: sessionmaker[Session],
    step_id: int,
    phase: str,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
    lease_token: int | None = None,
) -> StepSnapshot:
    """Record that ``phase`` is complete: merge ``data`` into the step's checkpoint JSON.

    Allowed while the step is running or verifying. The state does not change, but the version
    does and an event with trigger ``checkpoint`` (from_state == to_state) is appended, so the
    audit shows when each phase was reached and the version/event invariant holds.
    """
    with write_transaction(factory) as conn:
        row = _locked_row(conn, step_id)
        state = row["state"]
        if state not in machine.IN_DOUBT_STATES:
            raise _not_checkpointable(row["key"], state, phase)
        _check_version(row, expected_version)
        if lease_token is not None and row["lease_token"] != lease_token:
            raise ConcurrencyError(
                f"step {row['key']!r} is leased with token {row['lease_token']}, "
                f"not {lease_token}: another worker owns it now"
            )
        merged = {**(row["checkpoint"] or {}), **data}
        return _write(
            conn,
            row,
            state,
            machine.CHECKPOINT_TRIGGER,
            {"phase": phase, "data": dict(data)},
            {"phase": phase, "checkpoint": merged},
        )


def advance(
    factory: sessionmaker[Session],
    step: StepSnapshot,
    trigger: str,
    *,
    detail: Mapping[str, Any] | None = None,
    **changes: Any,
) -> StepSnapshot:
    """:func:`fire` for a caller holding the step's latest snapshot (the executor's workers).

    Optimistic instead of locking: the UPDATE is guarded by the snapshot's version, which
    every change bumps, so it succeeds only if the row is still exactly the snapshot (same
    state too). That saves the row read; the guarantees are those of ``fire`` with
    ``expected_version=step.version``, and so are the errors.
    """
    if one_statement.is_postgresql(factory):
        with one_statement.autocommit(factory) as conn:
            return advance_in_one(conn, step, trigger, detail, changes)
    with write_transaction(factory) as conn:
        return advance_in(conn, step, trigger, detail=detail, **changes)


def advance_in_one(conn: Connection, step: StepSnapshot, trigger: str,
                   detail: Mapping[str, Any] | None, changes: Mapping[str, Any]
                   ) -> StepSnapshot:
    """:func:`advance` as one statement (PostgreSQL, engine/one_statement.py) on an
    autocommit connection: the row's guarded UPDATE, its dependents' counts and its event."""
    _check_changes(changes)
    dest = machine.destination(step.state, trigger)
    if dest is None:
        raise _illegal(step.key, step.state, trigger)
    satisfied = machine.SATISFIED_STATES
    waiting = one_statement.NO_CHANGE
    if (dest in satisfied) != (step.state in satisfied):
        waiting = one_statement.ONE_LESS if dest in satisfied else one_statement.ONE_MORE
    now = utcnow()
    row = _as_row(step)
    if not one_statement.transition(conn, row, dest, trigger, detail, changes, waiting, now,
                                    actor()):
        raise _version_moved(conn, row)
    return StepSnapshot.from_row(
        {**row, **changes, "state": dest, "version": step.version + 1, "updated_at": now})


def advance_in(
    conn: Connection,
    step: StepSnapshot,
    trigger: str,
    *,
    detail: Mapping[str, Any] | None = None,
    **changes: Any,
) -> StepSnapshot:
    """:func:`advance` inside a write transaction the caller holds (with other writes)."""
    _check_changes(changes)
    dest = machine.destination(step.state, trigger)
    if dest is None:
        raise _illegal(step.key, step.state, trigger)
    return _write(conn, _as_row(step), dest, trigger, detail, changes)


def checkpoint_step(
    factory: sessionmaker[Session], step: StepSnapshot, phase: str, data: Mapping[str, Any],
    *, then: str | None = None, writes: Iterable[Callable[[Connection], None]] = (),
) -> StepSnapshot:
    """:func:`checkpoint` for a caller holding the step's latest snapshot (optimistic).

    ``then``: a trigger fired in the same transaction right after the checkpoint (its own
    event): the executor's ``verify`` after a step's last phase, one commit instead of two.
    ``writes``: run in the same transaction once the step's row is updated (so only while the
    snapshot is current: fenced), e.g. the id map row of the step's resource.
    """
    if step.state not in machine.IN_DOUBT_STATES:
        raise _not_checkpointable(step.key, step.state, phase)
    dest = None
    if then is not None:
        dest = machine.destination(step.state, then)
        if dest is None:
            raise _illegal(step.key, step.state, then)
    merged = {**step.checkpoint, **data}
    changes: dict[str, Any] = {"phase": phase, "checkpoint": merged}
    detail = {"phase": phase, "data": dict(data)}
    satisfied = machine.SATISFIED_STATES
    if not writes and dest is not None and then is not None and dest not in satisfied \
            and one_statement.is_postgresql(factory):
        # Nothing of the handler's to write with it: one statement (engine/one_statement.py).
        now = utcnow()
        row = _as_row(step)
        with one_statement.autocommit(factory) as conn:
            if not one_statement.checkpoint_then(conn, row, phase, merged, detail, dest, then,
                                                 now, actor()):
                raise _version_moved(conn, row)
        return StepSnapshot.from_row({**row, **changes, "state": dest,
                                      "version": step.version + 2, "updated_at": now})
    with write_transaction(factory) as conn:
        if dest is not None and then is not None and dest not in satisfied \
                and step.state not in satisfied:
            # The checkpoint and the trigger after it: one UPDATE (two versions on) and their
            # two events in one INSERT, as two _write calls would leave them.
            row = _as_row(step)
            now = utcnow()
            values = {**changes, "state": dest, "version": step.version + 2, "updated_at": now}
            _update(conn, row, values)
            for write in writes:
                write(conn)
            conn.execute(_INSERT_EVENT, [
                _event(row, step.state, machine.CHECKPOINT_TRIGGER, detail, now),
                {**_event(row, dest, then, None, now), "from_state": step.state}])
            return StepSnapshot.from_row({**row, **values})
        snap = _write(conn, _as_row(step), step.state, machine.CHECKPOINT_TRIGGER, detail,
                      changes)
        for write in writes:
            write(conn)
        if then is not None and dest is not None:
            snap = _write(conn, _as_row(snap), dest, then, None, {})
        return snap


def _as_row(step: StepSnapshot) -> dict[str, Any]:
    return {name: getattr(step, name) for name in _SNAPSHOT_FIELDS}


def _illegal(key: str, state: str, trigger: str) -> IllegalTransitionError:
    allowed = ", ".join(machine.triggers_from(state)) or "none"
    return IllegalTransitionError(
        f"step {key!r} is {state}: trigger {trigger!r} is not allowed there (allowed: {allowed})"
    )


def _not_checkpointable(key: str, state: str, phase: str) -> IllegalTransitionError:
    return IllegalTransitionError(
        f"step {key!r} is {state}: only a running or verifying step can record a checkpoint "
        f"(phase {phase!r})"
    )


def apply_trigger(
    conn: Connection,
    row: RowMapping,
    trigger: str,
    expected_version: int | None,
    detail: Mapping[str, Any] | None,
    changes: Mapping[str, Any],
) -> StepSnapshot:
    """The body of :func:`fire` for a row already read (and locked) in ``conn``'s
    transaction."""
    state = row["state"]
    dest = machine.destination(state, trigger)
    if dest is None:
        raise _illegal(row["key"], state, trigger)
    _check_version(row, expected_version)
    return _write(conn, row, dest, trigger, detail, changes)


def _write(
    conn: Connection,
    row: Mapping[Any, Any],
    dest: str,
    trigger: str,
    detail: Mapping[str, Any] | None,
    changes: Mapping[str, Any],
) -> StepSnapshot:
    now = utcnow()
    version = row["version"] + 1
    values = {**changes, "state": dest, "version": version, "updated_at": now}
    _update(conn, row, values)
    satisfied = machine.SATISFIED_STATES
    if (dest in satisfied) != (row["state"] in satisfied):
        # The step's dependents wait for one dependency less (or, leaving done, one more).
        conn.execute(_DEPENDENTS_DONE if dest in satisfied else _DEPENDENTS_UNDONE,
                     {"sid": row["id"]})
    conn.execute(_INSERT_EVENT, _event(row, dest, trigger, detail, now))
    return StepSnapshot.from_row({**row, **values})


def _update(conn: Connection, row: Mapping[Any, Any], values: Mapping[str, Any]) -> None:
    """The row's UPDATE, guarded by the version the caller read (its fencing)."""
    # The version condition is redundant under the row lock, and cheap insurance without it.
    result = conn.execute(_UPDATE, {**values, "b_id": row["id"], "b_version": row["version"]})
    if result.rowcount != 1:
        raise _version_moved(conn, row)


def _version_moved(conn: Connection, row: Mapping[Any, Any]) -> MigratorError:
    """The error for a guarded write that changed nothing: the step's version moved on."""
    current = conn.execute(_SELECT, {"sid": row["id"]}).mappings().first()
    if current is None:
        return NotFoundError(f"no step with id {row['id']}")
    return ConcurrencyError(
        f"step {row['key']!r} is at version {current['version']}, not {row['version']}: "
        "someone else changed it"
    )


def _event(row: Mapping[Any, Any], dest: str, trigger: str,
           detail: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    return {
        "run_id": row["run_id"],
        "step_id": row["id"],
        "from_state": row["state"],
        "to_state": dest,
        "trigger": trigger,
        "actor": actor(),
        "pid": os.getpid(),
        "at": now,
        "detail": dict(detail or {}),
    }


def _locked_row(conn: Connection, step_id: int) -> RowMapping:
    row = conn.execute(_SELECT_LOCKED, {"sid": step_id}).mappings().first()
    if row is None:
        raise NotFoundError(f"no step with id {step_id}")
    return row


def _check_version(row: RowMapping, expected_version: int | None) -> None:
    if expected_version is not None and row["version"] != expected_version:
        raise ConcurrencyError(
            f"step {row['key']!r} is at version {row['version']}, not {expected_version}: "
            "someone else changed it"
        )


def _check_changes(changes: Mapping[str, Any]) -> None:
    unknown = set(changes) - CHANGEABLE_COLUMNS
    if unknown:
        raise TypeError(f"fire() cannot set column(s): {', '.join(sorted(unknown))}")
