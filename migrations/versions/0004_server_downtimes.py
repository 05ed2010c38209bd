"""Servers: the measured downtime of each server cut over (server_downtimes).

Revision ID: 0004_server_downtimes
Revises: 0003_workers
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_server_downtimes"
down_revision: str | None = "0003_workers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_downtimes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=True),
        sa.Column("source_id", sa.String(255), nullable=False),
        sa.Column("target_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("power_state", sa.String(32), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("downtime_seconds", sa.Float(), nullable=False),
        sa.Column("copy_seconds", sa.Float(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name=op.f("fk_server_downtimes_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["step_id"], ["steps.id"],
                                name=op.f("fk_server_downtimes_step_id_steps"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_downtimes")),
        sa.UniqueConstraint("step_id", name=op.f("uq_server_downtimes_step_id")),
    )
    op.create_index(op.f("ix_server_downtimes_run_id"), "server_downtimes", ["run_id"])


def downgrade() -> None:
    op.drop_table("server_downtimes")
