"""Reading the state database back in tests (plain SQL through our real database)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, create_engine, select

from migrator.engine import machine
from migrator.store.models import Event, Run, Step, Worker


def engine_for(url: str) -> Engine:
    return create_engine(url)


def steps_by_key(engine: Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(Step.__table__).where(Step.run_id == run_id)).mappings()
        return {r["key"]: dict(r) for r in rows}


def states(engine: Engine, run_id: int) -> dict[str, str]:
    return {k: r["state"] for k, r in steps_by_key(engine, run_id).items()}


def run_status(engine: Engine, run_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one())


def leases(engine: Engine) -> list[str]:
    """Keys of the steps that some worker holds a lease on."""
    with engine.connect() as conn:
        return list(conn.execute(select(Step.key).where(Step.lease_owner.is_not(None))
                                 ).scalars())


def active_workers(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(Worker.__table__).where(Worker.status == "active")).mappings()]


def step_events(engine: Engine, run_id: int) -> dict[int, list[dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Event.__table__)
            .where(Event.run_id == run_id, Event.step_id.is_not(None))
            .order_by(Event.id)
        ).mappings()
        by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_step[r["step_id"]].append(dict(r))
        return by_step


def assert_event_chains(
    engine: Engine, run_id: int, *, final_state: str | None = machine.DONE
) -> None:
    """Every step's events chain from the initial state, each a legal transition (or a
    checkpoint, which keeps the state), without gaps, and ``version == 1 + events``."""
    events = step_events(engine, run_id)
    for key, step in steps_by_key(engine, run_id).items():
        chain = events.get(step["id"], [])
        state = machine.INITIAL_STATE
        for ev in chain:
            assert ev["from_state"] == state, f"{key}: gap before {ev}"
            if ev["trigger"] == machine.CHECKPOINT_TRIGGER:
                assert ev["to_state"] == state, f"{key}: checkpoint changed state: {ev}"
            elif ev["trigger"] == machine.RECLAIM_TRIGGER:
                assert ev["to_state"] == state, f"{key}: a takeover changed state: {ev}"
            else:
                assert machine.destination(state, ev["trigger"]) == ev["to_state"], (
                    f"{key}: illegal transition recorded: {ev}"
                )
            state = ev["to_state"]
        assert state == step["state"], f"{key}: events end {state}, row is {step['state']}"
        if final_state is not None:
            assert state == final_state, f"{key}: ends {state}, expected {final_state}"
        assert step["version"] == 1 + len(chain), f"{key}: version {step['version']}"
