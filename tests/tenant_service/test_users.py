"""The users API: listing, reading, updating, password reset and ACLs."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.tenant_service.conftest import (
    FORBIDDEN,
    UNAUTHORIZED,
    Client,
    World,
    identity,
    now_ms,
)

USER_KEYS = {
    "id",
    "email",
    "username",
    "account_id",
    "active",
    "timezone",
    "flexmeasures_roles",
    "last_login_at",
    "last_seen_at",
    "account",
}


async def test_list_own_account(client: Client, world: World) -> None:
    resp = await client.get("/api/v3_0/users", headers=identity(world.member))
    assert resp.status == 200
    assert resp.headers["API-Version"] == "v3_0"
    body = await resp.json()
    assert isinstance(body, list)
    assert all(set(u) == USER_KEYS for u in body)
    emails = {u["email"] for u in body}
    assert "member@acme.test" in emails
    assert "gone@acme.test" not in emails
    assert "someone@other.test" not in emails
    member = next(u for u in body if u["id"] == world.member)
    # The whole AccountSchema dump, as FlexMeasures embeds it (#12)
    assert member["account"] == {
        "id": world.acme,
        "name": "Acme",
        "primary_color": None,
        "secondary_color": None,
        "logo_url": None,
        "attributes": "{}",
        "account_roles": [{"id": 1, "name": "Consultancy"}],
        "consultancy_account_id": None,
        "plan_id": None,
    }
    assert member["timezone"] == "Europe/Amsterdam"
    admin = next(u for u in body if u["id"] == world.admin)
    # FlexMeasures lists role names; GET /users/<id> gives their ids (#12)
    assert admin["flexmeasures_roles"] == ["admin"]
    resp = await client.get(
        f"/api/v3_0/users/{world.admin}", headers=identity(world.member)
    )
    one = await resp.json()
    assert set(one) == USER_KEYS - {"account"} | {"status"}
    assert len(one["flexmeasures_roles"]) == 1
    assert isinstance(one["flexmeasures_roles"][0], int)


async def test_user_times_are_naive_utc(client: Client, world: World) -> None:
    """As FlexMeasures writes them: ISO 8601 without an offset (#12)."""
    await client.get("/api/v3_0/users", headers=identity(world.member))
    for _ in range(50):
        resp = await client.get(
            f"/api/v3_0/users/{world.member}", headers=identity(world.member)
        )
        seen = (await resp.json())["last_seen_at"]
        if seen is not None:
            break
        await asyncio.sleep(0.02)
    assert seen is not None
    assert "+" not in seen
    assert dt.datetime.fromisoformat(seen).tzinfo is None


@pytest.mark.parametrize("flag", ["true", "True", "1", "yes"])
async def test_list_include_inactive(client: Client, world: World, flag: str) -> None:
    resp = await client.get(
        f"/api/v3_0/users?include_inactive={flag}", headers=identity(world.member)
    )
    assert "gone@acme.test" in {u["email"] for u in await resp.json()}


async def test_list_bad_query(client: Client, world: World) -> None:
    resp = await client.get(
        "/api/v3_0/users?include_inactive=maybe&page=0&account_id=x",
        headers=identity(world.member),
    )
    assert resp.status == 422
    assert await resp.json() == {
        "message": {
            "query": {
                "include_inactive": ["Not a valid boolean."],
                "account_id": ["Not a valid integer."],
            }
        },
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_list_other_account(client: Client, world: World) -> None:
    path = f"/api/v3_0/users?account_id={world.other}"
    resp = await client.get(path, headers=identity(world.member))
    assert resp.status == 403
    assert await resp.json() == FORBIDDEN
    for who in (world.admin, world.reader):
        resp = await client.get(path, headers=identity(who))
        assert resp.status == 200
        assert [u["email"] for u in await resp.json()] == ["someone@other.test"]
    resp = await client.get(
        f"/api/v3_0/users?account={world.client_account}",
        headers=identity(world.consultant),
    )
    assert resp.status == 200
    resp = await client.get(
        "/api/v3_0/users?account=999", headers=identity(world.admin)
    )
    assert resp.status == 404
    assert await resp.json() == {"message": "Account 999 not found", "status": 404}


async def test_list_paginated(client: Client, world: World) -> None:
    resp = await client.get(
        "/api/v3_0/users?page=2&per-page=2", headers=identity(world.member)
    )
    body = await resp.json()
    assert body["status"] == 200
    assert body["num-records"] == body["filtered-records"] == 5
    assert len(body["data"]) == 2
    resp = await client.get(
        "/api/v3_0/users?page=1&per_page=4", headers=identity(world.member)
    )
    assert len((await resp.json())["data"]) == 4
    resp = await client.get("/api/v3_0/users?page=9", headers=identity(world.member))
    assert (await resp.json())["data"] == []


async def test_list_filter_by_name_or_email(client: Client, world: World) -> None:
    async def emails(query: str) -> tuple[list[str], int, int]:
        resp = await client.get(
            f"/api/v3_0/users?page=1&{query}", headers=identity(world.member)
        )
        assert resp.status == 200
        body = await resp.json()
        found = sorted(u["email"] for u in body["data"])
        return found, body["num-records"], body["filtered-records"]

    assert await emails("filter=BOSS") == (["boss@acme.test"], 5, 1)
    assert await emails("filter=acme.test%20mem") == (["member@acme.test"], 5, 1)
    assert await emails("filter=gone") == ([], 5, 0)  # inactive: not listed
    assert await emails("filter=gone&include_inactive=true") == (
        ["gone@acme.test"],
        6,
        1,
    )
    assert await emails("filter=%25") == ([], 5, 0)  # a wildcard is a character
    resp = await client.get(
        "/api/v3_0/users?filter=boss", headers=identity(world.member)
    )
    assert [u["email"] for u in await resp.json()] == ["boss@acme.test"]


async def test_get_user(client: Client, world: World) -> None:
    resp = await client.get(
        f"/api/v3_0/users/{world.admin}", headers=identity(world.member)
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["email"] == "admin@acme.test"
    assert body["status"] == 200
    resp = await client.get(
        f"/api/v3_0/users/{world.outsider}", headers=identity(world.member)
    )
    assert resp.status == 403
    resp = await client.get(
        f"/api/v3_0/users/{world.outsider}", headers=identity(world.reader)
    )
    assert resp.status == 200
    resp = await client.get("/api/v3_0/users/424242", headers=identity(world.member))
    assert resp.status == 404
    assert await resp.json() == {"message": "User 424242 not found", "status": 404}
    resp = await client.get("/api/v3_0/users/abc", headers=identity(world.member))
    assert resp.status == 422
    assert await resp.json() == {
        "message": {"path": {"id": ["Not a valid integer."]}},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_patch_self(client: Client, world: World) -> None:
    resp = await client.patch(
        f"/api/v3_0/users/{world.member}",
        json={"username": "Mem", "timezone": "Asia/Tokyo", "email": "M@acme.test"},
        headers=identity(world.member),
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["username"], body["timezone"], body["email"]) == (
        "Mem",
        "Asia/Tokyo",
        "m@acme.test",
    )
    assert "X-FlexHost-Revoke-User" not in resp.headers


@pytest.mark.parametrize("field", [{"active": False}, {"flexmeasures_roles": []}])
async def test_patch_self_sensitive(
    client: Client, world: World, field: dict[str, object]
) -> None:
    resp = await client.patch(
        f"/api/v3_0/users/{world.account_admin}",
        json=field,
        headers=identity(world.account_admin),
    )
    assert resp.status == 403
    assert await resp.json() == FORBIDDEN


async def test_patch_acl(client: Client, world: World) -> None:
    path = f"/api/v3_0/users/{world.admin}"
    resp = await client.patch(
        path, json={"username": "x"}, headers=identity(world.member)
    )
    assert resp.status == 403
    resp = await client.patch(
        path, json={"username": "x"}, headers=identity(world.outsider)
    )
    assert resp.status == 403
    resp = await client.patch(
        path, json={"username": "x"}, headers=identity(world.reader)
    )
    assert resp.status == 403
    # An account-admin does not hold the admin's role: not even the name (#10).
    resp = await client.patch(
        path, json={"username": "x"}, headers=identity(world.account_admin)
    )
    assert resp.status == 403
    resp = await client.patch(
        f"/api/v3_0/users/{world.member}",
        json={"username": "x"},
        headers=identity(world.account_admin),
    )
    assert resp.status == 200


async def test_patch_roles(client: Client, world: World) -> None:
    path = f"/api/v3_0/users/{world.member}"
    resp = await client.patch(
        path,
        json={"flexmeasures_roles": ["account-admin"]},
        headers=identity(world.account_admin),
    )
    assert resp.status == 200, await resp.text()
    roles = (await resp.json())["flexmeasures_roles"]
    assert len(roles) == 1
    resp = await client.patch(
        path,
        json={"flexmeasures_roles": ["admin"]},
        headers=identity(world.account_admin),
    )
    assert resp.status == 403
    resp = await client.patch(
        path, json={"flexmeasures_roles": ["admin"]}, headers=identity(world.admin)
    )
    assert resp.status == 200
    resp = await client.patch(
        path, json={"flexmeasures_roles": roles}, headers=identity(world.account_admin)
    )
    assert resp.status == 403, "account-admins may not demote admins"
    resp = await client.patch(
        path, json={"flexmeasures_roles": ["nope"]}, headers=identity(world.admin)
    )
    assert resp.status == 422


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"id": 3}, {"id": ["Unknown field."]}),
        ({"password": "x"}, {"password": ["Unknown field."]}),
        (
            {"timezone": "Mars/Olympus"},
            {"timezone": ["Timezone Mars/Olympus doesn't exist."]},
        ),
        ({"timezone": 5}, {"timezone": ["Not a valid string."]}),
        ({"active": "sure"}, {"active": ["Not a valid boolean."]}),
        ({"email": "no-at-sign"}, {"email": ["Not a valid email address."]}),
        ({"email": None}, {"email": ["Field may not be null."]}),
        ({"username": ""}, {"username": ["Length must be between 1 and 255."]}),
        (
            {"flexmeasures_roles": "admin"},
            {"flexmeasures_roles": ["Not a valid list."]},
        ),
        (
            {"flexmeasures_roles": [1.5]},
            {"flexmeasures_roles": ["Invalid input type."]},
        ),
        ([1, 2], {"_schema": ["Invalid input type."]}),
    ],
)
async def test_patch_validation(
    client: Client, world: World, body: object, errors: dict[str, list[str]]
) -> None:
    resp = await client.patch(
        f"/api/v3_0/users/{world.member}", json=body, headers=identity(world.admin)
    )
    assert resp.status == 422
    assert await resp.json() == {
        "message": {"json": errors},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_patch_malformed_json(client: Client, world: World) -> None:
    resp = await client.patch(
        f"/api/v3_0/users/{world.member}",
        data=b'{"username": ',
        headers={**identity(world.admin), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["status"] == 400


async def test_patch_duplicate_email(client: Client, world: World) -> None:
    resp = await client.patch(
        f"/api/v3_0/users/{world.member}",
        json={"email": "ADMIN@acme.test", "username": "changed"},
        headers=identity(world.admin),
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["message"] == "Duplicate user already exists"
    assert body["status"] == 400
    assert "detail" in body
    resp = await client.get(
        f"/api/v3_0/users/{world.member}", headers=identity(world.member)
    )
    assert (await resp.json())["username"] == "member", "nothing half-stored"


async def test_deactivate_revokes(client: Client, world: World) -> None:
    old = identity(world.member, auth_time_ms=now_ms() - 1000)
    resp = await client.patch(
        f"/api/v3_0/users/{world.member}",
        json={"active": False},
        headers=identity(world.account_admin),
    )
    assert resp.status == 200
    assert resp.headers["X-FlexHost-Revoke-User"] == str(world.member)
    assert (await resp.json())["active"] is False
    resp = await client.get("/api/v3_0/users", headers=old)
    assert resp.status == 401
    assert await resp.json() == UNAUTHORIZED


async def test_password_reset_revokes(client: Client, world: World) -> None:
    old = identity(world.member, auth_time_ms=now_ms() - 1000)
    resp = await client.patch(
        f"/api/v3_0/users/{world.member}/password-reset", headers=old
    )
    assert resp.status == 200
    assert await resp.json() == {"status": 200}
    assert resp.headers["X-FlexHost-Revoke-User"] == str(world.member)
    resp = await client.get("/api/v3_0/users", headers=old)
    assert resp.status == 401
    fresh = identity(world.member, auth_time_ms=now_ms() + 5)
    resp = await client.get("/api/v3_0/users", headers=fresh)
    assert resp.status == 200
    resp = await client.post(
        "/internal/credentials",
        json={"email": "member@acme.test", "password": "correct horse battery"},
        headers=identity(),
    )
    assert resp.status == 401


async def test_password_reset_acl(client: Client, world: World) -> None:
    resp = await client.patch(
        f"/api/v3_0/users/{world.admin}/password-reset", headers=identity(world.member)
    )
    assert resp.status == 403
    assert "X-FlexHost-Revoke-User" not in resp.headers
    resp = await client.patch(
        "/api/v3_0/users/777/password-reset", headers=identity(world.admin)
    )
    assert resp.status == 404
