"""``audit``: the event log of runs and the source -> target map of their steps, streamed.

    with open_audit(url, run="wave-1", tenant="physics") as log:
        for event in log.events(): ...
        for row in log.id_map(): ...

The rows come from the database as they are read (store/audit.py): nothing is held, however
big the run. The filters are checked before anything is streamed, so a typo in a run or tenant
name is an error, not an empty log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from migrator.errors import ConfigError, NotFoundError
from migrator.operations.context import database_errors, open_state
from migrator.plan.model import KINDS
from migrator.store import audit as queries
from migrator.store.audit import AuditFilter, EventRow, IdMapRow, MovedData, Widths
from migrator.store.db import redact

__all__ = ["AuditLog", "EventRow", "IdMapRow", "MovedData", "Widths", "open_audit",
           "parse_since"]

_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 date or time (UTC unless it names a zone), or a duration
    back from now: ``90s``, ``15m``, ``2h``, ``3d``."""
    value = text.strip()
    match = _RELATIVE.match(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r}: expected an ISO 8601 time (2026-12-02 or "
                          "2026-12-02T14:30Z) or a duration back from now (90s, 15m, 2h, "
                          "3d)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass
class AuditLog:
    """An open audit: the resolved scope and the two streams (each may be read once)."""

    database: str  # URL with the password hidden
    runs: list[str]
    tenant: str | None
    kind: str | None
    since: datetime | None
    widths: Widths
    _conn: Connection
    _filter: AuditFilter

    def events(self) -> Iterator[EventRow]:
        return queries.iter_events(self._conn, self._filter)

    def id_map(self) -> Iterator[IdMapRow]:
        return queries.iter_id_map(self._conn, self._filter)

    def scope(self) -> dict[str, object]:
        return {"database": self.database, "runs": self.runs, "tenant": self.tenant,
                "kind": self.kind,
                "since": self.since.isoformat() if self.since is not None else None}


@contextmanager
def open_audit(url: str, *, run: str | None = None, tenant: str | None = None,
               kind: str | None = None, since: datetime | None = None) -> Iterator[AuditLog]:
    """The audit of run ``run`` (default: every run), restricted to ``tenant``'s steps, to
    steps of ``kind`` and to events since ``since``. NotFoundError for a run or tenant that
    matches nothing, ConfigError for an unknown kind."""
    # A rollback run's steps are undo_<kind> (handlers/undo.py).
    if kind is not None and kind.removeprefix("undo_") not in KINDS:
        raise ConfigError(f"--kind {kind!r}: not a step kind (kinds: {', '.join(KINDS)}, "
                          "and undo_<kind> in a rollback run)")
    with open_state(url) as engine, database_errors(url), engine.connect() as conn:
        runs = queries.runs_named(conn, run)
        if not runs:
            raise NotFoundError(f"no run named {run!r} in the state database" if run is not None
                                else "no runs in the state database yet")
        run_ids = [run_id for run_id, _ in runs]
        if tenant is not None and not queries.tenant_known(conn, run_ids, tenant):
            where = f" in run {run!r}" if run is not None else ""
            raise NotFoundError(f"no steps for tenant {tenant!r}{where}")
        flt = AuditFilter(run_ids, tenant, kind, since)
        yield AuditLog(redact(url), [name for _, name in runs], tenant, kind, since,
                       queries.column_widths(conn, flt), conn, flt)
