"""Revision 0003_workers on a database holding a run: every step's ``waiting`` is computed
from its dependencies' states, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from migrator.store import schema
from tests.store.conftest import BACKENDS, engine_at


@pytest.fixture(params=BACKENDS)
def engine_before_workers(request: pytest.FixtureRequest) -> Engine:
    return engine_at(request, "0002_verifications")


def test_waiting_is_computed_for_existing_steps(engine_before_workers: Engine) -> None:
    engine = engine_before_workers
    states = {"a": "done", "b": "pending", "c": "pending", "d": "skipped", "e": "pending"}
    deps = [("c", "a"), ("c", "b"), ("e", "d"), ("e", "c")]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (id, name, status, dry_run, options, created_at) "
                          "VALUES (1, 'r', 'running', false, '{}', CURRENT_TIMESTAMP)"))
        for i, (key, state) in enumerate(states.items(), 1):
            conn.execute(text(
                "INSERT INTO steps (id, run_id, key, kind, wave, spec, state, checkpoint, "
                "attempts, version, lease_token, created_at, updated_at) VALUES (:i, 1, :k, "
                "'x', 0, '{}', :s, '{}', 0, 1, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                {"i": i, "k": key, "s": state})
        ids = {key: i for i, key in enumerate(states, 1)}
        for step, needs in deps:
            conn.execute(text("INSERT INTO step_dependencies VALUES (:s, :d)"),
                         {"s": ids[step], "d": ids[needs]})
    schema.upgrade(engine)
    with engine.connect() as conn:
        found = dict(conn.execute(text("SELECT key, waiting FROM steps")).all())
    assert found == {"a": 0, "b": 0, "c": 1, "d": 0, "e": 1}
