"""The id map: which target resource each source resource became, per run.

A handler records the target id of its step (``record_target``) right after it created or
adopted the resource: the row is written in the transaction of the step's next checkpoint,
which is fenced (nothing is written once another worker took the step over), so recording
costs no transaction of its own. A dependent step resolves its references (``spec.refs``:
attribute -> step key ``"<kind>:<source_id>"``) with ``target_of``. A key not mapped in the
run itself is looked up in earlier runs (a wave planned and executed on its own refers to the
projects an earlier wave migrated).

What the run already knows is not read again: ``target_of`` keeps, per database engine and
run, the mappings of this run it has read. A reference is resolved only once the step it
names is done (it is a dependency), and a done step's mapping does not change within the run,
so with any number of workers the cache holds only committed, final rows; a mapping of an
earlier run (which a later run may replace) is never kept.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.handlers import StepContext
from migrator.engine.leases import fenced_transaction
from migrator.engine.steps import StepSnapshot, read_connection, utcnow
from migrator.errors import StepFailedError
from migrator.store.models import IdMap, Run

IDMAP = cast(Table, IdMap.__table__)
RUNS = cast(Table, Run.__table__)


def split_key(step_key: str) -> tuple[str, str]:
    """``"<kind>:<source_id>"`` -> (kind, source id); the source id may hold colons."""
    kind, sep, source_id = step_key.partition(":")
    if not sep or not kind or not source_id:
        raise StepFailedError(f"reference {step_key!r} is not a step key '<kind>:<source id>'")
    return kind, source_id


def record_step_target(factory: sessionmaker[Session], step: StepSnapshot, source_id: str,
                       target_id: str) -> None:
    """The mapping of ``step``'s resource, written at once in a transaction of its own,
    fenced by the step's lease token. For kinds nothing on the target marks (a quota set, a
    role grant): a rollback of a run killed before the step's next checkpoint has only this
    row to know that the change was made."""
    with fenced_transaction(factory, step) as conn:
        _record(conn, step.run_id, step.kind, source_id, target_id)


def record_target(ctx: StepContext, source_id: str, target_id: str) -> None:
    """The mapping of the context's step, written with the step's next checkpoint (one
    transaction, fenced by the step's version: a worker that lost the step writes nothing)."""
    step = ctx.step
    ctx.write_with_checkpoint(
        lambda conn: _record(conn, step.run_id, step.kind, source_id, target_id))


def record_carried(ctx: StepContext, kind: str, source_id: str, target_id: str) -> None:
    """The mapping of a resource the context's step moved inside its own (a server's boot
    and data volumes), under that resource's kind, so that lookups and the id map's readers
    find it as if a step of its kind had made it; written with the step's next checkpoint."""
    run_id = ctx.step.run_id
    ctx.write_with_checkpoint(lambda conn: _record(conn, run_id, kind, source_id, target_id))


def _record(conn: Connection, run_id: int, kind: str, source_id: str, target_id: str) -> None:
    """Insert the mapping, or replace its target id (one statement: an upsert on the
    (run, kind, source id) unique key, which both SQLite and PostgreSQL have)."""
    dialect = conn.dialect.name
    if dialect not in _UPSERTS:
        _record_portably(conn, run_id, kind, source_id, target_id)
        return
    conn.execute(_UPSERTS[dialect], {"run_id": run_id, "kind": kind, "source_id": source_id,
                                     "target_id": target_id, "created_at": utcnow()})


def _record_portably(conn: Connection, run_id: int, kind: str, source_id: str,
                     target_id: str) -> None:
    current = conn.execute(
        select(IDMAP.c.id, IDMAP.c.target_id).where(
            IDMAP.c.run_id == run_id, IDMAP.c.kind == kind, IDMAP.c.source_id == source_id
        )
    ).first()
    if current is None:
        conn.execute(
            insert(IDMAP).values(
                run_id=run_id, kind=kind, source_id=source_id, target_id=target_id,
                created_at=utcnow(),
            )
        )
    elif current.target_id != target_id:
        conn.execute(update(IDMAP).where(IDMAP.c.id == current.id).values(target_id=target_id))


def _upsert(dialect_insert: Any) -> Any:
    statement = dialect_insert(IDMAP)
    return statement.on_conflict_do_update(
        index_elements=[IDMAP.c.run_id, IDMAP.c.kind, IDMAP.c.source_id],
        set_={"target_id": statement.excluded.target_id})


_UPSERTS: dict[str, Any] = {"sqlite": _upsert(sqlite_insert), "postgresql": _upsert(pg_insert)}


# engine -> run id -> (kind, source id) -> target id: this run's mappings read so far.
_KNOWN: weakref.WeakKeyDictionary[Engine, dict[int, dict[tuple[str, str], str]]] = \
    weakref.WeakKeyDictionary()
_KNOWN_LOCK = threading.Lock()


def _known(factory: sessionmaker[Session], run_id: int) -> dict[tuple[str, str], str]:
    engine = factory.kw["bind"]
    with _KNOWN_LOCK:
        runs = _KNOWN.get(engine)
        if runs is None:
            runs = _KNOWN[engine] = {}
        return runs.setdefault(run_id, {})


_OWN_TARGET = select(IDMAP.c.target_id).where(
    IDMAP.c.run_id == bindparam("run_id"), IDMAP.c.kind == bindparam("kind"),
    IDMAP.c.source_id == bindparam("source_id"))
_EARLIER_TARGETS = (
    select(IDMAP.c.run_id, IDMAP.c.target_id, RUNS.c.status, RUNS.c.options)
    .join(RUNS, RUNS.c.id == IDMAP.c.run_id)
    .where(IDMAP.c.kind == bindparam("kind"), IDMAP.c.source_id == bindparam("source_id"),
           IDMAP.c.run_id != bindparam("run_id"))
    .order_by(IDMAP.c.id.desc())
)


def lookup(
    factory: sessionmaker[Session], run_id: int, kind: str, source_id: str
) -> str | None:
    """The target id of (kind, source id): this run's mapping, else the latest earlier one
    of a migration run that was not rolled back (a rehearsal's or a rolled-back run's
    resources are not on the target any more, or are about to go)."""
    known = _known(factory, run_id)
    found = known.get((kind, source_id))
    if found is not None:
        return found
    params = {"run_id": run_id, "kind": kind, "source_id": source_id}
    with read_connection(factory) as conn:
        # This run's row first, through the (run, kind, source id) unique index: the other
        # runs' query has no index to use and reads the whole table, which grows with the run.
        own = conn.execute(_OWN_TARGET, params).scalar()
        if own is not None:
            known[(kind, source_id)] = str(own)
            return str(own)
        rows = conn.execute(_EARLIER_TARGETS, params).all()
    for row in rows:
        if row.status != "rolled_back" and not (row.options or {}).get("kind"):
            return str(row.target_id)
    return None


def target_of(factory: sessionmaker[Session], run_id: int, step_key: str) -> str:
    """The target id the step ``step_key`` (a dependency: done) recorded; a clear error when
    it has none yet."""
    kind, source_id = split_key(step_key)
    found = lookup(factory, run_id, kind, source_id)
    if found is None:
        raise StepFailedError(
            f"step {step_key!r} has no target id yet (not done in this run or an earlier one)"
        )
    return found


def id_map(factory: sessionmaker[Session], run_id: int) -> dict[tuple[str, str], str]:
    """The run's whole map: (kind, source id) -> target id."""
    with read_connection(factory) as conn:
        rows = conn.execute(
            select(IDMAP.c.kind, IDMAP.c.source_id, IDMAP.c.target_id).where(
                IDMAP.c.run_id == run_id
            )
        ).all()
    return {(r.kind, r.source_id): str(r.target_id) for r in rows}
