"""A forecast through the gateway: trigger, job status, results, with a real worker."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from tests.helpers.stack import COMPANY, Stack, login, seed_asset_and_sensor
from tests.helpers.wait import INTERVAL

START = "2026-03-15T00:00:00+00:00"


@pytest.fixture
def backend_options(redis_url: str, redis_prefix: str) -> dict[str, object]:
    """Company's backend gets the job queue on the test Redis."""
    return {"redis_url": redis_url, "redis_prefix": redis_prefix}


async def test_forecast_through_the_gateway(stack: Stack, company_worker: None) -> None:
    _, sensor = await seed_asset_and_sensor(stack)  # MW, PT15M
    token = await login(stack, "member@company.test")
    auth = {**COMPANY, "Authorization": token}
    quarters = 7 * 96
    history = [
        round(1 + 0.5 * math.sin(2 * math.pi * (q % 96) / 96), 4)
        for q in range(quarters)
    ]
    response = await stack.gateway.post(
        f"/api/v3_0/sensors/{sensor}/data",
        json={
            "start": "2026-03-08T00:00:00+00:00",
            "duration": f"PT{quarters // 4}H",
            "unit": "MW",
            "values": history,
            "horizon": "PT0H",
        },
        headers=auth,
    )
    assert response.status == 200, await response.text()
    response = await stack.gateway.post(
        f"/api/v3_0/sensors/{sensor}/forecasts/trigger",
        json={"start": START, "duration": "PT6H"},
        headers=auth,
    )
    accepted = await response.json()
    assert response.status == 202, accepted
    job = accepted["job"]
    assert accepted["results-url"] == f"/api/v3_0/sensors/{sensor}/forecasts/{job}"
    deadline = time.monotonic() + 60
    while True:
        response = await stack.gateway.get(accepted["job-url"], headers=auth)
        state: dict[str, Any] = await response.json()
        if response.status != 202 or time.monotonic() > deadline:
            break
        await asyncio.sleep(INTERVAL)
    assert response.status == 200, state
    assert state["origin"] == "forecasting"
    response = await stack.gateway.get(accepted["results-url"], headers=auth)
    forecast = await response.json()
    assert response.status == 200, forecast
    assert forecast["start"] == START
    assert forecast["duration"] == "PT6H"
    assert forecast["unit"] == "MW"
    assert len(forecast["values"]) == 24
    assert all(0 < v < 2 for v in forecast["values"])
