"""The real `flexmeasures-client` reads and writes sensor data through the gateway.

Real gateway, real backend (SQLite and PostgreSQL), real Redis; the asset and a
sensor are seeded through the API, as a user would.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from tests.helpers.stack import PASSWORD, Stack, seed_asset_and_sensor

START = datetime(2026, 1, 15, 0, 0, tzinfo=timezone(timedelta(hours=1)))
VALUES = [round(i * 0.25 - 7.5, 2) for i in range(96)]


async def test_flexmeasures_client_posts_and_reads_sensor_data(
    stack: Stack,
    fm_session: aiohttp.ClientSession,
) -> None:
    from flexmeasures_client import FlexMeasuresClient

    asset_id, power_id = await seed_asset_and_sensor(stack)
    client: Any = FlexMeasuresClient(
        email="member@company.test",
        password=PASSWORD,
        host=f"company.localhost:{stack.gateway.port}",
        ssl=False,
        session=fm_session,
    )
    assets = await client.get_assets(parse_json_fields=True)
    assert [a["id"] for a in assets] == [asset_id]
    assert assets[0]["name"] == "Battery 1"
    sensors = await client.get_sensors(parse_json_fields=True)
    assert [(s["id"], s["unit"], s["event_resolution"]) for s in sensors] == [
        (power_id, "MW", "PT15M")
    ]
    assert sensors[0]["entity_address"].endswith(f":fm1.{power_id}")
    assert [
        s["id"]
        for s in await client.get_sensors(asset_id=asset_id, parse_json_fields=True)
    ] == [power_id]

    # A member may add a sensor to an asset of the account, then post to it.
    added = await client.add_sensor(
        name="meter",
        event_resolution="PT15M",
        unit="kW",
        generic_asset_id=asset_id,
        timezone="Europe/Amsterdam",
    )
    assert added["unit"] == "kW"
    assert added["event_resolution"] == "PT15M"
    for sensor_id, duration in ((added["id"], "PT24H"), (power_id, timedelta(days=1))):
        await client.post_sensor_data(
            sensor_id=sensor_id,
            start=START,
            duration=duration,
            values=VALUES,
            unit="kW" if sensor_id == added["id"] else "MW",
        )
    for sensor_id, unit in ((added["id"], "kW"), (power_id, "MW")):
        data = await client.get_sensor_data(
            sensor_id=sensor_id,
            start=START,
            duration=timedelta(hours=24),
            unit=unit,
            resolution=timedelta(minutes=15),
        )
        assert data["values"] == VALUES, sensor_id
        assert data["unit"] == unit
        assert datetime.fromisoformat(data["start"]) == START
    # Unit conversion on the way out: the MW sensor's values in kW.
    data = await client.get_sensor_data(
        sensor_id=power_id,
        start=START,
        duration="PT1H",
        unit="kW",
        resolution="PT15M",
    )
    assert data["values"] == [v * 1000 for v in VALUES[:4]]
