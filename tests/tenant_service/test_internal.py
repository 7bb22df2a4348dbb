"""POST /internal/credentials."""

from __future__ import annotations

import pytest

from tests.tenant_service.conftest import PASSWORD, Client, World, identity


async def _check(client: Client, body: object) -> tuple[int, object]:
    resp = await client.post("/internal/credentials", json=body, headers=identity())
    return resp.status, await resp.json()


async def test_credentials_ok(client: Client, world: World) -> None:
    status, body = await _check(
        client, {"email": "Boss@acme.test", "password": PASSWORD}
    )
    assert status == 200
    assert body == {
        "user_id": world.account_admin,
        "account_id": world.acme,
        "roles": ["account-admin"],
        "active": True,
        "status": 200,
    }
    resp = await client.get(
        f"/api/v3_0/users/{world.account_admin}", headers=identity(world.account_admin)
    )
    assert (await resp.json())["last_login_at"] is not None


async def test_credentials_failures(client: Client, world: World) -> None:
    status, body = await _check(client, {"email": "boss@acme.test", "password": "no"})
    assert (status, body) == (401, {"status": "WRONG_PASSWORD"})
    status, body = await _check(client, {"email": "who@acme.test", "password": "no"})
    assert (status, body) == (404, {"status": "UNKNOWN_USER"})


async def test_credentials_inactive(client: Client, world: World) -> None:
    status, body = await _check(
        client, {"email": "gone@acme.test", "password": PASSWORD}
    )
    assert status == 200
    assert isinstance(body, dict)
    assert body["active"] is False


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"email": "a@b.c"}, {"password": ["Missing data for required field."]}),
        (
            {},
            {
                "email": ["Missing data for required field."],
                "password": ["Missing data for required field."],
            },
        ),
        (
            {"email": 1, "password": None},
            {"email": ["Not a valid string."], "password": ["Field may not be null."]},
        ),
        ("text", {"_schema": ["Invalid input type."]}),
    ],
)
async def test_credentials_invalid(
    client: Client, body: object, errors: dict[str, list[str]]
) -> None:
    status, answer = await _check(client, body)
    assert status == 422
    assert answer == {
        "message": {"json": errors},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_credentials_malformed(client: Client) -> None:
    resp = await client.post(
        "/internal/credentials",
        data=b"{nope",
        headers={**identity(), "Content-Type": "application/json"},
    )
    assert resp.status == 400
