"""``migrator init`` and ``migrator db upgrade|current|history``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from migrator.store import schema
from tests.cli.conftest import Invoke

HEAD = schema.head()
SAMPLE_WRITTEN = (
    "Wrote a sample configuration to migrator.yaml: edit it, then 'migrator discover' and "
    "'migrator plan'.\n"
)
SAMPLE_KEPT = "Kept the existing configuration migrator.yaml.\n"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``init`` writes migrator.yaml in the working directory: never in the repository."""
    monkeypatch.chdir(tmp_path)


def test_init_creates_the_folder_and_the_database_then_is_idempotent(
    invoke: Invoke, tmp_path: Path
) -> None:
    path = tmp_path / "nested" / "state" / "migrator.db"
    url = f"sqlite:///{path}"
    first = invoke("--db", url, "init")
    assert (first.exit_code, first.stdout, first.stderr) == (
        0,
        f"Created the state database at {url} (schema {HEAD}).\n" + SAMPLE_WRITTEN,
        "",
    )
    assert path.is_file()
    second = invoke("--db", url, "init")
    assert (second.exit_code, second.stdout) == (
        0,
        f"The state database at {url} is already at {HEAD}.\n" + SAMPLE_KEPT,
    )


def test_init_takes_a_bare_path_and_the_environment_variable(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke("--db", str(tmp_path / "a.db"), "init")
    assert result.stdout.startswith(f"Created the state database at sqlite:///{tmp_path}/a.db ")
    monkeypatch.setenv("MIGRATOR_DB", str(tmp_path / "b.db"))
    result = invoke("init")
    assert result.stdout.startswith(f"Created the state database at sqlite:///{tmp_path}/b.db ")
    assert (tmp_path / "b.db").is_file()


def test_init_defaults_to_state_migrator_db_in_the_working_directory(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("init")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Created the state database at sqlite:///state/migrator.db (schema {HEAD}).\n"
        + SAMPLE_WRITTEN
    )
    assert (tmp_path / "migrator.yaml").read_text().startswith("# migrator configuration")
    assert (tmp_path / "state" / "migrator.db").is_file()


def test_db_upgrade_refuses_to_create_a_database(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("--db", f"sqlite:///{tmp_path}/missing.db", "db", "upgrade")
    assert (result.exit_code, result.stdout, result.stderr) == (
        3,
        "",
        f"Error: no state database at {tmp_path}/missing.db; run 'migrator init' to create it\n",
    )
    assert not (tmp_path / "missing.db").exists()


def test_db_upgrade_brings_an_empty_database_to_head(
    invoke: Invoke, empty_sqlite_url: str, tmp_path: Path
) -> None:
    sqlite3.connect(tmp_path / "state.db").close()  # exists, no schema
    result = invoke("--db", empty_sqlite_url, "db", "upgrade")
    assert (result.exit_code, result.stdout) == (
        0,
        f"Created the state database at {empty_sqlite_url} (schema {HEAD}).\n",
    )
    again = invoke("--db", empty_sqlite_url, "db", "upgrade")
    assert again.stdout == f"The state database at {empty_sqlite_url} is already at {HEAD}.\n"


def test_db_current_at_head(invoke: Invoke, db_url: str) -> None:
    result = invoke("--db", db_url, "db", "current")
    assert (result.exit_code, result.stdout) == (
        0,
        f"Database: {db_url}\nRevision: {HEAD} (head)\n",
    )


def test_db_current_reports_a_database_without_schema(
    invoke: Invoke, empty_sqlite_url: str, tmp_path: Path
) -> None:
    sqlite3.connect(tmp_path / "state.db").close()
    result = invoke("--db", empty_sqlite_url, "db", "current")
    assert (result.exit_code, result.stdout) == (
        0,
        f"Database: {empty_sqlite_url}\n"
        f"Revision: none: no schema yet (this migrator needs {HEAD}; run 'migrator init')\n",
    )


def test_db_history_lists_every_revision(invoke: Invoke) -> None:
    result = invoke("db", "history")
    assert (result.exit_code, result.stdout) == (
        0,
        "<base> -> 0001_initial: Initial schema: plans, runs, steps and their "
        "dependencies, events, id map, inventory, locks.\n"
        "0001_initial -> 0002_verifications: Verifications: what each 'migrator "
        "verify' of a run found, with its time.\n"
        "0002_verifications -> 0003_workers: Workers sharing a run: the workers table "
        "and runs.control replace the run lock.\n"
        "0003_workers -> 0004_server_downtimes: Servers: the measured downtime of "
        "each server cut over (server_downtimes).\n"
        "0004_server_downtimes -> 0005_named_locks: Named locks: mutual exclusion "
        "between worker processes around cloud calls (named_locks).\n"
        "0005_named_locks -> 0006_planned_bytes (head): Steps: the bytes the plan says "
        "each data step copies (steps.planned_bytes).\n",
    )


@pytest.mark.postgres
def test_init_and_status_on_postgresql(invoke: Invoke, empty_pg_url: str) -> None:
    first = invoke("--db", empty_pg_url, "init")
    assert first.stdout == (
        f"Created the state database at {empty_pg_url} (schema {HEAD}).\n" + SAMPLE_WRITTEN)
    second = invoke("--db", empty_pg_url, "init")
    assert second.stdout == (
        f"The state database at {empty_pg_url} is already at {HEAD}.\n" + SAMPLE_KEPT)
    status = invoke("--db", empty_pg_url, "status")
    assert (status.exit_code, status.stdout) == (
        0,
        f"State database: {empty_pg_url} (schema {HEAD})\nNo runs yet.\n",
    )
