"""Queries of the audit trail: the event log and the source -> target map of a run, streamed.

Both are read with ``yield_per`` (a server-side cursor on PostgreSQL, SQLite's lazy cursor):
rows reach the caller as the database produces them, so a run of 250,000 steps and a million
events is printed without being held in memory (benchmarks/bench_audit.py measures it).

The attempt of an event is computed by the database: how many times its step had been
started when the event was written (a window over the step's events, in id order), so the
start, checkpoints, failure and retry of a second try all read ``2``. Run events (a run
started, interrupted, finished) belong to no step and have no attempt.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Text, and_, case, func, select, type_coerce

from migrator import jsoncodec
from migrator.engine.steps import as_utc
from migrator.store.models import Event, IdMap, Run, Step

# Rows handed over per fetch: small enough to keep memory flat, big enough to amortise calls.
FETCH = 2_000


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    at: datetime
    run: str
    tenant: str | None
    kind: str | None
    name: str | None
    step: str | None  # the step key; None for run events
    trigger: str
    from_state: str | None
    to_state: str | None
    attempt: int | None
    actor: str
    pid: int
    detail: dict[str, Any]

    @property
    def error(self) -> str | None:
        value = self.detail.get("error")
        return str(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class MovedData:
    """What a data step recorded of the bytes it moved (None where it moved none)."""

    bytes: int | None = None
    md5: str | None = None
    sha512: str | None = None


@dataclass(frozen=True, slots=True)
class IdMapRow:
    run: str
    tenant: str | None
    kind: str
    name: str | None
    source_id: str | None
    target_id: str | None
    state: str
    data: MovedData
    completed_at: datetime | None


@dataclass(frozen=True)
class AuditFilter:
    run_ids: Sequence[int]
    tenant: str | None = None
    kind: str | None = None
    since: datetime | None = None


def moved_data(kind: str, checkpoint: Mapping[str, Any] | None) -> MovedData:
    """Bytes, md5 and sha512 from a step's checkpoint, where the handlers record them: an
    image's upload phase (``bytes``, ``md5``, ``sha512``; an adopted image has no md5 of its
    own sending) and a volume's copy (``copy.copied``)."""
    cp = checkpoint or {}
    if kind == "image":
        found: Mapping[str, Any] = cp
    elif kind == "volume":
        copied = (cp.get("copy") or {}).get("copied")
        found = copied if isinstance(copied, Mapping) else {}
    else:
        return MovedData()
    size = found.get("bytes")
    return MovedData(int(size) if isinstance(size, int) else None,
                     str(found["md5"]) if found.get("md5") else None,
                     str(found["sha512"]) if found.get("sha512") else None)


# Resources a step of one kind moves inside its own: the server step carries its boot and
# data volumes (they have no step of their own; its checkpoint and spec hold them).
CARRIED = {"server": "volume"}


def carried_rows(kind: str, checkpoint: Mapping[str, Any] | None,
                 spec: Mapping[str, Any] | None) -> list[tuple[str | None, str, str | None,
                                                              MovedData, bool]]:
    """What a step of ``kind`` carried: (name, source id, target id, bytes moved, verified)
    per resource, in the order of its spec; none for other kinds."""
    if kind not in CARRIED:
        return []
    volumes = (checkpoint or {}).get("volumes") or {}
    out = []
    for vol in ((spec or {}).get("lookup") or {}).get("volumes") or []:
        vid = str(vol.get("source_id"))
        copy = volumes.get(vid) or {}
        target = copy.get("target_volume_id")
        out.append((vol.get("name"), vid, str(target) if target else None,
                    moved_data("volume", {"copy": copy}), bool(copy.get("verified"))))
    return out


def _step_filters(flt: AuditFilter) -> list[Any]:
    where: list[Any] = []
    if flt.tenant is not None:
        where.append(Step.tenant == flt.tenant)
    if flt.kind is not None:
        where.append(Step.kind == flt.kind)
    return where


def iter_events(conn: Connection, flt: AuditFilter) -> Iterator[EventRow]:
    """The events of ``flt.run_ids`` in the order they were written (their id), filtered by
    the step's tenant and kind (which leaves out run events) and by time."""
    attempt = func.count(case((Event.trigger == "start", 1))).over(
        partition_by=Event.step_id, order_by=Event.id)
    inner = (
        select(Event.id, type_coerce(Event.at, Text).label("at"), Run.name.label("run"),
               Step.tenant, Step.kind, Step.name, Step.key, Event.trigger, Event.from_state,
               Event.to_state, attempt.label("attempt"), Event.actor, Event.pid,
               type_coerce(Event.detail, Text).label("detail"))
        .select_from(Event)
        .join(Run, Run.id == Event.run_id)
        .where(Event.run_id.in_(list(flt.run_ids)), *_step_filters(flt))
    )
    if flt.tenant is not None or flt.kind is not None:
        inner = inner.join(Step, Step.id == Event.step_id)
    else:
        inner = inner.outerjoin(Step, Step.id == Event.step_id)
    sub = inner.subquery()
    query = select(sub)
    if flt.since is not None:
        query = query.where(sub.c.at >= flt.since)
    query = query.order_by(sub.c.id)
    result = conn.execution_options(yield_per=FETCH).execute(query)
    # Positional unpacking, and the time and detail decoded here (SQLite hands back text:
    # datetime.fromisoformat and orjson are several times faster than the column types'
    # processors; PostgreSQL's driver hands back objects already).
    for (id_, at, run, tenant, kind, name, key, trigger, from_state, to_state, attempt, actor,
         pid, detail) in result:
        yield EventRow(id_, _utc(at), run, tenant, kind, name, key, trigger, from_state,
                       to_state, int(attempt) if key is not None else None, actor, pid,
                       _detail(detail))


def _utc(value: Any) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _detail(value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        value = jsoncodec.loads(value)
    return dict(value) if value else {}


def iter_id_map(conn: Connection, flt: AuditFilter, *, by_tenant: bool = False
                ) -> Iterator[IdMapRow]:
    """Every step of ``flt.run_ids`` (tenant and kind filters applied; ``since`` keeps the
    steps completed since then) with the target id it recorded, its state, the bytes it
    moved and when it completed; in plan order (``by_tenant``: tenant by tenant, each in
    plan order; the index on (run, tenant) gives that order without a sort)."""
    completed = (
        select(func.max(Event.at))
        .where(Event.run_id == Step.run_id, Event.step_id == Step.id,
               Event.trigger == "complete")
        .scalar_subquery()
    )
    carriers = sorted(k for k, v in CARRIED.items() if v == flt.kind)
    kinds = [] if flt.kind is None else [flt.kind, *carriers]
    query = (
        select(Run.name.label("run"), Step.tenant, Step.kind, Step.name, Step.source_id,
               IdMap.target_id, Step.state, Step.checkpoint, completed.label("completed_at"),
               # The spec (big) only of the steps that carry resources (few).
               case((Step.kind.in_(sorted(CARRIED)), Step.spec), else_=None).label("spec"))
        .select_from(Step)
        .join(Run, Run.id == Step.run_id)
        .outerjoin(IdMap, and_(IdMap.run_id == Step.run_id, IdMap.kind == Step.kind,
                               IdMap.source_id == Step.source_id))
        .where(Step.run_id.in_(list(flt.run_ids)),
               *_step_filters(replace(flt, kind=None)),
               *([Step.kind.in_(kinds)] if kinds else []))
        .order_by(*((Step.run_id, Step.tenant, Step.id) if by_tenant
                    else (Step.run_id, Step.id)))
    )
    if flt.since is not None:
        query = query.where(completed >= flt.since)
    result = conn.execution_options(yield_per=FETCH).execute(query)
    for row in result:
        completed_at = as_utc(row.completed_at)
        if flt.kind is None or row.kind == flt.kind:
            yield IdMapRow(row.run, row.tenant, row.kind, row.name, row.source_id,
                           row.target_id, row.state, moved_data(row.kind, row.checkpoint),
                           completed_at)
        kind = CARRIED.get(row.kind)
        if kind is None or flt.kind not in (None, kind):
            continue
        spec = jsoncodec.loads(row.spec) if isinstance(row.spec, str | bytes) else row.spec
        for name, source_id, target_id, data, _verified in carried_rows(
                row.kind, row.checkpoint, spec):
            # In the state of the step that carried it (a done server verified it).
            yield IdMapRow(row.run, row.tenant, kind, name, source_id, target_id, row.state,
                           data, completed_at)


@dataclass(frozen=True)
class Widths:
    """The longest value of the variable-width columns, so that a streamed table is aligned
    without holding its rows."""

    run: int
    tenant: int
    kind: int
    name: int
    actor: int
    source_id: int
    target_id: int


def column_widths(conn: Connection, flt: AuditFilter) -> Widths:
    step_where = [Step.run_id.in_(list(flt.run_ids)), *_step_filters(flt)]
    length = func.length

    def longest(column: Any, *where: Any, table: Any = Step) -> int:
        value = conn.execute(select(func.max(length(column))).select_from(table)
                             .where(*where)).scalar()
        return int(value or 0)

    run = longest(Run.name, Run.id.in_(list(flt.run_ids)), table=Run)
    actor_where = [Event.run_id.in_(list(flt.run_ids))]
    if flt.tenant is not None or flt.kind is not None:
        actor_where.append(Event.step_id.in_(select(Step.id).where(*step_where)))
    widths = Widths(
        run=run,
        tenant=longest(Step.tenant, *step_where),
        kind=longest(Step.kind, *step_where),
        name=longest(Step.name, *step_where),
        actor=longest(Event.actor, *actor_where, table=Event),
        source_id=longest(Step.source_id, *step_where),
        target_id=int(conn.execute(
            select(func.max(length(IdMap.target_id))).select_from(Step).join(
                IdMap, and_(IdMap.run_id == Step.run_id, IdMap.kind == Step.kind,
                            IdMap.source_id == Step.source_id)).where(*step_where)
        ).scalar() or 0),
    )
    return _widen_for_carried(conn, flt, widths)


def _widen_for_carried(conn: Connection, flt: AuditFilter, widths: Widths) -> Widths:
    """The widths that the resources carried by other steps need too (read from their
    carriers' specs and checkpoints: few steps)."""
    carriers = sorted(CARRIED) if flt.kind is None else sorted(
        k for k, v in CARRIED.items() if v == flt.kind)
    if not carriers:
        return widths
    where = [Step.run_id.in_(list(flt.run_ids)), *_step_filters(replace(flt, kind=None)),
             Step.kind.in_(carriers)]
    out = {"tenant": widths.tenant, "kind": widths.kind, "name": widths.name,
           "source_id": widths.source_id, "target_id": widths.target_id}
    query = select(Step.kind, Step.tenant, Step.spec, Step.checkpoint).where(*where)
    for kind, tenant, spec, checkpoint in conn.execute(query):
        for name, source_id, target_id, _data, _verified in carried_rows(kind, checkpoint,
                                                                          spec):
            for field_name, value in (("tenant", tenant), ("kind", CARRIED[kind]),
                                      ("name", name), ("source_id", source_id),
                                      ("target_id", target_id)):
                out[field_name] = max(out[field_name], len(value or ""))
    return replace(widths, **out)


def runs_named(conn: Connection, name: str | None) -> list[tuple[int, str]]:
    """(id, name) of the run called ``name``, or of every run (oldest first)."""
    query = select(Run.id, Run.name).order_by(Run.created_at, Run.id)
    if name is not None:
        query = query.where(Run.name == name)
    return [(int(r.id), str(r.name)) for r in conn.execute(query)]


def tenant_known(conn: Connection, run_ids: Sequence[int], tenant: str) -> bool:
    return conn.execute(select(Step.id).where(Step.run_id.in_(list(run_ids)),
                                              Step.tenant == tenant).limit(1)).first() is not None
