"""The state database's tables (SQLAlchemy 2 declarative).

The schema changes only through Alembic revisions under ``migrations/``; a test checks that
these models and the migrations agree. The step row is the single source of truth for a
step's state: its ``version`` column guards every change (optimistic concurrency on SQLite,
``FOR UPDATE`` row locks on PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    # Every column, not only the first: a constraint on (run_id, key) must not read as if it
    # made run_id unique.
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Plan(Base):
    """A plan file as it was registered for execution."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    file_path: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(128))
    inventory_hash: Mapped[str | None] = mapped_column(String(128))
    source_cloud: Mapped[str | None] = mapped_column(String(255))
    target_cloud: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One execution of a plan (or of a test-built step set); resumable."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    status: Mapped[str] = mapped_column(String(32), default="created")
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # What the operator asked every worker of the run to do at its next checkpoint:
    # "pause", "cancel", or None (run).
    control: Mapped[str | None] = mapped_column(String(16))

    steps: Mapped[list[Step]] = relationship(back_populates="run", lazy="raise_on_sql")


class Step(Base):
    """One unit of migration work: create a project, move an image, ..."""

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("run_id", "key"),
        # The claim's path: a run's pending steps with nothing to wait for, in id order.
        Index("ix_steps_ready", "run_id", "state", "waiting", "id"),
        # And its other path: the few running steps, by when their lease runs out.
        Index("ix_steps_leased", "run_id", "lease_expires_at",
              postgresql_where=text("state IN ('running', 'verifying')"),
              sqlite_where=text("state IN ('running', 'verifying')")),
        Index("ix_steps_run_tenant", "run_id", "tenant"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    # Stable name of the step inside its run, e.g. "image:3f2a...", as written in the plan.
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(255))
    tenant: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    wave: Mapped[int] = mapped_column(Integer, default=0)
    # What the handler needs to act (translated representation, mappings), from the plan.
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(32), default="pending")
    # Dependencies not yet done (or skipped): kept by every transition into and out of those
    # states, so that a ready step is found by an index instead of a scan of the graph.
    waiting: Mapped[int] = mapped_column(Integer, server_default="0")
    phase: Mapped[str | None] = mapped_column(String(64))
    checkpoint: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Earliest time a retried step may run again (backoff).
    not_before: Mapped[datetime | None]
    # Lease of the worker running the step (multi-worker runs); the token fences stale owners.
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_expires_at: Mapped[datetime | None]
    # Bytes the plan says the step copies (spec.planned_bytes); NULL: none planned or unknown,
    # counted as a big copy. A data step of at most transfer.small_copy_bytes holds no
    # transfer slot (engine/leases.py).
    planned_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    run: Mapped[Run] = relationship(back_populates="steps", lazy="raise_on_sql")


class StepDependency(Base):
    """``step_id`` may start only when ``depends_on_id`` is done (or skipped)."""

    __tablename__ = "step_dependencies"

    step_id: Mapped[int] = mapped_column(
        ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[int] = mapped_column(
        ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Event(Base):
    """Append-only audit log: one row per state transition (and per notable run event)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_step", "run_id", "step_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(64))
    # user@host, and the process id, of whoever fired the trigger.
    actor: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class IdMap(Base):
    """Which target resource a source resource became, per run."""

    __tablename__ = "id_map"
    __table_args__ = (UniqueConstraint("run_id", "kind", "source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(255))
    target_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InventorySnapshot(Base):
    """One discovery pass over a cloud."""

    __tablename__ = "inventory_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cloud: Mapped[str] = mapped_column(String(255))
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Tenants the discovery was restricted to (empty: all it could see).
    selection: Mapped[dict[str, Any]] = mapped_column(default=dict)
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    # Hash over every item's (kind, source id, attributes): a plan records it to detect staleness.
    content_hash: Mapped[str | None] = mapped_column(String(128))


class InventoryItem(Base):
    """One source resource as discovery read it (raw attributes kept)."""

    __tablename__ = "inventory_items"
    __table_args__ = (
        UniqueConstraint("snapshot_id", "kind", "source_id"),
        Index("ix_inventory_items_snapshot_tenant", "snapshot_id", "tenant"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("inventory_snapshots.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(160))


class Worker(Base):
    """A worker process taking part in a run (or waiting for one): who it is, where it runs,
    and when it last showed it was alive. Its steps' leases are renewed with its heartbeat;
    a worker that stops heartbeating loses them when they expire."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_run_status", "run_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Written into the lease_owner of the steps it holds: unique over all time.
    name: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    slots: Mapped[int] = mapped_column(Integer)
    # active, stopped (cleanly, its leases released) or lost (found dead by another worker).
    status: Mapped[str] = mapped_column(String(16), default="active")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]


class Verification(Base):
    """One ``migrator verify`` of a run: when, by whom, how deep, and what it found.

    ``summary`` holds the counts per tenant and kind (matching, differing, missing, drift);
    ``findings`` every resource that did not match and every drift on the source, each with
    its tenant, kind, name, ids and the differences in words.
    """

    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    # The --tenant the verification was restricted to (None: every tenant of the run).
    tenant: Mapped[str | None] = mapped_column(String(255))
    deep: Mapped[bool] = mapped_column(Boolean, default=False)
    # match: everything migrated is on the target as planned; differences otherwise. Drift
    # on the source does not change it.
    outcome: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    findings: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ServerDowntime(Base):
    """The measured cutover window of one server: from the moment migrator stopped the
    source (or, for a server that was already SHUTOFF, the moment it started to move it) to
    the target server ACTIVE (or left SHUTOFF) and verified. One row per server step,
    written by the step's verify phase (again, with the same figures, when a resumed step
    verifies again)."""

    __tablename__ = "server_downtimes"
    __table_args__ = (UniqueConstraint("step_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))
    tenant: Mapped[str | None] = mapped_column(String(255))
    source_id: Mapped[str] = mapped_column(String(255))
    target_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    power_state: Mapped[str] = mapped_column(String(32))  # the source's, before the cutover
    stopped_at: Mapped[datetime] = mapped_column()
    active_at: Mapped[datetime] = mapped_column()
    verified_at: Mapped[datetime] = mapped_column()
    downtime_seconds: Mapped[float] = mapped_column(Float)
    copy_seconds: Mapped[float] = mapped_column(Float)  # the bytes' copy inside the window
    bytes: Mapped[int] = mapped_column(BigInteger)  # copied (snapshot and volumes)


class NamedLock(Base):
    """A lock that worker processes (on one host or several) take around a few cloud calls
    that must not interleave, held between transactions (store/named_locks.py): who holds it
    and until when. A holder that died is replaced once the lock expires, or at once by a
    worker on its host that finds its process gone."""

    __tablename__ = "named_locks"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))  # the holder's, unique per acquisition
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
