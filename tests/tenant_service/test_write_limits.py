"""Amplified writes (#10): a bound on the beliefs one POST stores, fair write turns.

`{"values": [1], "duration": "PT250000H", ...}` is 87 bytes and was a million rows
held under the tenant's SQLite write lock. Now a POST stores at most
TENANT_MAX_BELIEFS_PER_REQUEST beliefs (100,000; a year of 15-minute values is
35,040), counted from duration / sensor resolution before any row is built, and
SQLite writers take turns account by account.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Final

import pytest
from sqlalchemy import func, select

from contract.config import ConfigError
from tenant_service import keys
from tenant_service.config import (
    DEFAULT_MAX_BELIEFS_PER_REQUEST,
    Settings,
    load_settings,
)
from tenant_service.store.db import create_engine
from tenant_service.store.tables import timed_beliefs
from tenant_service.writes import WriteQueue
from tests.tenant_service.conftest import (
    Client,
    ClientFactory,
    World,
    identity,
    make_asset,
)

START: Final = "2026-01-01T00:00:00+00:00"
LIMIT: Final = DEFAULT_MAX_BELIEFS_PER_REQUEST


async def make_sensor(client: Client, user: int, asset_id: int, resolution: str) -> int:
    resp = await client.post(
        "/api/v3_0/sensors",
        json={
            "name": f"power {resolution}",
            "unit": "MW",
            "event_resolution": resolution,
            "generic_asset_id": asset_id,
        },
        headers=identity(user),
    )
    assert resp.status == 201, await resp.text()
    sensor_id: int = (await resp.json())["id"]
    return sensor_id


async def stored_rows(settings: Settings, sensor_id: int) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(timed_beliefs)
                        .where(timed_beliefs.c.sensor_id == sensor_id)
                    )
                ).scalar_one()
            )
    finally:
        await engine.dispose()


async def post(
    client: Client, user: int, sensor_id: int, values: list[Any], duration: str
) -> tuple[int, Any]:
    resp = await client.post(
        f"/api/v3_0/sensors/{sensor_id}/data",
        json={"values": values, "start": START, "duration": duration, "unit": "MW"},
        headers=identity(user),
    )
    return resp.status, await resp.json()


def quarters(count: int) -> str:
    return f"PT{count * 15}M"


def refusal(
    count: int, limit: int, at: str = " at the sensor's resolution of 0:15:00"
) -> dict[str, Any]:
    return {
        "message": {
            "combined_sensor_data_description": {
                "_schema": [
                    f"This request would store {count} values{at}; this server stores "
                    f"at most {limit} values per request. Send the data in smaller parts."
                ]
            }
        },
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_default_bound_both_sides(
    client: Client, world: World, settings: Settings
) -> None:
    asset = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    year = await make_sensor(client, world.member, asset["id"], "PT15M")
    # A year of 15-minute values, as FlexMeasures users post them.
    status, body = await post(
        client,
        world.member,
        year,
        [i % 7 + 0.5 for i in range(35_040)],
        quarters(35_040),
    )
    assert status == 200, body
    assert await stored_rows(settings, year) == 35_040
    # Exactly the limit, from one value (upsampled): stored.
    at_limit = await make_sensor(client, world.member, asset["id"], "PT15M ")
    status, body = await post(client, world.member, at_limit, [1], quarters(LIMIT))
    assert status == 200, body
    assert await stored_rows(settings, at_limit) == LIMIT
    # One more: refused, naming the limit and the count; nothing stored.
    over = await make_sensor(client, world.member, asset["id"], "PT15M  ")
    status, body = await post(client, world.member, over, [1], quarters(LIMIT + 1))
    assert status == 422
    assert body == refusal(LIMIT + 1, LIMIT)
    assert await stored_rows(settings, over) == 0


async def test_the_87_byte_million_rows_is_refused(
    client: Client, world: World, settings: Settings
) -> None:
    asset = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    sensor = await make_sensor(client, world.member, asset["id"], "PT15M")
    raw = json.dumps(
        {"values": [1], "start": START, "duration": "PT250000H", "unit": "MW"},
        separators=(",", ":"),
    )
    assert len(raw) <= 90
    resp = await client.post(
        f"/api/v3_0/sensors/{sensor}/data",
        data=raw,
        headers={**identity(world.member), "Content-Type": "application/json"},
    )
    assert resp.status == 422
    assert await resp.json() == refusal(1_000_000, LIMIT)
    assert await stored_rows(settings, sensor) == 0


@pytest.fixture
async def small_client(
    aiohttp_client: ClientFactory, settings: Settings, world: World
) -> Client:
    """The backend with TENANT_MAX_BELIEFS_PER_REQUEST=96 (one day of quarters)."""
    from tenant_service.app import create_app

    limited = dataclasses.replace(settings, max_beliefs_per_request=96)
    return await aiohttp_client(create_app(limited))


async def test_configured_bound_both_sides(
    small_client: Client, world: World, settings: Settings
) -> None:
    client = small_client
    asset = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    quarter = await make_sensor(client, world.member, asset["id"], "PT15M")
    hourly = await make_sensor(client, world.member, asset["id"], "PT1H")
    instant = await make_sensor(client, world.member, asset["id"], "PT0M")
    assert (await post(client, world.member, quarter, [1.0] * 96, "P1D"))[0] == 200
    status, body = await post(client, world.member, quarter, [2.0] * 97, quarters(97))
    assert (status, body) == (422, refusal(97, 96))
    # Downsampled: 4 days of quarter values are 96 hourly beliefs.
    status, body = await post(client, world.member, hourly, [1.0] * 384, "P4D")
    assert status == 200, body
    status, body = await post(client, world.member, hourly, [3.0] * 388, "PT97H")
    assert (status, body) == (
        422,
        refusal(97, 96, " at the sensor's resolution of 1:00:00"),
    )
    # Instantaneous sensors store one belief per value.
    assert (await post(client, world.member, instant, [1.0] * 96, "P1D"))[0] == 200
    status, body = await post(client, world.member, instant, [1.0] * 97, quarters(97))
    assert (status, body) == (422, refusal(97, 96, ""))
    assert await stored_rows(settings, quarter) == 96
    assert await stored_rows(settings, hourly) == 96
    assert await stored_rows(settings, instant) == 96


async def test_reads_are_bounded_too(client: Client, world: World) -> None:
    """A century at one-minute resolution is 52 million values: a clear 422."""
    asset = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    sensor = await make_sensor(client, world.member, asset["id"], "PT1M")
    for duration in ("P36500D", "P100Y"):  # years have no fixed length: refused
        resp = await client.get(
            f"/api/v3_0/sensors/{sensor}/data",
            params={
                "start": START,
                "duration": duration,
                "unit": "MW",
                "resolution": "PT1M",
            },
            headers=identity(world.member),
        )
        assert resp.status == 422
        body = await resp.json()
        errors = body["message"]["combined_sensor_data_description"]
        if duration == "P36500D":
            (message,) = errors["_schema"]
            assert "more than 1000000 values" in message
        else:
            assert "months and years are not supported" in errors["duration"][0]


def test_setting_is_read_and_checked() -> None:
    base = {"TENANT_NAME": "acme", "TENANT_SECRET": "s" * 32}
    assert load_settings(base).max_beliefs_per_request == LIMIT
    assert (
        load_settings(
            {**base, "TENANT_MAX_BELIEFS_PER_REQUEST": "35040"}
        ).max_beliefs_per_request
        == 35_040
    )
    for bad in ("0", "-1", "many"):
        with pytest.raises(ConfigError, match="TENANT_MAX_BELIEFS_PER_REQUEST"):
            load_settings({**base, "TENANT_MAX_BELIEFS_PER_REQUEST": bad})


# --- fair turns at the single writer --------------------------------------------


async def test_writes_wait_for_their_turn_and_repeats_take_none(
    client: Client, world: World, settings: Settings
) -> None:
    """While another account's write holds the turn, a repeat is answered and a
    new write waits its turn (SQLite; PostgreSQL writers need no turns)."""
    if settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL has concurrent writers: no write turns")
    app = client.app
    assert app is not None
    queue = app[keys.TENANTS].only().write_queue
    asset = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    sensor = await make_sensor(client, world.member, asset["id"], "PT15M")
    series = [1.0] * 96
    assert (await post(client, world.member, sensor, series, "P1D"))[0] == 200
    await queue.acquire(world.other)  # another account's write in progress
    try:
        async with asyncio.timeout(10):
            status, body = await post(client, world.member, sensor, series, "P1D")
        assert status == 200
        assert body["status"] == "ALREADY_RECEIVED_AND_SUCCESSFULLY_PROCESSED"
        new = asyncio.create_task(post(client, world.member, sensor, [2.0] * 96, "P1D"))
        async with asyncio.timeout(10):
            while queue.waiting == 0:  # noqa: ASYNC110  # the app's queue, no event
                await asyncio.sleep(0.01)
        assert not new.done()
    finally:
        queue.release()
    status, body = await new
    assert (status, body["status"]) == (200, "PROCESSED")  # beliefs of a later time
    assert not queue.held


async def test_write_turns_go_to_the_least_recently_served_account() -> None:
    queue = WriteQueue()
    order: list[str] = []

    async def write(name: str, account: int, started: asyncio.Event) -> None:
        started.set()
        await queue.acquire(account)
        order.append(name)
        await asyncio.sleep(0)
        queue.release()

    await queue.acquire(2)  # B's first write holds the turn
    tasks = []
    for name, account in (
        ("B2", 2),
        ("B3", 2),
        ("B4", 2),
        ("A1", 1),
        ("C1", 3),
        ("A2", 1),
    ):
        started = asyncio.Event()
        tasks.append(asyncio.create_task(write(name, account, started)))
        await started.wait()
    assert queue.waiting == 6
    queue.release()
    await asyncio.gather(*tasks)
    # A and C were never served: they go before B's queued writes; then in turn.
    assert order == ["A1", "C1", "B2", "A2", "B3", "B4"]
    assert not queue.held
    assert queue.waiting == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    queue = WriteQueue()
    await queue.acquire(1)
    waiter = asyncio.create_task(queue.acquire(2))
    other = asyncio.create_task(queue.acquire(3))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.waiting == 1
    queue.release()
    await other  # the turn went to the one still waiting
    assert queue.held
    queue.release()
    assert not queue.held
    # Granted and cancelled before it ran: the turn is passed on, not lost.
    await queue.acquire(1)
    granted = asyncio.create_task(queue.acquire(2))
    await asyncio.sleep(0)
    queue.release()
    granted.cancel()
    with pytest.raises(asyncio.CancelledError):
        await granted
    assert not queue.held
    await asyncio.wait_for(queue.acquire(4), 1)
