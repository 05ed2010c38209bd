"""The measured downtime of servers (table ``server_downtimes``), summed per tenant for
``migrator status`` and listed per server for ``migrator report``. The summary is plain SQL
that the standard library's sqlite3 and SQLAlchemy both run, so that ``status`` on a SQLite
file imports no SQLAlchemy (cli/test_main checks it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from migrator.store.progress_rows import TenantDowntime

SUMMARY_SQL = """
SELECT d.tenant, count(*), sum(d.downtime_seconds), max(d.downtime_seconds),
       sum(d.copy_seconds), sum(d.bytes)
FROM server_downtimes d
WHERE d.run_id IN ({ids}) {tenant_filter}
GROUP BY d.tenant
ORDER BY d.tenant
"""


def _sql(run_ids: Sequence[int], tenant: str | None, style: str) -> tuple[str, Any]:
    ids = ", ".join(str(int(i)) for i in run_ids) or "NULL"
    if tenant is None:
        return SUMMARY_SQL.format(ids=ids, tenant_filter=""), {} if style == "named" else ()
    mark = ":tenant" if style == "named" else "?"
    params: Any = {"tenant": tenant} if style == "named" else (tenant,)
    return SUMMARY_SQL.format(ids=ids, tenant_filter=f"AND d.tenant = {mark}"), params


def _rows(raw: Any) -> list[TenantDowntime]:
    return [TenantDowntime(r[0], int(r[1]), float(r[2] or 0.0), float(r[3] or 0.0),
                           float(r[4] or 0.0), int(r[5] or 0)) for r in raw]


def read_sqlite(conn: Any, run_ids: Sequence[int], tenant: str | None) -> list[TenantDowntime]:
    """With a sqlite3 connection."""
    sql, params = _sql(run_ids, tenant, "qmark")
    return _rows(conn.execute(sql, params).fetchall())


def read_connection(conn: Any, run_ids: Sequence[int], tenant: str | None
                    ) -> list[TenantDowntime]:
    """With a SQLAlchemy connection."""
    from sqlalchemy import text

    sql, params = _sql(run_ids, tenant, "named")
    return _rows(conn.execute(text(sql), params).all())


def record_downtime(conn: Any, row: dict[str, Any]) -> None:
    """Write one server's measured window (a SQLAlchemy connection inside the caller's
    transaction); a row of the same step is replaced (a resumed step verifying again)."""
    from sqlalchemy import Table, delete, insert

    from migrator.store.models import ServerDowntime

    table = cast(Table, ServerDowntime.__table__)
    conn.execute(delete(table).where(table.c.step_id == row["step_id"]))
    conn.execute(insert(table).values(**row))


@dataclass(frozen=True)
class ServerWindow:
    """One server's measured cutover window, as ``migrator report`` lists it."""

    tenant: str | None
    name: str | None
    source_id: str
    target_id: str
    power_state: str  # the source's before the cutover
    stopped_at: datetime
    active_at: datetime
    downtime_seconds: float
    copy_seconds: float
    bytes: int


def server_windows(conn: Any, run_id: int, tenant: str | None) -> list[ServerWindow]:
    """The run's servers cut over (a SQLAlchemy connection), by tenant then name."""
    from sqlalchemy import Table, select

    from migrator.engine.steps import as_utc
    from migrator.store.models import ServerDowntime

    table = cast(Table, ServerDowntime.__table__)
    query = select(table.c.tenant, table.c.name, table.c.source_id, table.c.target_id,
                   table.c.power_state, table.c.stopped_at, table.c.active_at,
                   table.c.downtime_seconds, table.c.copy_seconds, table.c.bytes
                   ).where(table.c.run_id == run_id)
    if tenant is not None:
        query = query.where(table.c.tenant == tenant)
    rows = conn.execute(query).all()
    out = [ServerWindow(r.tenant, r.name, str(r.source_id), str(r.target_id),
                        str(r.power_state), cast(datetime, as_utc(r.stopped_at)),
                        cast(datetime, as_utc(r.active_at)), float(r.downtime_seconds),
                        float(r.copy_seconds), int(r.bytes)) for r in rows]
    return sorted(out, key=lambda w: (w.tenant or "", w.name or "", w.source_id))
