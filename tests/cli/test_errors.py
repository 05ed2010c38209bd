"""The error boundary: one ``Error:`` line and the error's exit code; no secrets; no writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from migrator import __version__
from migrator.store import schema, sqlite_readonly
from migrator.store.db import make_engine
from migrator.store.schema import Revision
from tests.cli.conftest import Invoke


def sqlite_schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


def test_version(invoke: Invoke) -> None:
    result = invoke("--version")
    assert (result.exit_code, result.stdout) == (0, f"migrator, version {__version__}\n")


def test_unknown_run_is_one_line_on_stderr(invoke: Invoke, db_url: str) -> None:
    result = invoke("--db", db_url, "status", "--run", "wave-9")
    assert (result.exit_code, result.stdout, result.stderr) == (
        4,
        "",
        "Error: no run named 'wave-9' in the state database\n",
    )


def test_debug_shows_the_traceback_then_the_error(invoke: Invoke, db_url: str) -> None:
    result = invoke("--debug", "--db", db_url, "status", "--run", "wave-9")
    assert result.exit_code == 4
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert "migrator.errors.NotFoundError: no run named 'wave-9'" in result.stderr
    assert result.stderr.endswith("\nError: no run named 'wave-9' in the state database\n")


def test_missing_database_says_run_init(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("--db", str(tmp_path / "nope.db"), "status")
    assert (result.exit_code, result.stderr) == (
        3,
        f"Error: no state database at {tmp_path}/nope.db; run 'migrator init' to create it\n",
    )
    assert not (tmp_path / "nope.db").exists()


def test_database_without_schema_is_refused_and_left_alone(
    invoke: Invoke, empty_sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()
    before = sqlite_schema(path)
    result = invoke("--db", empty_sqlite_url, "status")
    assert (result.exit_code, result.stdout, result.stderr) == (
        3,
        "",
        f"Error: the state database at {empty_sqlite_url} has no schema yet; "
        "run 'migrator init'\n",
    )
    assert sqlite_schema(path) == before == []


def test_database_downgraded_to_base_is_refused_and_left_alone(
    invoke: Invoke, db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    schema.downgrade(engine, "base")
    engine.dispose()
    before = sqlite_schema(tmp_path / "state.db")
    result = invoke("--db", db_url, "status")
    assert result.exit_code == 3
    assert result.stderr.endswith("has no schema yet; run 'migrator init'\n")
    assert sqlite_schema(tmp_path / "state.db") == before


def test_database_behind_the_code_is_refused_and_left_alone(
    invoke: Invoke, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = schema.head()
    known = [*schema.history(), Revision("0099_next", current, "next", True)]
    monkeypatch.setattr(schema, "history", lambda: known)
    monkeypatch.setattr(schema, "head", lambda: "0099_next")
    # status reads the code's head from the revision files when it can skip Alembic.
    monkeypatch.setattr(sqlite_readonly, "shipped_head", lambda: "0099_next")
    before = sqlite_schema(tmp_path / "state.db")
    result = invoke("--db", db_url, "status")
    assert (result.exit_code, result.stdout, result.stderr) == (
        3,
        "",
        f"Error: the state database at {db_url} is at revision {current} but this migrator "
        "needs 0099_next; run 'migrator init' (or 'migrator db upgrade')\n",
    )
    assert sqlite_schema(tmp_path / "state.db") == before


def test_a_directory_where_the_database_should_be(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "migrator.db").mkdir()
    for command in (["status"], ["init"], ["db", "current"]):
        result = invoke("--db", str(tmp_path / "migrator.db"), *command)
        assert (result.exit_code, result.stderr) == (
            3,
            f"Error: the state database path {tmp_path}/migrator.db is a directory, not a file\n",
        ), command


def test_a_file_that_is_not_a_database(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the pages you are looking for\n" * 200)
    for command in (["status"], ["init"], ["db", "current"]):
        result = invoke("--db", str(path), *command)
        assert (result.exit_code, result.stderr) == (
            3,
            f"Error: cannot use the state database at sqlite:///{path}: "
            "file is not a database\n",
        ), command


def test_unreachable_postgresql_hides_the_password(invoke: Invoke) -> None:
    # Port 1 on localhost: refused at once, no server needed.
    url = "postgresql://admin:s3cr3t-pw@127.0.0.1:1/state"
    result = invoke("--db", url, "status")
    assert result.exit_code == 3
    assert "s3cr3t-pw" not in result.output
    assert result.stderr.startswith(
        "Error: cannot use the state database at "
        "postgresql+psycopg://admin:***@127.0.0.1:1/state: "
    )
    assert result.stderr.count("\n") == 1


@pytest.mark.postgres
def test_postgresql_without_schema_hides_the_password(invoke: Invoke, empty_pg_url: str) -> None:
    # The local server trusts connections, so the password is accepted and ignored.
    url = empty_pg_url.replace("postgres@", "postgres:s3cr3t-pw@", 1)
    assert "s3cr3t-pw" in url
    result = invoke("--db", url, "status")
    shown = url.replace("s3cr3t-pw", "***")
    assert (result.exit_code, result.output) == (
        3,
        f"Error: the state database at {shown} has no schema yet; run 'migrator init'\n",
    )
