"""Fixtures of the store tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    """The state database URL, once on a SQLite file and once on a PostgreSQL database."""
    name = "db_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))
