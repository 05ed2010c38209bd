"""``migrator status``: runs and tenants with step counts by state, as text and as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from migrator.cli.status import human_bytes, human_duration
from migrator.operations.status import status
from migrator.store import schema
from migrator.store.db import make_engine
from migrator.store.models import Run, Step, Worker
from tests.cli.conftest import Invoke

HEAD = schema.head()


def seed(url: str) -> None:
    """Two runs: wave-1 (physics and chemistry, mixed states; the failed step with its last
    error) and a dry run of wave-2."""
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
                    Step(run_id=run.id, key=f"s{index}", kind="image", tenant=tenant, state=state,
                         name=f"image-{index}", attempts=3 if state == "failed" else 0,
                         last_error="CloudError: target: upload: HTTP 503" if state == "failed"
                         else None, updated_at=datetime(2026, 11, day, 10, 0, tzinfo=UTC))
                )
        session.commit()
    engine.dispose()


GIB = 1 << 30
STARTED = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


def seed_data_run(url: str) -> None:
    """A finished run that moved data: physics's image (3 GiB sent) and volume (copied 2
    GiB) done, chemistry's volume (5 GiB) failed, its image (1 GiB) pending; the last
    execution took 100 s."""
    engine = make_engine(url)
    with Session(engine) as session:
        run = Run(name="data", status="failed", created_at=STARTED, started_at=STARTED,
                  finished_at=STARTED + timedelta(seconds=100))
        session.add(run)
        session.flush()
        later = STARTED + timedelta(seconds=50)
        for key, kind, tenant, state, spec, checkpoint in [
            ("i1", "image", "physics", "done", {"lookup": {"size": 3 * GIB}},
             {"bytes": 3 * GIB, "md5": "a" * 32, "sha512": "b" * 128}),
            ("v1", "volume", "physics", "done", {"attrs": {"size": 2}},
             {"copy": {"copied": {"bytes": 2 * GIB, "md5": "c" * 32}}}),
            ("v2", "volume", "chemistry", "failed", {"attrs": {"size": 5}}, {}),
            ("i2", "image", "chemistry", "pending", {"lookup": {"size": GIB}}, {}),
            ("p1", "project", "chemistry", "done", {}, {"target_id": "t"}),
        ]:
            session.add(Step(run_id=run.id, key=key, kind=kind, tenant=tenant, state=state,
                             spec=spec, checkpoint=checkpoint, updated_at=later,
                             name=f"{tenant}-{key}",
                             last_error="TransferError: volume is attached" if state ==
                             "failed" else None, attempts=1 if state == "failed" else 0))
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
        "failed": [],
        "workers": [],
        "processes": [],
        "servers": [],
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
        "\n"
        "Steps by tenant and kind\n"
        "  TENANT     KIND   STEPS  pending  running  done  failed  skipped\n"
        "  biology    image      2        2        0     0       0        0\n"
        "  chemistry  image      2        1        0     1       0        0\n"
        "  physics    image      5        0        1     2       1        1\n"
        "  -          image      1        0        0     1       0        0\n"
        "\n"
        "Failed steps (1)\n"
        "  RUN     TENANT   KIND   NAME     ATTEMPTS  LAST ERROR\n"
        "  wave-1  physics  image  image-3         3  CloudError: target: upload: HTTP 503\n"
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
        "\n"
        "Steps by tenant and kind\n"
        "  TENANT     KIND   STEPS  pending  running  done  failed\n"
        "  chemistry  image      2        1        0     1       0\n"
        "  physics    image      4        0        1     2       1\n"
        "  -          image      1        0        0     1       0\n"
        "\n"
        "Failed steps (1)\n"
        "  RUN     TENANT   KIND   NAME     ATTEMPTS  LAST ERROR\n"
        "  wave-1  physics  image  image-3         3  CloudError: target: upload: HTTP 503\n"
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
                "started_at": None,
                "finished_at": None,
                "data": {"moved": 0, "left": 0, "rate": None, "eta_s": None},
                "total": 4,
            },
            {
                "name": "wave-2",
                "status": "created",
                "dry_run": True,
                "created_at": "2026-11-02T09:30:00",
                "steps": {"skipped": 1},
                "started_at": None,
                "finished_at": None,
                "data": {"moved": 0, "left": 0, "rate": None, "eta_s": None},
                "total": 1,
            },
        ],
        "tenants": [
            {"tenant": "physics", "steps": {"running": 1, "done": 2, "failed": 1, "skipped": 1},
             "kinds": {"image": {"running": 1, "done": 2, "failed": 1, "skipped": 1}},
             "data": {"moved": 0, "left": 0, "rate": None, "eta_s": None}, "total": 5},
        ],
        "failed": [
            {"run": "wave-1", "tenant": "physics", "kind": "image", "name": "image-3",
             "key": "s3", "attempts": 3, "last_error": "CloudError: target: upload: HTTP 503",
             "failed_at": "2026-11-01T10:00:00+00:00"},
        ],
        "workers": [],
        "processes": [],
        "servers": [],
    }


def test_status_of_a_tenant_without_steps(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--db", seeded_url, "status", "--run", "wave-2", "--tenant", "chemistry")
    assert (result.exit_code, result.stdout, result.stderr) == (
        4,
        "",
        "Error: no steps for tenant 'chemistry' in run 'wave-2'\n",
    )


def test_status_shows_bytes_moved_and_left_and_the_rate(invoke: Invoke, db_url: str) -> None:
    seed_data_run(db_url)
    result = invoke("--db", db_url, "status")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"State database: {db_url} (schema {HEAD})\n"
        "\n"
        "Runs\n"
        "  RUN   STATUS  STEPS  pending  done  failed    MOVED     LEFT        RATE  ETA\n"
        "  data  failed      5        1     3       1  5.0 GiB  6.0 GiB  51.2 MiB/s    -\n"
        "\n"
        "Tenants\n"
        "  TENANT     STEPS  pending  done  failed    MOVED     LEFT        RATE  ETA\n"
        "  chemistry      3        1     1       1      0 B  6.0 GiB           -    -\n"
        "  physics        2        0     2       0  5.0 GiB      0 B  51.2 MiB/s    -\n"
        "\n"
        "Steps by tenant and kind\n"
        "  TENANT     KIND     STEPS  pending  done  failed\n"
        "  chemistry  project      1        0     1       0\n"
        "  chemistry  image        1        1     0       0\n"
        "  chemistry  volume       1        0     0       1\n"
        "  physics    image        1        0     1       0\n"
        "  physics    volume       1        0     1       0\n"
        "\n"
        "Failed steps (1)\n"
        "  RUN   TENANT     KIND    NAME          ATTEMPTS  LAST ERROR\n"
        "  data  chemistry  volume  chemistry-v2         1  TransferError: volume is attached\n"
    )


def test_a_running_run_gets_an_eta_from_its_steps_and_its_bytes(db_url: str) -> None:
    """50 s into the run, 2 steps done in it and 5 GiB moved: 2 steps left at 25 s a step
    (50 s) and 6 GiB left at 5 GiB per 50 s (60 s): the ETA is the longer, 60 s."""
    seed_data_run(db_url)
    engine = make_engine(db_url)
    with Session(engine) as session:
        run = session.query(Run).one()
        run.status, run.finished_at = "running", None
        for step in session.query(Step).filter(Step.state == "failed"):
            step.state = "pending"
        for step in session.query(Step).filter(Step.key == "p1"):
            step.updated_at = STARTED - timedelta(seconds=5)  # done before this execution
        session.commit()
    engine.dispose()
    report = status(db_url, now=STARTED + timedelta(seconds=50))
    (run_summary,) = report.runs
    assert run_summary.data.moved == 5 * GIB and run_summary.data.left == 6 * GIB
    assert run_summary.data.rate == pytest.approx(5 * GIB / 50)
    assert run_summary.data.eta_s == pytest.approx(60.0)
    tenants = {t.tenant: t for t in report.tenants}
    # chemistry has moved nothing in this execution yet: no estimate; physics is through.
    assert (tenants["chemistry"].data.rate, tenants["chemistry"].data.eta_s) == (None, None)
    assert tenants["physics"].data.eta_s == 0.0
    assert human_duration(75) == "1m15s" and human_bytes(5 * GIB) == "5.0 GiB"


def test_status_shows_the_workers_and_the_steps_they_hold(invoke: Invoke, db_url: str) -> None:
    seed_data_run(db_url)
    engine = make_engine(db_url)
    with Session(engine) as session:
        run = session.query(Run).one()
        session.add(Worker(name="vm-a:41:w1", run_id=run.id, host="vm-a", pid=41, slots=8,
                           status="active", started_at=STARTED,
                           heartbeat_at=STARTED + timedelta(seconds=55)))
        # A lease owner with no worker row: a run executed before workers existed.
        for key, owner in (("i2", "vm-a:41:w1"), ("v2", "vm-b:77")):
            step = session.query(Step).filter(Step.key == key).one()
            step.state, step.lease_owner = "running", owner
            step.updated_at = STARTED + timedelta(seconds=50)
        session.commit()
    engine.dispose()
    result = invoke("--db", db_url, "status")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "Workers\n"
        "  RUN   WORKER      HOST  PID  SLOTS  STEPS  LAST HEARTBEAT\n"
        "  data  vm-a:41:w1  vm-a   41      8      1  2026-11-03 10:00:55\n"
        "  data  vm-b:77     -       -      -      1  -\n")


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
    seed_data_run(pg_url)
    seed_data_run(seeded_url)
    data_sqlite = json.loads(invoke("--db", seeded_url, "status", "--run", "data",
                                    "--format", "json").stdout)
    data_pg = json.loads(invoke("--db", pg_url, "status", "--run", "data", "--format",
                                "json").stdout)
    for report in (data_sqlite, data_pg):
        del report["database"]
        for run in report["runs"]:
            for key in ("created_at", "started_at", "finished_at"):
                del run[key]
        for failed in report["failed"]:
            del failed["failed_at"]
    assert data_pg == data_sqlite
    assert on_postgresql == on_sqlite
