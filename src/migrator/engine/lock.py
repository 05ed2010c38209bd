"""The run lock: one executor per run.

A ``run_locks`` row names the host and pid of the executor holding the run. Another executor
refuses to start while that process lives. The lock is broken only when we can prove the
holder is gone (same host, pid no longer exists) or when the operator says so
(``force_unlock``, for a holder on another host that will never come back).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.steps import EVENTS, actor, as_utc, utcnow, write_transaction
from migrator.errors import RunLockedError
from migrator.store.models import RunLock

LOCKS = cast(Table, RunLock.__table__)
log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks, sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def acquire_run_lock(
    factory: sessionmaker[Session], run_id: int, run_name: str, *, force: bool = False
) -> None:
    """Take the run's lock for this process, or raise :class:`RunLockedError`."""
    host, pid, now = socket.gethostname(), os.getpid(), utcnow()
    with write_transaction(factory) as conn:
        holder = conn.execute(
            select(LOCKS).where(LOCKS.c.run_id == run_id).with_for_update()
        ).first()
        if holder is not None:
            gone = holder.host == host and not pid_alive(holder.pid)
            if not gone and not force:
                since = as_utc(holder.started_at)
                raise RunLockedError(
                    f"run {run_name!r} is being executed by pid {holder.pid} on host "
                    f"{holder.host} since {since:%Y-%m-%d %H:%M:%S} UTC; wait for it, or if "
                    "that process is gone for good, use --force-unlock"
                )
            reason = "holder process is gone" if gone else "forced by the operator"
            log.warning(
                "breaking the lock of run %r held by pid %s on %s: %s",
                run_name,
                holder.pid,
                holder.host,
                reason,
            )
            conn.execute(delete(LOCKS).where(LOCKS.c.run_id == run_id))
            conn.execute(
                insert(EVENTS).values(
                    run_id=run_id,
                    step_id=None,
                    trigger="lock-broken",
                    actor=actor(),
                    pid=pid,
                    at=now,
                    detail={"host": holder.host, "pid": holder.pid, "reason": reason},
                )
            )
        conn.execute(insert(LOCKS).values(run_id=run_id, host=host, pid=pid, started_at=now))


def release_run_lock(factory: sessionmaker[Session], run_id: int) -> None:
    """Drop the lock if this process still holds it (a forced unlock may have taken it)."""
    with write_transaction(factory) as conn:
        conn.execute(
            delete(LOCKS).where(
                LOCKS.c.run_id == run_id,
                LOCKS.c.host == socket.gethostname(),
                LOCKS.c.pid == os.getpid(),
            )
        )
