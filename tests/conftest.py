"""Fixtures shared by every test package: state databases at head, on SQLite and PostgreSQL.

- ``db_url``: a fresh SQLite file in ``tmp_path``, upgraded to head.
- ``pg_url``: a scratch PostgreSQL database, upgraded to head, dropped after the test.
- ``empty_sqlite_url`` / ``empty_pg_url``: the same without any schema.

PostgreSQL is ``$MIGRATOR_TEST_PG`` (default: the local server, trust auth). Tests that use it
are skipped when it is unreachable, except in CI (``CI=true``), where that is a failure.
Tests using the PostgreSQL fixtures must be marked ``@pytest.mark.postgres``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from migrator.store import schema
from migrator.store.db import make_engine

PG_SERVER_URL = os.environ.get(
    "MIGRATOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def upgraded(url: str) -> str:
    engine = make_engine(url, create_dir=True)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file that does not exist yet (its folder does)."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def db_url(empty_sqlite_url: str) -> str:
    return upgraded(empty_sqlite_url)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server's URL, once it answered; skip (or fail in CI) when it does not."""
    engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        reason = f"PostgreSQL at {make_url(PG_SERVER_URL)!r} is unreachable: {exc.orig}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return PG_SERVER_URL


@pytest.fixture
def empty_pg_url(pg_server: str) -> Iterator[str]:
    """URL of a scratch database with no schema, dropped after the test."""
    name = f"migrator_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            # FORCE: a test that failed may have left connections open.
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_url(empty_pg_url: str) -> str:
    return upgraded(empty_pg_url)
