"""Scheduling faults with real Redis and real worker processes: kills and failures."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tenant_service.app import create_app
from tenant_service.config import Settings
from tests.tenant_service.conftest import (
    SECRET,
    TENANT,
    Client,
    ClientFactory,
    World,
    identity,
)
from tests.tenant_service.test_schedules import (
    DAY,
    PRICES,
    battery,
    make_sensor,
    make_site,
)

JOB_TIMEOUT = 8
BATTERIES = 6
STEPS = 2520  # the most steps a schedule has


@pytest.fixture
def fault_settings(settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    return dataclasses.replace(
        settings,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        job_timeout=JOB_TIMEOUT,
        trigger_period=0,
    )


@pytest.fixture
def workers(
    fault_settings: Settings, database_url: str, world: World
) -> Iterator[list[subprocess.Popen[bytes]]]:
    del world
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_worker(
    procs: list[subprocess.Popen[bytes]], settings: Settings
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TENANT_NAME": TENANT,
        "TENANT_SECRET": SECRET,
        "TENANT_DATABASE_URL": settings.database_url,
        "TENANT_REDIS_URL": settings.redis_url or "",
        "TENANT_REDIS_PREFIX": settings.redis_prefix,
        "TENANT_JOB_TIMEOUT": str(settings.job_timeout),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenant_service.scheduling.worker"], env=env
    )
    procs.append(proc)
    return proc


async def job_state(client: Client, user: int, job: str) -> dict[str, Any]:
    response = await client.get(f"/api/v3_0/jobs/{job}", headers=identity(user))
    body: dict[str, Any] = await response.json()
    return body


async def test_measure(
    aiohttp_client: ClientFactory,
    fault_settings: Settings,
    world: World,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    client = await aiohttp_client(create_app(fault_settings))
    site = await make_site(client, world)
    response = await client.post(
        f"/api/v3_0/sensors/{site.price}/data",
        json={
            "start": "2026-03-03T00:00:00+00:00",
            "duration": "PT624H",
            "unit": "EUR/MWh",
            "values": PRICES * 26,
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
    model = battery(site)["flex-model"]
    body = {
        "start": DAY,
        "duration": f"PT{STEPS // 4}H",
        "flex-model": [{**model, "sensor": p} for p in power],
        "flex-context": {"consumption-price": {"sensor": site.price}},
    }
    first = start_worker(workers, fault_settings)
    await asyncio.sleep(3)
    t0 = time.monotonic()
    response = await client.post(
        f"/api/v3_0/assets/{site.asset}/schedules/trigger",
        json=body,
        headers=identity(world.member),
    )
    answer = await response.json()
    assert response.status == 202, answer
    while time.monotonic() - t0 < 30:
        state = await job_state(client, world.member, answer["job"])
        if state["status"] == "STARTED":
            break
        await asyncio.sleep(0.05)
    first.kill()
    first.wait(5)
    killed = time.monotonic()
    state = await job_state(client, world.member, answer["job"])
    print("after kill", state["status"])
    start_worker(workers, fault_settings)
    last = None
    while time.monotonic() - killed < 100:
        state = await job_state(client, world.member, answer["job"])
        if state["status"] != last:
            last = state["status"]
            print(round(time.monotonic() - killed, 2), last)
        if last in ("FINISHED", "FAILED"):
            break
        await asyncio.sleep(0.2)
