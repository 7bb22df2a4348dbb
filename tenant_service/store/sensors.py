"""Sensors: reads joined with their asset's ownership, and writes."""

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
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.acl import Owner
from tenant_service.store.tables import accounts, generic_assets, sensors


@dataclass(frozen=True, slots=True)
class SensorRecord:
    """A sensor with the ownership of its asset."""

    id: int
    name: str
    unit: str
    timezone: str
    event_resolution_ms: int
    knowledge_horizon_fnc: str | None
    knowledge_horizon_par: str
    attributes: str
    generic_asset_id: int
    owner: Owner


_SENSOR_QUERY: Final[Select[Any]] = select(
    sensors,
    generic_assets.c.account_id.label("asset_account_id"),
    accounts.c.consultancy_account_id.label("consultancy_account_id"),
).select_from(
    sensors.join(
        generic_assets, generic_assets.c.id == sensors.c.generic_asset_id
    ).outerjoin(accounts, accounts.c.id == generic_assets.c.account_id)
)
_SENSOR_BY_ID: Final[Select[Any]] = _SENSOR_QUERY.where(
    sensors.c.id == bindparam("sensor_id")
)


def sensor_record(row: Row[Any]) -> SensorRecord:
    """A SensorRecord from a row of a query built on _SENSOR_QUERY."""
    return SensorRecord(
        id=row.id,
        name=row.name,
        unit=row.unit,
        timezone=row.timezone,
        event_resolution_ms=int(row.event_resolution),
        knowledge_horizon_fnc=row.knowledge_horizon_fnc,
        knowledge_horizon_par=row.knowledge_horizon_par,
        attributes=row.attributes,
        generic_asset_id=row.generic_asset_id,
        owner=Owner(row.asset_account_id, row.consultancy_account_id),
    )


async def get_sensor(conn: AsyncConnection, sensor_id: int) -> SensorRecord | None:
    """One sensor with its owner, or None."""
    row = (await conn.execute(_SENSOR_BY_ID, {"sensor_id": sensor_id})).first()
    return sensor_record(row) if row is not None else None


_NAME_TAKEN: Final = select(sensors.c.id).where(
    sensors.c.generic_asset_id == bindparam("asset_id"),
    sensors.c.name == bindparam("name"),
    sensors.c.id != bindparam("exclude_id"),
)
_DELETE: Final = delete(sensors).where(sensors.c.id == bindparam("sensor_id"))


async def list_sensors(
    conn: AsyncConnection,
    where: ColumnElement[bool],
    *,
    order_by: Sequence[ColumnElement[Any]] = (sensors.c.id,),
    offset: int = 0,
    limit: int | None = None,
) -> list[SensorRecord]:
    """Sensors matching `where` (on _SENSOR_QUERY's columns), in order, one page."""
    query = _SENSOR_QUERY.where(where).order_by(*order_by).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [sensor_record(row) for row in (await conn.execute(query)).all()]


async def count_sensors(conn: AsyncConnection, where: ColumnElement[bool]) -> int:
    """How many sensors match `where`."""
    query = select(func.count()).select_from(_SENSOR_QUERY.where(where).subquery())
    return int((await conn.execute(query)).scalar_one())


async def name_taken(
    conn: AsyncConnection, asset_id: int, name: str, exclude_id: int = -1
) -> bool:
    """Whether the asset has another sensor with this name."""
    params = {"asset_id": asset_id, "name": name, "exclude_id": exclude_id}
    return (await conn.execute(_NAME_TAKEN, params)).first() is not None


async def create_sensor(conn: AsyncConnection, values: dict[str, Any]) -> int:
    """Insert a sensor; its id."""
    result = await conn.execute(
        insert(sensors).values(**values).returning(sensors.c.id)
    )
    return int(result.scalar_one())


async def update_sensor(
    conn: AsyncConnection, sensor_id: int, values: dict[str, Any]
) -> None:
    """Change some columns of a sensor."""
    if values:
        await conn.execute(
            update(sensors).where(sensors.c.id == sensor_id).values(**values)
        )


async def delete_sensor(conn: AsyncConnection, sensor_id: int) -> None:
    """Delete a sensor; its beliefs go with it (ON DELETE CASCADE)."""
    await conn.execute(_DELETE, {"sensor_id": sensor_id})
