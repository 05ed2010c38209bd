"""``report``: what a run did, for people who do not run migrator.

    with open_report(url, "wave-1") as report:
        report.summary, report.tenants, report.failures, report.timeline ...
        for row in report.id_map(): ...      # streamed, per tenant in plan order

The content: a summary (status, times, steps by state, bytes, the latest verification), per
tenant the resources by kind and state, the bytes moved, when its steps ran and its
verification result, the servers cut over with their measured downtime (total, worst, and
each server's window), the failures with their errors, a timeline (the run's own events and
the steps completed over time) and the id map. The CLI writes it as one self-contained HTML
file or as JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from migrator.errors import NotFoundError
from migrator.operations.context import database_errors, open_state
from migrator.operations.status import TenantSummary, status
from migrator.store import report as queries
from migrator.store.audit import AuditFilter, IdMapRow, iter_id_map
from migrator.store.db import redact
from migrator.store.downtimes import ServerWindow, server_windows
from migrator.store.report import ErrorEvent, RunEvent, RunRow
from migrator.store.verifications import VerificationRow, verifications_of

MAX_ERRORS = 500  # failures listed in a report (the count says how many there are)
TIMELINE_BUCKETS = 60


@dataclass(frozen=True)
class TenantVerdict:
    """A tenant's line of the latest verification."""

    result: str  # match | differences | not verified
    counts: dict[str, int] = field(default_factory=dict)  # match, differs, missing, ...
    drift: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TenantServers:
    """A tenant's servers cut over in the run: how many, their summed and worst measured
    downtime, and each server's window."""

    moved: int
    total_seconds: float
    worst_seconds: float
    windows: list[ServerWindow]

    @classmethod
    def of(cls, windows: list[ServerWindow]) -> TenantServers | None:
        if not windows:
            return None
        downtimes = [w.downtime_seconds for w in windows]
        return cls(len(windows), sum(downtimes), max(downtimes), windows)


@dataclass(frozen=True)
class TenantReport:
    tenant: str | None
    steps: dict[str, int]  # state -> count
    kinds: dict[str, dict[str, int]]  # kind -> state -> count
    bytes_moved: int
    bytes_left: int
    first_event: datetime | None
    last_event: datetime | None
    verification: TenantVerdict
    servers: TenantServers | None = None  # None: no server of the tenant cut over

    @property
    def total(self) -> int:
        return sum(self.steps.values())

    @property
    def seconds(self) -> float | None:
        if self.first_event is None or self.last_event is None:
            return None
        return (self.last_event - self.first_event).total_seconds()


@dataclass(frozen=True)
class Timeline:
    events: list[RunEvent]  # the run's own events: registered, started, interrupted, ...
    first_completion: datetime | None
    last_completion: datetime | None
    completions: list[int]  # steps completed per bucket between the two


@dataclass
class RunReport:
    database: str
    run: RunRow
    tenant: str | None
    generated_at: datetime
    steps: dict[str, int]  # state -> count over the report's scope
    bytes_moved: int
    bytes_left: int
    tenants: list[TenantReport]
    failed_steps: int
    errors: list[ErrorEvent]  # every failure met (retried or final), the first MAX_ERRORS
    error_count: int
    timeline: Timeline
    verification: VerificationRow | None
    _conn: Connection | None = None

    @property
    def total(self) -> int:
        return sum(self.steps.values())

    def id_map(self) -> Iterator[IdMapRow]:
        """The source -> target map of the report's steps, streamed tenant by tenant."""
        assert self._conn is not None, "the report is closed"
        return iter_id_map(self._conn, AuditFilter([self.run.id], self.tenant), by_tenant=True)

    def as_dict(self) -> dict[str, Any]:
        """Everything but the id map (which :meth:`id_map` streams)."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                                if f.name != "_conn"}
        data["total"] = self.total
        out: dict[str, Any] = _jsonable(data)
        for tenant_data, tenant in zip(out["tenants"], self.tenants, strict=True):
            tenant_data["total"] = tenant.total
            tenant_data["seconds"] = tenant.seconds
        return out


@contextmanager
def open_report(url: str, run: str, *, tenant: str | None = None,
                now: datetime | None = None) -> Iterator[RunReport]:
    """The report of run ``run`` (restricted to ``tenant``): NotFoundError for a run or a
    tenant that is not there."""
    progress = status(url, run=run, tenant=tenant, now=now)
    with open_state(url) as engine, database_errors(url), engine.connect() as conn:
        row = queries.run_row(conn, run)
        if row is None:
            raise NotFoundError(f"no run named {run!r} in the state database")
        spans = {s.tenant: s for s in queries.tenant_spans(conn, row.id, tenant)}
        errors, error_count = queries.error_events(conn, row.id, tenant, MAX_ERRORS)
        first, last, buckets = queries.completions(conn, row.id, tenant, TIMELINE_BUCKETS)
        done = verifications_of(conn, row.id)
        # The summary: the latest verification of the whole run (else the latest of any
        # tenant); per tenant: the latest one that covered it.
        verification = next((v for v in done if v.tenant is None), done[0] if done else None)
        verdicts = _verdicts(done)
        windows: dict[str | None, list[ServerWindow]] = {}
        for window in server_windows(conn, row.id, tenant):
            windows.setdefault(window.tenant, []).append(window)
        tenants = [replace(_tenant(t, spans, verdicts),
                           servers=TenantServers.of(windows.get(t.tenant, [])))
                   for t in progress.tenants]
        steps = progress.runs[0].steps if progress.runs else {}
        report = RunReport(
            database=redact(url), run=row, tenant=tenant,
            generated_at=now or _now(), steps=steps,
            bytes_moved=sum(t.bytes_moved for t in tenants),
            bytes_left=sum(t.bytes_left for t in tenants),
            tenants=tenants, failed_steps=len(progress.failed), errors=errors,
            error_count=error_count,
            timeline=Timeline(queries.run_events(conn, row.id), first, last, buckets),
            verification=verification, _conn=conn)
        try:
            yield report
        finally:
            report._conn = None


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def _tenant(summary: TenantSummary, spans: dict[str | None, queries.TenantSpan],
            verdicts: dict[str | None, TenantVerdict]) -> TenantReport:
    span = spans.get(summary.tenant)
    return TenantReport(summary.tenant, summary.steps, summary.kinds, summary.data.moved,
                        summary.data.left, span.first if span else None,
                        span.last if span else None,
                        verdicts.get(summary.tenant, TenantVerdict("not verified")))


def _verdicts(rows: list[VerificationRow]) -> dict[str | None, TenantVerdict]:
    """Per tenant, what the latest verification that covered it found (``rows``: newest
    first)."""
    out: dict[str | None, TenantVerdict] = {}
    for row in rows:
        for name, verdict in _verdicts_of(row).items():
            out.setdefault(name, verdict)
    return out


def _verdicts_of(row: VerificationRow) -> dict[str | None, TenantVerdict]:
    findings: dict[str | None, list[dict[str, Any]]] = {}
    for item in row.findings.get("items") or []:
        findings.setdefault(item.get("tenant"), []).append(item)
    out = {}
    for entry in row.summary.get("tenants") or []:
        name = entry.get("tenant")
        counts: dict[str, int] = {}
        for per_kind in (entry.get("kinds") or {}).values():
            for result, n in per_kind.items():
                counts[result] = counts.get(result, 0) + int(n)
        bad = counts.get("differs", 0) + counts.get("missing", 0) + counts.get("error", 0)
        out[name] = TenantVerdict("differences" if bad else "match", counts,
                                  int(entry.get("drift") or 0), findings.get(name, []))
    return out


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value

