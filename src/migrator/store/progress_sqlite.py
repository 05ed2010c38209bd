"""``migrator status``'s rows read through the standard library's sqlite3 (no SQLAlchemy:
a plain SQLite file at the current schema, opened by store/sqlite_readonly.py), the same rows
in the same order and types as store/progress.py's :func:`read_rows`."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from migrator.store import downtimes
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


def _time(value: Any) -> datetime | None:
    """SQLAlchemy's text of a DateTime on SQLite (ISO 8601, no zone) as its datetime."""
    return datetime.fromisoformat(value) if value is not None else None


def read_sqlite(conn: sqlite3.Connection, run: str | None, tenant: str | None
                ) -> ProgressRows:
    """The rows ``progress.read_rows`` reads, in the same order and types (SQLAlchemy stores a
    DateTime on SQLite as ISO 8601 text, a Boolean as 0 or 1, JSON as text)."""
    where = "WHERE name = ? " if run is not None else ""
    runs: list[RunRow] = [
        (int(r[0]), str(r[1]), str(r[2]), bool(r[3]), datetime.fromisoformat(r[4]),
         _time(r[5]), _time(r[6]))
        for r in conn.execute("SELECT id, name, status, dry_run, created_at, started_at, "
                              f"finished_at FROM runs {where}ORDER BY created_at, id",
                              [run] if run is not None else [])]
    if not runs:
        return ProgressRows(runs)
    ids = [r[0] for r in runs]
    marks = ", ".join("?" * len(ids))
    scope, params = f"s.run_id IN ({marks})", list[object](ids)
    if tenant is not None:
        scope += " AND s.tenant = ?"
        params.append(tenant)
    counts = [KindCount(int(r[0]), r[1], str(r[2]), str(r[3]), int(r[4])) for r in conn.execute(
        "SELECT s.run_id, s.tenant, s.kind, s.state, count(*) FROM steps s "
        f"WHERE {scope} GROUP BY s.run_id, s.tenant, s.kind, s.state", params)]
    data = []
    for run_id, step_tenant, kind, state, isent, vsent, isize, vgib, updated in conn.execute(
            "SELECT s.run_id, s.tenant, s.kind, s.state, "
            "json_extract(s.checkpoint, '$.bytes'), "
            "json_extract(s.checkpoint, '$.copy.copied.bytes'), "
            "json_extract(s.spec, '$.lookup.size'), json_extract(s.spec, '$.attrs.size'), "
            f"s.updated_at FROM steps s WHERE {scope} AND s.kind IN "
            f"({', '.join('?' * len(DATA_KINDS))})", [*params, *DATA_KINDS]):
        data.append(_data_step(int(run_id), step_tenant, str(kind), str(state), isent, vsent,
                               isize, vgib, utc(_time(updated))))
    finished: dict[int, dict[str | None, int]] = {}
    for r in runs:
        if r[5] is None:
            continue
        rows = conn.execute(
            "SELECT s.tenant, count(*) FROM steps s WHERE s.run_id = ? AND s.state IN "
            "(?, ?) AND s.updated_at >= ?" + (" AND s.tenant = ?" if tenant is not None else "")
            + " GROUP BY s.tenant",
            [r[0], *FINISHED_STATES, r[5].isoformat(sep=" "),
             *([tenant] if tenant is not None else [])])
        finished[r[0]] = {t: int(n) for t, n in rows}
    failed = [FailedStep(str(r[0]), r[1], str(r[2]), r[3], str(r[4]), int(r[5] or 0), r[6],
                         utc(_time(r[7])))
              for r in conn.execute(
                  "SELECT r.name, s.tenant, s.kind, s.name, s.key, s.attempts, s.last_error, "
                  "s.updated_at FROM steps s JOIN runs r ON r.id = s.run_id "
                  f"WHERE {scope} AND s.state = 'failed' ORDER BY s.run_id, s.tenant, s.id",
                  params)]
    workers = [WorkerRow(str(r[0]), str(r[1]), int(r[2]), utc(_time(r[3])))
               for r in conn.execute(
                   "SELECT r.name, s.lease_owner, count(*), max(s.updated_at) FROM steps s "
                   f"JOIN runs r ON r.id = s.run_id WHERE s.run_id IN ({marks}) AND s.state "
                   f"IN (?, ?) AND s.lease_owner IS NOT NULL GROUP BY r.name, s.lease_owner "
                   "ORDER BY r.name, s.lease_owner", [*ids, *WORKING_STATES])]
    processes = [WorkerProcess(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]),
                               utc(_time(r[5])), utc(_time(r[6])))
                 for r in conn.execute(
                     "SELECT r.name, w.name, w.host, w.pid, w.slots, w.started_at, "
                     "w.heartbeat_at FROM workers w JOIN runs r ON r.id = w.run_id WHERE "
                     f"w.run_id IN ({marks}) AND w.status = 'active' ORDER BY r.name, w.id",
                     ids)]
    return ProgressRows(runs, counts, data, finished, failed, workers, processes,
                        downtimes.read_sqlite(conn, ids, tenant))


def _data_step(run_id: int, tenant: str | None, kind: str, state: str, image_sent: Any,
               volume_sent: Any, image_size: Any, volume_gib: Any,
               updated_at: datetime | None) -> DataStep:
    if kind == "image":
        return DataStep(run_id, tenant, kind, state, json_int(image_sent),
                        json_int(image_size), updated_at)
    gib = json_int(volume_gib)
    return DataStep(run_id, tenant, kind, state, json_int(volume_sent),
                    gib * GIB if gib is not None else None, updated_at)
