"""The latest run of each monitored task (FlexMeasures' latest_task_run).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create latest_task_run, as FlexMeasures' migration b087ce8b529f."""
    op.create_table(
        "latest_task_run",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("datetime", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_latest_task_run")),
    )


def downgrade() -> None:
    """Drop latest_task_run."""
    op.drop_table("latest_task_run")
