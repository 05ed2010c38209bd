"""The worker processes of runs: registered in the ``workers`` table, alive while they
heartbeat.

A worker registers when it joins a run, heartbeats on an interval (one transaction: its row's
``heartbeat_at``, the leases of the steps it holds, and the run's status and control read
back), and marks itself ``stopped`` when it leaves. Any worker can find another one dead: on
the same host when its pid is gone (at once), on any host when it has not heartbeaten for
longer than a lease (``lost``); the leases of a dead worker are expired at once, so that its
steps are taken over at the next claim instead of after the lease runs out.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import Connection, Table, and_, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.leases import DEFAULT_LEASE_SECONDS, IN_DOUBT_SQL, expire_leases
from migrator.engine.runs import RUNS
from migrator.engine.steps import (
    EVENTS,
    STEPS,
    actor,
    as_utc,
    read_connection,
    utcnow,
    write_transaction,
)
from migrator.store.models import Worker

WORKERS = cast(Table, Worker.__table__)
ACTIVE, STOPPED, LOST = "active", "stopped", "lost"


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat brought back: the leases still held (step id -> token), the current
    fencing token of each step the worker asked about, and what the run wants (its status and
    the operator's control: pause, cancel or None)."""

    held: dict[int, int]
    run_status: str | None
    control: str | None
    tokens: dict[int, int] = field(default_factory=dict)


def new_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def register_worker(factory: sessionmaker[Session], run_id: int | None, slots: int,
                    *, name: str | None = None) -> str:
    """Add this process as an active worker of ``run_id``; returns its name (the lease
    owner of the steps it will hold)."""
    name = name or new_worker_name()
    now = utcnow()
    with write_transaction(factory) as conn:
        conn.execute(insert(WORKERS).values(
            name=name, run_id=run_id, host=socket.gethostname(), pid=os.getpid(), slots=slots,
            status=ACTIVE, started_at=now, heartbeat_at=now))
        if run_id is not None:
            _run_event(conn, run_id, "worker-joined", {"worker": name, "slots": slots}, now)
    return name


def heartbeat(factory: sessionmaker[Session], name: str, run_id: int | None, *,
              lease_seconds: float = DEFAULT_LEASE_SECONDS,
              now: datetime | None = None, watch: Collection[int] = ()) -> Heartbeat:
    """Renew the worker's row and leases; read the run's status and control, and the current
    fencing token of each step in ``watch``.

    Whether a step was taken over is told by its token, never by its absence from the held
    leases: a step finished between the worker's claim and this beat is no longer leased,
    yet nobody took it."""
    now = now or utcnow()
    held_by_me = and_(STEPS.c.lease_owner == name, IN_DOUBT_SQL)
    with write_transaction(factory) as conn:
        was = conn.execute(select(WORKERS.c.status, WORKERS.c.run_id)
                           .where(WORKERS.c.name == name)).first()
        # A worker found lost (paused, cut off) that heartbeats again is alive after all; the
        # steps it held were taken over meanwhile and its writes about them are refused.
        conn.execute(update(WORKERS).where(WORKERS.c.name == name).values(
            heartbeat_at=now, status=ACTIVE, stopped_at=None))
        if was is not None and was.status == LOST and was.run_id is not None:
            _run_event(conn, was.run_id, "worker-back", {"worker": name}, now)
        conn.execute(update(STEPS).where(held_by_me).values(
            lease_expires_at=now + timedelta(seconds=lease_seconds)))
        held = {row.id: row.lease_token for row in
                conn.execute(select(STEPS.c.id, STEPS.c.lease_token).where(held_by_me))}
        tokens = {row.id: row.lease_token for row in conn.execute(
            select(STEPS.c.id, STEPS.c.lease_token).where(STEPS.c.id.in_(sorted(watch))))
        } if watch else {}
        status = control = None
        if run_id is not None:
            run = conn.execute(select(RUNS.c.status, RUNS.c.control)
                               .where(RUNS.c.id == run_id)).first()
            if run is not None:
                status, control = run.status, run.control
    return Heartbeat(held, status, control, tokens)


def stop_worker(factory: sessionmaker[Session], name: str, *, status: str = STOPPED) -> None:
    """Mark the worker as gone; whatever it still holds becomes claimable at once."""
    now = utcnow()
    with write_transaction(factory) as conn:
        row = conn.execute(select(WORKERS.c.run_id).where(WORKERS.c.name == name)).first()
        conn.execute(update(WORKERS).where(WORKERS.c.name == name).values(
            status=status, stopped_at=now))
        expire_leases(conn, [name], now)
        if row is not None and row.run_id is not None:
            _run_event(conn, row.run_id, "worker-left", {"worker": name, "status": status},
                       now)


def reap_lost_workers(factory: sessionmaker[Session], run_id: int, *,
                      lease_seconds: float = DEFAULT_LEASE_SECONDS,
                      now: datetime | None = None) -> list[str]:
    """Find the run's active workers that are gone (a pid that no longer exists on this
    host; no heartbeat for two leases, on any host), mark them lost and expire their leases.
    Returns their names."""
    now = now or utcnow()
    host = socket.gethostname()
    silent_since = now - timedelta(seconds=2 * lease_seconds)
    with read_connection(factory) as conn:
        rows = conn.execute(select(WORKERS.c.name, WORKERS.c.host, WORKERS.c.pid,
                                   WORKERS.c.heartbeat_at)
                            .where(WORKERS.c.run_id == run_id,
                                   WORKERS.c.status == ACTIVE)).all()
    lost = {}
    for row in rows:
        beat = as_utc(row.heartbeat_at)
        if row.host == host and row.pid != os.getpid() and not pid_alive(row.pid):
            lost[row.name] = f"process {row.pid} on {host} is gone"
        elif beat is not None and beat < silent_since:
            lost[row.name] = f"no heartbeat since {beat:%Y-%m-%d %H:%M:%S} UTC"
    if not lost:
        return []
    with write_transaction(factory) as conn:
        # Only those still active: another worker may have reaped them a moment ago.
        conn.execute(update(WORKERS).where(WORKERS.c.name.in_(sorted(lost)),
                                           WORKERS.c.status == ACTIVE)
                     .values(status=LOST, stopped_at=now))
        expire_leases(conn, lost, now)
        for name, reason in sorted(lost.items()):
            _run_event(conn, run_id, "worker-lost", {"worker": name, "reason": reason}, now)
    return sorted(lost)


def active_workers(factory: sessionmaker[Session], run_id: int) -> list[str]:
    with read_connection(factory) as conn:
        return list(conn.execute(select(WORKERS.c.name).where(
            WORKERS.c.run_id == run_id, WORKERS.c.status == ACTIVE)).scalars())


def pid_alive(pid: int) -> bool:
    """Whether a live process with this pid exists on this host (signal 0 checks, sends
    nothing). A zombie (killed, not yet waited for by its parent) counts as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust the signal
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _run_event(conn: Connection, run_id: int, trigger: str, detail: dict[str, object],
               now: datetime) -> None:
    conn.execute(insert(EVENTS).values(run_id=run_id, step_id=None, trigger=trigger,
                                       actor=actor(), pid=os.getpid(), at=now, detail=detail))
