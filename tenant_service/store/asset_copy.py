"""Copy an asset subtree with its sensors (no beliefs), as FlexMeasures' copy_asset."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.store.assets import MAX_TREE_DEPTH
from tenant_service.store.tables import generic_assets, sensors

_JSON_FIELDS = (
    "flex_context",
    "flex_model",
    "sensors_to_show",
    "sensors_to_show_as_kpis",
)


async def copy_name(
    conn: AsyncConnection, name: str, account_id: int | None, parent_id: int | None
) -> str:
    """`Home (Copy)`, else `Home (Copy n)` after the highest copy there."""
    where: tuple[ColumnElement[bool], ...]
    if parent_id is None:
        where = (
            generic_assets.c.parent_asset_id.is_(None),
            generic_assets.c.account_id.is_not_distinct_from(account_id),
        )
    else:
        where = (generic_assets.c.parent_asset_id == parent_id,)
    taken = set(
        (await conn.execute(select(generic_assets.c.name).where(*where))).scalars()
    )
    first = f"{name} (Copy)"
    if first not in taken:
        return first
    pattern = re.compile(rf"^{re.escape(name)} \(Copy(?: (?P<index>\d+))?\)$")
    highest = 1
    for existing in taken:
        match = pattern.match(existing)
        if match:
            highest = max(highest, int(match.group("index") or 1))
    return f"{name} (Copy {highest + 1})"


async def is_in_subtree(conn: AsyncConnection, root_id: int, candidate_id: int) -> bool:
    """Whether `candidate_id` is `root_id` or one of its descendants."""
    current: int | None = candidate_id
    for _ in range(MAX_TREE_DEPTH):
        if current is None:
            return False
        if current == root_id:
            return True
        current = (
            await conn.execute(
                select(generic_assets.c.parent_asset_id).where(
                    generic_assets.c.id == current
                )
            )
        ).scalar()
    return True  # deeper than any tree we walk: refuse


async def _copy_one(
    conn: AsyncConnection,
    source_id: int,
    account_id: int | None,
    parent_id: int | None,
    name: str | None,
    sensor_map: dict[int, int],
    copied: list[int],
    depth: int,
) -> int:
    row = (
        (
            await conn.execute(
                select(generic_assets).where(generic_assets.c.id == source_id)
            )
        )
        .mappings()
        .one()
    )
    values = {key: value for key, value in row.items() if key != "id"}
    values.update(account_id=account_id, parent_asset_id=parent_id, external_id=None)
    if name is not None:
        values["name"] = name
    new_id = int(
        (
            await conn.execute(
                insert(generic_assets).values(**values).returning(generic_assets.c.id)
            )
        ).scalar_one()
    )
    copied.append(new_id)
    sensor_rows = (
        (
            await conn.execute(
                select(sensors)
                .where(sensors.c.generic_asset_id == source_id)
                .order_by(sensors.c.id)
            )
        )
        .mappings()
        .all()
    )
    for sensor in sensor_rows:
        sensor_values = {key: value for key, value in sensor.items() if key != "id"}
        sensor_values["generic_asset_id"] = new_id
        sensor_map[sensor["id"]] = int(
            (
                await conn.execute(
                    insert(sensors).values(**sensor_values).returning(sensors.c.id)
                )
            ).scalar_one()
        )
    if depth >= MAX_TREE_DEPTH:
        return new_id
    children = (
        await conn.execute(
            select(generic_assets.c.id)
            .where(generic_assets.c.parent_asset_id == source_id)
            .order_by(generic_assets.c.id)
        )
    ).scalars()
    for child_id in list(children):
        await _copy_one(
            conn, child_id, account_id, new_id, None, sensor_map, copied, depth + 1
        )
    return new_id


_REMOVED: Final = object()


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sensor_ids_in(value: Any) -> set[int]:
    """Every integer that replace_sensor_refs would treat as a sensor id."""
    if isinstance(value, dict):
        found: set[int] = set()
        for key, item in value.items():
            if key == "sensor" and _is_id(item):
                found.add(item)
            else:
                found |= sensor_ids_in(item)
        return found
    if isinstance(value, list):
        found = {item for item in value if _is_id(item)}
        for item in value:
            if not _is_id(item):
                found |= sensor_ids_in(item)
        return found
    return set()


def replace_sensor_refs(
    value: Any, sensor_map: dict[int, int], public: set[int]
) -> Any:
    """FlexMeasures' copy rules for sensor references (`{"sensor": id}`, ids in
    lists): a copied sensor's new id; a public sensor's id as is; a private sensor
    outside the copy is dropped (with the object naming it). Unlike FlexMeasures,
    dropped ids leave lists instead of breaking the copy."""

    def resolve(sensor_id: int) -> Any:
        if sensor_id in sensor_map:
            return sensor_map[sensor_id]
        return sensor_id if sensor_id in public else _REMOVED

    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "sensor" and _is_id(item):
                resolved = resolve(item)
                if resolved is _REMOVED:
                    return _REMOVED
                out[key] = resolved
            else:
                processed = replace_sensor_refs(item, sensor_map, public)
                if processed is not _REMOVED:
                    out[key] = processed
        return out
    if isinstance(value, list):
        items = [
            resolve(item)
            if _is_id(item)
            else replace_sensor_refs(item, sensor_map, public)
            for item in value
        ]
        return [item for item in items if item is not _REMOVED]
    return value


async def _public_sensors(conn: AsyncConnection, ids: set[int]) -> set[int]:
    if not ids:
        return set()
    rows = await conn.execute(
        select(sensors.c.id)
        .join(generic_assets, generic_assets.c.id == sensors.c.generic_asset_id)
        .where(sensors.c.id.in_(ids), generic_assets.c.account_id.is_(None))
    )
    return set(rows.scalars())


async def copy_subtree(
    conn: AsyncConnection,
    source_id: int,
    *,
    account_id: int | None,
    parent_id: int | None,
    name: str,
) -> int:
    """Copy an asset, its descendants and their sensors; the new root's id."""
    sensor_map: dict[int, int] = {}
    copied: list[int] = []
    root = await _copy_one(
        conn, source_id, account_id, parent_id, name, sensor_map, copied, 0
    )
    if not sensor_map:  # as FlexMeasures: references are only revisited then
        return root
    for asset_id in copied:
        row = (
            (
                await conn.execute(
                    select(*(generic_assets.c[f] for f in _JSON_FIELDS)).where(
                        generic_assets.c.id == asset_id
                    )
                )
            )
            .mappings()
            .one()
        )
        changed: dict[str, str] = {}
        for field in _JSON_FIELDS:
            try:
                parsed = json.loads(row[field] or "null")
            except ValueError:
                continue
            public = await _public_sensors(
                conn, sensor_ids_in(parsed) - set(sensor_map)
            )
            replaced = replace_sensor_refs(parsed, sensor_map, public)
            if replaced is _REMOVED:
                replaced = [] if field.startswith("sensors_to_show") else {}
            if replaced != parsed:
                changed[field] = json.dumps(replaced)
        if changed:
            await conn.execute(
                update(generic_assets)
                .where(generic_assets.c.id == asset_id)
                .values(**changed)
            )
    return root
