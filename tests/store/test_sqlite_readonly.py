"""The standard-library look at a SQLite state database: which URLs it takes, the shipped
head read from the revision files as text, and that it never writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from migrator.store import schema
from migrator.store.sqlite_readonly import open_current, shipped_head, sqlite_file


def test_shipped_head_is_alembics_head() -> None:
    assert shipped_head() == schema.head()


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///state/migrator.db", Path("state/migrator.db")),
    ("sqlite:////abs/x.db", Path("/abs/x.db")),
    ("sqlite:///x.db?timeout=5", None),
    ("sqlite+pysqlite:///x.db", None),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("postgresql+psycopg://u@h/d", None),
])
def test_only_plain_sqlite_urls(url: str, path: Path | None) -> None:
    assert sqlite_file(url) == path


def test_reads_without_writing(db_url: str) -> None:
    file = Path(db_url.removeprefix("sqlite:///"))
    before = hashlib.sha256(file.read_bytes()).hexdigest()
    os.chmod(file, 0o444)
    try:
        found = open_current(db_url)
        assert found is not None
        conn, revision = found
        assert revision == schema.head()
        with pytest.raises(Exception, match="readonly"):
            conn.execute("DELETE FROM runs")
        conn.close()
    finally:
        os.chmod(file, 0o644)
    assert hashlib.sha256(file.read_bytes()).hexdigest() == before
    # A reader of a WAL database may leave the (empty) log and its index behind, as SQLite
    # does for any reader that cannot checkpoint; nothing was logged.
    wal = file.with_name(f"{file.name}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_relative_url_is_relative_to_the_working_folder(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    file = Path(db_url.removeprefix("sqlite:///"))
    monkeypatch.chdir(file.parent)
    found = open_current(f"sqlite:///{file.name}")
    assert found is not None
    found[0].close()
    monkeypatch.chdir(file.parent.parent)
    assert open_current(f"sqlite:///{file.name}") is None
