"""Fixtures of the tenant_service tests: a migrated, seeded DB and a client."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, insert, select

from contract.config import Secret
from contract.identity import SERVICE, Caller, sign_identity
from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tenant_service.store.tables import (
    generic_asset_types,
    generic_assets,
    sensors,
    timed_beliefs,
)
from tests.helpers.databases import Template, Templates

TENANT = "acme"
SECRET = "test-secret-0123456789abcdef-0123456789"
PASSWORD = "correct horse battery"
HOST = "acme.flexmeasures.io"
QUARTER = 15 * 60 * 1000  # ms
HOUR = 4 * QUARTER

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


@dataclass(frozen=True, slots=True)
class World:
    """Ids of the seeded accounts and users."""

    acme: int
    other: int
    client_account: int
    admin: int
    reader: int
    account_admin: int
    member: int
    inactive: int
    outsider: int
    consultant: int
    client_user: int


@pytest.fixture(scope="session")
def password_hash() -> str:
    """One argon2 hash of PASSWORD, shared to keep the tests fast."""
    return hash_password(PASSWORD)


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings of the test tenant on the fresh database."""
    return Settings(name=TENANT, database_url=database_url, secret=Secret(SECRET))


async def seed_world(url: str, password_hash: str) -> World:
    """Seed accounts and users into the migrated database at `url`."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            acme = await account_store.create_account(
                conn, name="Acme", role_names=["Consultancy"]
            )
            other = await account_store.create_account(conn, name="Other")
            client_account = await account_store.create_account(
                conn, name="Client", consultancy_account_id=acme
            )

            async def user(email: str, account: int, *roles: str) -> int:
                return await user_store.create_user(
                    conn,
                    email=email,
                    username=email.split("@")[0],
                    account_id=account,
                    password_hash=password_hash,
                    role_names=roles,
                )

            ids = World(
                acme=acme,
                other=other,
                client_account=client_account,
                admin=await user("admin@acme.test", acme, "admin"),
                reader=await user("reader@acme.test", acme, "admin-reader"),
                account_admin=await user("boss@acme.test", acme, "account-admin"),
                member=await user("member@acme.test", acme),
                inactive=await user("gone@acme.test", acme),
                outsider=await user("someone@other.test", other, "account-admin"),
                consultant=await user("consultant@acme.test", acme, "consultant"),
                client_user=await user("user@client.test", client_account),
            )
            await user_store.update_user(conn, ids.inactive, {"active": False})
    finally:
        await engine.dispose()
    return ids


@pytest.fixture(scope="session")
def world_template(password_hash: str) -> Template[World]:
    """The migrated database with the accounts and users of `World`."""
    return Template("world", partial(seed_world, password_hash=password_hash))


@pytest.fixture
def database_template(
    request: pytest.FixtureRequest,
    database_template: Template[Any] | None,
    world_template: Template[World],
) -> Template[Any] | None:
    """Tests that use `world` start from its template; the rest as elsewhere."""
    if "world" in request.fixturenames:
        return world_template
    return database_template


@pytest.fixture
def world(
    database_url: str, templates: Templates, world_template: Template[World]
) -> World:
    """The ids seeded in this test's database (a copy of the world template)."""
    return templates.result(world_template, database_url)


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, settings: Settings, world: World
) -> Client:
    """A test client of the tenant app on the seeded database."""
    return await aiohttp_client(create_app(settings))


def now_ms() -> int:
    """The current time in ms since the epoch."""
    return int(time.time() * 1000)


def identity(
    user_id: int | None = None,
    *,
    auth_time_ms: int | None = None,
    tenant: str = TENANT,
    secret: str = SECRET,
    now: float | None = None,
) -> dict[str, str]:
    """Headers carrying a gateway identity (the service when user_id is None)."""
    caller = (
        SERVICE
        if user_id is None
        else Caller(
            user_id=user_id,
            account_id=1,
            roles=(),
            auth_time_ms=now_ms() if auth_time_ms is None else auth_time_ms,
        )
    )
    token = sign_identity(
        secret=secret,
        tenant=tenant,
        caller=caller,
        host=HOST,
        scheme="https",
        request_id="test",
        now=now,
    )
    return {"X-FlexHost-Identity": token}


UNAUTHORIZED = {
    "message": "You could not be properly authenticated for this content or "
    "functionality.",
    "status": "UNAUTHORIZED",
}
FORBIDDEN = {
    "message": "You cannot be authorized for this content or functionality.",
    "result": "Rejected",
    "status": "INVALID_SENDER",
}


# Seeded types have FlexMeasures 1.0.1's ids (tables.ASSET_TYPES).
SOLAR = 1
BATTERY = 5
BUILDING = 6


async def make_asset(
    client: Client, user: int, expect: int = 201, **fields: Any
) -> dict[str, Any]:
    """POST an asset, check the status, return the body."""
    body = {"name": "Site", "generic_asset_type_id": BUILDING, **fields}
    resp = await client.post("/api/v3_0/assets", json=body, headers=identity(user))
    data: dict[str, Any] = await resp.json()
    assert resp.status == expect, data
    return data


async def make_sensor(client: Client, user: int, asset_id: int, name: str) -> int:
    """POST a sensor to an asset; its id."""
    body = {
        "name": name,
        "unit": "kW",
        "event_resolution": "PT15M",
        "generic_asset_id": asset_id,
    }
    resp = await client.post("/api/v3_0/sensors", json=body, headers=identity(user))
    assert resp.status == 201, await resp.text()
    sensor_id: int = (await resp.json())["id"]
    return sensor_id


@dataclass(frozen=True, slots=True)
class Sensors:
    """Ids of the test sensors."""

    power: int  # kW, PT15M, acme
    price: int  # EUR/MWh, PT1H, acme
    floored: int  # kW, PT15M, floor_datetimes_to_resolution
    instant: int  # °C, instantaneous
    foreign: int  # kW, PT15M, other account


@pytest.fixture
async def data_sensors(database_url: str, world: World) -> Sensors:
    """An asset per account and sensors on them, inserted with SQL."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            type_id = (
                await conn.execute(
                    select(generic_asset_types.c.id).where(
                        generic_asset_types.c.name == "battery"
                    )
                )
            ).scalar()
            if type_id is None:
                type_id = (
                    await conn.execute(
                        insert(generic_asset_types)
                        .values(name="battery")
                        .returning(generic_asset_types.c.id)
                    )
                ).scalar_one()

            async def asset(name: str, account: int) -> int:
                return int(
                    (
                        await conn.execute(
                            insert(generic_assets)
                            .values(
                                name=name,
                                account_id=account,
                                generic_asset_type_id=type_id,
                            )
                            .returning(generic_assets.c.id)
                        )
                    ).scalar_one()
                )

            async def sensor(
                asset_id: int, name: str, unit: str, resolution: int, **attrs: Any
            ) -> int:
                return int(
                    (
                        await conn.execute(
                            insert(sensors)
                            .values(
                                name=name,
                                unit=unit,
                                timezone="Europe/Amsterdam",
                                event_resolution=resolution,
                                attributes=json.dumps(attrs),
                                generic_asset_id=asset_id,
                            )
                            .returning(sensors.c.id)
                        )
                    ).scalar_one()
                )

            mine = await asset("battery", world.acme)
            theirs = await asset("battery", world.other)
            return Sensors(
                power=await sensor(mine, "power", "kW", QUARTER),
                price=await sensor(mine, "price", "EUR/MWh", HOUR),
                floored=await sensor(
                    mine, "floored", "kW", QUARTER, floor_datetimes_to_resolution=True
                ),
                instant=await sensor(mine, "temperature", "°C", 0),
                foreign=await sensor(theirs, "power", "kW", QUARTER),
            )
    finally:
        await engine.dispose()


async def count_beliefs(database_url: str) -> int:
    """How many beliefs the database holds."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(select(func.count()).select_from(timed_beliefs))
                ).scalar_one()
            )
    finally:
        await engine.dispose()
