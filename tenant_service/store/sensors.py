"""Sensors: reads joined with their asset's ownership, and writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Row, Select, bindparam, select
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
