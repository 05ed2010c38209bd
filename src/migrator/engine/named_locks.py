"""Named locks in the state database: mutual exclusion between worker processes, on one host
or several, around a few cloud calls that must not interleave (the owner's key imported for
migrator's user and the boot that uses it, handlers/owner_key.py).

A lock is a row of ``named_locks``: taken in one short write transaction, held while the
caller makes its cloud calls with no transaction open (cloud calls never happen inside one),
and deleted by its holder. Taking it is an insert that does nothing when the row exists; a
row whose holder is gone is taken over by a conditional update on the holder's token (one
of two contenders wins): gone is past ``expires_at``, or on this host, a holder whose process
no longer exists (a SIGKILLed worker's lock is free at once for the one that resumes its
work). A holder that outlives its lock learns it from :meth:`NamedLock.renew` before its next
call, and stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.steps import as_utc, utcnow, write_transaction
from migrator.engine.workers import pid_alive
from migrator.store.models import NamedLock as NamedLockRow

log = logging.getLogger(__name__)

LOCKS = cast(Table, NamedLockRow.__table__)
_INSERTS: dict[str, Any] = {"sqlite": sqlite_insert, "postgresql": pg_insert}


class LockLost(Exception):
    """The lock expired and another holder took it while this one was still working."""


class NamedLock:
    """One acquisition of the lock ``name`` (a token of its own)."""

    def __init__(self, factory: sessionmaker[Session], name: str, ttl: float, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.factory = factory
        self.name = name
        self.ttl = timedelta(seconds=ttl)
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.holder: tuple[str, int] | None = None  # who held it at the last refused try

    def try_acquire(self) -> bool:
        """Take the lock if it is free or its holder is gone; False if someone holds it."""
        now = self.clock()
        row = {"name": self.name, "token": self.token, "host": self.host, "pid": self.pid,
               "acquired_at": now, "expires_at": now + self.ttl}
        with write_transaction(self.factory) as conn:
            dialect = conn.dialect.name
            if dialect in _INSERTS:
                # RETURNING says whether the row went in (psycopg's rowcount of an insert
                # that did nothing on a conflict is -1, not 0).
                inserted = conn.execute(_INSERTS[dialect](LOCKS).values(**row)
                                        .on_conflict_do_nothing(index_elements=[LOCKS.c.name])
                                        .returning(LOCKS.c.name)).first()
                if inserted is not None:
                    return True
            held = conn.execute(select(LOCKS.c.token, LOCKS.c.host, LOCKS.c.pid,
                                       LOCKS.c.expires_at)
                                .where(LOCKS.c.name == self.name)).first()
            if held is None:  # released in between, or a dialect without the upsert
                conn.execute(LOCKS.insert().values(**row))
                return True
            expires = as_utc(held.expires_at)
            gone = (expires is not None and expires <= now) or (
                held.host == self.host and held.pid != self.pid and not pid_alive(held.pid))
            if not gone:
                self.holder = (str(held.host), int(held.pid))
                return False
            taken = conn.execute(update(LOCKS).where(LOCKS.c.name == self.name,
                                                     LOCKS.c.token == held.token)
                                 .values(**row))
            return taken.rowcount == 1

    def acquire(self, stop: threading.Event, poll: float) -> bool:
        """Wait for the lock (looked at every ``poll`` seconds); False if ``stop`` was set
        first."""
        waited = False
        while not self.try_acquire():
            if not waited and self.holder is not None:
                log.info("waiting for lock %s, held by %s pid %d", self.name, *self.holder)
                waited = True
            if stop.wait(poll):
                return False
        return True

    def renew(self) -> None:
        """Push the expiry a ``ttl`` further; :class:`LockLost` if another holder has it."""
        now = self.clock()
        with write_transaction(self.factory) as conn:
            kept = conn.execute(update(LOCKS).where(LOCKS.c.name == self.name,
                                                    LOCKS.c.token == self.token)
                                .values(expires_at=now + self.ttl))
        if kept.rowcount != 1:
            raise LockLost(f"lock {self.name!r} expired and was taken by another worker")

    def release(self) -> None:
        """Delete the row if it is still this acquisition's."""
        with write_transaction(self.factory) as conn:
            conn.execute(delete(LOCKS).where(LOCKS.c.name == self.name,
                                             LOCKS.c.token == self.token))


@contextmanager
def held(lock: NamedLock, stop: threading.Event, poll: float,
         on_stop: Callable[[], BaseException]) -> Iterator[NamedLock]:
    """``lock`` held for the ``with`` block; ``on_stop()`` raised if ``stop`` is set while
    waiting for it."""
    if not lock.acquire(stop, poll):
        raise on_stop()
    try:
        yield lock
    finally:
        lock.release()
