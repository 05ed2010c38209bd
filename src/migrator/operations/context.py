"""Opening the state database for one command.

Every command except ``init`` and ``db upgrade`` goes through ``open_state``, which refuses a
database whose schema is behind the code, so nothing is written to (or misread from) an old
schema. Driver errors (unreadable path, not a database, server unreachable) become one-line
DatabaseErrors naming the database, with any password hidden.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from migrator.errors import DatabaseError
from migrator.store import schema
from migrator.store.db import make_engine, redact, sqlite_path, storage_problem


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn driver errors raised inside the block into a DatabaseError naming ``url``."""
    try:
        yield
    except DBAPIError as exc:
        path = sqlite_path(url)
        reason = _reason(url, exc)
        found = storage_problem(path, full="disk is full" in reason) if path else None
        if found is not None:
            raise DatabaseError(f"cannot write the state database {path}: {found.problem} "
                                f"(SQLite: {reason}); {found.advice}") from exc
        raise DatabaseError(
            f"cannot use the state database at {redact(url)}: {reason}"
        ) from exc


def _reason(url: str, exc: DBAPIError) -> str:
    lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
    reason = lines[0]
    # Drivers do not normally echo the password, but the message must never carry it.
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    if password:
        reason = reason.replace(str(password), "***")
    return reason


@contextmanager
def open_engine(url: str, *, create_dir: bool = False, read_only: bool = False
                ) -> Iterator[Engine]:
    """An engine for ``url`` without any schema check, disposed on exit (``read_only``: see
    store.db.make_engine)."""
    with database_errors(url):
        engine = make_engine(url, create_dir=create_dir, read_only=read_only)
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def open_state(url: str, *, read_only: bool = False) -> Iterator[Engine]:
    """An engine on a database whose schema is exactly what this code needs; ``read_only``
    for commands that only read (a SQLite file that cannot be written is then opened
    read-only instead of failing)."""
    with open_engine(url, read_only=read_only) as engine:
        schema.check_current(engine)
        yield engine
