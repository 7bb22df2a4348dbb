"""timed_beliefs: index (source_id, sensor_id, event_start) instead of (source_id).

Which sources have data for a sensor in a window is then one index probe per
source (the charts ask it for every sensor they draw); the index still leads with
source_id, so deleting a source finds its beliefs as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Replace ix_timed_beliefs_source_id by ix_timed_beliefs_source_sensor_start."""
    with op.batch_alter_table("timed_beliefs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_timed_beliefs_source_sensor_start",
            ["source_id", "sensor_id", "event_start"],
            unique=False,
        )
        batch_op.drop_index(batch_op.f("ix_timed_beliefs_source_id"))


def downgrade() -> None:
    """Back to the index on source_id alone."""
    with op.batch_alter_table("timed_beliefs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_timed_beliefs_source_id"), ["source_id"], unique=False
        )
        batch_op.drop_index("ix_timed_beliefs_source_sensor_start")
