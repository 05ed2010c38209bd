"""PostgreSQL forms of the hot transitions: each one statement, sent on an autocommit
connection (one round trip to the server: no BEGIN, no COMMIT, no row read first).

PostgreSQL runs data-modifying common table expressions (``WITH x AS (UPDATE ... RETURNING
...)``) atomically in one statement, so the row's UPDATE (guarded by its version, as in
engine/steps.py), its dependents' ``waiting`` counts and its audit event are written together
or not at all, and the invariant ``version == 1 + events of the step`` holds at every commit
as it does for the transaction of several statements that SQLite gets. A claim picks its
ready steps with ``FOR UPDATE SKIP LOCKED`` inside the same statement.

The statements are built once per shape (SQLAlchemy then reuses their compiled forms). Their
parameters are all named ``p_...``: SQLAlchemy adds a parameter named like a column of an
UPDATE's table to that UPDATE's SET clause, nested ones included.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CTE,
    Connection,
    Select,
    Table,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine import machine
from migrator.store.models import Event, Step, StepDependency

STEPS = cast(Table, Step.__table__)
EVENTS = cast(Table, Event.__table__)
DEPS = cast(Table, StepDependency.__table__)
_EVENT_COLUMNS = ["run_id", "step_id", "from_state", "to_state", "trigger", "actor", "pid",
                  "at", "detail"]
# What the dependents of a step wait for when it enters (-1) or leaves (+1) done/skipped.
NO_CHANGE, ONE_LESS, ONE_MORE = 0, -1, 1
_STARTED = machine.destination(machine.PENDING, "start")
# The order of ready steps: by id, spelled as the index ix_steps_ready (run_id, state, waiting,
# id) is ordered (the first three are fixed by the query, so the order is the same). Ordered
# by id alone, PostgreSQL's planner chose the primary key whenever its statistics were taken
# while most steps were pending (a fresh plan: every run), and then read past every step
# already done: 5.8 ms of server CPU per claim with 6,000 done; spelled so, an index scan
# on ix_steps_ready answers from the first ready step (0.3 ms) whatever the statistics say.
READY_ORDER = (STEPS.c.run_id, STEPS.c.state, STEPS.c.waiting, STEPS.c.id)


def is_postgresql(factory: sessionmaker[Session]) -> bool:
    return bool(factory.kw["bind"].dialect.name == "postgresql")


@contextmanager
def autocommit(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection on which each statement commits by itself (for the one-statement forms:
    psycopg then sends no BEGIN and no COMMIT; setting and resetting autocommit is local to
    the driver, no round trip)."""
    with factory.kw["bind"].connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def _event_row(source: CTE, from_state: Any, trigger: Any) -> Select[Any]:
    return select(source.c.run_id, source.c.id, from_state, source.c.state, trigger,
                  *(bindparam(f"p_{c}", type_=EVENTS.c[c].type)
                    for c in ("actor", "pid", "at", "detail")))


@functools.lru_cache(maxsize=64)
def _transition(columns: tuple[str, ...], waiting: int) -> Select[Any]:
    """The step's UPDATE (guarded by id and version; ``columns`` set from parameters of the
    same names), its dependents' ``waiting`` moved by ``waiting``, its event; the statement
    answers how many rows it changed (1, or 0 when the version moved on)."""
    changed = _changed(columns)
    statement = select(func.count()).select_from(changed).add_cte(_changed_event(changed))
    if waiting != NO_CHANGE:
        statement = statement.add_cte(_dependents(changed, waiting))
    return statement


def _changed(columns: tuple[str, ...]) -> CTE:
    """The step's UPDATE guarded by id and version, ``columns`` set from ``p_v_...``."""
    values: dict[str, Any] = {c: bindparam(f"p_v_{c}", type_=STEPS.c[c].type) for c in columns}
    return (update(STEPS)
            .where(STEPS.c.id == bindparam("p_b_id"),
                   STEPS.c.version == bindparam("p_b_version"))
            .values(**values, state=bindparam("p_to_state", type_=STEPS.c.state.type),
                    version=STEPS.c.version + 1, updated_at=bindparam("p_at"))
            .returning(STEPS.c.id, STEPS.c.run_id, STEPS.c.state)
            .cte("changed"))


def _changed_event(changed: CTE) -> CTE:
    return insert(EVENTS).from_select(
        _EVENT_COLUMNS,
        _event_row(changed, bindparam("p_from_state", type_=EVENTS.c.from_state.type),
                   bindparam("p_trigger", type_=EVENTS.c.trigger.type))
    ).cte("changed_event")


def _dependents(changed: CTE, waiting: int) -> CTE:
    """The changed step's dependents' ``waiting`` moved by ``waiting`` (their new counts
    returned)."""
    dependents = select(DEPS.c.step_id).where(DEPS.c.depends_on_id.in_(select(changed.c.id)))
    return (update(STEPS).where(STEPS.c.id.in_(dependents))
            .values(waiting=STEPS.c.waiting + waiting, updated_at=bindparam("p_at"))
            .returning(STEPS.c.waiting).cte("dependents"))


def transition(conn: Connection, row: Mapping[str, Any], dest: str, trigger: str,
               detail: Mapping[str, Any] | None, values: Mapping[str, Any], waiting: int,
               now: datetime, actor: str) -> bool:
    """Move the step ``row`` (as its worker last saw it) to ``dest`` with ``values`` set, in
    one statement; False, with nothing written, when its version moved on (fenced)."""
    columns = tuple(sorted(values))
    params = {**{f"p_v_{c}": v for c, v in values.items()}, "p_b_id": row["id"],
              "p_b_version": row["version"], "p_to_state": dest, "p_from_state": row["state"],
              "p_trigger": trigger, "p_actor": actor, "p_pid": os.getpid(), "p_at": now,
              "p_detail": dict(detail or {})}
    return bool(conn.execute(_transition(columns, waiting), params).scalar_one() == 1)


@functools.lru_cache(maxsize=4)
def _checkpoint_then() -> Select[Any]:
    """A checkpoint and the trigger fired right after it (``verify`` after a step's last
    phase): one UPDATE two versions on, and the two events, in that order (the branches of
    a UNION ALL are read one after the other)."""
    changed = (update(STEPS)
               .where(STEPS.c.id == bindparam("p_b_id"),
                      STEPS.c.version == bindparam("p_b_version"))
               .values(phase=bindparam("p_phase", type_=STEPS.c.phase.type),
                       checkpoint=bindparam("p_checkpoint", type_=STEPS.c.checkpoint.type),
                       state=bindparam("p_to_state", type_=STEPS.c.state.type),
                       version=STEPS.c.version + 2, updated_at=bindparam("p_at"))
               .returning(STEPS.c.id, STEPS.c.run_id, STEPS.c.state)
               .cte("changed"))
    state = bindparam("p_from_state", type_=EVENTS.c.from_state.type)
    common = [bindparam(f"p_{c}", type_=EVENTS.c[c].type) for c in ("actor", "pid", "at")]
    checkpoint_event = select(changed.c.run_id, changed.c.id, state, state,
                              literal(machine.CHECKPOINT_TRIGGER), *common,
                              bindparam("p_detail", type_=EVENTS.c.detail.type))
    trigger_event = select(changed.c.run_id, changed.c.id, state, changed.c.state,
                           bindparam("p_trigger", type_=EVENTS.c.trigger.type), *common,
                           bindparam("p_then_detail", type_=EVENTS.c.detail.type))
    events = insert(EVENTS).from_select(_EVENT_COLUMNS,
                                        union_all(checkpoint_event, trigger_event))
    return select(func.count()).select_from(changed).add_cte(events.cte("changed_events"))


def checkpoint_then(conn: Connection, row: Mapping[str, Any], phase: str,
                    checkpoint: Mapping[str, Any], detail: Mapping[str, Any], dest: str,
                    trigger: str, now: datetime, actor: str) -> bool:
    """Record the checkpoint of ``row``'s step and fire ``trigger`` (to ``dest``, a state
    that changes no dependent's count) in one statement; False, with nothing written, when
    its version moved on (fenced)."""
    params = {"p_b_id": row["id"], "p_b_version": row["version"], "p_phase": phase,
              "p_checkpoint": dict(checkpoint), "p_to_state": dest,
              "p_from_state": row["state"], "p_trigger": trigger, "p_actor": actor,
              "p_pid": os.getpid(), "p_at": now, "p_detail": dict(detail),
              "p_then_detail": {}}
    return bool(conn.execute(_checkpoint_then(), params).scalar_one() == 1)


@functools.lru_cache(maxsize=16)
def _start_ready(excluded_kinds: tuple[str, ...]) -> Select[Any]:
    claimed, events = _claimed(excluded_kinds, None)
    return select(claimed).add_cte(events).order_by(claimed.c.id)


def _claimed(excluded_kinds: tuple[str, ...], after: CTE | None) -> tuple[CTE, CTE]:
    """The claim's UPDATE of up to ``p_limit`` ready steps (their rows returned) and their
    start events; ``after``: only if that CTE (a completion) returned a row."""
    picked = select(STEPS.c.id).where(
        STEPS.c.run_id == bindparam("p_run_id"),
        STEPS.c.state == machine.PENDING,
        STEPS.c.waiting <= 0,
        or_(STEPS.c.not_before.is_(None), STEPS.c.not_before <= bindparam("p_now")))
    if excluded_kinds:
        picked = picked.where(STEPS.c.kind.not_in(excluded_kinds))
    if after is not None:
        picked = picked.where(exists(select(after.c.id)))
    # A CTE, evaluated once: the rows it locks are the rows updated.
    picked_cte = (picked.order_by(*READY_ORDER).limit(bindparam("p_limit"))
                  .with_for_update(skip_locked=True).cte("picked"))
    claimed = (update(STEPS).where(STEPS.c.id == picked_cte.c.id)
               .values(state=_STARTED, version=STEPS.c.version + 1,
                       lease_owner=bindparam("p_owner"), lease_token=STEPS.c.lease_token + 1,
                       lease_expires_at=bindparam("p_expires"), updated_at=bindparam("p_at"))
               .returning(*STEPS.c)
               .cte("claimed"))
    events = insert(EVENTS).from_select(
        _EVENT_COLUMNS, _event_row(claimed, literal(machine.PENDING), literal("start")))
    return claimed, events.cte("claimed_events")


def start_ready(conn: Connection, run_id: int, owner: str, limit: int, now: datetime,
                expires: datetime, actor: str, excluded_kinds: tuple[str, ...] = ()
                ) -> list[RowMapping]:
    """Claim and start up to ``limit`` ready steps (pending, nothing to wait for, backoff
    over; none of ``excluded_kinds``) in one statement: each gets ``owner``'s lease with a
    token one higher (the fencing token) and a ``start`` event. Returns the started rows."""
    params = {"p_run_id": run_id, "p_now": now, "p_limit": limit, "p_owner": owner,
              "p_expires": expires, "p_at": now, "p_actor": actor, "p_pid": os.getpid(),
              "p_detail": {}}
    return list(conn.execute(_start_ready(excluded_kinds), params).mappings().all())


@functools.lru_cache(maxsize=16)
def _complete_then_start(columns: tuple[str, ...], excluded_kinds: tuple[str, ...]
                         ) -> Select[Any]:
    """A step's completion (as :func:`_transition` with one less ``waiting`` for its
    dependents) and, only if it was written, the claim of :func:`_start_ready`. One row
    per claimed step, or one of NULLs when none was, each with ``p_completed`` (1, or 0:
    fenced) and ``p_freed`` (dependents the completion made ready: the claim, which reads
    the steps as they were before the statement, could not see them)."""
    changed = _changed(columns)
    dependents = _dependents(changed, ONE_LESS)
    claimed, claimed_events = _claimed(excluded_kinds, changed)
    outcome = select(
        select(func.count()).select_from(changed).scalar_subquery().label("p_completed"),
        select(func.count()).select_from(dependents).where(dependents.c.waiting <= 0)
        .scalar_subquery().label("p_freed"),
    ).subquery("outcome")
    return (select(outcome, claimed).select_from(outcome.outerjoin(claimed, true()))
            .add_cte(_changed_event(changed), claimed_events).order_by(claimed.c.id))


@dataclass(frozen=True)
class CompletedAndStarted:
    completed: bool
    # Dependents the completion made ready, which the claim could not take.
    freed: int
    started: list[RowMapping]


def complete_then_start(conn: Connection, row: Mapping[str, Any], dest: str,
                        values: Mapping[str, Any], run_id: int, owner: str, limit: int,
                        now: datetime, expires: datetime, actor: str,
                        excluded_kinds: tuple[str, ...] = ()) -> CompletedAndStarted:
    """Complete the step ``row`` (to ``dest``, ``values`` set) and, only if that was
    written, start up to ``limit`` ready steps for ``owner``: one statement. The claim
    reads the steps as they were before it, so dependents this completion made ready are
    not among them: ``freed`` says how many there are (the caller claims again for them)."""
    columns = tuple(sorted(values))
    params = {**{f"p_v_{c}": v for c, v in values.items()}, "p_b_id": row["id"],
              "p_b_version": row["version"], "p_to_state": dest, "p_from_state": row["state"],
              "p_trigger": "complete", "p_actor": actor, "p_pid": os.getpid(), "p_at": now,
              "p_detail": {}, "p_run_id": run_id, "p_now": now, "p_limit": limit,
              "p_owner": owner, "p_expires": expires}
    rows = conn.execute(_complete_then_start(columns, excluded_kinds), params).mappings().all()
    first = rows[0]
    return CompletedAndStarted(bool(first["p_completed"]), int(first["p_freed"] or 0),
                               [r for r in rows if r["id"] is not None])
