"""``migrator status``: runs and tenants with step counts by state, as text and as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from migrator.store import schema
from migrator.store.db import make_engine
from migrator.store.models import Run, Step
from tests.cli.conftest import Invoke

HEAD = schema.head()


def seed(url: str) -> None:
    """Two runs: wave-1 (physics and chemistry, mixed states) and a dry run of wave-2."""
    steps = {
        "wave-1": [
            ("physics", "done"),
            ("physics", "done"),
            ("physics", "running"),
            ("physics", "failed"),
            ("chemistry", "pending"),
            ("chemistry", "done"),
            (None, "done"),
        ],
        "wave-2": [("biology", "pending"), ("biology", "pending"), ("physics", "skipped")],
    }
    engine = make_engine(url)
    with Session(engine) as session:
        for day, (name, run_steps) in enumerate(steps.items(), start=1):
            run = Run(
                name=name,
                status="running" if name == "wave-1" else "created",
                dry_run=name == "wave-2",
                created_at=datetime(2026, 11, day, 9, 30, tzinfo=UTC),
            )
            session.add(run)
            session.flush()
            for index, (tenant, state) in enumerate(run_steps):
                session.add(
                    Step(run_id=run.id, key=f"s{index}", kind="image", tenant=tenant, state=state)
                )
        session.commit()
    engine.dispose()


@pytest.fixture
def seeded_url(db_url: str) -> str:
    seed(db_url)
    return db_url


def test_status_of_an_empty_database(invoke: Invoke, db_url: str) -> None:
    result = invoke("--db", db_url, "status")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        f"State database: {db_url} (schema {HEAD})\nNo runs yet.\n",
        "",
    )


def test_status_of_an_empty_database_as_json(invoke: Invoke, db_url: str) -> None:
    result = invoke("--db", db_url, "status", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "database": db_url,
        "revision": HEAD,
        "run": None,
        "tenant": None,
        "runs": [],
        "tenants": [],
        "workers": [],
    }


def test_status_of_every_run_and_tenant(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--db", seeded_url, "status")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"State database: {seeded_url} (schema {HEAD})\n"
        "\n"
        "Runs\n"
        "  RUN     STATUS             STEPS  pending  running  done  failed  skipped\n"
        "  wave-1  running                7        1        1     4       1        0\n"
        "  wave-2  created (dry run)      3        2        0     0       0        1\n"
        "\n"
        "Tenants\n"
        "  TENANT     STEPS  pending  running  done  failed  skipped\n"
        "  biology        2        2        0     0       0        0\n"
        "  chemistry      2        1        0     1       0        0\n"
        "  physics        5        0        1     2       1        1\n"
        "  -              1        0        0     1       0        0\n"
    )


def test_status_of_one_run_breaks_it_down_by_tenant(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--db", seeded_url, "status", "--run", "wave-1")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"State database: {seeded_url} (schema {HEAD})\n"
        "\n"
        "Runs\n"
        "  RUN     STATUS   STEPS  pending  running  done  failed\n"
        "  wave-1  running      7        1        1     4       1\n"
        "\n"
        "Tenants in run wave-1\n"
        "  TENANT     STEPS  pending  running  done  failed\n"
        "  chemistry      2        1        0     1       0\n"
        "  physics        4        0        1     2       1\n"
        "  -              1        0        0     1       0\n"
    )


def test_status_of_one_tenant_as_json(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--db", seeded_url, "status", "--tenant", "physics", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "database": seeded_url,
        "revision": HEAD,
        "run": None,
        "tenant": "physics",
        "runs": [
            {
                "name": "wave-1",
                "status": "running",
                "dry_run": False,
                "created_at": "2026-11-01T09:30:00",
                "steps": {"running": 1, "done": 2, "failed": 1},
                "total": 4,
            },
            {
                "name": "wave-2",
                "status": "created",
                "dry_run": True,
                "created_at": "2026-11-02T09:30:00",
                "steps": {"skipped": 1},
                "total": 1,
            },
        ],
        "tenants": [
            {"tenant": "physics", "steps": {"running": 1, "done": 2, "failed": 1, "skipped": 1},
             "total": 5},
        ],
        "workers": [],
    }


def test_status_of_a_tenant_without_steps(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--db", seeded_url, "status", "--run", "wave-2", "--tenant", "chemistry")
    assert (result.exit_code, result.stdout, result.stderr) == (
        4,
        "",
        "Error: no steps for tenant 'chemistry' in run 'wave-2'\n",
    )


@pytest.mark.postgres
def test_status_on_postgresql_matches_sqlite(
    invoke: Invoke, seeded_url: str, pg_url: str
) -> None:
    seed(pg_url)
    on_sqlite = json.loads(invoke("--db", seeded_url, "status", "--format", "json").stdout)
    on_postgresql = json.loads(invoke("--db", pg_url, "status", "--format", "json").stdout)
    for report in (on_sqlite, on_postgresql):
        del report["database"]
        for run in report["runs"]:
            del run["created_at"]  # naive on SQLite, with a time zone on PostgreSQL
    assert on_postgresql == on_sqlite
