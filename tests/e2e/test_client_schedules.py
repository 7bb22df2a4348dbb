"""The real `flexmeasures-client` triggers a battery schedule and gets it back.

Real gateway, real backend (SQLite and PostgreSQL), real Redis and a real scheduling
worker process; the client polls in both of its modes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers.stack import Stack, seed_asset_and_sensor

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
# Hourly prices: cheap at night, dear in the evening.
PRICES = [10.0] * 6 + [50.0] * 11 + [90.0] * 4 + [50.0] * 3
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


async def test_flexmeasures_client_triggers_and_gets_a_schedule(
    stack: Stack, job_client: Any, company_worker: None
) -> None:
    asset_id, power_id = await seed_asset_and_sensor(stack)
    client = job_client
    price = await client.add_sensor(
        name="day-ahead price",
        event_resolution="PT1H",
        unit="EUR/MWh",
        generic_asset_id=asset_id,
        timezone="Europe/Amsterdam",
    )
    await client.post_sensor_data(
        sensor_id=price["id"],
        start=START,
        duration="PT24H",
        values=PRICES,
        unit="EUR/MWh",
    )
    flex_context = {"consumption-price": {"sensor": price["id"]}}

    # Server 1.0.1 (>= 0.33.0): the client waits on GET /jobs/<uuid>, then fetches.
    schedule = await client.trigger_and_get_schedule(
        sensor_id=power_id,
        start=START,
        duration="PT24H",
        flex_model=FLEX_MODEL,
        flex_context=flex_context,
    )
    values = schedule["values"]
    assert schedule["unit"] == "MW"
    assert len(values) == 96
    assert sum(values[:24]) / 4 == pytest.approx(2.0, abs=1e-6)  # cheap night
    assert sum(values[68:84]) / 4 == pytest.approx(-2.0, abs=1e-6)  # dear evening

    # Legacy polling: trigger, then get_schedule repeats while the server answers
    # 400 "Scheduling job waiting/in progress".
    job = await client.trigger_schedule(
        sensor_id=power_id,
        start=START + timedelta(hours=1),
        duration="PT23H",
        flex_model=FLEX_MODEL,
        flex_context=flex_context,
    )
    legacy = await client.get_schedule(
        sensor_id=power_id, schedule_id=job, duration="PT23H", unit="kW"
    )
    assert len(legacy["values"]) == 92
    assert legacy["unit"] == "kW"
    assert sum(legacy["values"][:20]) / 4 == pytest.approx(2000.0, abs=1e-3)
