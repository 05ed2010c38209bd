"""Reads of a run's steps for the commands that look at a run from outside the executor
(``verify``, ``plan --graph``, ``demo``); the executor's own are in engine/."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from migrator.engine.steps import STEPS, StepSnapshot
from migrator.store.models import Event, Step, StepDependency


@dataclass(frozen=True, slots=True)
class GraphRow:
    """A step as its run's graph draws it: the keys of the steps it depends on."""

    key: str
    kind: str
    tenant: str | None
    name: str | None
    state: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DataStepRow:
    """An image or volume step with its checkpoint."""

    kind: str
    source_id: str | None
    name: str | None
    tenant: str | None
    checkpoint: Any


def step_snapshots(conn: Connection, run_id: int, tenant: str | None = None
                   ) -> list[StepSnapshot]:
    """The steps of a run (of one tenant), in id order."""
    query = select(STEPS).where(STEPS.c.run_id == run_id).order_by(STEPS.c.id)
    if tenant is not None:
        query = query.where(STEPS.c.tenant == tenant)
    return [StepSnapshot.from_row(r) for r in conn.execute(query).mappings()]


def graph_rows(conn: Connection, run_id: int) -> list[GraphRow]:
    """The steps of a run in id order, with their states and dependencies."""
    rows = conn.execute(select(Step.id, Step.key, Step.kind, Step.tenant, Step.name,
                               Step.state).where(Step.run_id == run_id)
                        .order_by(Step.id)).all()
    key_of = {row[0]: row[1] for row in rows}
    deps: dict[int, list[str]] = defaultdict(list)
    for step_id, needs in conn.execute(
            select(StepDependency.step_id, StepDependency.depends_on_id)
            .join(Step, Step.id == StepDependency.step_id).where(Step.run_id == run_id)):
        deps[step_id].append(key_of[needs])
    return [GraphRow(key, kind, tenant, name, state, tuple(deps.get(sid, ())))
            for sid, key, kind, tenant, name, state in rows]


def completed_twice(conn: Connection, run_id: int) -> list[str]:
    """Keys of the steps the audit log shows completing more than once."""
    rows = conn.execute(
        select(Step.key).join(Event, Event.step_id == Step.id)
        .where(Event.run_id == run_id, Event.trigger == "complete")
        .group_by(Step.key).having(func.count() > 1)).all()
    return [key for (key,) in rows]


def data_steps(conn: Connection, run_id: int) -> list[DataStepRow]:
    """The image and volume steps of a run, by tenant, kind and name."""
    rows = conn.execute(select(Step.kind, Step.source_id, Step.name, Step.tenant,
                               Step.checkpoint)
                        .where(Step.run_id == run_id, Step.kind.in_(("image", "volume")))
                        .order_by(Step.tenant, Step.kind, Step.name)).all()
    return [DataStepRow(*row) for row in rows]
