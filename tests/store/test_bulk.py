"""store.bulk.insert_many stores what SQLAlchemy's own executemany stores (JSON, datetimes,
NULLs, constants), on SQLite and PostgreSQL, and leaves SQLite's page cache as it found it."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select, text

from migrator.store.bulk import bulk_cache, insert_many
from migrator.store.db import make_engine
from migrator.store.models import Run, Step, utcnow

STEPS = cast(Table, Step.__table__)
RUNS = cast(Table, Run.__table__)
COLUMNS = ("key", "kind", "source_id", "tenant", "name", "wave", "spec")


def _rows(prefix: str) -> list[tuple[Any, ...]]:
    return [(f"{prefix}:{n}", "network", f"id-{n}", None if n % 2 else "physics",
             f"net é {n}", n % 3, {"attrs": {"name": f"n{n}", "mtu": 1450, "x": None},
                                  "refs": {"project_id": "project:p"}})
            for n in range(7)]


def _stored(conn: Any, run_id: int) -> list[tuple[Any, ...]]:
    columns = [c for c in STEPS.c if c.name not in ("id", "run_id")]
    return [tuple(row) for row in conn.execute(
        select(*columns).where(STEPS.c.run_id == run_id).order_by(STEPS.c.id))]


def _compare(url: str) -> None:
    engine = make_engine(url)
    now = utcnow()
    constants = {"state": "pending", "checkpoint": {}, "attempts": 0, "version": 1,
                 "lease_token": 0, "created_at": now, "updated_at": now}
    try:
        with engine.begin() as conn:
            runs = [conn.execute(insert(RUNS).values(name=name, status="created", options={},
                                                     created_at=now).returning(RUNS.c.id)
                                 ).scalar_one() for name in ("a", "b")]
            conn.execute(insert(STEPS), [
                {"run_id": runs[0], **dict(zip(COLUMNS, row, strict=True)), **constants}
                for row in _rows("k")])
            count = insert_many(conn, STEPS, COLUMNS, _rows("k"),
                                constants={"run_id": runs[1], **constants}, batch=3)
            assert count == 7
            assert _stored(conn, runs[0]) == _stored(conn, runs[1])
            if engine.dialect.name == "sqlite":  # the very text stored, not only the values
                raw = [conn.execute(text(
                    "SELECT spec, checkpoint, created_at FROM steps WHERE run_id = :r "
                    "ORDER BY id"), {"r": r}).all() for r in runs]
                assert raw[0] == raw[1]
    finally:
        engine.dispose()


def test_same_rows_as_sqlalchemy_on_sqlite(db_url: str) -> None:
    _compare(db_url)


@pytest.mark.postgres
def test_same_rows_as_sqlalchemy_on_postgresql(pg_url: str) -> None:
    _compare(pg_url)


def test_bulk_cache_is_restored(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
            with bulk_cache(conn):
                assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -65_536
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before
    finally:
        engine.dispose()
