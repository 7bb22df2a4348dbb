"""The real `flexmeasures-client` triggers forecasts and gets them back.

Real gateway, real backend (SQLite and PostgreSQL), real Redis and a real worker
process; the client waits through the jobs endpoint, and polls the results.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers.stack import Stack, seed_asset_and_sensor

START = datetime(2026, 3, 15, 0, 0, tzinfo=UTC)
HISTORY_START = START - timedelta(days=7)


@pytest.fixture
def backend_options(redis_url: str, redis_prefix: str) -> dict[str, Any]:
    """Company's backend enqueues jobs on the test Redis."""
    return {"redis_url": redis_url, "redis_prefix": redis_prefix}


async def test_flexmeasures_client_triggers_and_gets_a_forecast(
    stack: Stack, job_client: Any, company_worker: None
) -> None:
    asset_id, _power = await seed_asset_and_sensor(stack)
    client = job_client
    sensors = {}
    for name, unit in (("load", "kW"), ("temperature", "°C")):
        sensor = await client.add_sensor(
            name=name,
            event_resolution="PT1H",
            unit=unit,
            generic_asset_id=asset_id,
            timezone="Europe/Amsterdam",
        )
        sensors[name] = sensor["id"]
    hours = 7 * 24
    await client.post_sensor_data(
        sensor_id=sensors["load"],
        start=HISTORY_START,
        duration=timedelta(hours=hours),
        values=[
            round(50 + 20 * math.sin(2 * math.pi * h / 24), 3) for h in range(hours)
        ],
        unit="kW",
        prior=START,  # known at the forecast's start (the client sends no horizon)
    )
    await client.post_sensor_data(
        sensor_id=sensors["temperature"],
        start=HISTORY_START,
        duration=timedelta(hours=hours + 24),
        values=[
            round(10 + 5 * math.cos(2 * math.pi * h / 24), 3) for h in range(hours + 24)
        ],
        unit="°C",
        prior=START - timedelta(hours=1),
    )
    # Server 1.0.1 (>= 0.33.0): the client waits on GET /jobs/<uuid>, then fetches.
    forecast = await client.trigger_and_get_forecast(
        sensor_id=sensors["load"],
        start=START,
        duration="PT12H",
        future_regressors=[sensors["temperature"]],
        train_period="P7D",
    )
    assert forecast["unit"] == "kW"
    assert forecast["duration"] == "PT12H"
    assert len(forecast["values"]) == 12
    # Legacy: trigger, then get_forecast polls the results while they answer 202.
    job = await client.trigger_forecast(
        sensor_id=sensors["load"], start=START, duration=timedelta(hours=6)
    )
    again = await client.get_forecast(sensor_id=sensors["load"], forecast_id=job)
    assert len(again["values"]) == 6
