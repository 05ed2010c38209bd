"""``status`` reads a current SQLite database through the standard library and anything else
through SQLAlchemy: both paths give the same report, and every unusual database takes the
SQLAlchemy path (which owns the error messages)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from migrator.errors import DatabaseError, NotFoundError, SchemaBehindError
from migrator.operations.status import status
from migrator.store import schema, sqlite_readonly
from tests.cli.test_status import seed

FILTERS = [(None, None), ("wave-1", None), (None, "physics"), ("wave-2", "physics"),
           ("wave-1", "chemistry")]


def through_sqlalchemy(url: str) -> str:
    """The same file by a URL the standard-library path does not take."""
    return url.replace("sqlite:///", "sqlite+pysqlite:///", 1)


@pytest.mark.parametrize(("run", "tenant"), FILTERS)
def test_both_paths_give_the_same_report(db_url: str, run: str | None,
                                         tenant: str | None) -> None:
    seed(db_url)
    assert sqlite_readonly.open_current(db_url) is not None  # the quick path is taken
    assert sqlite_readonly.open_current(through_sqlalchemy(db_url)) is None
    quick = status(db_url, run=run, tenant=tenant)
    slow = status(through_sqlalchemy(db_url), run=run, tenant=tenant)
    assert quick.runs, quick
    assert quick == replace(slow, database=db_url)
    assert quick.as_dict() == {**slow.as_dict(), "database": db_url}


@pytest.mark.parametrize("url_of", [lambda url: url, through_sqlalchemy])
def test_unknown_names_are_refused_on_both_paths(db_url: str,
                                                url_of: Callable[[str], str]) -> None:
    seed(db_url)
    url = url_of(db_url)
    with pytest.raises(NotFoundError, match="no run named 'wave-9'"):
        status(url, run="wave-9")
    with pytest.raises(NotFoundError, match="no steps for tenant 'geology'"):
        status(url, tenant="geology")


def test_an_empty_database(db_url: str) -> None:
    report = status(db_url)
    assert (report.runs, report.tenants, report.revision) == ([], [], schema.head())


def test_a_database_behind_goes_to_sqlalchemy_and_is_refused(db_url: str) -> None:
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'from_the_future'")
    conn.close()
    assert sqlite_readonly.open_current(db_url) is None
    with pytest.raises(DatabaseError, match="revision from_the_future, which this migrator "
                                            "does not know"):
        status(db_url)


def test_no_schema_and_no_file_get_the_usual_errors(empty_sqlite_url: str,
                                                    tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match=r"no state database at .*run 'migrator init'"):
        status(empty_sqlite_url)
    assert not Path(empty_sqlite_url.removeprefix("sqlite:///")).exists()  # nothing created
    sqlite3.connect(tmp_path / "state.db").close()  # an empty SQLite file
    with pytest.raises(SchemaBehindError, match="has no schema yet; run 'migrator init'"):
        status(empty_sqlite_url)


def test_both_paths_read_the_same_bytes_failures_and_executors(db_url: str) -> None:
    """The data steps' bytes (read out of their JSON), the steps finished since the start,
    the failed steps, the executors holding steps and the servers' measured downtime: the
    same on both paths."""
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from migrator.store.db import make_engine
    from migrator.store.models import Run, ServerDowntime, Step, Worker
    from tests.cli.test_status import STARTED, seed_data_run

    seed(db_url)
    seed_data_run(db_url)
    engine = make_engine(db_url)
    with Session(engine) as session:
        run = session.query(Run).filter(Run.name == "data").one()
        run.status, run.finished_at = "running", None
        session.add(Worker(name="vm-a:41:w1", run_id=run.id, host="vm-a", pid=41, slots=4,
                           status="active", started_at=STARTED, heartbeat_at=STARTED))
        step = session.query(Step).filter(Step.key == "i2").one()
        step.state, step.lease_owner = "running", "vm-a:41:w1"
        done = session.query(Step).filter(Step.run_id == run.id, Step.key != "i2").first()
        assert done is not None
        session.add(ServerDowntime(
            run_id=run.id, step_id=done.id, tenant=done.tenant, source_id="s1",
            target_id="t1", name="web", power_state="ACTIVE", stopped_at=STARTED,
            active_at=STARTED + timedelta(seconds=30), verified_at=STARTED + timedelta(seconds=31),
            downtime_seconds=31.5, copy_seconds=20.25, bytes=3 << 30))
        downtime_tenant = done.tenant
        session.commit()
    engine.dispose()
    now = STARTED + timedelta(seconds=80)
    for run_name, tenant in [(None, None), ("data", None), ("data", "chemistry")]:
        quick = status(db_url, run=run_name, tenant=tenant, now=now)
        slow = status(through_sqlalchemy(db_url), run=run_name, tenant=tenant, now=now)
        assert quick == replace(slow, database=db_url)
    report = status(db_url, run="data", now=now)
    assert report.runs[0].data.moved == 5 << 30 and report.runs[0].data.eta_s is not None
    assert [w.owner for w in report.workers] == ["vm-a:41:w1"]
    assert [(p.name, p.host, p.pid) for p in report.processes] == [("vm-a:41:w1", "vm-a", 41)]
    assert [(f.tenant, f.kind) for f in report.failed] == [("chemistry", "volume")]
    assert [(d.tenant, d.servers, d.total_seconds, d.copy_seconds, d.bytes)
            for d in report.servers] == [(downtime_tenant, 1, 31.5, 20.25, 3 << 30)]
