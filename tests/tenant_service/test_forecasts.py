"""Forecast triggers, results and job status with real Redis and a real worker."""

from __future__ import annotations

import dataclasses
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
from sqlalchemy import select

from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.store.db import create_engine
from tenant_service.store.tables import data_sources, timed_beliefs
from tenant_service.timing import parse_datetime, to_epoch_ms
from tests.helpers.schedules import make_sensor, wait_for_job, worker_process
from tests.tenant_service.conftest import (
    FORBIDDEN,
    UNAUTHORIZED,
    Client,
    ClientFactory,
    World,
    identity,
    make_asset,
)

HISTORY_START: Final = "2026-03-01T00:00:00+00:00"
START: Final = "2026-03-15T00:00:00+00:00"
HISTORY_HOURS: Final = 14 * 24
UNKNOWN_JOB: Final = "3c9f5e6e-1f5e-4b7a-9d3e-5b0f6b2b9a11"


def load(hour: int) -> float:
    """A daily pattern (kW)."""
    return round(50 + 20 * math.sin(2 * math.pi * (hour % 24) / 24), 3)


def temperature(hour: int) -> float:
    """A daily temperature cycle (°C)."""
    return round(10 + 5 * math.cos(2 * math.pi * (hour % 24) / 24), 3)


@dataclass(frozen=True, slots=True)
class Site:
    """An asset with an hourly load sensor (kW) and a temperature sensor (°C)."""

    asset: int
    load: int
    temperature: int


@pytest.fixture
def fc_settings(settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    """The backend's settings with the job queue on the test Redis."""
    return dataclasses.replace(
        settings,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        job_timeout=60,
        trigger_limit=4,
        trigger_period=300,
    )


@pytest.fixture
def worker(fc_settings: Settings, world: World) -> Iterator[subprocess.Popen[bytes]]:
    """A real scheduling worker process (it runs forecasting jobs too)."""
    del world  # the database is migrated and seeded first
    with worker_process(fc_settings) as proc:
        yield proc


async def post_data(
    client: Client, user: int, sensor: int, body: dict[str, Any]
) -> None:
    response = await client.post(
        f"/api/v3_0/sensors/{sensor}/data", json=body, headers=identity(user)
    )
    assert response.status == 200, await response.text()


async def hourly_sensor(
    client: Client, world: World, asset: int, name: str, unit: str
) -> int:
    """An hourly sensor on the asset; its id."""
    return await make_sensor(
        client, world.account_admin, asset, name, unit=unit, event_resolution="PT1H"
    )


async def make_site(
    client: Client, world: World, hours: int = HISTORY_HOURS, name: str = "Site"
) -> Site:
    """The sensors, with `hours` of history known as it happened (horizon 0)."""
    asset = await make_asset(client, world.account_admin, name=name)
    load_id = await hourly_sensor(client, world, asset["id"], "load", "kW")
    temp_id = await hourly_sensor(client, world, asset["id"], "temperature", "°C")
    await post_data(
        client,
        world.member,
        load_id,
        {
            "start": HISTORY_START,
            "duration": f"PT{hours}H",
            "unit": "kW",
            "values": [load(h) for h in range(hours)],
            "horizon": "PT0H",
        },
    )
    return Site(asset["id"], load_id, temp_id)


async def post_temperature(
    client: Client, world: World, site: Site, **belief: str
) -> None:
    """History and the next day, known as `belief` (prior/horizon) says (else now)."""
    await post_data(
        client,
        world.member,
        site.temperature,
        {
            "start": HISTORY_START,
            "duration": f"PT{HISTORY_HOURS + 24}H",
            "unit": "°C",
            "values": [temperature(h) for h in range(HISTORY_HOURS + 24)],
            **belief,
        },
    )


async def trigger(
    client: Client, user: int, sensor: int, body: dict[str, Any]
) -> tuple[int, Any]:
    response = await client.post(
        f"/api/v3_0/sensors/{sensor}/forecasts/trigger",
        json=body,
        headers=identity(user),
    )
    return response.status, await response.json()


async def results(client: Client, user: int, sensor: int, job: str) -> tuple[int, Any]:
    response = await client.get(
        f"/api/v3_0/sensors/{sensor}/forecasts/{job}", headers=identity(user)
    )
    return response.status, await response.json()


async def stored_beliefs(database_url: str, sensor: int) -> list[tuple[int, int, int]]:
    """(event_start, belief_horizon, source_id) of the forecaster's beliefs."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(
                    timed_beliefs.c.event_start,
                    timed_beliefs.c.belief_horizon,
                    timed_beliefs.c.source_id,
                )
                .join(data_sources, data_sources.c.id == timed_beliefs.c.source_id)
                .where(
                    timed_beliefs.c.sensor_id == sensor,
                    data_sources.c.type == "forecaster",
                )
                .order_by(timed_beliefs.c.event_start)
            )
            return [(int(a), int(b), int(c)) for a, b, c in rows]
    finally:
        await engine.dispose()


async def test_forecast_with_regressor_is_stored_and_readable(
    aiohttp_client: ClientFactory,
    fc_settings: Settings,
    world: World,
    worker: subprocess.Popen[bytes],
) -> None:
    client = await aiohttp_client(create_app(fc_settings))
    site = await make_site(client, world)
    await post_temperature(client, world, site, prior="2026-03-14T23:00:00+00:00")
    body = {
        "start": START,
        "duration": "P1D",
        "config": {"future-regressors": [site.temperature], "train-period": "P13D"},
    }
    status, accepted = await trigger(client, world.member, site.load, body)
    assert status == 202, accepted
    job = accepted["job"]
    assert accepted == {
        "status": "ACCEPTED",
        "message": "Request has been accepted for processing.",
        "job": job,
        "forecast": job,
        "job-url": f"/api/v3_0/jobs/{job}",
        "results-url": f"/api/v3_0/sensors/{site.load}/forecasts/{job}",
    }
    status, state = await wait_for_job(client, world.member, job)
    assert status == 200, state
    assert state["status"] == "FINISHED"
    assert state["origin"] == "forecasting"
    assert state["message"] == "Forecasting job has finished."
    assert state["func-name"] == "tenant_service.forecasting.job.run_forecast_job"
    status, forecast = await results(client, world.member, site.load, job)
    assert status == 200, forecast
    assert set(forecast) == {"start", "duration", "unit", "values"}
    assert forecast["start"] == START
    assert forecast["duration"] == "P1D"
    assert forecast["unit"] == "kW"
    values = forecast["values"]
    assert len(values) == 24
    truth = [load(h) for h in range(24)]
    mae = sum(abs(v - t) for v, t in zip(values, truth, strict=True)) / 24
    assert mae < 5, values  # a clean daily pattern is easy
    # Stored with belief time = start: horizons 1 h ... 24 h, under one source.
    beliefs = await stored_beliefs(fc_settings.database_url, site.load)
    start_ms = to_epoch_ms(parse_datetime(START))
    assert [(b[0] - start_ms, b[1]) for b in beliefs] == [
        (h * 3_600_000, (h + 1) * 3_600_000) for h in range(24)
    ]
    source = beliefs[0][2]
    # The normal data GET reads them, filtered by the forecaster source.
    response = await client.get(
        f"/api/v3_0/sensors/{site.load}/data",
        params={
            "start": START,
            "duration": "P1D",
            "unit": "kW",
            "source": str(source),
        },
        headers=identity(world.member),
    )
    data = await response.json()
    assert response.status == 200, data
    assert data["values"] == values
    response = await client.get("/api/v3_0/sources", headers=identity(world.member))
    listed = {s["id"]: s for s in (await response.json())["sources"]}
    assert listed[source]["type"] == "forecaster"
    assert listed[source]["name"] == "flexhost forecaster"
    # Re-triggering the same forecast works (FlexMeasures' job fails): same values.
    status, again = await trigger(client, world.member, site.load, body)
    assert status == 202, again
    status, state = await wait_for_job(client, world.member, again["job"])
    assert status == 200, state
    status, repeated = await results(client, world.member, site.load, again["job"])
    assert repeated == forecast
    assert len(await stored_beliefs(fc_settings.database_url, site.load)) == 24
    # Deleted meanwhile: FlexMeasures' 400 UNKNOWN_FORECAST.
    response = await client.delete(
        f"/api/v3_0/sensors/{site.load}/data",
        json={"source": source},
        headers=identity(world.account_admin),
    )
    assert response.status == 204, await response.text()
    assert await results(client, world.member, site.load, job) == (
        400,
        {
            "message": "A forecasting job has been processed with your job ID, but "
            "the forecast was not found in the database.",
            "result": "Rejected",
            "status": "UNKNOWN_FORECAST",
        },
    )


async def test_forecast_failures_say_why(
    aiohttp_client: ClientFactory,
    fc_settings: Settings,
    world: World,
    worker: subprocess.Popen[bytes],
) -> None:
    client = await aiohttp_client(create_app(fc_settings))
    # Too little history: refused up front.
    short = await make_site(client, world, hours=36, name="Short")
    status, body = await trigger(
        client, world.member, short.load, {"start": "2026-03-02T12:00:00+00:00"}
    )
    assert (status, body) == (
        422,
        rejected(
            {
                "start": [
                    "Too little history to forecast: P1DT12H of data known at "
                    "2026-03-02T12:00:00+00:00 in the P60D before the start, at least "
                    "P2D are needed."
                ]
            }
        ),
    )
    # A regressor whose values were posted after the fact is not known at start.
    site = await make_site(client, world)
    await post_temperature(client, world, site)
    status, accepted = await trigger(
        client,
        world.member,
        site.load,
        {"start": START, "config": {"future-regressors": [site.temperature]}},
    )
    assert status == 202, accepted
    status, state = await wait_for_job(client, world.member, accepted["job"])
    assert status == 422, state
    assert state["status"] == "FAILED"
    status, failed = await results(client, world.member, site.load, accepted["job"])
    assert status == 422
    assert failed == {"status": "FAILED", "message": state["message"]}
    assert "SQL" not in failed["message"]
    assert len(failed["message"]) < 400
    assert state["message"].startswith(
        "Forecasting job failed with ForecastError: The future regressor (sensor "
        f"{site.temperature}) has no values in the forecast window known at "
    )


async def test_forecast_frequency_makes_viewpoints_in_one_job(
    aiohttp_client: ClientFactory,
    fc_settings: Settings,
    world: World,
    worker: subprocess.Popen[bytes],
) -> None:
    client = await aiohttp_client(create_app(fc_settings))
    # History known as it happened, through the whole forecast window.
    site = await make_site(client, world, hours=HISTORY_HOURS + 12)
    body = {"start": START, "duration": "PT12H", "forecast-frequency": "PT6H"}
    status, accepted = await trigger(client, world.member, site.load, body)
    assert status == 202, accepted
    status, state = await wait_for_job(client, world.member, accepted["job"])
    assert status == 200, state
    hour = 3_600_000
    start_ms = to_epoch_ms(parse_datetime(START))
    # Viewpoint 1 at start (belief time start), viewpoint 2 six hours later.
    expected = sorted(
        [(h * hour, (h + 1) * hour) for h in range(12)]
        + [(h * hour, (h - 5) * hour) for h in range(6, 12)]
    )
    beliefs = await stored_beliefs(fc_settings.database_url, site.load)
    assert sorted((b[0] - start_ms, b[1]) for b in beliefs) == expected
    status, forecast = await results(client, world.member, site.load, accepted["job"])
    assert status == 200, forecast
    assert forecast["duration"] == "PT12H"
    assert len(forecast["values"]) == 12


async def test_forecast_pending_mismatch_unknown_and_access(
    aiohttp_client: ClientFactory, fc_settings: Settings, world: World
) -> None:
    """Without a worker, jobs stay queued."""
    client = await aiohttp_client(create_app(fc_settings))
    site = await make_site(client, world, hours=48)
    status, accepted = await trigger(client, world.member, site.load, {"start": START})
    assert status == 202, accepted
    job = accepted["job"]
    assert await results(client, world.member, site.load, job) == (
        202,
        {"status": "QUEUED", "message": "Forecasting job waiting to be processed."},
    )
    response = await client.get(f"/api/v3_0/jobs/{job}", headers=identity(world.member))
    state = await response.json()
    assert response.status == 202
    assert state["status"] == "QUEUED"
    assert state["origin"] == "forecasting"
    assert state["message"] == "Forecasting job waiting to be processed."
    assert await results(client, world.member, site.temperature, job) == (
        422,
        {
            "message": {
                "json": f"Sensor ID mismatch: job {job} is for sensor {site.load}, "
                f"not sensor {site.temperature}."
            },
            "result": "Rejected",
            "status": "UNPROCESSABLE_ENTITY",
        },
    )
    assert await results(client, world.member, site.load, UNKNOWN_JOB) == (
        422,
        {
            "message": {"json": f"Job {UNKNOWN_JOB} not found."},
            "result": "Rejected",
            "status": "UNPROCESSABLE_ENTITY",
        },
    )
    # Another account's sensor: 403 for the trigger, the results and the job.
    assert await trigger(client, world.outsider, site.load, {"start": START}) == (
        403,
        FORBIDDEN,
    )
    assert await results(client, world.outsider, site.load, job) == (403, FORBIDDEN)
    response = await client.get(
        f"/api/v3_0/jobs/{job}", headers=identity(world.outsider)
    )
    assert response.status == 403
    # A regressor the user cannot read: 403.
    other_asset = await make_asset(client, world.outsider, name="Theirs")
    theirs = await make_sensor(
        client, world.outsider, other_asset["id"], "t", unit="°C"
    )
    status, body = await trigger(
        client,
        world.member,
        site.load,
        {"start": START, "config": {"regressors": [theirs]}},
    )
    assert (status, body) == (403, FORBIDDEN)
    assert await trigger(client, world.member, 99999, {"start": START}) == (
        422,
        rejected({"sensor": ["No sensor found with ID 99999."]}),
    )
    response = await client.post(
        f"/api/v3_0/sensors/{site.load}/forecasts/trigger", json={"start": START}
    )
    assert response.status == 401
    assert await response.json() == UNAUTHORIZED


async def test_forecast_trigger_limit_is_shared(
    aiohttp_client: ClientFactory, fc_settings: Settings, world: World
) -> None:
    client = await aiohttp_client(create_app(fc_settings))
    site = await make_site(client, world, hours=48)
    for _ in range(4):
        status, body = await trigger(client, world.member, site.load, {"start": START})
        assert status == 202, body
    response = await client.post(
        f"/api/v3_0/sensors/{site.load}/forecasts/trigger",
        json={"start": START},
        headers=identity(world.member),
    )
    assert response.status == 429
    assert response.headers["X-RateLimit-Limit"] == "4"
    assert int(response.headers["Retry-After"]) > 0


def rejected(errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": {"combined_sensor_data_description": errors},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"start": START, "model": "TrainPredictPipeline"},
            {"model": ["Unknown field."]},
        ),
        (
            {"start": START, "output-path": "/tmp/x"},
            {"output-path": ["Unknown field."]},
        ),
        (
            {"start": START, "model-save-dir": "/tmp/x"},
            {"model-save-dir": ["Unknown field."]},
        ),
        ({"start": START, "sensor-to-save": 1}, {"sensor-to-save": ["Unknown field."]}),
        (
            {"start": START, "duration": "P2D", "end": "2026-03-17T00:00:00+00:00"},
            {
                "duration": [
                    "Provide 'duration' with either 'start' or 'end', but not with "
                    "both."
                ]
            },
        ),
        (
            {"start": START, "config": {"train-period": "P1D"}},
            {
                "config": {
                    "train-period": ["train-period must be at least 2 days (48 hours)"]
                }
            },
        ),
        (
            {"start": START, "config": {"future-regressors": [99999]}},
            {
                "config": {
                    "future-regressors": {"0": ["No sensor found with ID 99999."]}
                }
            },
        ),
        (
            {"start": START, "max-forecast-horizon": "PT90M"},
            {
                "max-forecast-horizon": [
                    "max-forecast-horizon must be a multiple of the sensor resolution "
                    "(1:00:00)"
                ]
            },
        ),
        (
            {"start": START, "duration": "PT12H", "max-forecast-horizon": "PT6H"},
            {
                "max_forecast_horizon": [
                    "This combination of parameters will not yield forecasts for the "
                    "entire prediction window."
                ]
            },
        ),
        ({"start": "yesterday"}, {"start": ["Not a valid datetime."]}),
        (
            {"start": START, "config": {"regressors": ["x"]}},
            {"config": {"regressors": {"0": ["Not a valid integer."]}}},
        ),
    ],
)
async def test_forecast_trigger_validation(
    client: Client, world: World, body: dict[str, Any], errors: dict[str, Any]
) -> None:
    """Refused before anything is queued (this backend has no job queue at all)."""
    asset = await make_asset(client, world.account_admin, name="Site")
    sensor = await hourly_sensor(client, world, asset["id"], "load", "kW")
    assert await trigger(client, world.member, sensor, body) == (422, rejected(errors))
