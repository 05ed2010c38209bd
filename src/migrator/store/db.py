"""Opening the state database: URL resolution, engine set-up, sessions.

SQLite (the embedded default) is opened with WAL, foreign keys on and a busy timeout so that a
pool of worker threads and a concurrent ``migrator status`` can share it. PostgreSQL is used by
URL (``postgresql+psycopg://...``) when several workers on several hosts share a run.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from migrator import jsoncodec
from migrator.errors import DatabaseError

# Re-exported: the URL is resolved in store/url.py, which the CLI imports without SQLAlchemy.
from migrator.store.url import DEFAULT_URL as DEFAULT_URL
from migrator.store.url import ENV_VAR as ENV_VAR
from migrator.store.url import resolve_url as resolve_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


# "//user:password@" in a URL that SQLAlchemy cannot parse (a typo in the port, say).
_USERINFO_PASSWORD = re.compile(r"(//[^/:@]*:)[^/@]*@")


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _USERINFO_PASSWORD.sub(r"\1***@", url)


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def make_engine(url: str, *, create_dir: bool = False, read_only: bool = False,
                **kwargs: Any) -> Engine:
    """An engine for ``url``. With ``create_dir`` the SQLite file's folder is created. With
    ``read_only``, a SQLite file that cannot be written (it or its folder read-only) is opened
    read-only instead of failing (``migrator status`` on a read-only state folder)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseError(
            f"database URL {redact(url)} is not valid "
            "(expected sqlite:///PATH, a file path, or postgresql://USER@HOST/DATABASE)"
        ) from exc
    try:
        return _make_engine(url, parsed, create_dir, read_only, **kwargs)
    except ImportError as exc:
        raise DatabaseError(
            f"database URL {redact(url)}: the driver for {parsed.drivername} is not installed"
        ) from exc
    except ArgumentError as exc:  # includes NoSuchModuleError: an unknown database kind
        raise DatabaseError(f"database URL {redact(url)} is not usable: {exc}") from exc


def _make_engine(url: str, parsed: URL, create_dir: bool, read_only: bool,
                 **kwargs: Any) -> Engine:
    # JSON columns (step specs, checkpoints, event details, item attributes) through orjson:
    # a 10,000-tenant plan registers 250,000 specs, and its inventory loads 270,000 attribute
    # mappings; the standard library spent 1.4 s encoding and 2.8 s decoding those.
    # ``compact``: the text is what json.dumps writes without its spaces.
    kwargs.setdefault("json_serializer", jsoncodec.compact)
    kwargs.setdefault("json_deserializer", jsoncodec.loads)
    path = _sqlite_path(url)
    if path is not None:
        if create_dir:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create the database folder {path.parent}: {exc.strerror}"
                ) from exc
        elif not path.exists():
            raise DatabaseError(
                f"no state database at {path}; run 'migrator init' to create it"
            )
        if path.is_dir():
            raise DatabaseError(f"the state database path {path} is a directory, not a file")
        if read_only and storage_problem(path) is not None:
            engine = create_engine(url, creator=_read_only_sqlite(path), **kwargs)
            event.listen(engine, "connect", _sqlite_read_only_on_connect)
            return engine
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if parsed.drivername.startswith("postgresql"):
        engine = create_engine(url, **kwargs)
        ping_when_idle(engine)
        return engine
    return create_engine(url, **kwargs)


# A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 10.0


def ping_when_idle(engine: Engine, idle_s: float = PING_AFTER_IDLE_S) -> None:
    """Ping a connection before use only when it sat in the pool longer than ``idle_s``
    (a server-side idle timeout, a firewall, a server restart while the pool was quiet):
    a dead one is replaced, as ``pool_pre_ping`` does, without ``pool_pre_ping``'s round
    trip on every checkout of a busy pool, which doubled the cost of a claim."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("checked_in_at")
        if since is None or time.monotonic() - since <= idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool drops this connection and checks out another (a new one if need be).
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take over transaction control from the sqlite3 module so BEGIN IMMEDIATE works and the
    # pragmas below are not wrapped in an implicit transaction.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _read_only_sqlite(path: Path) -> Callable[[], sqlite3.Connection]:
    """Connections that only read ``path`` (which cannot be written: storage_problem). SQLite
    reads a WAL database read-only when its -wal and -shm files exist or can be created; when
    there is no -wal file with content, the database file holds everything and
    ``immutable`` tells SQLite not to look for them (nothing can write it meanwhile)."""
    wal = path.with_name(f"{path.name}-wal")
    immutable = not (wal.exists() and wal.stat().st_size > 0)
    uri = f"file:{quote(str(path.absolute()))}?mode=ro{'&immutable=1' if immutable else ''}"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)

    return connect


def _sqlite_read_only_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # as _sqlite_on_connect; the journal mode is left alone
    dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


@dataclass(frozen=True)
class StorageProblem:
    """Why SQLite cannot write a state database file, as the file system tells it."""

    problem: str
    advice: str


READ_ONLY_ADVICE = ("make it writable, or copy the database to a writable place and give "
                    "--db; 'migrator status' still reads it where it is")
FULL_ADVICE = ("free some space, then run the command again (an interrupted run continues "
               "with --resume)")
LOW_SPACE_BYTES = 1 << 20  # less than this free: a write of a few pages may not fit


def storage_problem(path: Path, *, full: bool = False) -> StorageProblem | None:
    """What keeps SQLite from writing ``path`` (its folder or the file read-only, the device
    full), or None. ``full``: the driver said "database or disk is full"."""
    folder = path.parent
    if not os.access(folder, os.W_OK):
        kind = " (a read-only file system)" if _read_only_fs(folder) else ""
        return StorageProblem(f"its folder {folder} is read-only{kind}, and SQLite writes "
                              f"{path.name}-wal and {path.name}-shm beside the database",
                              READ_ONLY_ADVICE)
    if path.exists() and not os.access(path, os.W_OK):
        return StorageProblem(f"the file {path} is read-only", READ_ONLY_ADVICE)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if full or free < LOW_SPACE_BYTES:
        return StorageProblem(f"no space left on the device holding {folder} ({free:,} bytes "
                              "free)", FULL_ADVICE)
    return None


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: another database, or an unparsable URL)."""
    try:
        return _sqlite_path(url)
    except (ArgumentError, ValueError):
        return None


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose ``begin()`` opens one transaction.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken up front,
    so two writers serialise on the busy timeout instead of failing at commit with
    "database is locked" after both read.
    """
    factory = sessionmaker(engine, expire_on_commit=False)
    if is_sqlite(engine):
        install_begin_immediate(engine)
    return factory


# Execution option of a connection that only reads (engine/steps.read_connection): its
# transactions start with a plain BEGIN on SQLite.
READS_ONLY = "migrator_reads_only"


def install_begin_immediate(engine: Engine) -> None:
    """Make every transaction on this SQLite engine start with ``BEGIN IMMEDIATE``.

    Needed for any real transaction on SQLite here: ``_sqlite_on_connect`` turns the sqlite3
    module's implicit transactions off, so without this listener ``engine.begin()`` would run
    each statement in autocommit. Idempotent.
    """
    if getattr(engine, "_migrator_begin_immediate", False):
        return

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # A connection opened for reads (READS_ONLY) takes a snapshot, not the write lock: in
        # WAL mode it then neither waits for the writers nor makes them wait (in the busy
        # handler's sleeps, while every thread of the process queues behind the one waiting).
        reads = conn.get_execution_options().get(READS_ONLY, False)
        conn.exec_driver_sql("BEGIN" if reads else "BEGIN IMMEDIATE")

    engine._migrator_begin_immediate = True  # type: ignore[attr-defined]
