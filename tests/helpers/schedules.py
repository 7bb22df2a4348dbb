"""Schedules through a tenant_service test client: a priced battery site, triggers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from tenant_service.config import Settings
from tests.helpers.wait import INTERVAL
from tests.tenant_service.conftest import (
    SECRET,
    Client,
    World,
    identity,
    make_asset,
)

DAY = "2026-03-02T00:00:00+00:00"
# Hourly prices: cheap at night, dear in the evening.
PRICES = [10.0] * 6 + [50.0] * 11 + [90.0] * 4 + [50.0] * 3
# Six batteries over the longest window: a job that stays STARTED for about a second.
BATTERIES: Final = 6
STEPS: Final = 2520


@dataclass(frozen=True, slots=True)
class Site:
    """A battery asset's id with its power and price sensor ids."""

    asset: int
    power: int
    price: int


async def make_sensor(
    client: Client,
    user: int,
    asset_id: int,
    name: str,
    *,
    unit: str,
    event_resolution: str = "PT15M",
) -> int:
    """POST a sensor; its id."""
    body = {
        "name": name,
        "unit": unit,
        "event_resolution": event_resolution,
        "generic_asset_id": asset_id,
    }
    resp = await client.post("/api/v3_0/sensors", json=body, headers=identity(user))
    assert resp.status == 201, await resp.text()
    sensor_id: int = (await resp.json())["id"]
    return sensor_id


async def make_site(client: Client, world: World) -> Site:
    """A battery asset with a MW power sensor and an hourly price sensor with data."""
    asset = await make_asset(client, world.account_admin, name="Battery site")
    power = await make_sensor(
        client, world.account_admin, asset["id"], "power", unit="MW"
    )
    price = await make_sensor(
        client,
        world.account_admin,
        asset["id"],
        "price",
        unit="EUR/MWh",
        event_resolution="PT1H",
    )
    response = await client.post(
        f"/api/v3_0/sensors/{price}/data",
        json={"start": DAY, "duration": "PT24H", "unit": "EUR/MWh", "values": PRICES},
        headers=identity(world.member),
    )
    assert response.status == 200, await response.text()
    return Site(asset["id"], power, price)


async def make_batteries(client: Client, world: World) -> tuple[Site, list[int]]:
    """A site with prices over the longest window and BATTERIES power sensors."""
    site = await make_site(client, world)  # prices of DAY
    days = -(-STEPS // 96)
    response = await client.post(
        f"/api/v3_0/sensors/{site.price}/data",
        json={
            "start": "2026-03-03T00:00:00+00:00",
            "duration": f"PT{24 * days}H",
            "unit": "EUR/MWh",
            "values": PRICES * days,
        },
        headers=identity(world.member),
    )
    assert response.status == 200, await response.text()
    power = [site.power]
    for index in range(1, BATTERIES):
        power.append(
            await make_sensor(
                client, world.account_admin, site.asset, f"power {index}", unit="MW"
            )
        )
    return site, power


def batteries_trigger(site: Site, power: list[int]) -> dict[str, Any]:
    """An asset trigger body for all the batteries of make_batteries (a long job)."""
    model = battery(site)["flex-model"]
    return {
        "start": DAY,
        "duration": f"PT{STEPS // 4}H",
        "flex-model": [{**model, "sensor": sensor} for sensor in power],
        "flex-context": {"consumption-price": {"sensor": site.price}},
    }


def battery(site: Site, **extra: Any) -> dict[str, Any]:
    """A trigger body for a 2 MWh / 1 MW battery starting empty."""
    return {
        "start": DAY,
        "duration": "PT24H",
        "flex-model": {
            "soc-at-start": "0 MWh",
            "soc-min": "0 MWh",
            "soc-max": "2 MWh",
            "power-capacity": "1 MW",
            "roundtrip-efficiency": "100%",
            **extra,
        },
        "flex-context": {"consumption-price": {"sensor": site.price}},
    }


async def trigger(
    client: Client, user: int, sensor: int, body: dict[str, Any]
) -> tuple[int, Any]:
    """POST a schedule trigger; the status and body."""
    response = await client.post(
        f"/api/v3_0/sensors/{sensor}/schedules/trigger",
        json=body,
        headers=identity(user),
    )
    return response.status, await response.json()


async def wait_for_job(client: Client, user: int, job: str) -> tuple[int, Any]:
    """Poll the job until it is no longer queued or running (30 s); status, body."""
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(f"/api/v3_0/jobs/{job}", headers=identity(user))
        body = await response.json()
        if response.status != 202 or time.monotonic() > deadline:
            return response.status, body
        await asyncio.sleep(INTERVAL)


@contextmanager
def worker_process(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A real scheduling worker process on the tenant's queue (or, for a pool's
    settings, on the queues of the pool's tenants), stopped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_")}
    env |= {
        "TENANT_DATABASE_URL": settings.database_url,
        "TENANT_REDIS_URL": settings.redis_url or "",
        "TENANT_REDIS_PREFIX": settings.redis_prefix,
        "TENANT_JOB_TIMEOUT": str(settings.job_timeout),
        "TENANT_JOB_HEARTBEAT_GRACE": str(settings.job_heartbeat_grace),
        "TENANT_JOB_SWEEP_INTERVAL": str(settings.job_sweep_interval),
    }
    if settings.tenants_file is not None:
        env |= {
            "TENANT_TENANTS_FILE": str(settings.tenants_file),
            "TENANT_ADDRESS": settings.address,
            "TENANT_SECRETS_DIR": str(settings.secrets_dir),
            "TENANT_RELOAD_INTERVAL": str(settings.reload_interval),
        }
    else:
        # The worker checks no identities; the secret only satisfies the settings.
        env |= {"TENANT_NAME": settings.name, "TENANT_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenant_service.scheduling.worker"], env=env
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)  # reaped: no "still running" ResourceWarning at collection
