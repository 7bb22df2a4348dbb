"""FlexMeasures' audit logs: `audit_log` (users, accounts) and `asset_audit_log`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tenant_service.store.tables import UtcDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create both audit tables and their lookup indexes."""
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_datetime", UtcDateTime(), nullable=False),
        sa.Column("event", sa.String(length=500), nullable=False),
        sa.Column("active_user_name", sa.String(length=255), nullable=True),
        sa.Column("active_user_id", sa.Integer(), nullable=True),
        sa.Column("affected_user_id", sa.Integer(), nullable=True),
        sa.Column("affected_account_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(
        op.f("ix_audit_log_affected_user_id"), "audit_log", ["affected_user_id"]
    )
    op.create_index(
        op.f("ix_audit_log_affected_account_id"), "audit_log", ["affected_account_id"]
    )
    op.create_table(
        "asset_audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_datetime", UtcDateTime(), nullable=False),
        sa.Column("event", sa.String(length=500), nullable=False),
        sa.Column("active_user_name", sa.String(length=255), nullable=True),
        sa.Column("active_user_id", sa.Integer(), nullable=True),
        sa.Column("affected_asset_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["active_user_id"],
            ["users.id"],
            name=op.f("fk_asset_audit_log_active_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["affected_asset_id"],
            ["generic_assets.id"],
            name=op.f("fk_asset_audit_log_affected_asset_id_generic_assets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asset_audit_log")),
    )
    op.create_index(
        op.f("ix_asset_audit_log_affected_asset_id"),
        "asset_audit_log",
        ["affected_asset_id"],
    )


def downgrade() -> None:
    """Drop both audit tables."""
    op.drop_index(
        op.f("ix_asset_audit_log_affected_asset_id"), table_name="asset_audit_log"
    )
    op.drop_table("asset_audit_log")
    op.drop_index(op.f("ix_audit_log_affected_account_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_affected_user_id"), table_name="audit_log")
    op.drop_table("audit_log")
