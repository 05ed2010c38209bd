"""URL resolution, redaction and the errors of opening a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.errors import DatabaseError
from migrator.store.db import make_engine, redact, resolve_url


def test_resolve_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATOR_DB", raising=False)
    assert resolve_url() == "sqlite:///state/migrator.db"
    assert resolve_url("x/y.db") == "sqlite:///x/y.db"
    assert resolve_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    monkeypatch.setenv("MIGRATOR_DB", "/abs/z.db")
    assert resolve_url() == "sqlite:////abs/z.db"
    assert resolve_url("sqlite:///cli.db") == "sqlite:///cli.db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://admin:pw@db:5432/state", "postgresql+psycopg://admin:***@db:5432/state"),
        ("postgresql+psycopg://admin@db/state", "postgresql+psycopg://admin@db/state"),
        # Unparsable (the port is not a number): the password is still hidden.
        ("postgresql://admin:pw@db:port/state", "postgresql://admin:***@db:port/state"),
        ("sqlite:///state/migrator.db", "sqlite:///state/migrator.db"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://admin:pw@db:port/state",
            "database URL postgresql://admin:***@db:port/state is not valid (expected "
            "sqlite:///PATH, a file path, or postgresql://USER@HOST/DATABASE)",
        ),
        (
            "mongodb://admin:pw@db/state",
            "database URL mongodb://admin:***@db/state is not usable: "
            "Can't load plugin: sqlalchemy.dialects:mongodb",
        ),
        (
            "postgresql+pg8000://admin:pw@db/state",
            "database URL postgresql+pg8000://admin:***@db/state: the driver for "
            "postgresql+pg8000 is not installed",
        ),
    ],
)
def test_make_engine_refuses_bad_urls_without_showing_the_password(
    url: str, message: str
) -> None:
    with pytest.raises(DatabaseError) as caught:
        make_engine(url)
    assert str(caught.value) == message


def test_make_engine_needs_an_existing_sqlite_file_unless_asked_to_create(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/sub/x.db"
    with pytest.raises(DatabaseError) as caught:
        make_engine(url)
    assert str(caught.value) == (
        f"no state database at {tmp_path}/sub/x.db; run 'migrator init' to create it"
    )
    make_engine(url, create_dir=True).dispose()
    assert (tmp_path / "sub").is_dir()


def test_make_engine_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="is a directory, not a file"):
        make_engine(f"sqlite:///{tmp_path}")


def test_json_columns_are_stored_compact_and_read_back(tmp_path: Path) -> None:
    """JSON columns go through migrator.jsoncodec: no whitespace, non-ASCII kept, insertion
    order kept, and values orjson refuses (an integer beyond 64 bits) still round-trip."""
    from sqlalchemy import text

    from migrator.store import schema
    from migrator.store.db import session_factory
    from migrator.store.models import Plan, Run

    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}", create_dir=True)
    schema.upgrade(engine)
    options = {"z": "Zürich", "a": [1, 2**70], "wave": None}
    with session_factory(engine).begin() as session:
        plan = Plan(name="p", file_path="p.yaml", content_hash="h", inventory_hash="i",
                    source_cloud="s", target_cloud="t")
        session.add(plan)
        session.flush()
        session.add(Run(name="r", plan_id=plan.id, status="created", options=options))
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT options FROM runs")).scalar_one()
    assert stored == '{"z":"Zürich","a":[1,1180591620717411303424],"wave":null}'
    with session_factory(engine)() as session:
        assert session.query(Run).one().options == options
    engine.dispose()


@pytest.mark.postgres
def test_a_pooled_connection_that_died_while_idle_is_replaced_before_use(
    empty_pg_url: str,
) -> None:
    """No pre-ping on every checkout (a round trip each): a connection idle in the pool for
    longer than the limit is pinged, and one the server dropped is replaced, not handed out."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from migrator.store.db import ping_when_idle

    engine = make_engine(empty_pg_url)
    ping_when_idle(engine, idle_s=0.0)  # every checkout after a return counts as idle
    admin = make_engine(empty_pg_url)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as conn:  # the server drops the idle pooled connection
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with engine.connect() as conn:
            second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
        # Returned a moment ago (under the default 10 s): handed out without a ping, so a
        # connection the server dropped meanwhile fails its statement (what the ping spares).
        bare = make_engine(empty_pg_url, pool_size=1, max_overflow=0)
        with bare.connect() as conn:
            victim = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
        with pytest.raises(DBAPIError), bare.connect() as conn:
            conn.execute(text("SELECT 1"))
        bare.dispose()
    finally:
        engine.dispose()
        admin.dispose()
