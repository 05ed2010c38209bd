"""The id map: which target resource each source resource became, per run.

A handler records the target id of its step (``record_step_target``) right after it created or
adopted the resource, then checkpoints it; a dependent step resolves its references
(``spec.refs``: attribute -> step key ``"<kind>:<source_id>"``) with ``target_of``. A key not
mapped in the run itself is looked up in earlier runs (a wave planned and executed on its own
refers to the projects an earlier wave migrated).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

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
    """What a handler calls: the mapping of its step's resource, written only while the step
    is still leased with the token its worker holds (a worker that lost the step to another
    gets a LeaseLostError and writes nothing)."""
    with fenced_transaction(factory, step) as conn:
        _record(conn, step.run_id, step.kind, source_id, target_id)


def _record(conn: Connection, run_id: int, kind: str, source_id: str, target_id: str) -> None:
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


def lookup(
    factory: sessionmaker[Session], run_id: int, kind: str, source_id: str
) -> str | None:
    """The target id of (kind, source id): this run's mapping, else the latest earlier one
    of a migration run that was not rolled back (a rehearsal's or a rolled-back run's
    resources are not on the target any more, or are about to go)."""
    with read_connection(factory) as conn:
        rows = conn.execute(
            select(IDMAP.c.run_id, IDMAP.c.target_id, RUNS.c.status, RUNS.c.options)
            .join(RUNS, RUNS.c.id == IDMAP.c.run_id)
            .where(IDMAP.c.kind == kind, IDMAP.c.source_id == source_id)
            .order_by(IDMAP.c.id.desc())
        ).all()
    for row in rows:
        if row.run_id == run_id:
            return str(row.target_id)
    for row in rows:
        if row.status != "rolled_back" and not (row.options or {}).get("kind"):
            return str(row.target_id)
    return None


def target_of(factory: sessionmaker[Session], run_id: int, step_key: str) -> str:
    """The target id the step ``step_key`` recorded; a clear error when it has none yet."""
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
