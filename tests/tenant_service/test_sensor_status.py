"""`GET /sensors/<id>/status` on SQLite and PostgreSQL: staleness per source type,
worded as FlexMeasures 1.0.1 words it (compared side by side with the same data;
our times are in UTC where FlexMeasures uses its server's time zone)."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final

from sqlalchemy import insert, update

from tenant_service.store.db import create_engine
from tenant_service.store.tables import (
    data_sources,
    generic_assets,
    sensors,
    timed_beliefs,
)
from tests.tenant_service.conftest import (
    FORBIDDEN,
    QUARTER,
    Client,
    Sensors,
    World,
    identity,
)

HOUR: Final = 4 * QUARTER


async def status(client: Client, sensor: int, user: int) -> tuple[int, Any]:
    response = await client.get(
        f"/api/v3_0/sensors/{sensor}/status", headers=identity(user)
    )
    return response.status, await response.json()


async def add_beliefs(
    database_url: str,
    sensor: int,
    source_type: str,
    starts: list[int],
    horizon: int = 0,
) -> None:
    """Beliefs of a source of this type (made if missing), with SQL."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            source = (
                await conn.execute(
                    insert(data_sources)
                    .values(name=source_type, type=source_type, key=source_type)
                    .returning(data_sources.c.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(timed_beliefs),
                [
                    {
                        "sensor_id": sensor,
                        "event_start": start,
                        "source_id": source,
                        "belief_horizon": horizon,
                        "event_value": 1.0,
                    }
                    for start in starts
                ],
            )
    finally:
        await engine.dispose()


async def set_json(database_url: str, table: Any, row: int, **values: Any) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.id == row)
                .values({k: json.dumps(v) for k, v in values.items()})
            )
    finally:
        await engine.dispose()


def quarter_now() -> int:
    now = int(time.time() * 1000)
    return now - now % QUARTER


async def test_sensor_status_without_data(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    assert await status(client, data_sensors.power, world.member) == (
        200,
        {
            "sensors_data": [
                {
                    "asset_name": "battery",
                    "id": data_sensors.power,
                    "name": "power",
                    "reason": "no data recorded",
                    "relation": "sensor belongs to this asset",
                    "resolution": "PT15M",
                    "source_type": None,
                    "stale": True,
                    "staleness": None,
                    "staleness_since": None,
                }
            ],
            "status": 200,
        },
    )


async def test_sensor_status_per_source_type(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    q = quarter_now()
    # user data three hours old (stale), scheduler data only in the past
    await add_beliefs(database_url, data_sensors.power, "user", [q - 3 * HOUR])
    await add_beliefs(database_url, data_sensors.power, "scheduler", [q - HOUR])
    # a forecast two days ahead (not stale), and one formed in the future (ignored)
    await add_beliefs(
        database_url, data_sensors.power, "forecaster", [q + 48 * HOUR], 49 * HOUR
    )
    await add_beliefs(database_url, data_sensors.power, "market", [q], -2 * HOUR)
    # other source types are not looked at
    await add_beliefs(database_url, data_sensors.power, "CLI script", [q - HOUR])
    code, answer = await status(client, data_sensors.power, world.member)
    assert code == 200
    found = {s["source_type"]: s for s in answer["sensors_data"]}
    assert list(found) == ["user", "scheduler", "forecaster"]
    user = found["user"]
    assert user["stale"] is True
    assert re.fullmatch(
        r"most recent data is 2 hours, (\d+ minutes and )?[\d.]+ seconds old, but "
        r"should not be more than 30 minutes old",
        user["reason"],
    ), user["reason"]
    assert user["staleness"].startswith("PT2H")
    since = time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime((q - 3 * HOUR + QUARTER) / 1000)
    )
    assert user["staleness_since"] == since + "+00:00"
    scheduler = found["scheduler"]
    assert scheduler["reason"] == "Found no future data which this source should have"
    assert (scheduler["stale"], scheduler["staleness"]) == (True, None)
    forecaster = found["forecaster"]
    assert forecaster["stale"] is False
    assert re.fullmatch(
        r"most recent data is (1 day, 23 hours, \d+ minutes|2 days,) .*in the future, "
        r"which is not less than 12 hours in the future",
        forecaster["reason"],
    ), forecaster["reason"]


async def test_sensor_status_specs_and_relations(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    q = quarter_now()
    await add_beliefs(database_url, data_sensors.power, "user", [q - 3 * HOUR])
    await set_json(
        database_url,
        sensors,
        data_sensors.power,
        attributes={
            "status_specs": {
                "max_staleness": "PT4H",
                "max_future_staleness": "-PT1H",
                "staleness_search": {},
            }
        },
    )
    code, answer = await status(client, data_sensors.power, world.member)
    assert code == 200
    [user] = answer["sensors_data"]
    assert user["stale"] is False
    assert user["reason"].endswith("which is not more than 4 hours old")
    # The sensor is an inflexible device and the price sensor of its asset.
    power = data_sensors.power
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            asset_id = (
                (await conn.execute(sensors.select().where(sensors.c.id == power)))
                .one()
                .generic_asset_id
            )
    finally:
        await engine.dispose()
    await set_json(
        database_url,
        generic_assets,
        asset_id,
        flex_context={
            "inflexible-device-sensors": [power],
            "consumption-price": {"sensor": power},
        },
    )
    [user] = (await status(client, power, world.member))[1]["sensors_data"]
    assert user["relation"] == (
        "sensor belongs to this asset;flex context (inflexible device);"
        "flex context (consumption-price)"
    )
    await set_json(
        database_url,
        sensors,
        power,
        attributes={"status_specs": {"max_staleness": "PT4H"}},
    )
    code, answer = await status(client, power, world.member)
    assert code == 422
    assert answer["message"].startswith(f"Sensor {power} has invalid status_specs")


async def test_sensor_status_access(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    assert await status(client, data_sensors.foreign, world.member) == (403, FORBIDDEN)
    assert await status(client, 999999, world.member) == (
        422,
        {
            "message": {"path": {"id": ["No sensor found with ID 999999."]}},
            "result": "Rejected",
            "status": "UNPROCESSABLE_ENTITY",
        },
    )
