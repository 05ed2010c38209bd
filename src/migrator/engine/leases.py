"""Leases: how the workers of a run share its steps without a coordinator.

A worker *claims* a step in one short transaction: the step gets the worker's name as
``lease_owner``, a ``lease_token`` one higher than before (the fencing token) and a
``lease_expires_at``. The worker's heartbeat renews the leases of the steps it holds; a worker
that stops heartbeating (killed, paused, cut off) loses them when they expire, and the next
worker to claim takes the step over (trigger ``reclaim``: a new token, a new version) and
resumes it from its checkpoint through the handler's ``reconcile``, as after a crash.

Fencing: every write about a step is guarded by the step's version (engine/steps.py), which a
takeover bumps, so a worker that lost its lease can no longer checkpoint, complete, fail or
requeue the step: it gets a :class:`LeaseLostError` and drops the step. Writes of a handler's
own (the id map, a test's side effect) go through :func:`fenced_transaction`, which checks the
token in the same transaction.

Ready steps are found with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers on many hosts
claim different steps without waiting for each other; on SQLite the database's write lock
serialises the claims of every process. The transfer limit (data steps running at once, all
workers together) is counted inside the claim, under the run row's lock; a data step whose
planned bytes (``steps.planned_bytes``) are at most ``ClaimLimits.small_copy_bytes`` is
neither counted nor held back by it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine import machine, one_statement
from migrator.engine.runs import READY, RUNS
from migrator.engine.steps import (
    STEPS,
    StepSnapshot,
    actor,
    advance,
    advance_in,
    advance_in_one,
    apply_trigger,
    utcnow,
    write_transaction,
)
from migrator.errors import ConcurrencyError

DEFAULT_LEASE_SECONDS = 30.0


class LeaseLostError(ConcurrencyError):
    """The step was taken over by another worker (or released): this worker must drop it."""


@dataclass(frozen=True)
class Claim:
    """A step a worker now holds; ``reclaimed`` when its previous owner lost the lease while
    it was running (the step is in doubt and goes through ``reconcile``)."""

    step: StepSnapshot
    reclaimed: bool
    previous_owner: str | None = None


@dataclass(frozen=True)
class ClaimLimits:
    """Limits on what one claim may take, counted over every worker of the run."""

    # Kinds that move bytes (their handlers take transfer slots) and how many of them may
    # run at once in the whole run; None: no limit.
    transfer_kinds: frozenset[str] = frozenset()
    transfer_limit: int | None = None
    # A transfer planned at most this many bytes (steps.planned_bytes) is not counted against
    # transfer_limit, nor held back by it: a small copy costs a slot for far longer than it
    # moves bytes. 0: every transfer counts; a step of unknown bytes (NULL) always counts.
    small_copy_bytes: int = 0


_IN_DOUBT = sorted(machine.IN_DOUBT_STATES)
# Written into the SQL, not bound: the partial index ix_steps_leased is usable only where the
# planner sees these values, which a generic plan of a prepared statement (psycopg prepares
# a statement from its fifth run) does not for bound ones; PostgreSQL then walked every step
# of the run (7 ms of server CPU per claim at 10,000 steps). The states are the machine's
# constants, never input. An IN list of bound values is also rendered again on every run.
IN_DOUBT_SQL = STEPS.c.state.in_([literal_column(f"'{state}'") for state in _IN_DOUBT])
# Running steps whose lease is over, or that nobody leased (set running before leases
# existed): the partial index ix_steps_leased holds only running steps, so this is cheap
# (read in the index's order).
_EXPIRED = (
    select(STEPS)
    .where(
        STEPS.c.run_id == bindparam("run_id"),
        IN_DOUBT_SQL,
        or_(STEPS.c.lease_expires_at.is_(None), STEPS.c.lease_expires_at < bindparam("now")),
    )
    .order_by(STEPS.c.run_id, STEPS.c.lease_expires_at, STEPS.c.id)
    .limit(bindparam("limit"))
)


def claim_steps(
    factory: sessionmaker[Session],
    run_id: int,
    owner: str,
    limit: int,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    limits: ClaimLimits | None = None,
    now: datetime | None = None,
    reclaim: bool = True,
    data_first: bool = False,
    data_after: int = 0,
) -> list[Claim]:
    """Take up to ``limit`` steps for ``owner`` in one transaction: first steps whose lease
    expired (in doubt; ``reclaim=False`` skips looking for them), then ready ones (pending,
    backoff over, dependencies done). ``data_first``: ready steps that move bytes before the
    others while the run's transfer limit leaves room (long steps started early, not left
    for the end of the run); ``data_after``: only those after this step id (where the last
    one was found: the ready steps before it are not scanned again)."""
    if limit <= 0:
        return []
    if one_statement.is_postgresql(factory) and _in_one(reclaim, limits):
        with one_statement.autocommit(factory) as conn:
            return _start_in_one(conn, run_id, owner, limit, lease_seconds, now)
    with write_transaction(factory) as conn:
        return _claim(conn, run_id, owner, limit, lease_seconds, limits, now, reclaim,
                      data_first, data_after)


def complete_and_claim(
    factory: sessionmaker[Session],
    step: StepSnapshot,
    owner: str,
    limit: int,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    limits: ClaimLimits | None = None,
    now: datetime | None = None,
    reclaim: bool = True,
    data_first: bool = False,
    data_after: int = 0,
) -> tuple[StepSnapshot, list[Claim]]:
    """Complete ``step`` (verified; the worker's snapshot is its latest version, so the write
    is fenced like every other) and claim up to ``limit`` steps for ``owner``, in one
    transaction (on PostgreSQL one statement when the claim is one, engine/one_statement.py):
    a worker thread's end of one step and start of the next cost one commit, and the steps
    the completion made ready can be among those claimed. A step taken over in the meantime
    raises :class:`ConcurrencyError` with nothing written, the claim included."""
    if one_statement.is_postgresql(factory):
        dest = machine.destination(step.state, "complete")
        with one_statement.autocommit(factory) as conn:
            if limit > 0 and dest is not None and _in_one(reclaim, limits):
                # One statement (one round trip, one commit): the completion, and the claim
                # only if the completion was written. The claim reads the steps as they
                # were before the statement: when the completion made dependents ready, a
                # second statement claims them (with what the first left to take).
                now = now or utcnow()
                outcome = one_statement.complete_then_start(
                    conn, {"id": step.id, "version": step.version, "state": step.state},
                    dest, _RELEASED, step.run_id, owner, limit, now,
                    now + timedelta(seconds=lease_seconds), actor())
                if outcome.completed:
                    claims = [Claim(StepSnapshot.from_row(row), False)
                              for row in outcome.started]
                    if outcome.freed and len(claims) < limit:
                        claims += _start_in_one(conn, step.run_id, owner,
                                                limit - len(claims), lease_seconds, now)
                    return replace(step, state=dest, version=step.version + 1), claims
                # Fenced (nothing written): the completion alone, as below, raises the
                # error a version that moved on gets.
            # Two statements of their own (two round trips, no BEGIN/COMMIT): the
            # completion, then the claim, which sees the dependents it made ready. A
            # completion that was fenced raises before anything is claimed.
            done = advance_in_one(conn, step, "complete", None, _RELEASED)
            if limit <= 0:
                return done, []
            if _in_one(reclaim, limits):
                return done, _start_in_one(conn, step.run_id, owner, limit, lease_seconds, now)
        return done, claim_steps(factory, step.run_id, owner, limit,
                                 lease_seconds=lease_seconds, limits=limits, now=now,
                                 reclaim=reclaim, data_first=data_first, data_after=data_after)
    with write_transaction(factory) as conn:
        done = advance_in(conn, step, "complete", **_RELEASED)
        claims = _claim(conn, step.run_id, owner, limit, lease_seconds, limits, now,
                        reclaim, data_first, data_after) if limit > 0 else []
    return done, claims


_RELEASED: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def _in_one(reclaim: bool, limits: ClaimLimits | None) -> bool:
    """Whether a claim on PostgreSQL is one statement: not when it also looks for expired
    leases, nor when the run's transfer limit is counted under the run row's lock."""
    return not reclaim and (limits is None or limits.transfer_limit is None
                            or not limits.transfer_kinds)


def _start_in_one(conn: Connection, run_id: int, owner: str, limit: int,
                  lease_seconds: float, now: datetime | None) -> list[Claim]:
    now = now or utcnow()
    rows = one_statement.start_ready(conn, run_id, owner, limit, now,
                                     now + timedelta(seconds=lease_seconds), actor())
    return [Claim(StepSnapshot.from_row(row), False) for row in rows]


def _claim(conn: Connection, run_id: int, owner: str, limit: int, lease_seconds: float,
           limits: ClaimLimits | None, now: datetime | None, reclaim: bool = True,
           data_first: bool = False, data_after: int = 0) -> list[Claim]:
    limits = limits or ClaimLimits()
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    claims: list[Claim] = []
    pg = conn.dialect.name == "postgresql"
    expired = _EXPIRED.with_for_update(skip_locked=True) if pg else _EXPIRED
    found = conn.execute(expired, {"run_id": run_id, "now": now, "limit": limit}
                         ).mappings().all() if reclaim else []
    for row in found:
        token = row["lease_token"] + 1
        snap = apply_trigger(conn, row, machine.RECLAIM_TRIGGER, None,
                             {"previous_owner": row["lease_owner"], "lease_token": token},
                             _lease(owner, token, expires))
        claims.append(Claim(snap, True, row["lease_owner"]))
    wanted = limit - len(claims)
    if wanted > 0:
        rows = _ready_rows(conn, run_id, wanted, now, limits, data_first, data_after)
        for row in rows:
            token = row["lease_token"] + 1
            snap = apply_trigger(conn, row, "start", None, None,
                                 _lease(owner, token, expires))
            claims.append(Claim(snap, False))
    return claims


def _lease(owner: str, token: int, expires: datetime) -> dict[str, object]:
    return {"lease_owner": owner, "lease_token": token, "lease_expires_at": expires}


@functools.lru_cache(maxsize=16)
def _split_queries(kinds: tuple[str, ...], pg: bool, small: bool
                   ) -> tuple[Select[Any], Select[Any], Select[Any], Select[Any]]:
    """(ready steps that hold no transfer slot, ready transfers that hold one, running
    transfers that hold one counted, the run row locked), built once per shape (SQLAlchemy
    then reuses their compiled forms).

    ``small``: a transfer planned at most ``:small`` bytes holds no slot: it is one of the
    plain steps, claimed in id order (beside its tenant's other steps) whether or not a slot
    is free, and neither counted nor looked for first; NULL bytes (unknown) hold one."""
    transfer = STEPS.c.kind.in_(kinds)
    if small:
        small_copy = and_(STEPS.c.planned_bytes.is_not(None),
                          STEPS.c.planned_bytes <= bindparam("small"))
        holds_slot = and_(transfer, or_(STEPS.c.planned_bytes.is_(None),
                                        STEPS.c.planned_bytes > bindparam("small")))
        plain = READY.where(or_(STEPS.c.kind.not_in(kinds), small_copy))
    else:
        holds_slot = transfer
        plain = READY.where(STEPS.c.kind.not_in(kinds))
    # (kind is in no index: starting after the last transfer found keeps the scan short)
    data = READY.where(holds_slot, STEPS.c.id > bindparam("after"))
    if pg:
        plain = plain.with_for_update(skip_locked=True, of=STEPS)
        data = data.with_for_update(skip_locked=True, of=STEPS)
    running = select(func.count()).select_from(STEPS).where(
        STEPS.c.run_id == bindparam("run_id"), IN_DOUBT_SQL,
        holds_slot, STEPS.c.lease_expires_at >= bindparam("now"))
    # FOR NO KEY UPDATE, not FOR UPDATE: every event and id map row written in the run holds
    # a FOR KEY SHARE lock on the run row (their foreign key) until its transaction ends,
    # which FOR UPDATE waits for and blocks. NO KEY UPDATE still excludes the other claims.
    run_row = (select(RUNS.c.id).where(RUNS.c.id == bindparam("run_id"))
               .with_for_update(key_share=True))
    return plain, data, running, run_row


def holds_transfer_slot(step: StepSnapshot, limits: ClaimLimits) -> bool:
    """Whether ``step`` counts against the run's transfer limit (what the claim's queries
    decide in SQL)."""
    if step.kind not in limits.transfer_kinds:
        return False
    small = limits.small_copy_bytes
    return small <= 0 or step.planned_bytes is None or step.planned_bytes > small


def _ready_rows(conn: Connection, run_id: int, limit: int, now: datetime,
                limits: ClaimLimits, data_first: bool = False, data_after: int = 0
                ) -> list[RowMapping]:
    pg = conn.dialect.name == "postgresql"
    params = {"run_id": run_id, "now": now, "limit": limit}
    kinds = tuple(sorted(limits.transfer_kinds))
    if limits.transfer_limit is None or not kinds:
        query = READY.with_for_update(skip_locked=True, of=STEPS) if pg else READY
        return list(conn.execute(query, params).mappings().all())
    small = limits.small_copy_bytes > 0
    plain, data, running, run_row = _split_queries(kinds, pg, small)
    if small:
        params["small"] = limits.small_copy_bytes

    limit_of_run = int(limits.transfer_limit or 0)

    def transfers(room: int, after: int) -> list[RowMapping]:
        if not pg:  # BEGIN IMMEDIATE holds the database's write lock: nobody else claims
            busy = conn.execute(running, {**params, "now": now}).scalar_one()
            free = min(limit_of_run - busy, room)
            if free <= 0:
                return []
            return list(conn.execute(data, {**params, "limit": free, "after": after}
                                     ).mappings().all())
        # PostgreSQL: the count is taken under the run row's lock, so that two workers
        # claiming at the same instant cannot both see the last free slot. That lock makes
        # every claim of the run wait for the others, so it is taken only when a claim can
        # use it: when a look without it finds a slot free (that look only decides whether
        # to lock; the slots are counted again under the lock) and ready transfers found,
        # and locked, first (SKIP LOCKED never waits: only the run row is waited for).
        if limit_of_run - conn.execute(running, {**params, "now": now}).scalar_one() <= 0:
            return []
        found = list(conn.execute(data, {**params, "limit": room, "after": after}
                                  ).mappings().all())
        if not found:
            return []
        conn.execute(run_row, {"run_id": run_id})
        busy = conn.execute(running, {**params, "now": now}).scalar_one()
        # Rows found beyond the free slots stay as they were; their row locks end with
        # this transaction.
        return found[:max(0, min(limit_of_run - busy, room))]

    rows: list[RowMapping] = transfers(limit, data_after) if data_first else []
    if len(rows) < limit:  # steps that hold no transfer slot: as many as asked
        rows += conn.execute(plain, {**params, "limit": limit - len(rows)}).mappings().all()
    if len(rows) < limit and not data_first:
        rows += transfers(limit - len(rows), 0)
    return rows


def renew_leases(
    factory: sessionmaker[Session], owner: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
    now: datetime | None = None,
) -> dict[int, int]:
    """Extend every lease ``owner`` still holds; return them as step id -> token.

    Not a transition: neither the version nor the event log changes, so a renewal never
    invalidates the snapshot a worker thread holds. A step missing from the answer was taken
    over or released: its worker thread finds out at its next write.
    """
    now = now or utcnow()
    held = and_(STEPS.c.lease_owner == owner, IN_DOUBT_SQL)
    with write_transaction(factory) as conn:
        conn.execute(update(STEPS).where(held).values(
            lease_expires_at=now + timedelta(seconds=lease_seconds)))
        rows = conn.execute(select(STEPS.c.id, STEPS.c.lease_token).where(held)).all()
    return {row.id: row.lease_token for row in rows}


def release_unstarted(factory: sessionmaker[Session], claims: Sequence[Claim], owner: str,
                      *, now: datetime | None = None) -> int:
    """Give back steps ``owner`` claimed and never started (a worker stopping with steps
    claimed for threads that did not take them): a fresh claim goes back to pending (trigger
    ``requeue``, its lease cleared); a takeover (``reclaimed``, still in doubt) keeps its
    state and its lease ends now, so the next claim takes it over again and reconciles it.
    Both are fenced: a step that moved on meanwhile is left alone. Returns how many were
    given back."""
    now = now or utcnow()
    released = 0
    for claim in claims:
        step = claim.step
        if claim.reclaimed:
            with write_transaction(factory) as conn:
                result = conn.execute(update(STEPS).where(
                    STEPS.c.id == step.id, STEPS.c.lease_owner == owner,
                    STEPS.c.lease_token == step.lease_token, IN_DOUBT_SQL,
                ).values(lease_expires_at=now))
                released += int(result.rowcount or 0)
            continue
        try:
            advance(factory, step, "requeue", detail={"reason": "not started"}, **_RELEASED)
            released += 1
        except ConcurrencyError:  # taken over or changed meanwhile: no longer ours
            pass
    return released


def expire_leases(conn: Connection, owners: Collection[str], now: datetime) -> int:
    """Make the leases of ``owners`` (workers found dead) claimable at once."""
    if not owners:
        return 0
    result = conn.execute(update(STEPS).where(
        STEPS.c.lease_owner.in_(sorted(owners)), IN_DOUBT_SQL
    ).values(lease_expires_at=now))
    return int(result.rowcount or 0)


@contextmanager
def fenced_transaction(factory: sessionmaker[Session], step: StepSnapshot
                       ) -> Iterator[Connection]:
    """A write transaction that commits only while ``step`` is still leased with the token
    its worker holds: the step row is read (and locked) first, and :class:`LeaseLostError`
    is raised, with nothing written, when another worker took it over."""
    with write_transaction(factory) as conn:
        query = select(STEPS.c.lease_token, STEPS.c.state).where(STEPS.c.id == step.id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None or row.lease_token != step.lease_token or \
                row.state not in machine.IN_DOUBT_STATES:
            raise LeaseLostError(
                f"step {step.key!r}: lease token {step.lease_token} is no longer valid "
                f"(now {None if row is None else row.lease_token}): another worker took it")
        yield conn


class HeldSteps:
    """The steps one worker process holds (thread-safe): what its heartbeat renews, and
    which of them were found taken over."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}
        self._lost: set[int] = set()

    def add(self, step: StepSnapshot) -> None:
        with self._lock:
            self._held[step.id] = step.lease_token
            self._lost.discard(step.id)

    def drop(self, step_id: int) -> None:
        with self._lock:
            self._held.pop(step_id, None)
            self._lost.discard(step_id)

    def tokens(self) -> dict[int, int]:
        """The held steps and their tokens, taken before a heartbeat asks the database."""
        with self._lock:
            return dict(self._held)

    def renewed(self, asked: dict[int, int], current: dict[int, int]) -> list[int]:
        """Record a heartbeat's answer; return the steps this worker lost since the last one.

        ``asked`` is what :meth:`tokens` gave before the heartbeat, ``current`` the tokens the
        database holds now. Only a step whose token moved on was taken over: one claimed after
        ``asked`` was taken is not judged by this beat, and one that finished meanwhile kept
        its token."""
        with self._lock:
            lost = [sid for sid, token in asked.items()
                    if sid in self._held and self._held[sid] == token
                    and sid in current and current[sid] != token and sid not in self._lost]
            self._lost.update(lost)
            return lost

    def is_lost(self, step_id: int) -> bool:
        with self._lock:
            return step_id in self._lost

    def ids(self) -> Sequence[int]:
        with self._lock:
            return list(self._held)

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)
