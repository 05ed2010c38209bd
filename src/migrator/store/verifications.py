"""Recording and reading what ``migrator verify`` found (the ``verifications`` table)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select

from migrator.engine.steps import actor, as_utc
from migrator.store.models import Verification

VERIFICATIONS = cast(Table, Verification.__table__)


@dataclass(frozen=True)
class VerificationRow:
    id: int
    run_id: int
    tenant: str | None
    deep: bool
    outcome: str
    actor: str
    pid: int
    started_at: datetime
    finished_at: datetime
    summary: dict[str, Any]
    findings: dict[str, Any]


def record_verification(conn: Connection, *, run_id: int, tenant: str | None, deep: bool,
                        outcome: str, started_at: datetime, finished_at: datetime,
                        summary: dict[str, Any], findings: dict[str, Any]) -> int:
    """Insert one verification (the caller's transaction); its id."""
    return int(conn.execute(insert(VERIFICATIONS).values(
        run_id=run_id, tenant=tenant, deep=deep, outcome=outcome, actor=actor(),
        pid=os.getpid(), started_at=started_at, finished_at=finished_at, summary=summary,
        findings=findings).returning(VERIFICATIONS.c.id)).scalar_one())


def verifications_of(conn: Connection, run_id: int) -> list[VerificationRow]:
    """The run's verifications, the most recent first."""
    rows = conn.execute(select(VERIFICATIONS).where(VERIFICATIONS.c.run_id == run_id)
                        .order_by(VERIFICATIONS.c.id.desc())).mappings()
    return [_row(row) for row in rows]


def _row(row: Any) -> VerificationRow:
    started, finished = as_utc(row["started_at"]), as_utc(row["finished_at"])
    assert started is not None and finished is not None
    return VerificationRow(row["id"], row["run_id"], row["tenant"], bool(row["deep"]),
                           row["outcome"], row["actor"], row["pid"], started, finished,
                           dict(row["summary"] or {}), dict(row["findings"] or {}))
