"""Annotations (stored once, linked to accounts/assets/sensors), user preferences,
and FlexMeasures' own seeded asset types with its ids.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

The asset types are re-seeded in place: FlexMeasures 1.0.1's eight types get ids 1..8
in its order (battery is 5), every asset keeps pointing at the type of the same name,
types of ours that no asset uses are dropped, and any other type (still used, or
added by hand) follows from id 9 in its old order. Primary keys are never updated
(the asset foreign key has no ON UPDATE CASCADE): rows move through temporary ids
above all existing ones, with the assets repointed at each step, so every statement
leaves the foreign key intact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

from tenant_service.store.tables import ASSET_TYPES

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_TYPES = sa.table(
    "generic_asset_types",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("description", sa.String),
)
_ASSETS = sa.table(
    "generic_assets",
    sa.column("id", sa.Integer),
    sa.column("generic_asset_type_id", sa.Integer),
)


def _legacy_types() -> tuple[tuple[str, str], ...]:
    module = importlib.import_module(
        "tenant_service.migrations.versions.0002_assets_sensors_beliefs"
    )
    legacy: tuple[tuple[str, str], ...] = module.LEGACY_ASSET_TYPES
    return legacy


def reseed_types(
    conn: sa.Connection,
    target: tuple[tuple[str, str], ...],
    replaced: frozenset[str],
) -> None:
    """Give `target` ids 1..n; keep used or foreign types after them; drop the rest.

    `replaced` names the seeded types of the other seeding: dropped if unused.
    """
    rows = conn.execute(
        sa.select(_TYPES.c.id, _TYPES.c.name, _TYPES.c.description).order_by(
            _TYPES.c.id
        )
    ).all()
    used = set(
        conn.execute(sa.select(_ASSETS.c.generic_asset_type_id).distinct()).scalars()
    )
    by_name = {row.name: row for row in rows}
    target_names = {name for name, _ in target}
    final: list[tuple[str, str | None, int | None]] = [
        (name, text, by_name[name].id if name in by_name else None)
        for name, text in target
    ]
    final += [
        (row.name, row.description, row.id)
        for row in rows
        if row.name not in target_names and (row.id in used or row.name not in replaced)
    ]
    if [(row.id, row.name, row.description) for row in rows] == [
        (index, name, text) for index, (name, text, _) in enumerate(final, 1)
    ]:
        return
    offset = max([row.id for row in rows] + [len(final)]) + 1
    for row in rows:  # 1. every type to a temporary id, assets follow
        conn.execute(
            sa.insert(_TYPES).values(
                id=row.id + offset, name=f"~reseed~{row.id}", description=None
            )
        )
        conn.execute(
            sa.update(_ASSETS)
            .where(_ASSETS.c.generic_asset_type_id == row.id)
            .values(generic_asset_type_id=row.id + offset)
        )
        conn.execute(sa.delete(_TYPES).where(_TYPES.c.id == row.id))
    for new_id, (name, text, old_id) in enumerate(final, 1):  # 2. final ids
        conn.execute(sa.insert(_TYPES).values(id=new_id, name=name, description=text))
        if old_id is not None:
            conn.execute(
                sa.update(_ASSETS)
                .where(_ASSETS.c.generic_asset_type_id == old_id + offset)
                .values(generic_asset_type_id=new_id)
            )
    conn.execute(sa.delete(_TYPES).where(_TYPES.c.id >= offset))  # 3. unused
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('generic_asset_types', 'id'), "
                "(SELECT max(id) FROM generic_asset_types))"
            )
        )


def _link(name: str, column: str, target: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(column, sa.Integer(), nullable=False),
        sa.Column("annotation_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotation_id"],
            ["annotations.id"],
            name=op.f(f"fk_{name}_annotation_id_annotations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            [column],
            [f"{target}.id"],
            name=op.f(f"fk_{name}_{column}_{target}"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint(
            "annotation_id", column, name=op.f(f"uq_{name}_annotation_id")
        ),
    )
    op.create_index(op.f(f"ix_{name}_{column}"), name, [column], unique=False)


def upgrade() -> None:
    """Create the annotation and preference tables; re-seed the asset types."""
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("belief_time", sa.BigInteger(), nullable=True),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("content", sa.String(length=1024), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["data_sources.id"],
            name=op.f("fk_annotations_source_id_data_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotations")),
        sa.UniqueConstraint("key", name=op.f("uq_annotations_key")),
    )
    op.create_index(
        op.f("ix_annotations_source_id"), "annotations", ["source_id"], unique=False
    )
    _link("annotations_accounts", "account_id", "accounts")
    _link("annotations_assets", "generic_asset_id", "generic_assets")
    _link("annotations_sensors", "sensor_id", "sensors")
    op.create_table(
        "user_preferences",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("default_asset_view", sa.String(length=32), nullable=True),
        sa.Column("keep_legends_below_graphs", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_preferences")),
    )
    reseed_types(
        op.get_bind(), ASSET_TYPES, frozenset(name for name, _ in _legacy_types())
    )


def downgrade() -> None:
    """Restore the earlier seeded types; drop the new tables."""
    reseed_types(
        op.get_bind(), _legacy_types(), frozenset(name for name, _ in ASSET_TYPES)
    )
    op.drop_table("user_preferences")
    for name, column in (
        ("annotations_sensors", "sensor_id"),
        ("annotations_assets", "generic_asset_id"),
        ("annotations_accounts", "account_id"),
    ):
        op.drop_index(op.f(f"ix_{name}_{column}"), table_name=name)
        op.drop_table(name)
    op.drop_index(op.f("ix_annotations_source_id"), table_name="annotations")
    op.drop_table("annotations")
