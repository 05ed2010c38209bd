"""Steps: the bytes the plan says each data step copies (steps.planned_bytes).

Revision ID: 0006_planned_bytes
Revises: 0005_named_locks
Create Date: 2026-12-03

Existing steps keep NULL (unknown): they count against the run's transfer slots as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_planned_bytes"
down_revision: str | None = "0005_named_locks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("steps", sa.Column("planned_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("planned_bytes")
