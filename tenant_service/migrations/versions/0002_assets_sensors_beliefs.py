"""Asset types (seeded), assets, sensors, data sources and timed beliefs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# The types this revision seeded (frozen: 0003 re-seeds FlexMeasures' own set and
# ids; its downgrade restores these).
LEGACY_ASSET_TYPES: tuple[tuple[str, str], ...] = (
    ("battery", "A grid-connected battery that can charge and discharge."),
    ("solar", "A solar panel installation."),
    ("wind", "A wind turbine or park."),
    ("one-way_evse", "An EV charger that can only charge."),
    ("two-way_evse", "An EV charger that can charge and discharge (V2G)."),
    ("building", "A building with its own loads and generation."),
    ("process", "An industrial process with shiftable load."),
    ("load", "A flexible or inflexible load."),
    ("weather station", "A source of weather measurements and forecasts."),
    ("transmission zone", "A market or grid zone, e.g. for day-ahead prices."),
)

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the data tables and seed FlexMeasures' usual asset types."""
    op.create_table(
        "generic_asset_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generic_asset_types")),
        sa.UniqueConstraint("name", name=op.f("uq_generic_asset_types_name")),
    )
    op.bulk_insert(
        sa.table(
            "generic_asset_types",
            sa.column("name", sa.String),
            sa.column("description", sa.String),
        ),
        [{"name": name, "description": text} for name, text in LEGACY_ASSET_TYPES],
    )
    op.create_table(
        "generic_assets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("generic_asset_type_id", sa.Integer(), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("parent_asset_id", sa.Integer(), nullable=True),
        sa.Column(
            "attributes", sa.Text(), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "flex_context", sa.Text(), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "flex_model", sa.Text(), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "sensors_to_show", sa.Text(), server_default=sa.text("'[]'"), nullable=False
        ),
        sa.Column(
            "sensors_to_show_as_kpis",
            sa.Text(),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_generic_assets_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["generic_asset_type_id"],
            ["generic_asset_types.id"],
            name=op.f("fk_generic_assets_generic_asset_type_id_generic_asset_types"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["parent_asset_id"],
            ["generic_assets.id"],
            name=op.f("fk_generic_assets_parent_asset_id_generic_assets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generic_assets")),
    )
    with op.batch_alter_table("generic_assets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_generic_assets_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_generic_assets_parent_asset_id"),
            ["parent_asset_id"],
            unique=False,
        )
        batch_op.create_index(
            "uq_generic_assets_parent_name",
            ["parent_asset_id", "name"],
            unique=True,
            sqlite_where=sa.text("parent_asset_id IS NOT NULL"),
            postgresql_where=sa.text("parent_asset_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_generic_assets_root_name",
            ["account_id", "name"],
            unique=True,
            sqlite_where=sa.text("parent_asset_id IS NULL"),
            postgresql_where=sa.text("parent_asset_id IS NULL"),
        )

    op.create_table(
        "data_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("model", sa.String(length=80), nullable=True),
        sa.Column("version", sa.String(length=17), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column(
            "attributes", sa.Text(), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_data_sources_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_data_sources_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_sources")),
        sa.UniqueConstraint("key", name=op.f("uq_data_sources_key")),
    )
    with op.batch_alter_table("data_sources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_sources_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "sensors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column(
            "unit", sa.String(length=80), server_default=sa.text("('')"), nullable=False
        ),
        sa.Column("timezone", sa.String(length=80), nullable=False),
        sa.Column(
            "event_resolution",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("knowledge_horizon_fnc", sa.String(length=80), nullable=True),
        sa.Column(
            "knowledge_horizon_par",
            sa.Text(),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "attributes", sa.Text(), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("generic_asset_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["generic_asset_id"],
            ["generic_assets.id"],
            name=op.f("fk_sensors_generic_asset_id_generic_assets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensors")),
        sa.UniqueConstraint(
            "generic_asset_id", "name", name=op.f("uq_sensors_generic_asset_id")
        ),
    )
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sensors_generic_asset_id"),
            ["generic_asset_id"],
            unique=False,
        )

    op.create_table(
        "timed_beliefs",
        sa.Column("sensor_id", sa.Integer(), nullable=False),
        sa.Column("event_start", sa.BigInteger(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("belief_horizon", sa.BigInteger(), nullable=False),
        sa.Column(
            "cumulative_probability",
            sa.Float(),
            server_default=sa.text("(0.5)"),
            nullable=False,
        ),
        sa.Column("event_value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sensor_id"],
            ["sensors.id"],
            name=op.f("fk_timed_beliefs_sensor_id_sensors"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["data_sources.id"],
            name=op.f("fk_timed_beliefs_source_id_data_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "sensor_id",
            "event_start",
            "source_id",
            "belief_horizon",
            "cumulative_probability",
            name=op.f("pk_timed_beliefs"),
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("timed_beliefs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_timed_beliefs_source_id"), ["source_id"], unique=False
        )


def downgrade() -> None:
    """Drop the data tables."""
    with op.batch_alter_table("timed_beliefs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timed_beliefs_source_id"))

    op.drop_table("timed_beliefs")
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sensors_generic_asset_id"))

    op.drop_table("sensors")
    with op.batch_alter_table("data_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_sources_user_id"))

    op.drop_table("data_sources")
    with op.batch_alter_table("generic_assets", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_generic_assets_root_name",
            sqlite_where=sa.text("parent_asset_id IS NULL"),
            postgresql_where=sa.text("parent_asset_id IS NULL"),
        )
        batch_op.drop_index(
            "uq_generic_assets_parent_name",
            sqlite_where=sa.text("parent_asset_id IS NOT NULL"),
            postgresql_where=sa.text("parent_asset_id IS NOT NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_generic_assets_parent_asset_id"))
        batch_op.drop_index(batch_op.f("ix_generic_assets_account_id"))

    op.drop_table("generic_assets")
    op.drop_table("generic_asset_types")
