"""Engine test fixtures: a session factory on a database built by the Alembic upgrade."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from migrator.store.db import make_engine, session_factory


@pytest.fixture(params=["db_url", pytest.param("pg_url", marks=pytest.mark.postgres)])
def any_url(request: pytest.FixtureRequest) -> str:
    """The state database at head, on SQLite and on PostgreSQL."""
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def any_factory(any_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(any_url)
    yield session_factory(engine)
    engine.dispose()
