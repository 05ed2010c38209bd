"""``status``: progress of runs and tenants, as step counts by state."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, func, select

from migrator.errors import NotFoundError
from migrator.operations.context import open_state
from migrator.store import schema
from migrator.store.db import redact
from migrator.store.models import Run, Step

# Lifecycle order for display; states this list does not know (added later by the engine)
# are shown after these, alphabetically, rather than hidden.
STATE_ORDER = (
    "pending",
    "running",
    "verifying",
    "done",
    "failed",
    "blocked",
    "skipped",
    "rolled_back",
)


@dataclass(frozen=True)
class RunSummary:
    name: str
    status: str
    dry_run: bool
    created_at: datetime
    steps: dict[str, int]  # state -> count, in lifecycle order

    @property
    def total(self) -> int:
        return sum(self.steps.values())


@dataclass(frozen=True)
class TenantSummary:
    tenant: str | None  # None: steps that belong to no tenant
    steps: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.steps.values())


@dataclass(frozen=True)
class StatusReport:
    database: str  # URL with the password hidden
    revision: str
    run: str | None  # the filters the report was made with
    tenant: str | None
    runs: list[RunSummary] = field(default_factory=list)
    tenants: list[TenantSummary] = field(default_factory=list)

    @property
    def states(self) -> list[str]:
        """Every state that occurs in the report, in lifecycle order."""
        seen = {state for run in self.runs for state in run.steps}
        return order_states(seen)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: datetimes as ISO 8601 strings, totals included."""
        data = asdict(self)
        for run_data, run in zip(data["runs"], self.runs, strict=True):
            run_data["created_at"] = run.created_at.isoformat()
            run_data["total"] = run.total
        for tenant_data, tenant in zip(data["tenants"], self.tenants, strict=True):
            tenant_data["total"] = tenant.total
        return data


def order_states(states: set[str]) -> list[str]:
    known = [state for state in STATE_ORDER if state in states]
    return known + sorted(states - set(STATE_ORDER))


def status(url: str, run: str | None = None, tenant: str | None = None) -> StatusReport:
    """Runs with their step counts by state, and the same per tenant.

    ``run`` restricts both to one run (the per-tenant breakdown of that run); ``tenant`` to
    one tenant's steps. A run name or tenant that matches nothing is a NotFoundError, so a
    typo is not mistaken for "nothing to do".
    """
    with open_state(url, read_only=True) as engine:
        runs = _runs(engine, run)
        if run is not None and not runs:
            raise NotFoundError(f"no run named {run!r} in the state database")
        counts = _step_counts(engine, [r.id for r in runs], tenant)
        if tenant is not None and not counts:
            where = f" in run {run!r}" if run is not None else ""
            raise NotFoundError(f"no steps for tenant {tenant!r}{where}")
        per_run: dict[int, Counter[str]] = defaultdict(Counter)
        per_tenant: dict[str | None, Counter[str]] = defaultdict(Counter)
        for run_id, step_tenant, state, count in counts:
            per_run[run_id][state] += count
            per_tenant[step_tenant][state] += count
        return StatusReport(
            database=redact(url),
            revision=schema.head(),
            run=run,
            tenant=tenant,
            runs=[
                RunSummary(r.name, r.status, r.dry_run, r.created_at, _ordered(per_run[r.id]))
                for r in runs
                # Filtered by tenant: only the runs that have steps for it.
                if tenant is None or r.id in per_run
            ],
            tenants=[
                TenantSummary(name, _ordered(per_tenant[name]))
                for name in sorted(per_tenant, key=lambda t: (t is None, t or ""))
            ],
        )


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return {state: counts[state] for state in order_states(set(counts))}


def _runs(engine: Engine, name: str | None) -> Sequence[Row[int, str, str, bool, datetime]]:
    query = select(Run.id, Run.name, Run.status, Run.dry_run, Run.created_at).order_by(
        Run.created_at, Run.id
    )
    if name is not None:
        query = query.where(Run.name == name)
    with engine.connect() as conn:
        return conn.execute(query).all()


def _step_counts(
    engine: Engine, run_ids: list[int], tenant: str | None
) -> list[tuple[int, str | None, str, int]]:
    if not run_ids:
        return []
    query = (
        select(Step.run_id, Step.tenant, Step.state, func.count())
        .where(Step.run_id.in_(run_ids))
        .group_by(Step.run_id, Step.tenant, Step.state)
    )
    if tenant is not None:
        query = query.where(Step.tenant == tenant)
    with engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3]) for r in conn.execute(query)]
