"""Fixtures of the store tests."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from migrator.store import schema
from migrator.store.db import make_engine

# The databases a revision's upgrade is tested on (a fixture's params).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    """The state database URL, once on a SQLite file and once on a PostgreSQL database."""
    name = "db_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


def engine_at(request: pytest.FixtureRequest, revision: str) -> Engine:
    """A new database of ``request.param``'s kind upgraded to ``revision`` (disposed after
    the test): for the tests of the revisions after it."""
    fixture = "empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url"
    engine = make_engine(request.getfixturevalue(fixture), create_dir=True)
    request.addfinalizer(engine.dispose)
    schema.upgrade(engine, revision)
    return engine
