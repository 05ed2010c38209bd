"""Queries behind ``migrator status``: counts per tenant, kind and state, the bytes of data
steps, the steps finished since a run started, failed steps, and who is working.

One grouped query each; the data steps' byte counts are read out of their JSON (checkpoint
and spec) by the database, so no step's whole JSON reaches Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, func, select

from migrator.engine.steps import as_utc
from migrator.store import downtimes
from migrator.store.models import Run, Step, Worker
from migrator.store.progress_rows import (
    DATA_KINDS,
    FINISHED_STATES,
    GIB,
    WORKING_STATES,
    DataStep,
    FailedStep,
    KindCount,
    ProgressRows,
    RunRow,
    WorkerProcess,
    WorkerRow,
    json_int,
    utc,
)


def read_rows(conn: Connection, run: str | None, tenant: str | None) -> ProgressRows:
    """Every row ``status`` reports: the runs (only ``run`` when given), and their steps (of
    ``tenant`` when given) counted, with their bytes, failures, workers and the servers'
    measured downtimes."""
    found = runs(conn, run)
    if not found:
        return ProgressRows(found)
    ids = [r[0] for r in found]
    return ProgressRows(
        found, kind_counts(conn, ids, tenant), data_steps(conn, ids, tenant),
        {r[0]: finished_since(conn, r[0], started, tenant)
         for r in found if (started := utc(r[5])) is not None},
        failed_steps(conn, ids, tenant), workers(conn, ids), worker_processes(conn, ids),
        downtimes.read_connection(conn, ids, tenant))


def runs(conn: Connection, name: str | None) -> list[RunRow]:
    """The runs (the one named ``name``), oldest first."""
    query = select(Run.id, Run.name, Run.status, Run.dry_run, Run.created_at, Run.started_at,
                   Run.finished_at).order_by(Run.created_at, Run.id)
    if name is not None:
        query = query.where(Run.name == name)
    return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in conn.execute(query)]


def kind_counts(conn: Connection, run_ids: Sequence[int], tenant: str | None
                ) -> list[KindCount]:
    query = (select(Step.run_id, Step.tenant, Step.kind, Step.state, func.count())
             .where(Step.run_id.in_(list(run_ids)))
             .group_by(Step.run_id, Step.tenant, Step.kind, Step.state))
    if tenant is not None:
        query = query.where(Step.tenant == tenant)
    return [KindCount(r[0], r[1], r[2], r[3], int(r[4])) for r in conn.execute(query)]


def data_steps(conn: Connection, run_ids: Sequence[int], tenant: str | None
               ) -> list[DataStep]:
    # As text: as_integer() casts to a 32-bit INTEGER on PostgreSQL, and bytes outgrow it.
    image_sent = Step.checkpoint["bytes"].as_string()
    volume_sent = Step.checkpoint[("copy", "copied", "bytes")].as_string()
    image_size = Step.spec[("lookup", "size")].as_string()
    volume_gib = Step.spec[("attrs", "size")].as_string()
    query = (select(Step.run_id, Step.tenant, Step.kind, Step.state, image_sent, volume_sent,
                    image_size, volume_gib, Step.updated_at)
             .where(Step.run_id.in_(list(run_ids)), Step.kind.in_(DATA_KINDS)))
    if tenant is not None:
        query = query.where(Step.tenant == tenant)
    out = []
    for run_id, step_tenant, kind, state, isent, vsent, isize, vgib, updated in conn.execute(
            query):
        if kind == "image":
            moved, planned = json_int(isent), json_int(isize)
        else:
            gib = json_int(vgib)
            moved, planned = json_int(vsent), gib * GIB if gib is not None else None
        out.append(DataStep(run_id, step_tenant, kind, state, moved, planned, as_utc(updated)))
    return out


def finished_since(conn: Connection, run_id: int, since: datetime, tenant: str | None
                   ) -> dict[str | None, int]:
    """Steps of the run that reached done or skipped since ``since``, per tenant."""
    query = (select(Step.tenant, func.count())
             .where(Step.run_id == run_id, Step.state.in_(FINISHED_STATES),
                    Step.updated_at >= since)
             .group_by(Step.tenant))
    if tenant is not None:
        query = query.where(Step.tenant == tenant)
    return {t: int(n) for t, n in conn.execute(query)}


def failed_steps(conn: Connection, run_ids: Sequence[int], tenant: str | None
                 ) -> list[FailedStep]:
    query = (select(Run.name, Step.tenant, Step.kind, Step.name, Step.key, Step.attempts,
                    Step.last_error, Step.updated_at)
             .join(Run, Run.id == Step.run_id)
             .where(Step.run_id.in_(list(run_ids)), Step.state == "failed")
             .order_by(Step.run_id, Step.tenant, Step.id))
    if tenant is not None:
        query = query.where(Step.tenant == tenant)
    return [FailedStep(r[0], r[1], r[2], r[3], r[4], int(r[5] or 0), r[6], as_utc(r[7]))
            for r in conn.execute(query)]


def workers(conn: Connection, run_ids: Sequence[int]) -> list[WorkerRow]:
    query = (select(Run.name, Step.lease_owner, func.count(), func.max(Step.updated_at))
             .join(Run, Run.id == Step.run_id)
             .where(Step.run_id.in_(list(run_ids)), Step.state.in_(WORKING_STATES),
                    Step.lease_owner.is_not(None))
             .group_by(Run.name, Step.lease_owner)
             .order_by(Run.name, Step.lease_owner))
    return [WorkerRow(r[0], str(r[1]), int(r[2]), as_utc(r[3])) for r in conn.execute(query)]


def worker_processes(conn: Connection, run_ids: Sequence[int]) -> list[WorkerProcess]:
    """The active worker processes of the runs."""
    query = (select(Run.name, Worker.name, Worker.host, Worker.pid, Worker.slots,
                    Worker.started_at, Worker.heartbeat_at)
             .join(Run, Run.id == Worker.run_id)
             .where(Worker.run_id.in_(list(run_ids)), Worker.status == "active")
             .order_by(Run.name, Worker.id))
    return [WorkerProcess(r[0], r[1], r[2], int(r[3]), int(r[4]), as_utc(r[5]), as_utc(r[6]))
            for r in conn.execute(query)]
