"""The plan rows and the runs made from them: what ``plan``, ``execute``, ``worker``,
``verify`` and ``report`` ask about them (engine.runs.create_run makes a run's steps; the
executor's own queries are in engine/)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, select

from migrator.store.models import Plan, Run

PLANS = cast(Table, Plan.__table__)
RUNS = cast(Table, Run.__table__)


@dataclass(frozen=True)
class PlanRun:
    """A run registered from a plan."""

    plan_id: int
    run_id: int
    run_name: str
    status: str
    options: dict[str, Any]


@dataclass(frozen=True)
class RunPlan:
    """A run with what its plan names (the plan's fields are None for a run built without
    one)."""

    run_id: int
    run_name: str
    source_cloud: str | None
    target_cloud: str | None
    inventory_hash: str | None


def runs_of_plan(conn: Connection, content_hash: str) -> list[PlanRun]:
    """The runs of the plan whose content hash is ``content_hash``, newest first."""
    rows = conn.execute(
        select(RUNS.c.id, RUNS.c.name, RUNS.c.status, RUNS.c.options, PLANS.c.id.label("pid"))
        .join(PLANS, PLANS.c.id == RUNS.c.plan_id)
        .where(PLANS.c.content_hash == content_hash)
        .order_by(RUNS.c.id.desc())
    ).all()
    return [PlanRun(row.pid, row.id, row.name, row.status, dict(row.options or {}))
            for row in rows]


def find_plan_id(conn: Connection, content_hash: str) -> int | None:
    """The first plan row registered with this content hash."""
    found = conn.execute(select(PLANS.c.id).where(PLANS.c.content_hash == content_hash)
                         .order_by(PLANS.c.id)).scalar()
    return None if found is None else int(found)


def create_plan(conn: Connection, *, name: str, file_path: str, content_hash: str,
                inventory_hash: str, source_cloud: Any, target_cloud: Any) -> int:
    """A new plan row; its id."""
    return int(conn.execute(insert(PLANS).values(
        name=name, file_path=file_path, content_hash=content_hash,
        inventory_hash=inventory_hash, source_cloud=source_cloud,
        target_cloud=target_cloud).returning(PLANS.c.id)).scalar_one())


def delete_plan(conn: Connection, plan_id: int) -> None:
    conn.execute(delete(PLANS).where(PLANS.c.id == plan_id))


def run_names_like(conn: Connection, prefix: str) -> set[str]:
    """The names of the runs that start with ``prefix``."""
    return set(conn.execute(select(RUNS.c.name).where(RUNS.c.name.like(f"{prefix}%")))
               .scalars())


def run_target_cloud(conn: Connection, run_id: int) -> str | None:
    """The target cloud of the plan run ``run_id`` was registered from."""
    found = conn.execute(
        select(PLANS.c.target_cloud).join(RUNS, RUNS.c.plan_id == PLANS.c.id)
        .where(RUNS.c.id == run_id)).scalar()
    return None if found is None else str(found)


def run_options(conn: Connection, run_id: int) -> dict[str, Any]:
    """The options a run was registered with (wave, plan file, dry run)."""
    options = conn.execute(select(RUNS.c.options).where(RUNS.c.id == run_id)).scalar()
    return dict(options or {})


def oldest_run_in(conn: Connection, statuses: Collection[str]) -> str | None:
    """The name of the oldest run whose status is one of ``statuses``."""
    found = conn.execute(select(RUNS.c.name).where(RUNS.c.status.in_(sorted(statuses)))
                         .order_by(RUNS.c.id).limit(1)).scalar()
    return None if found is None else str(found)


def latest_run_name(conn: Connection) -> str | None:
    """The most recently created run's name."""
    found = conn.execute(select(RUNS.c.name).order_by(RUNS.c.created_at.desc(),
                                                      RUNS.c.id.desc()).limit(1)).scalar()
    return None if found is None else str(found)


def run_id_named(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(RUNS.c.id).where(RUNS.c.name == name)).scalar()
    return None if found is None else int(found)


def run_plan(conn: Connection, name: str) -> RunPlan | None:
    """Run ``name`` with its plan's clouds and inventory hash."""
    row = conn.execute(select(RUNS.c.id, RUNS.c.name, PLANS.c.source_cloud,
                              PLANS.c.target_cloud, PLANS.c.inventory_hash)
                       .outerjoin(PLANS, PLANS.c.id == RUNS.c.plan_id)
                       .where(RUNS.c.name == name)).first()
    if row is None:
        return None
    return RunPlan(int(row[0]), str(row[1]), row[2], row[3], row[4])
