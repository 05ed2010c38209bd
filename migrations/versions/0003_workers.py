"""Workers sharing a run: the workers table and runs.control replace the run lock.

A worker (host, pid, heartbeat) holds leases on steps; the run's control asks every worker to
pause or cancel at its next checkpoint. ``steps.waiting`` counts a step's dependencies that are
not done yet, so that claims find ready steps through an index.

Revision ID: 0003_workers
Revises: 0002_verifications
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_workers"
down_revision: str | None = "0002_verifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_workers_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("name", name=op.f("uq_workers_name")),
    )
    op.create_index("ix_workers_run_status", "workers", ["run_id", "status"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("control", sa.String(16), nullable=True))
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("waiting", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.execute(
        "UPDATE steps SET waiting = (SELECT count(*) FROM step_dependencies d "
        "JOIN steps s2 ON s2.id = d.depends_on_id WHERE d.step_id = steps.id "
        "AND s2.state NOT IN ('done', 'skipped'))")
    op.drop_index("ix_steps_run_state", table_name="steps")
    op.create_index("ix_steps_ready", "steps", ["run_id", "state", "waiting", "id"])
    in_doubt = sa.text("state IN ('running', 'verifying')")
    op.create_index("ix_steps_leased", "steps", ["run_id", "lease_expires_at"],
                    postgresql_where=in_doubt, sqlite_where=in_doubt)
    # Held by executors that can no longer run: leases and the workers table replace it.
    op.drop_table("run_locks")


def downgrade() -> None:
    op.create_table(
        "run_locks",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_locks_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_locks")),
    )
    op.drop_index("ix_steps_leased", table_name="steps")
    op.drop_index("ix_steps_ready", table_name="steps")
    op.create_index("ix_steps_run_state", "steps", ["run_id", "state"])
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("waiting")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("control")
    op.drop_index("ix_workers_run_status", table_name="workers")
    op.drop_table("workers")
