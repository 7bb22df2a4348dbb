"""POST /users and the audit logs of users, accounts and assets (#12).

Every change through the API or the CLI is recorded in the same transaction as
the change: a refused or failed change leaves no record, and no event names a
password hash or token.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from tenant_service.cli import main
from tenant_service.store.db import create_engine
from tenant_service.store.tables import asset_audit_log, audit_log
from tests.tenant_service.conftest import (
    FORBIDDEN,
    Client,
    World,
    identity,
    make_asset,
    make_sensor,
)

NEW = {"email": "New@Acme.test", "username": "newbie"}


async def user_log(client: Client, world: World, user: int) -> list[dict[str, Any]]:
    resp = await client.get(
        f"/api/v3_0/users/{user}/auditlog", headers=identity(world.admin)
    )
    assert resp.status == 200
    body: list[dict[str, Any]] = await resp.json()
    return body


async def asset_log(client: Client, user: int, asset: int) -> dict[str, Any]:
    resp = await client.get(
        f"/api/v3_0/assets/{asset}/auditlog?per-page=100", headers=identity(user)
    )
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def all_events(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            users = (await conn.execute(select(audit_log.c.event))).scalars().all()
            assets = (
                (await conn.execute(select(asset_audit_log.c.event))).scalars().all()
            )
    finally:
        await engine.dispose()
    return [*users, *assets]


async def test_post_user(client: Client, world: World) -> None:
    resp = await client.post(
        "/api/v3_0/users",
        json={**NEW, "account_id": world.acme},
        headers=identity(world.account_admin),
    )
    body = await resp.json()
    assert resp.status == 201, body
    assert body == {
        "id": body["id"],
        "email": "new@acme.test",
        "username": "newbie",
        "account_id": world.acme,
        "active": True,
        "timezone": "Europe/Amsterdam",
        "flexmeasures_roles": [],
        "last_login_at": None,
        "last_seen_at": None,
    }
    (event,) = await user_log(client, world, body["id"])
    assert event["event"] == "User newbie created"
    assert event["active_user_id"] == world.account_admin
    assert event["active_user_name"] == "boss"
    assert "T" in event["event_datetime"]
    assert "+" not in event["event_datetime"]  # naive UTC, as FlexMeasures


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"username": "x"},
            422,
            {
                "json": {
                    "email": ["Missing data for required field."],
                    "account_id": ["Missing data for required field."],
                }
            },
        ),
        (
            {**NEW, "account_id": 1, "password": "x"},
            422,
            {"json": {"password": ["Unknown field."]}},
        ),
        (
            {"email": "nope", "username": "x", "account_id": 1},
            422,
            {"json": {"email": ["Not a valid email address."]}},
        ),
        (
            {"email": "member@acme.test", "username": "x", "account_id": 1},
            422,
            {"json": {"email": ["User with email member@acme.test already exists."]}},
        ),
        (
            {"email": "x@acme.test", "username": "member", "account_id": 1},
            422,
            {"json": {"username": ["User with username member already exists."]}},
        ),
        ({**NEW, "account_id": 999}, 404, "Account 999 not found"),
        (
            {**NEW, "account_id": 1, "flexmeasures_roles": ["boss"]},
            422,
            {"json": {"flexmeasures_roles": ["Unknown role: boss."]}},
        ),
    ],
)
async def test_post_user_invalid(
    client: Client,
    world: World,
    database_url: str,
    body: dict[str, Any],
    status: int,
    message: Any,
) -> None:
    before = await all_events(database_url)
    resp = await client.post(
        "/api/v3_0/users", json=body, headers=identity(world.admin)
    )
    answer = await resp.json()
    assert resp.status == status, answer
    assert answer["message"] == message
    assert await all_events(database_url) == before


async def test_user_changes_are_logged(
    client: Client, world: World, database_url: str
) -> None:
    path = f"/api/v3_0/users/{world.member}"
    admin = identity(world.admin)
    resp = await client.patch(
        path,
        json={"username": "mem", "timezone": "Europe/Berlin", "active": False},
        headers=admin,
    )
    assert resp.status == 200
    resp = await client.patch(
        path, json={"flexmeasures_roles": ["account-admin"]}, headers=admin
    )
    assert resp.status == 200
    resp = await client.patch(path + "/password-reset", headers=admin)
    assert resp.status == 200
    # refused: nothing recorded
    resp = await client.patch(path, json={"email": "boss@acme.test"}, headers=admin)
    assert resp.status == 400
    events = [e["event"] for e in await user_log(client, world, world.member)]
    assert events == [
        "User member created",
        "Updated username: member -> mem.Updated timezone: Europe/Amsterdam -> "
        "Europe/Berlin.Active status set to 'False'.",
        "Added role(s): [account-admin].",
        "Password reset for user mem",
    ]
    assert not any("argon2" in e for e in await all_events(database_url))


async def test_user_log_access_and_pages(client: Client, world: World) -> None:
    path = f"/api/v3_0/users/{world.member}/auditlog"
    for user, status in [
        (world.member, 200),  # themselves
        (world.account_admin, 200),
        (world.reader, 200),
        (world.consultant, 403),  # not a consultant of their own account
        (world.outsider, 403),
    ]:
        resp = await client.get(path, headers=identity(user))
        assert resp.status == status, user
    resp = await client.get(
        f"/api/v3_0/users/{world.client_user}/auditlog",
        headers=identity(world.consultant),
    )
    assert resp.status == 200
    resp = await client.get(
        path + "?page=1&per-page=1&filter=member", headers=identity(world.member)
    )
    assert await resp.json() == {
        "data": [
            {
                "event": "User member created",
                "event_datetime": (await resp.json())["data"][0]["event_datetime"],
                "active_user_name": None,
                "active_user_id": None,
            }
        ],
        "num-records": 1,
        "filtered-records": 1,
        "status": 200,
    }
    resp = await client.get(path + "?filter=nothing-like-it", headers=identity(1))
    assert await resp.json() == []
    resp = await client.get("/api/v3_0/users/999/auditlog", headers=identity(1))
    assert resp.status == 404


async def test_account_log_access(client: Client, world: World) -> None:
    path = f"/api/v3_0/accounts/{world.client_account}/auditlog"
    for user, status in [
        (world.consultant, 200),
        (world.reader, 200),
        (world.client_user, 403),  # account-admins only
        (world.member, 403),
    ]:
        resp = await client.get(path, headers=identity(user))
        assert resp.status == status, user
    resp = await client.get(path, headers=identity(world.client_user))
    assert await resp.json() == FORBIDDEN


async def test_asset_changes_are_logged(client: Client, world: World) -> None:
    asset = await make_asset(client, world.account_admin, name="Site")
    aid = asset["id"]
    resp = await client.patch(
        f"/api/v3_0/assets/{aid}",
        json={"name": "Site 2", "latitude": 52.0},
        headers=identity(world.account_admin),
    )
    assert resp.status == 200
    sensor = await make_sensor(client, world.account_admin, aid, "power")
    resp = await client.patch(
        f"/api/v3_0/sensors/{sensor}",
        json={"unit": "MW"},
        headers=identity(world.account_admin),
    )
    assert resp.status == 200, await resp.text()
    resp = await client.delete(
        f"/api/v3_0/sensors/{sensor}/data", headers=identity(world.account_admin)
    )
    assert resp.status == 204
    resp = await client.delete(
        f"/api/v3_0/sensors/{sensor}", headers=identity(world.account_admin)
    )
    assert resp.status == 204
    body = await asset_log(client, world.member, aid)
    assert [e["event"] for e in body["data"]] == [
        f"Created asset 'Site': {aid}",
        "Updated: name, From: Site, To: Site 2",
        "Updated: latitude, From: None, To: 52.0",
        f"Created sensor 'power': {sensor}",
        f"Updated sensor 'power': {sensor}. Updated fields: "
        "Field name: unit, Old value: kW, New value: MW",
        f"Deleted data for sensor 'power': {sensor}",
        f"Deleted sensor 'power': {sensor}",
    ]
    assert body["num-records"] == body["filtered-records"] == 7
    assert {e["active_user_name"] for e in body["data"]} == {"boss"}
    resp = await client.get(
        f"/api/v3_0/assets/{aid}/auditlog?sort-by=event_datetime&sort-dir=desc"
        "&per-page=2&filter=sensor",
        headers=identity(world.member),
    )
    page = await resp.json()
    assert [e["event"] for e in page["data"]] == [
        f"Deleted sensor 'power': {sensor}",
        f"Deleted data for sensor 'power': {sensor}",
    ]
    assert (page["num-records"], page["filtered-records"]) == (7, 4)
    resp = await client.get(
        f"/api/v3_0/assets/{aid}/auditlog", headers=identity(world.outsider)
    )
    assert resp.status == 403


def test_cli_changes_are_logged(sqlite_database_url: str) -> None:
    url = ["--database-url", sqlite_database_url]
    env = {"PW": "a long enough password"}
    assert main([*url, "migrate"], env) == 0
    assert main([*url, "add-account", "--name", "Acme"], env) == 0
    args = ["add-user", "--email", "ann@acme.test", "--account", "Acme"]
    assert (
        main([*url, *args, "--role", "account-admin", "--password-env", "PW"], env) == 0
    )
    assert (
        main(
            [*url, "set-password", "--email", "ann@acme.test", "--password-env", "PW"],
            env,
        )
        == 0
    )
    events = asyncio.run(all_events(sqlite_database_url))
    assert events == [
        "Created account 'Acme' (1) via CLI",
        "User ann created",
        "Added role(s): [account-admin].",
        "Password changed for user ann",
    ]
