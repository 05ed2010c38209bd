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
