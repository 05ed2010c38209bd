"""``status``: progress of runs and tenants, as step counts by state.

A SQLite database at the current schema is read through the standard library
(store/sqlite_readonly.py), so that ``migrator status`` starts in a tenth of a second; any
other database, or anything unusual about this one, goes through SQLAlchemy, which owns the
error messages. Both paths return the same report (tests/operations/test_status.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from migrator.errors import NotFoundError
from migrator.store import sqlite_readonly

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy import Engine

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


# (run id, name, status, dry run, created at) and (run id, tenant, state, steps).
_RunRow = tuple[int, str, str, bool, datetime]
_CountRow = tuple[int, str | None, str, int]


def status(url: str, run: str | None = None, tenant: str | None = None) -> StatusReport:
    """Runs with their step counts by state, and the same per tenant.

    ``run`` restricts both to one run (the per-tenant breakdown of that run); ``tenant`` to
    one tenant's steps. A run name or tenant that matches nothing is a NotFoundError, so a
    typo is not mistaken for "nothing to do".
    """
    found = sqlite_readonly.open_current(url)
    if found is not None:
        conn, revision = found
        try:
            runs, counts = _read_sqlite(conn, run, tenant)
        finally:
            conn.close()
        database = url  # a plain sqlite:/// URL: no password to hide
    else:
        from migrator.store.db import redact
        from migrator.store.schema import head

        runs, counts = _read_sqlalchemy(url, run, tenant)
        database, revision = redact(url), head()
    return _report(database, revision, run, tenant, runs, counts)


def _report(database: str, revision: str, run: str | None, tenant: str | None,
            runs: Sequence[_RunRow], counts: list[_CountRow]) -> StatusReport:
    if run is not None and not runs:
        raise NotFoundError(f"no run named {run!r} in the state database")
    if tenant is not None and not counts:
        where = f" in run {run!r}" if run is not None else ""
        raise NotFoundError(f"no steps for tenant {tenant!r}{where}")
    per_run: dict[int, Counter[str]] = defaultdict(Counter)
    per_tenant: dict[str | None, Counter[str]] = defaultdict(Counter)
    for run_id, step_tenant, state, count in counts:
        per_run[run_id][state] += count
        per_tenant[step_tenant][state] += count
    return StatusReport(
        database=database,
        revision=revision,
        run=run,
        tenant=tenant,
        runs=[
            RunSummary(name, run_status, dry_run, created_at, _ordered(per_run[run_id]))
            for run_id, name, run_status, dry_run, created_at in runs
            # Filtered by tenant: only the runs that have steps for it.
            if tenant is None or run_id in per_run
        ],
        tenants=[
            TenantSummary(name, _ordered(per_tenant[name]))
            for name in sorted(per_tenant, key=lambda t: (t is None, t or ""))
        ],
    )


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return {state: counts[state] for state in order_states(set(counts))}


# -- SQLite through the standard library ---------------------------------------------------


def _read_sqlite(conn: sqlite3.Connection, run: str | None,
                 tenant: str | None) -> tuple[list[_RunRow], list[_CountRow]]:
    """The rows ``_read_sqlalchemy`` reads, in the same order and types (SQLAlchemy stores a
    DateTime on SQLite as ISO 8601 text and a Boolean as 0 or 1)."""
    where = "WHERE name = ? " if run is not None else ""
    runs = [(int(r[0]), str(r[1]), str(r[2]), bool(r[3]), datetime.fromisoformat(r[4]))
            for r in conn.execute("SELECT id, name, status, dry_run, created_at FROM runs "
                                  f"{where}ORDER BY created_at, id",
                                  [run] if run is not None else [])]
    if not runs:
        return runs, []
    clauses: list[str] = []
    params: list[object] = []
    if run is not None:
        clauses.append("run_id = ?")
        params.append(runs[0][0])
    if tenant is not None:
        clauses.append("tenant = ?")
        params.append(tenant)
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    counts = [(int(r[0]), r[1], str(r[2]), int(r[3]))
              for r in conn.execute("SELECT run_id, tenant, state, count(*) FROM steps "
                                    f"{where}GROUP BY run_id, tenant, state", params)]
    return runs, counts


# -- any database, through SQLAlchemy ------------------------------------------------------


def _read_sqlalchemy(url: str, run: str | None,
                     tenant: str | None) -> tuple[list[_RunRow], list[_CountRow]]:
    from migrator.operations.context import open_state

    with open_state(url) as engine:
        runs = _runs(engine, run)
        if run is not None and not runs:
            return runs, []
        return runs, _step_counts(engine, [r[0] for r in runs], tenant)


def _runs(engine: Engine, name: str | None) -> list[_RunRow]:
    from sqlalchemy import select

    from migrator.store.models import Run

    query = select(Run.id, Run.name, Run.status, Run.dry_run, Run.created_at).order_by(
        Run.created_at, Run.id
    )
    if name is not None:
        query = query.where(Run.name == name)
    with engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(query)]


def _step_counts(engine: Engine, run_ids: list[int], tenant: str | None) -> list[_CountRow]:
    from sqlalchemy import func, select

    from migrator.store.models import Step

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
