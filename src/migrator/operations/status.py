"""``status``: progress of runs and tenants, as step counts by state."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from migrator.engine.steps import as_utc
from migrator.errors import NotFoundError
from migrator.operations.context import open_state
from migrator.plan.model import KIND_ORDER
from migrator.store import progress, schema
from migrator.store.db import redact
from migrator.store.models import Run
from migrator.store.progress import DataStep, FailedStep, LockRow, WorkerRow

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
class Throughput:
    """Bytes of data steps (images, volumes) and how fast they and the steps go.

    ``moved``: bytes the steps recorded as sent; ``left``: bytes still to send (an image's
    legacy size, a volume's size in GiB until its copy records the bytes). ``rate``: bytes
    per second since the run's latest start (None when nothing moved); ``eta_s``: seconds
    to the end of a running run, the longer of the estimates by steps and by bytes."""

    moved: int = 0
    left: int = 0
    rate: float | None = None
    eta_s: float | None = None


@dataclass(frozen=True)
class RunSummary:
    name: str
    status: str
    dry_run: bool
    created_at: datetime
    steps: dict[str, int]  # state -> count, in lifecycle order
    started_at: datetime | None = None
    finished_at: datetime | None = None
    data: Throughput = field(default_factory=Throughput)

    @property
    def total(self) -> int:
        return sum(self.steps.values())


@dataclass(frozen=True)
class TenantSummary:
    tenant: str | None  # None: steps that belong to no tenant
    steps: dict[str, int]
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> state -> count
    data: Throughput = field(default_factory=Throughput)

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
    failed: list[FailedStep] = field(default_factory=list)
    # Executors holding steps right now (lease owners), and the run locks.
    workers: list[WorkerRow] = field(default_factory=list)
    locks: list[LockRow] = field(default_factory=list)

    @property
    def states(self) -> list[str]:
        """Every state that occurs in the report, in lifecycle order."""
        seen = {state for run in self.runs for state in run.steps}
        return order_states(seen)

    @property
    def has_data(self) -> bool:
        return any(t.data.moved or t.data.left for t in self.tenants)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: datetimes as ISO 8601 strings, totals included."""
        data = asdict(self)
        for run_data, run in zip(data["runs"], self.runs, strict=True):
            for key in ("created_at", "started_at", "finished_at"):
                value = getattr(run, key)
                run_data[key] = value.isoformat() if value is not None else None
            run_data["total"] = run.total
        for tenant_data, tenant in zip(data["tenants"], self.tenants, strict=True):
            tenant_data["total"] = tenant.total
        for row in [*data["failed"], *data["workers"], *data["locks"]]:
            for key in ("failed_at", "last_change", "since"):
                if isinstance(row.get(key), datetime):
                    row[key] = row[key].isoformat()
        return data


def order_states(states: set[str]) -> list[str]:
    known = [state for state in STATE_ORDER if state in states]
    return known + sorted(states - set(STATE_ORDER))


def status(url: str, run: str | None = None, tenant: str | None = None, *,
           now: datetime | None = None) -> StatusReport:
    """Runs with their step counts by state, and per tenant the counts by kind and state, the
    bytes moved and left, the rate and the ETA; the failed steps with their last error; the
    executors holding steps.

    ``run`` restricts everything to one run (the per-tenant breakdown of that run);
    ``tenant`` to one tenant's steps. A run name or tenant that matches nothing is a
    NotFoundError, so a typo is not mistaken for "nothing to do". ``now`` is the clock
    (rates and ETAs of running runs are measured up to it).
    """
    clock = now or datetime.now(UTC)
    with open_state(url) as engine, engine.connect() as conn:
        runs = _runs(engine, run)
        if run is not None and not runs:
            raise NotFoundError(f"no run named {run!r} in the state database")
        run_ids = [r.id for r in runs]
        counts = progress.kind_counts(conn, run_ids, tenant) if run_ids else []
        if tenant is not None and not counts:
            where = f" in run {run!r}" if run is not None else ""
            raise NotFoundError(f"no steps for tenant {tenant!r}{where}")
        data = progress.data_steps(conn, run_ids, tenant) if run_ids else []
        finished = {r.id: progress.finished_since(conn, r.id, start, tenant)
                    for r in runs if (start := as_utc(r.started_at)) is not None}
        failed = progress.failed_steps(conn, run_ids, tenant) if run_ids else []
        workers = progress.workers(conn, run_ids) if run_ids else []
        locks = progress.locks(conn, run_ids) if run_ids else []
    per_run: dict[int, Counter[str]] = defaultdict(Counter)
    per_tenant: dict[str | None, Counter[str]] = defaultdict(Counter)
    per_kind: dict[str | None, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(
        Counter))
    per_run_tenant: dict[tuple[int, str | None], Counter[str]] = defaultdict(Counter)
    for c in counts:
        per_run[c.run_id][c.state] += c.count
        per_tenant[c.tenant][c.state] += c.count
        per_kind[c.tenant][c.kind][c.state] += c.count
        per_run_tenant[(c.run_id, c.tenant)][c.state] += c.count
    windows = {r.id: _window(r, clock) for r in runs}
    run_data: dict[int, list[DataStep]] = defaultdict(list)
    bucket_data: dict[tuple[int, str | None], list[DataStep]] = defaultdict(list)
    for d in data:
        run_data[d.run_id].append(d)
        bucket_data[(d.run_id, d.tenant)].append(d)
    run_rows = []
    for r in runs:
        if tenant is not None and r.id not in per_run:
            continue  # filtered by tenant: only the runs that have steps for it
        done_recent = sum(finished.get(r.id, {}).values())
        run_rows.append(RunSummary(
            r.name, r.status, r.dry_run, r.created_at, _ordered(per_run[r.id]),
            as_utc(r.started_at), as_utc(r.finished_at),
            _throughput(r.status, windows[r.id], as_utc(r.started_at), per_run[r.id],
                        run_data[r.id], done_recent)))
    tenant_rows = []
    for name in sorted(per_tenant, key=lambda t: (t is None, t or "")):
        parts = [_throughput(r.status, windows[r.id], as_utc(r.started_at),
                             per_run_tenant[(r.id, name)],
                             bucket_data[(r.id, name)], finished.get(r.id, {}).get(name, 0))
                 for r in runs if (r.id, name) in per_run_tenant]
        tenant_rows.append(TenantSummary(
            name, _ordered(per_tenant[name]),
            {kind: _ordered(states) for kind, states in sorted(
                per_kind[name].items(), key=lambda item: KIND_ORDER.get(item[0], 99))},
            _combined(parts)))
    return StatusReport(
        database=redact(url), revision=schema.head(), run=run, tenant=tenant,
        runs=run_rows, tenants=tenant_rows, failed=failed, workers=workers, locks=locks)


def _window(run: Any, now: datetime) -> float | None:
    """Seconds since the run's latest start (to its end when it ended), None if never."""
    started = as_utc(run.started_at)
    if started is None:
        return None
    end = as_utc(run.finished_at) if run.status != "running" and run.finished_at else now
    return max((end - started).total_seconds(), 0.0) if end is not None else None


def _throughput(status: str, window: float | None, since: datetime | None,
                states: Counter[str], data: list[DataStep], finished_recent: int
                ) -> Throughput:
    moved = sum(d.moved or 0 for d in data)
    left = sum(d.planned or 0 for d in data
               if d.moved is None and d.state not in progress.FINISHED_STATES)
    if not window or since is None:
        return Throughput(moved, left)
    # The rate counts the bytes of the data steps that changed since the run's latest start.
    recent = sum(d.moved or 0 for d in data if d.moved and d.updated_at is not None
                 and d.updated_at >= since)
    rate = recent / window if recent else None
    eta = None
    if status == "running":
        remaining = sum(states.get(s, 0) for s in ("pending", "running", "verifying"))
        estimates = []
        if remaining and finished_recent:
            estimates.append(remaining * window / finished_recent)
        if left and rate:
            estimates.append(left / rate)
        eta = max(estimates) if estimates else (0.0 if not remaining else None)
    return Throughput(moved, left, rate, eta)


def _combined(parts: list[Throughput]) -> Throughput:
    if not parts:
        return Throughput()
    rates = [p.rate for p in parts if p.rate is not None]
    etas = [p.eta_s for p in parts if p.eta_s is not None]
    return Throughput(sum(p.moved for p in parts), sum(p.left for p in parts),
                      sum(rates) if rates else None, max(etas) if etas else None)


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return {state: counts[state] for state in order_states(set(counts))}


def _runs(engine: Engine, name: str | None) -> Sequence[Any]:
    query = select(Run.id, Run.name, Run.status, Run.dry_run, Run.created_at, Run.started_at,
                   Run.finished_at).order_by(
        Run.created_at, Run.id
    )
    if name is not None:
        query = query.where(Run.name == name)
    with engine.connect() as conn:
        return conn.execute(query).all()
