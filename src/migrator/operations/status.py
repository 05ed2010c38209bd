"""``status``: progress of runs and tenants: step counts by tenant, kind and state, the bytes
of images and volumes moved and left, rate and ETA, failed steps, the executors at work.

A SQLite database at the current schema is read through the standard library
(store/sqlite_readonly.py opens it, store/progress_sqlite.py reads it), so that ``migrator
status`` starts in a tenth of a second; any other database, or anything unusual about this
one, goes through SQLAlchemy (store/progress.py), which owns the error messages. Both paths
return the same report (tests/operations/test_status.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from migrator.errors import NotFoundError
from migrator.kinds import KIND_ORDER
from migrator.store import sqlite_readonly
from migrator.store.progress_rows import (
    FINISHED_STATES,
    DataStep,
    FailedStep,
    ProgressRows,
    RunRow,
    TenantDowntime,
    WorkerProcess,
    WorkerRow,
)
from migrator.store.progress_rows import utc as _utc
from migrator.store.progress_sqlite import read_sqlite

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
    # Steps held right now per lease owner, and the worker processes of the runs.
    workers: list[WorkerRow] = field(default_factory=list)
    processes: list[WorkerProcess] = field(default_factory=list)
    # Per tenant: servers cut over, their total and worst measured downtime.
    servers: list[TenantDowntime] = field(default_factory=list)

    @property
    def states(self) -> list[str]:
        """Every state that occurs in the report, in lifecycle order."""
        seen = {state for run in self.runs for state in run.steps}
        return order_states(seen)

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
        for row in [*data["failed"], *data["workers"], *data["processes"]]:
            for key in ("failed_at", "last_change", "since", "heartbeat_at"):
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
    found = sqlite_readonly.open_current(url)
    if found is not None:
        conn, revision = found
        try:
            rows = read_sqlite(conn, run, tenant)
        finally:
            conn.close()
        database = url  # a plain sqlite:/// URL: no password to hide
    else:
        from migrator.store.db import redact
        from migrator.store.schema import head

        rows = _read_sqlalchemy(url, run, tenant)
        database, revision = redact(url), head()
    return _report(database, revision, run, tenant, rows, now or datetime.now(UTC))


def _report(database: str, revision: str, run: str | None, tenant: str | None,
            rows: ProgressRows, clock: datetime) -> StatusReport:
    runs = rows.runs
    if run is not None and not runs:
        raise NotFoundError(f"no run named {run!r} in the state database")
    if tenant is not None and not rows.counts:
        where = f" in run {run!r}" if run is not None else ""
        raise NotFoundError(f"no steps for tenant {tenant!r}{where}")
    per_run: dict[int, Counter[str]] = defaultdict(Counter)
    per_tenant: dict[str | None, Counter[str]] = defaultdict(Counter)
    per_kind: dict[str | None, dict[str, Counter[str]]] = defaultdict(
        lambda: defaultdict(Counter))
    per_run_tenant: dict[tuple[int, str | None], Counter[str]] = defaultdict(Counter)
    for c in rows.counts:
        per_run[c.run_id][c.state] += c.count
        per_tenant[c.tenant][c.state] += c.count
        per_kind[c.tenant][c.kind][c.state] += c.count
        per_run_tenant[(c.run_id, c.tenant)][c.state] += c.count
    run_data: dict[int, list[DataStep]] = defaultdict(list)
    bucket_data: dict[tuple[int, str | None], list[DataStep]] = defaultdict(list)
    for d in rows.data:
        run_data[d.run_id].append(d)
        bucket_data[(d.run_id, d.tenant)].append(d)
    windows = {r[0]: _window(r, clock) for r in runs}
    run_rows = []
    for r in runs:
        run_id, run_name, run_status, dry_run, created_at, started_at, finished_at = r
        if tenant is not None and run_id not in per_run:
            continue  # filtered by tenant: only the runs that have steps for it
        done_recent = sum(rows.finished.get(run_id, {}).values())
        run_rows.append(RunSummary(
            run_name, run_status, dry_run, created_at, _ordered(per_run[run_id]),
            _utc(started_at), _utc(finished_at),
            _throughput(run_status, windows[run_id], _utc(started_at), per_run[run_id],
                        run_data[run_id], done_recent)))
    tenant_rows = []
    for name in sorted(per_tenant, key=lambda t: (t is None, t or "")):
        parts = [_throughput(r[2], windows[r[0]], _utc(r[5]), per_run_tenant[(r[0], name)],
                             bucket_data[(r[0], name)],
                             rows.finished.get(r[0], {}).get(name, 0))
                 for r in runs if (r[0], name) in per_run_tenant]
        tenant_rows.append(TenantSummary(
            name, _ordered(per_tenant[name]),
            {kind: _ordered(states) for kind, states in sorted(
                per_kind[name].items(), key=lambda item: KIND_ORDER.get(item[0], 99))},
            _combined(parts)))
    return StatusReport(
        database=database, revision=revision, run=run, tenant=tenant, runs=run_rows,
        tenants=tenant_rows, failed=rows.failed, workers=rows.workers,
        processes=rows.processes, servers=rows.downtimes)


def _window(run: RunRow, now: datetime) -> float | None:
    """Seconds since the run's latest start (to its end when it ended), None if never."""
    started, finished = _utc(run[5]), _utc(run[6])
    if started is None:
        return None
    end = finished if run[2] != "running" and finished is not None else now
    return max((end - started).total_seconds(), 0.0)


def _throughput(status: str, window: float | None, since: datetime | None,
                states: Counter[str], data: list[DataStep], finished_recent: int
                ) -> Throughput:
    moved = sum(d.moved or 0 for d in data)
    left = sum(d.planned or 0 for d in data
               if d.moved is None and d.state not in FINISHED_STATES)
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


def _read_sqlalchemy(url: str, run: str | None, tenant: str | None) -> ProgressRows:
    from migrator.operations.context import open_state
    from migrator.store import progress

    # read_only: a SQLite file in a read-only folder or on a full device is still read (the
    # standard-library path cannot open it without its -shm file).
    with open_state(url, read_only=True) as engine, engine.connect() as conn:
        return progress.read_rows(conn, run, tenant)
