"""Every method of the real `flexmeasures-client` that has a server route, through
the gateway: assets, sensors, data, schedules (sensor and asset), jobs, users.

Real gateway, real backend (SQLite and PostgreSQL), real Redis and a real scheduling
worker. flexmeasures-client 0.9.6 has no methods for annotations, audit logs, charts,
sensor status or account/user creation; its `trigger_report` needs FlexMeasures
1.1.0 (not 1.0.1), so it is left out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.helpers.schedules import PRICES
from tests.helpers.stack import Stack, flexmeasures_client

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
FLEX_MODEL = {
    "soc-at-start": "0 MWh",
    "soc-min": "0 MWh",
    "soc-max": "2 MWh",
    "power-capacity": "1 MW",
}


@pytest.fixture
def backend_options(redis_url: str, redis_prefix: str) -> dict[str, Any]:
    """Company's backend enqueues schedules on the test Redis."""
    return {"redis_url": redis_url, "redis_prefix": redis_prefix}


async def make_site(client: Any, stack: Stack) -> tuple[int, int, int]:
    """A battery asset with a power and a price sensor (prices posted); the ids."""
    types = {t["name"]: t["id"] for t in await client.get_asset_types()}
    asset = await client.add_asset(
        name="Site",
        account_id=stack.account_id,
        latitude=52.37,
        longitude=4.89,
        generic_asset_type_id=types["battery"],
        attributes={"capacity_in_mw": 1},
    )
    power = await client.add_sensor(
        name="power",
        event_resolution="PT15M",
        unit="MW",
        generic_asset_id=asset["id"],
        timezone="Europe/Amsterdam",
    )
    price = await client.add_sensor(
        name="price",
        event_resolution="PT1H",
        unit="EUR/MWh",
        generic_asset_id=asset["id"],
    )
    await client.post_sensor_data(
        sensor_id=price["id"],
        start=START,
        duration="PT24H",
        values=PRICES,
        unit="EUR/MWh",
    )
    return asset["id"], power["id"], price["id"]


async def test_flexmeasures_client_methods_with_a_route(
    stack: Stack, fm_session: aiohttp.ClientSession, company_worker: None
) -> None:
    client = flexmeasures_client(stack, fm_session)
    await client.get_access_token()
    assert client.access_token
    versions = await client.get_versions()
    assert "v3_0" in str(versions)

    asset_id, power_id, price_id = await make_site(client, stack)
    asset = await client.get_asset(asset_id, parse_json_fields=True)
    assert asset["attributes"] == {"capacity_in_mw": 1}
    listed = await client.get_assets(parse_json_fields=True)
    assert asset_id in [a["id"] for a in listed]
    renamed = await client.update_asset(
        asset_id, {"name": "Battery site"}, parse_json_fields=True
    )
    assert renamed["name"] == "Battery site"
    sensors = await client.get_sensors(asset_id=asset_id, parse_json_fields=True)
    assert sorted(s["id"] for s in sensors) == sorted([power_id, price_id])
    updated = await client.update_sensor(
        power_id, {"name": "battery power"}, parse_json_fields=True
    )
    assert updated["name"] == "battery power"
    sensor = await client.get_sensor(power_id, parse_json_fields=True)
    assert sensor["generic_asset_id"] == asset_id
    data = await client.get_sensor_data(
        sensor_id=price_id,
        start=START,
        duration="PT24H",
        unit="EUR/MWh",
        resolution="PT1H",
    )
    assert data["values"] == PRICES

    # A meter: post (the deprecated spelling), read in another unit, delete its data, delete it.
    meter = await client.add_sensor(
        name="meter", event_resolution="PT1H", unit="kW", generic_asset_id=asset_id
    )
    with pytest.warns(DeprecationWarning, match="post_sensor_data"):
        await client.post_measurements(
            sensor_id=meter["id"],
            start=START,
            duration=timedelta(hours=2),
            values=[1.0, 2.0],
            unit="MW",
        )
    read = await client.get_sensor_data(
        sensor_id=meter["id"],
        start=START,
        duration="PT2H",
        unit="kW",
        resolution="PT1H",
    )
    assert read["values"] == [1000.0, 2000.0]
    await client.delete_sensor_data(meter["id"], confirm_first=False)
    read = await client.get_sensor_data(
        sensor_id=meter["id"],
        start=START,
        duration="PT2H",
        unit="kW",
        resolution="PT1H",
    )
    assert read["values"] == [None, None]
    await client.delete_sensor(meter["id"], confirm_first=False)

    # Schedules: trigger, job status, wait, get; then the asset's own trigger.
    flex_context = {"consumption-price": {"sensor": price_id}}
    job = await client.trigger_schedule(
        sensor_id=power_id,
        start=START,
        duration="PT24H",
        flex_model=FLEX_MODEL,
        flex_context=flex_context,
    )
    assert (await client.get_job_status(job))["status"] in {
        "QUEUED",
        "STARTED",
        "FINISHED",
    }
    assert (await client.wait_for_job(job))["status"] == "FINISHED"
    schedule = await client.get_schedule(
        sensor_id=power_id, schedule_id=job, duration="PT24H"
    )
    assert len(schedule["values"]) == 96
    assert sum(schedule["values"][:24]) / 4 == pytest.approx(2.0, abs=1e-6)
    by_asset = await client.trigger_and_get_schedule(
        asset_id=asset_id,
        start=START,
        duration="PT24H",
        flex_model=[{"sensor": power_id, **FLEX_MODEL}],
        flex_context=flex_context,
    )
    assert [s["sensor"] for s in by_asset] == [power_id]
    assert by_asset[0]["values"] == pytest.approx(schedule["values"], abs=1e-6)

    user = await client.get_user()
    assert user is not None
    assert user["email"] == "admin@company.test"
    account = await client.get_account()
    assert account is not None
    assert account["id"] == stack.account_id

    spare = await client.add_asset(
        name="Spare",
        account_id=stack.account_id,
        latitude=52.0,
        longitude=4.0,
        generic_asset_type_id=asset["generic_asset_type_id"],
    )
    await client.delete_asset(spare["id"], confirm_first=False)
    assert spare["id"] not in [
        a["id"] for a in await client.get_assets(parse_json_fields=True)
    ]
    await client.close()


async def test_flexmeasures_client_forecasts_and_uploads(
    stack: Stack,
    fm_session: aiohttp.ClientSession,
    company_worker: None,
    tmp_path: Any,
) -> None:
    client = flexmeasures_client(stack, fm_session)
    try:
        _, power_id, _ = await make_site(client, stack)
        upload = tmp_path / "power.csv"
        hours = [START + timedelta(minutes=15 * i) for i in range(96 * 14)]
        upload.write_text(
            "event_start,event_value\n"
            + "".join(
                f"{t.isoformat()},{(i % 96) / 96:.4f}\n" for i, t in enumerate(hours)
            )
        )
        # measurements, known when each event ended (else they are believed as of
        # the upload, after the forecast's start, and are no history for it)
        await client.post_sensor_data(
            sensor_id=power_id,
            file_path=str(upload),
            unit="MW",
            belief_time_measured_instantly=True,
        )
        forecast_job = await client.trigger_forecast(
            sensor_id=power_id,
            start=START + timedelta(days=14),
            duration="PT24H",
        )
        forecast = await client.get_forecast(power_id, forecast_job)
        assert len(forecast["values"]) == 96
        again = await client.trigger_and_get_forecast(
            sensor_id=power_id,
            start=START + timedelta(days=14),
            duration="PT24H",
        )
        assert len(again["values"]) == 96
    finally:
        await client.close()
