"""Queries behind ``migrator report``: per tenant when its steps ran, the errors met on the way,
the run's own events, and the completions over time.

Each is one query; the completion times are streamed and counted into buckets as they come.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from migrator.engine.steps import as_utc
from migrator.store.audit import FETCH
from migrator.store.models import Event, Run, Step


@dataclass(frozen=True, slots=True)
class TenantSpan:
    tenant: str | None
    first: datetime | None  # the first event of its steps
    last: datetime | None  # the last one


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    at: datetime
    tenant: str | None
    kind: str
    name: str | None
    attempt: int | None
    error: str
    final: bool


@dataclass(frozen=True, slots=True)
class RunEvent:
    at: datetime
    from_state: str | None
    to_state: str | None
    trigger: str
    actor: str
    pid: int
    detail: dict[str, Any]


@dataclass(frozen=True)
class RunRow:
    id: int
    name: str
    status: str
    dry_run: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    plan_file: str | None


def run_row(conn: Connection, name: str) -> RunRow | None:
    row = conn.execute(select(Run.id, Run.name, Run.status, Run.dry_run, Run.created_at,
                              Run.started_at, Run.finished_at, Run.options)
                       .where(Run.name == name)).first()
    if row is None:
        return None
    created = as_utc(row[4])
    assert created is not None
    return RunRow(int(row[0]), str(row[1]), str(row[2]), bool(row[3]), created,
                  as_utc(row[5]), as_utc(row[6]), (row[7] or {}).get("plan_file"))


def tenant_spans(conn: Connection, run_id: int, tenant: str | None) -> list[TenantSpan]:
    query = (select(Step.tenant, func.min(Event.at), func.max(Event.at))
             .join(Step, Step.id == Event.step_id)
             .where(Event.run_id == run_id).group_by(Step.tenant))
    if tenant is not None:
        query = query.where(Step.tenant == tenant)
    return [TenantSpan(t, as_utc(a), as_utc(b)) for t, a, b in conn.execute(query)]


def error_events(conn: Connection, run_id: int, tenant: str | None, limit: int
                 ) -> tuple[list[ErrorEvent], int]:
    """The first ``limit`` failures (every ``fail`` event, retried or not) and how many
    there are in all."""
    where = [Event.run_id == run_id, Event.trigger == "fail"]
    if tenant is not None:
        where.append(Step.tenant == tenant)
    total = conn.execute(select(func.count()).select_from(Event)
                         .join(Step, Step.id == Event.step_id).where(*where)).scalar_one()
    rows = conn.execute(select(Event.at, Step.tenant, Step.kind, Step.name, Event.detail)
                        .join(Step, Step.id == Event.step_id).where(*where)
                        .order_by(Event.id).limit(limit))
    out = []
    for at, step_tenant, kind, name, detail in rows:
        detail = dict(detail or {})
        when = as_utc(at)
        assert when is not None
        attempt = detail.get("attempt")
        out.append(ErrorEvent(when, step_tenant, kind, name,
                              int(attempt) if isinstance(attempt, int) else None,
                              str(detail.get("error") or "-"), bool(detail.get("final"))))
    return out, int(total)


def run_events(conn: Connection, run_id: int) -> list[RunEvent]:
    rows = conn.execute(select(Event.at, Event.from_state, Event.to_state, Event.trigger,
                               Event.actor, Event.pid, Event.detail)
                        .where(Event.run_id == run_id, Event.step_id.is_(None))
                        .order_by(Event.id))
    out = []
    for at, old, new, trigger, actor, pid, detail in rows:
        when = as_utc(at)
        assert when is not None
        out.append(RunEvent(when, old, new, trigger, actor, int(pid), dict(detail or {})))
    return out


def completions(conn: Connection, run_id: int, tenant: str | None, buckets: int
                ) -> tuple[datetime | None, datetime | None, list[int]]:
    """Steps completed per time bucket between the first and the last completion."""
    where = [Event.run_id == run_id, Event.trigger == "complete"]
    if tenant is not None:
        where.append(Event.step_id.in_(select(Step.id).where(Step.run_id == run_id,
                                                             Step.tenant == tenant)))
    first, last = conn.execute(select(func.min(Event.at), func.max(Event.at))
                               .where(*where)).one()
    start, end = as_utc(first), as_utc(last)
    counts = [0] * buckets
    if start is None or end is None:
        return None, None, counts
    span = max((end - start).total_seconds(), 1e-6)
    result = conn.execution_options(yield_per=FETCH).execute(select(Event.at).where(*where))
    for (at,) in result:
        when = as_utc(at)
        assert when is not None
        index = min(int((when - start).total_seconds() / span * buckets), buckets - 1)
        counts[index] += 1
    return start, end, counts
