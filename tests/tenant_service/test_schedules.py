"""Schedule triggers, results and job status with real Redis and a real worker."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator

import pytest

from tenant_service.app import create_app
from tenant_service.config import Settings
from tests.helpers.schedules import (
    DAY,
    battery,
    make_sensor,
    make_site,
    trigger,
    wait_for_job,
    worker_process,
)
from tests.tenant_service.conftest import (
    ClientFactory,
    World,
    identity,
    make_asset,
)


@pytest.fixture
def sched_settings(settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    """The backend's settings with the job queue on the test Redis."""
    return dataclasses.replace(
        settings,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        job_timeout=20,
        trigger_limit=3,
        trigger_period=300,
    )


@pytest.fixture
def worker(sched_settings: Settings, world: World) -> Iterator[subprocess.Popen[bytes]]:
    """A real scheduling worker process on the tenant's queue."""
    del world  # the database is migrated and seeded first
    with worker_process(sched_settings) as proc:
        yield proc


async def test_schedule_charges_cheap_and_discharges_dear(
    aiohttp_client: ClientFactory,
    sched_settings: Settings,
    world: World,
    worker: subprocess.Popen[bytes],
) -> None:
    client = await aiohttp_client(create_app(sched_settings))
    site = await make_site(client, world)
    status, body = await trigger(client, world.member, site.power, battery(site))
    assert status == 202, body
    job = body["job"]
    assert body == {
        "status": "ACCEPTED",
        "job": job,
        "schedule": job,
        "job-url": f"/api/v3_0/jobs/{job}",
        "results-url": f"/api/v3_0/sensors/{site.power}/schedules/{job}",
        "message": "Request has been accepted for processing.",
    }
    status, state = await wait_for_job(client, world.member, job)
    assert status == 200, state
    assert state["status"] == "FINISHED"
    assert state["func-name"] == state["func_name"]
    response = await client.get(
        f"/api/v3_0/sensors/{site.power}/schedules/{job}",
        params={"duration": "PT24H"},
        headers=identity(world.member),
    )
    schedule = await response.json()
    assert response.status == 200, schedule
    values = schedule["values"]
    assert len(values) == 96
    assert schedule["unit"] == "MW"
    assert schedule["start"] == DAY
    assert schedule["scheduler_info"] == {"scheduler": "StorageScheduler"}
    # Charge the 2 MWh in the cheapest (night) hours at 1 MW, sell at the dearest.
    assert sum(values[: 6 * 4]) / 4 == pytest.approx(2.0, abs=1e-6)
    assert sum(values[17 * 4 : 21 * 4]) / 4 == pytest.approx(-2.0, abs=1e-6)
    assert max(values) <= 1.0 + 1e-9
    assert min(values) >= -1.0 - 1e-9
    # Default duration 6 h; unit conversion; the other sign convention.
    response = await client.get(
        f"/api/v3_0/sensors/{site.power}/schedules/{job}",
        params={"unit": "kW", "sign-convention": "production-positive"},
        headers=identity(world.member),
    )
    six_hours = await response.json()
    assert len(six_hours["values"]) == 24
    assert six_hours["values"] == [-1000 * v for v in values[:24]]
    assert six_hours["duration"] == "PT6H"


async def test_schedule_pending_unknown_cached_and_forced(
    aiohttp_client: ClientFactory, sched_settings: Settings, world: World
) -> None:
    """Without a worker, jobs stay queued."""
    client = await aiohttp_client(create_app(sched_settings))
    site = await make_site(client, world)
    status, first = await trigger(client, world.member, site.power, battery(site))
    assert status == 202
    status, again = await trigger(client, world.member, site.power, battery(site))
    assert again["job"] == first["job"]
    status, forced = await trigger(
        client,
        world.member,
        site.power,
        {**battery(site), "force-new-job-creation": True},
    )
    assert status == 202
    assert forced["job"] != first["job"]
    response = await client.get(
        f"/api/v3_0/sensors/{site.power}/schedules/{first['job']}",
        headers=identity(world.member),
    )
    assert response.status == 400
    assert await response.json() == {
        "message": "Scheduling job waiting to be processed.",
        "result": "Rejected",
        "status": "UNKNOWN_SCHEDULE",
    }
    response = await client.get(
        f"/api/v3_0/jobs/{first['job']}", headers=identity(world.member)
    )
    assert response.status == 202
    assert (await response.json())["status"] == "QUEUED"
    unknown = "3c9f5e6e-1f5e-4b7a-9d3e-5b0f6b2b9a11"
    response = await client.get(
        f"/api/v3_0/sensors/{site.power}/schedules/{unknown}",
        headers=identity(world.member),
    )
    assert response.status == 400
    assert await response.json() == {
        "message": f"The requested UDI event (id = {unknown}, type = job) is not known.",
        "result": "Rejected",
        "status": "UNRECOGNIZED_UDI_EVENT",
    }
    response = await client.get(
        f"/api/v3_0/jobs/{unknown}", headers=identity(world.member)
    )
    assert response.status == 404
    assert await response.json() == {
        "status": "ERROR",
        "message": f"Job {unknown} not found.",
    }
    # The tenant option: pending is 202 with the job's status.
    accepting = await aiohttp_client(
        create_app(dataclasses.replace(sched_settings, pending_schedule_accepted=True))
    )
    response = await accepting.get(
        f"/api/v3_0/sensors/{site.power}/schedules/{first['job']}",
        headers=identity(world.member),
    )
    assert response.status == 202
    assert await response.json() == {
        "status": "QUEUED",
        "message": "Scheduling job waiting to be processed.",
    }


async def test_schedule_trigger_limit_counts_accepted_only(
    aiohttp_client: ClientFactory, sched_settings: Settings, world: World
) -> None:
    client = await aiohttp_client(create_app(sched_settings))
    site = await make_site(client, world)
    # Rejected triggers cost nothing.
    for _ in range(5):
        status, _body = await trigger(
            client, world.member, site.power, battery(site, **{"soc-max": "3 kW"})
        )
        assert status == 422
    jobs = set()
    for hour in range(3):
        body = {**battery(site), "start": f"2026-03-02T0{hour}:00:00+00:00"}
        status, answer = await trigger(client, world.member, site.power, body)
        assert status == 202, answer
        jobs.add(answer["job"])
    assert len(jobs) == 3
    # A cached trigger is no new job and is not refused.
    status, _body = await trigger(client, world.member, site.power, battery(site))
    assert status == 202
    response = await client.post(
        f"/api/v3_0/sensors/{site.power}/schedules/trigger",
        json={**battery(site), "start": "2026-03-02T05:00:00+00:00"},
        headers=identity(world.member),
    )
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    assert await response.json() == {
        "message": "You hit a rate limit. The limit you hit allows 3 per 5 minutes.",
        "result": "Rejected",
        "status": "TOO_MANY_REQUESTS",
    }


async def test_schedule_trigger_validation_and_access(
    aiohttp_client: ClientFactory, sched_settings: Settings, world: World
) -> None:
    client = await aiohttp_client(create_app(sched_settings))
    site = await make_site(client, world)
    theirs = await make_asset(client, world.outsider, name="T")
    their_price = await make_sensor(
        client, world.outsider, theirs["id"], "price", unit="EUR/MWh"
    )
    status, body = await trigger(client, world.member, site.power, {"duration": "PT1H"})
    assert status == 422
    assert body["message"]["json"]["start"] == ["Missing data for required field."]
    status, body = await trigger(
        client, world.member, site.power, battery(site, **{"soc-maxx": "1 MWh"})
    )
    assert status == 422
    assert "Unknown field." in str(body["message"])
    # The sensor endpoint takes one object: its fields are named without an index.
    assert body["message"]["json"]["flex-model"]["soc-maxx"] == ["Unknown field."]
    status, body = await trigger(
        client,
        world.member,
        site.power,
        {
            **battery(site),
            "flex-context": {"consumption-price": {"sensor": their_price}},
        },
    )
    assert status == 403, body
    status, body = await trigger(client, world.outsider, site.power, battery(site))
    assert status == 403


async def test_schedule_failed_job_reports_why(
    aiohttp_client: ClientFactory,
    sched_settings: Settings,
    world: World,
    worker: subprocess.Popen[bytes],
) -> None:
    client = await aiohttp_client(create_app(sched_settings))
    site = await make_site(client, world)
    body = {**battery(site), "start": "2026-05-01T00:00:00+00:00"}  # no prices then
    status, answer = await trigger(client, world.member, site.power, body)
    assert status == 202
    status, state = await wait_for_job(client, world.member, answer["job"])
    assert status == 422, state
    assert state["status"] == "FAILED"
    response = await client.get(
        f"/api/v3_0/sensors/{site.power}/schedules/{answer['job']}",
        headers=identity(world.member),
    )
    failed = await response.json()
    assert response.status == 400
    assert failed["status"] == "UNKNOWN_SCHEDULE"
    assert failed["message"].startswith("Scheduling job failed with ")


async def test_schedule_queue_down_is_503(
    aiohttp_client: ClientFactory, settings: Settings, world: World
) -> None:
    from tests.helpers.net import free_port

    down = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(down))
    site = await make_site(client, world)
    status, body = await trigger(client, world.member, site.power, battery(site))
    assert status == 503
    assert body["status"] == "SERVICE_UNAVAILABLE"


async def test_asset_schedule_devices_share_the_stored_site_capacity(
    aiohttp_client: ClientFactory,
    sched_settings: Settings,
    world: World,
    worker: subprocess.Popen[bytes],
) -> None:
    """Two batteries under one asset; the site capacity comes from the asset."""
    client = await aiohttp_client(create_app(sched_settings))
    site = await make_site(client, world)
    second = await make_sensor(
        client, world.account_admin, site.asset, "power 2", unit="MW"
    )
    response = await client.patch(
        f"/api/v3_0/assets/{site.asset}",
        json={
            "flex_context": '{"site-power-capacity": "1.5 MW"}',
            "flex_model": '{"power-capacity": "1 MW", "soc-max": "2 MWh"}',
        },
        headers=identity(world.account_admin),
    )
    assert response.status == 200, await response.text()
    body = {
        "start": DAY,
        "duration": "PT24H",
        "flex-model": [
            {"sensor": site.power, "soc-at-start": "0 MWh"},
            {"sensor": second, "soc-at-start": "0 MWh"},
        ],
        "flex-context": {"consumption-price": {"sensor": site.price}},
    }
    response = await client.post(
        f"/api/v3_0/assets/{site.asset}/schedules/trigger",
        json=body,
        headers=identity(world.member),
    )
    answer = await response.json()
    assert response.status == 202, answer
    status, state = await wait_for_job(client, world.member, answer["job"])
    assert status == 200, state
    schedules = []
    for sensor in (site.power, second):
        response = await client.get(
            f"/api/v3_0/sensors/{sensor}/schedules/{answer['job']}",
            params={"duration": "PT24H"},
            headers=identity(world.member),
        )
        assert response.status == 200
        schedules.append((await response.json())["values"])
    for first, other in zip(*schedules, strict=True):
        assert abs(first) <= 1.0 + 1e-9  # the stored device capacity
        assert abs(first + other) <= 1.5 + 1e-9  # the stored site capacity
    # Both fill up (4 MWh in all) during the six cheap hours, at most 1.5 MW.
    assert sum(map(sum, (s[:24] for s in schedules))) / 4 == pytest.approx(4.0)
    # A sensor of another asset is refused.
    other_asset = await make_asset(client, world.account_admin, name="Elsewhere")
    stray = await make_sensor(
        client, world.account_admin, other_asset["id"], "power", unit="MW"
    )
    body["flex-model"] = [{"sensor": stray, "soc-at-start": "0 MWh"}]
    response = await client.post(
        f"/api/v3_0/assets/{site.asset}/schedules/trigger",
        json=body,
        headers=identity(world.member),
    )
    assert response.status == 422
    assert (await response.json())["message"]["json"]["flex-model"] == [
        f"Sensor {stray} does not belong to asset {site.asset} "
        "(or to one of its offspring)"
    ]
