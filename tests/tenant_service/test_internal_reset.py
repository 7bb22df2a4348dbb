"""POST /internal/users/lookup and /internal/users/<id>/password (reset by mail)."""

from __future__ import annotations

import time

import pytest

from tests.tenant_service.conftest import PASSWORD, Client, World, identity

NEW = "a new password here"


async def _post(
    client: Client, path: str, body: object, user: int | None = None
) -> tuple[int, object]:
    resp = await client.post(path, json=body, headers=identity(user))
    return resp.status, await resp.json()


async def _login(client: Client, password: str) -> int:
    status, _ = await _post(
        client,
        "/internal/credentials",
        {"email": "boss@acme.test", "password": password},
    )
    return status


async def test_lookup_by_email_any_case(client: Client, world: World) -> None:
    status, body = await _post(
        client, "/internal/users/lookup", {"email": "BOSS@acme.test"}
    )
    assert status == 200
    assert body == {
        "user_id": world.account_admin,
        "account_id": world.acme,
        "email": "boss@acme.test",
        "active": True,
        "status": 200,
    }
    status, body = await _post(client, "/internal/users/lookup", {"email": "x@y.z"})
    assert (status, body) == (404, {"status": "UNKNOWN_USER"})
    status, body = await _post(client, "/internal/users/lookup", {"email": None})
    assert status == 422


async def test_set_password_then_only_the_new_one_works(
    client: Client, world: World
) -> None:
    path = f"/internal/users/{world.account_admin}/password"
    user_path = f"/api/v3_0/users/{world.account_admin}"
    signed_in = int(time.time() * 1000) - 2000
    old = identity(world.account_admin, auth_time_ms=signed_in)
    assert (await client.get(user_path, headers=old)).status == 200
    status, body = await _post(client, path, {"password": NEW})
    assert (status, body) == (200, {"user_id": world.account_admin, "status": 200})
    assert await _login(client, PASSWORD) == 401
    assert await _login(client, NEW) == 200
    # Identities from before the reset are refused.
    assert (await client.get(user_path, headers=old)).status == 401
    resp = await client.get(
        f"/api/v3_0/users/{world.account_admin}/auditlog",
        headers=identity(world.admin),
    )
    events = [entry["event"] for entry in await resp.json()]
    assert "Password reset for user boss" in " ".join(events)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "Shorter than minimum length 8."),
        ("x" * 1025, "Longer than maximum length 1024."),
        (" " * 9, "The password must not be only spaces."),
    ],
)
async def test_set_password_rules(
    client: Client, world: World, password: str, message: str
) -> None:
    status, body = await _post(
        client, f"/internal/users/{world.member}/password", {"password": password}
    )
    assert status == 422
    assert isinstance(body, dict)
    assert body["message"] == {"json": {"password": [message]}}


async def test_set_password_unknown_user_and_user_identity(
    client: Client, world: World
) -> None:
    status, _ = await _post(
        client, "/internal/users/999999/password", {"password": NEW}
    )
    assert status == 404
    # A user's identity never reaches the internal routes, even for themselves.
    for path, body in (
        (f"/internal/users/{world.member}/password", {"password": NEW}),
        ("/internal/users/lookup", {"email": "boss@acme.test"}),
    ):
        status, _ = await _post(client, path, body, user=world.member)
        assert status == 403
    assert await _login(client, PASSWORD) == 200


async def test_user_by_id_for_the_service_only(client: Client, world: World) -> None:
    path = f"/internal/users/{world.account_admin}"
    resp = await client.get(path, headers=identity())
    assert resp.status == 200
    assert await resp.json() == {
        "user_id": world.account_admin,
        "account_id": world.acme,
        "email": "boss@acme.test",
        "active": True,
        "status": 200,
    }
    resp = await client.get("/internal/users/999999", headers=identity())
    assert (resp.status, await resp.json()) == (404, {"status": "UNKNOWN_USER"})
    resp = await client.get(path, headers=identity(world.member))
    assert resp.status == 403
