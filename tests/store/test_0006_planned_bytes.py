"""Revision 0006_planned_bytes on a database holding a run, on SQLite and PostgreSQL: the
steps that were there get NULL (unknown bytes: counted as big copies), and the claim still
holds them to the transfer limit."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from migrator.engine.leases import ClaimLimits, claim_steps
from migrator.engine.runs import StepSpec, create_run
from migrator.store import schema
from migrator.store.db import session_factory
from tests.store.conftest import BACKENDS, engine_at


@pytest.fixture(params=BACKENDS)
def engine_before_planned_bytes(request: pytest.FixtureRequest) -> Engine:
    return engine_at(request, "0005_named_locks")


def test_existing_steps_get_no_planned_bytes_and_count_as_big(
        engine_before_planned_bytes: Engine) -> None:
    engine = engine_before_planned_bytes
    # (ids above those the tables' sequences hand out next on PostgreSQL)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (id, name, status, dry_run, options, created_at) "
                          "VALUES (100, 'r', 'running', false, '{}', CURRENT_TIMESTAMP)"))
        for i in (1, 2):
            conn.execute(text(
                "INSERT INTO steps (id, run_id, key, kind, wave, spec, state, waiting, "
                "checkpoint, attempts, version, lease_token, created_at, updated_at) VALUES "
                "(:i, 100, :k, 'image', 0, '{\"lookup\": {\"size\": 10}}', 'pending', 0, '{}', "
                "0, 1, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"i": 100 + i, "k": f"i{i}"})
    schema.upgrade(engine)
    assert schema.current(engine) == "0006_planned_bytes"
    with engine.connect() as conn:
        found = conn.execute(text("SELECT key, planned_bytes FROM steps ORDER BY id")).all()
    assert [tuple(row) for row in found] == [("i1", None), ("i2", None)]
    factory = session_factory(engine)
    limits = ClaimLimits(frozenset({"image"}), 1, small_copy_bytes=1 << 20)
    assert [c.step.key for c in claim_steps(factory, 100, "w1", 5, limits=limits)] == ["i1"]
    assert claim_steps(factory, 100, "w2", 5, limits=limits) == []
    # A run created after the upgrade records its bytes.
    run = create_run(factory, "new", [StepSpec("j", "image", spec={"lookup": {"size": 10}})],
                     [])
    assert [c.step.planned_bytes for c in claim_steps(factory, run, "w1", 5, limits=limits)
            ] == [10]
    schema.downgrade(engine, "0005_named_locks")
    with engine.connect() as conn:
        columns = conn.execute(text("SELECT * FROM steps")).keys()
    assert "planned_bytes" not in columns
