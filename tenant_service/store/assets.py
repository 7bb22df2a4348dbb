"""Assets (a tree per account, public ones without an account) and asset types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.acl import Owner
from tenant_service.store import audit
from tenant_service.store.tables import (
    accounts,
    generic_asset_types,
    generic_assets,
    sensors,
)

# The deepest asset tree walked for subtree queries (a guard against cycles).
MAX_TREE_DEPTH: Final = 100


@dataclass(frozen=True, slots=True)
class AssetRecord:
    """An asset with its owner's name and its type's name."""

    id: int
    name: str
    description: str | None
    account_id: int | None
    owner_name: str | None
    consultancy_account_id: int | None
    generic_asset_type_id: int
    type_name: str
    latitude: float | None
    longitude: float | None
    parent_asset_id: int | None
    attributes: str
    flex_context: str
    flex_model: str
    sensors_to_show: str
    sensors_to_show_as_kpis: str
    external_id: str | None

    @property
    def owner(self) -> Owner:
        """The ownership used by the ACL rules."""
        return Owner(self.account_id, self.consultancy_account_id)


@dataclass(frozen=True, slots=True)
class ChildAsset:
    """The short form of a child asset in an asset's `child_assets`."""

    id: int
    name: str
    account_id: int | None
    generic_asset_type_id: int
    type_name: str
    consultancy_account_id: int | None = None

    @property
    def owner(self) -> Owner:
        """The ownership used by the ACL rules."""
        return Owner(self.account_id, self.consultancy_account_id)


@dataclass(frozen=True, slots=True)
class AssetType:
    """A generic asset type."""

    id: int
    name: str
    description: str | None


# Built once: constructing statements per request costs more than running them.
ASSET_QUERY: Final[Select[Any]] = select(
    generic_assets,
    accounts.c.name.label("owner_name"),
    accounts.c.consultancy_account_id.label("consultancy_account_id"),
    generic_asset_types.c.name.label("type_name"),
).select_from(
    generic_assets.join(
        generic_asset_types,
        generic_asset_types.c.id == generic_assets.c.generic_asset_type_id,
    ).outerjoin(accounts, accounts.c.id == generic_assets.c.account_id)
)
_BY_ID: Final = ASSET_QUERY.where(generic_assets.c.id == bindparam("asset_id"))
_CHILDREN: Final = (
    select(
        generic_assets.c.id,
        generic_assets.c.name,
        generic_assets.c.account_id,
        generic_assets.c.generic_asset_type_id,
        generic_assets.c.parent_asset_id,
        generic_asset_types.c.name.label("type_name"),
        accounts.c.consultancy_account_id,
    )
    .select_from(
        generic_assets.join(
            generic_asset_types,
            generic_asset_types.c.id == generic_assets.c.generic_asset_type_id,
        ).outerjoin(accounts, accounts.c.id == generic_assets.c.account_id)
    )
    .where(generic_assets.c.parent_asset_id.in_(bindparam("ids", expanding=True)))
    .order_by(generic_assets.c.id)
)
_SENSOR_NAMES: Final = (
    select(sensors.c.id, sensors.c.name, sensors.c.generic_asset_id)
    .where(sensors.c.generic_asset_id.in_(bindparam("ids", expanding=True)))
    .order_by(sensors.c.id)
)
_TYPES: Final = select(generic_asset_types).order_by(generic_asset_types.c.id)
_TYPE_BY_ID: Final = select(generic_asset_types.c.id).where(
    generic_asset_types.c.id == bindparam("type_id")
)
_ACCOUNT_EXISTS: Final = select(accounts.c.id).where(
    accounts.c.id == bindparam("account_id")
)
_SIBLING_UNDER_PARENT: Final = select(generic_assets.c.id).where(
    generic_assets.c.parent_asset_id == bindparam("parent_id"),
    generic_assets.c.name == bindparam("name"),
    generic_assets.c.id != bindparam("exclude_id"),
)
_SIBLING_AT_ROOT: Final = select(generic_assets.c.id).where(
    generic_assets.c.parent_asset_id.is_(None),
    generic_assets.c.account_id.is_not_distinct_from(bindparam("account_id")),
    generic_assets.c.name == bindparam("name"),
    generic_assets.c.id != bindparam("exclude_id"),
)
_DELETE: Final = delete(generic_assets).where(
    generic_assets.c.id == bindparam("asset_id")
)


def subtree(
    root_id: int | ColumnElement[int], max_depth: int | None = None
) -> Select[Any]:
    """Ids of an asset and its descendants (up to `max_depth` generations)."""
    limit = MAX_TREE_DEPTH if max_depth is None else min(max_depth, MAX_TREE_DEPTH)
    base = select(generic_assets.c.id, literal(0).label("depth")).where(
        generic_assets.c.id == root_id
    )
    tree = base.cte("asset_tree", recursive=True)
    tree = tree.union_all(
        select(generic_assets.c.id, (tree.c.depth + 1).label("depth")).where(
            generic_assets.c.parent_asset_id == tree.c.id, tree.c.depth < limit
        )
    )
    return select(tree.c.id)


def asset_record(row: Row[Any]) -> AssetRecord:
    """An AssetRecord from a row of a query built on ASSET_QUERY."""
    return AssetRecord(
        id=row.id,
        name=row.name,
        description=row.description,
        account_id=row.account_id,
        owner_name=row.owner_name,
        consultancy_account_id=row.consultancy_account_id,
        generic_asset_type_id=row.generic_asset_type_id,
        type_name=row.type_name,
        latitude=row.latitude,
        longitude=row.longitude,
        parent_asset_id=row.parent_asset_id,
        attributes=row.attributes,
        flex_context=row.flex_context,
        flex_model=row.flex_model,
        sensors_to_show=row.sensors_to_show,
        sensors_to_show_as_kpis=row.sensors_to_show_as_kpis,
        external_id=row.external_id,
    )


async def get_asset(conn: AsyncConnection, asset_id: int) -> AssetRecord | None:
    """One asset, or None."""
    row = (await conn.execute(_BY_ID, {"asset_id": asset_id})).first()
    return asset_record(row) if row is not None else None


async def list_assets(
    conn: AsyncConnection,
    where: ColumnElement[bool],
    *,
    order_by: Sequence[ColumnElement[Any]],
    offset: int = 0,
    limit: int | None = None,
) -> list[AssetRecord]:
    """Assets matching `where`, in order, one page."""
    query = ASSET_QUERY.where(where).order_by(*order_by).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [asset_record(row) for row in (await conn.execute(query)).all()]


async def count_assets(conn: AsyncConnection, where: ColumnElement[bool]) -> int:
    """How many assets match `where`."""
    query = select(func.count()).select_from(ASSET_QUERY.where(where).subquery())
    return int((await conn.execute(query)).scalar_one())


async def children_and_sensors(
    conn: AsyncConnection, asset_ids: Sequence[int]
) -> tuple[dict[int, list[ChildAsset]], dict[int, list[tuple[int, str]]]]:
    """The child assets and the (id, name) of the sensors of each asset: 2 queries."""
    children: dict[int, list[ChildAsset]] = {}
    names: dict[int, list[tuple[int, str]]] = {}
    if not asset_ids:
        return children, names
    ids = list(asset_ids)
    for row in (await conn.execute(_CHILDREN, {"ids": ids})).all():
        children.setdefault(row.parent_asset_id, []).append(
            ChildAsset(
                row.id,
                row.name,
                row.account_id,
                row.generic_asset_type_id,
                row.type_name,
                row.consultancy_account_id,
            )
        )
    for sensor in (await conn.execute(_SENSOR_NAMES, {"ids": ids})).all():
        names.setdefault(sensor.generic_asset_id, []).append((sensor.id, sensor.name))
    return children, names


async def list_types(conn: AsyncConnection) -> list[AssetType]:
    """All asset types."""
    rows = (await conn.execute(_TYPES)).all()
    return [AssetType(row.id, row.name, row.description) for row in rows]


async def type_exists(conn: AsyncConnection, type_id: int) -> bool:
    """Whether an asset type with this id exists."""
    return (await conn.execute(_TYPE_BY_ID, {"type_id": type_id})).first() is not None


async def account_exists(conn: AsyncConnection, account_id: int) -> bool:
    """Whether an account with this id exists."""
    row = (await conn.execute(_ACCOUNT_EXISTS, {"account_id": account_id})).first()
    return row is not None


async def name_taken(
    conn: AsyncConnection,
    *,
    name: str,
    parent_id: int | None,
    account_id: int | None,
    exclude_id: int = -1,
) -> bool:
    """Whether a sibling (same parent, or same account's top level) has this name."""
    if parent_id is not None:
        params: dict[str, Any] = {"parent_id": parent_id}
        query = _SIBLING_UNDER_PARENT
    else:
        params = {"account_id": account_id}
        query = _SIBLING_AT_ROOT
    params.update(name=name, exclude_id=exclude_id)
    return (await conn.execute(query, params)).first() is not None


async def create_asset(
    conn: AsyncConnection, values: dict[str, Any], *, actor: audit.Actor = audit.CLI
) -> int:
    """Insert an asset (audited); its id."""
    result = await conn.execute(
        insert(generic_assets).values(**values).returning(generic_assets.c.id)
    )
    asset_id = int(result.scalar_one())
    how = " via CLI." if actor.user_id is None else ""
    sep = f" ({asset_id})" if how else f": {asset_id}"
    await audit.record_asset(
        conn, actor, asset_id, f"Created asset '{values.get('name')}'{sep}{how}"
    )
    return asset_id


# JSON columns: FlexMeasures words their changes as "Updated <field>: old → new".
_JSON_COLUMNS: Final = frozenset(
    {"flex_context", "flex_model", "sensors_to_show", "sensors_to_show_as_kpis"}
)


async def update_asset(
    conn: AsyncConnection,
    asset_id: int,
    values: dict[str, Any],
    *,
    actor: audit.Actor = audit.CLI,
) -> None:
    """Change some columns of an asset; one audit event per changed field."""
    if not values:
        return
    before = (
        await conn.execute(
            select(*(generic_assets.c[key] for key in values)).where(
                generic_assets.c.id == asset_id
            )
        )
    ).first()
    await conn.execute(
        update(generic_assets).where(generic_assets.c.id == asset_id).values(**values)
    )
    if before is None:
        return
    old = dict(before._mapping)
    events = [
        f"Updated {key}: {old[key]} → {value}"
        if key in _JSON_COLUMNS
        else f"Updated: {key}, From: {old[key]}, To: {value}"
        for key, value in audit.changed(old, values).items()
    ]
    await audit.record_asset(conn, actor, asset_id, *events)


async def subtree_owners(conn: AsyncConnection, asset_id: int) -> set[Owner]:
    """The distinct owners of an asset and its descendants."""
    rows = await conn.execute(
        select(generic_assets.c.account_id, accounts.c.consultancy_account_id)
        .select_from(
            generic_assets.outerjoin(
                accounts, accounts.c.id == generic_assets.c.account_id
            )
        )
        .where(generic_assets.c.id.in_(subtree(asset_id)))
        .distinct()
    )
    return {Owner(account_id, consultancy) for account_id, consultancy in rows}


async def delete_asset(
    conn: AsyncConnection, asset_id: int, *, actor: audit.Actor = audit.CLI
) -> None:
    """Delete an asset; children, sensors and beliefs go with it (ON DELETE CASCADE).

    Audited first (the record's asset id becomes NULL with the asset, as in
    FlexMeasures).
    """
    name = (
        await conn.execute(
            select(generic_assets.c.name).where(generic_assets.c.id == asset_id)
        )
    ).scalar()
    await audit.record_asset(
        conn, actor, asset_id, f"Deleted asset '{name}': {asset_id}"
    )
    await conn.execute(_DELETE, {"asset_id": asset_id})
