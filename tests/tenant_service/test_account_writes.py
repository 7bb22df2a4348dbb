"""POST and PATCH /accounts: fields, validation and FlexMeasures' permissions (#12)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tenant_service.conftest import FORBIDDEN, Client, World, identity


async def post(client: Client, user: int, body: Any) -> tuple[int, Any]:
    resp = await client.post("/api/v3_0/accounts", json=body, headers=identity(user))
    return resp.status, await resp.json()


async def patch(client: Client, user: int, account: int, body: Any) -> tuple[int, Any]:
    resp = await client.patch(
        f"/api/v3_0/accounts/{account}", json=body, headers=identity(user)
    )
    return resp.status, await resp.json()


async def log_of(client: Client, world: World, account: int) -> list[dict[str, Any]]:
    resp = await client.get(
        f"/api/v3_0/accounts/{account}/auditlog", headers=identity(world.admin)
    )
    assert resp.status == 200
    body: list[dict[str, Any]] = await resp.json()
    return body


async def test_admin_creates_account(client: Client, world: World) -> None:
    status, body = await post(client, world.admin, {"name": "New Co"})
    assert status == 201, body
    assert body == {
        "id": body["id"],
        "name": "New Co",
        "primary_color": None,
        "secondary_color": None,
        "logo_url": None,
        "attributes": "{}",
        "account_roles": [],
        "consultancy_account_id": None,  # admins get no default consultancy
        "plan_id": None,
        "status": 201,
    }
    log = await log_of(client, world, body["id"])
    assert [e["event"] for e in log] == [f"Created account 'New Co' ({body['id']})"]
    assert log[0]["active_user_id"] == world.admin
    assert log[0]["event_datetime"].endswith(" GMT")


async def test_consultant_creates_client_account(client: Client, world: World) -> None:
    # Acme has the Consultancy account role: its consultants create client accounts
    status, body = await post(client, world.consultant, {"name": "Client 2"})
    assert status == 201, body
    assert body["consultancy_account_id"] == world.acme


@pytest.mark.parametrize("user", ["member", "account_admin", "outsider", "reader"])
async def test_others_may_not_create_accounts(
    client: Client, world: World, user: str
) -> None:
    status, body = await post(client, getattr(world, user), {"name": "Nope"})
    assert status == 403, body
    assert body["status"] == "INVALID_SENDER"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"name": ["Missing data for required field."]}),
        ({"name": "  "}, {"name": ["Account name cannot be empty."]}),
        ({"name": "Acme"}, {"name": ["An account with name 'Acme' already exists."]}),
        ({"name": 5}, {"name": ["Not a valid string."]}),
        ({"name": "X", "colour": "red"}, {"colour": ["Unknown field."]}),
        (
            {"name": "X", "primary_color": "red"},
            {"primary_color": ["#red is not a valid hex color code."]},
        ),
        (
            {"name": "X", "logo_url": "logo.png"},
            {"logo_url": ["'logo.png' is not a valid URL."]},
        ),
        (
            {"name": "X", "consultancy_account_id": 999},
            {"consultancy_account_id": ["No account found with id 999."]},
        ),
        ({"name": "X", "plan_id": 3}, {"plan_id": ["No plan found with id 3."]}),
        (
            {"name": "X", "account_roles": [1, "Consultancy", True]},
            {
                "account_roles": {
                    "1": ["Not a valid integer."],
                    "2": ["Not a valid integer."],
                }
            },
        ),
        ({"name": "X", "account_roles": 1}, {"account_roles": ["Not a valid list."]}),
        (
            {"name": "X", "account_roles": [999]},
            {"_schema": ["Invalid account role ID(s): [999]."]},
        ),
    ],
)
async def test_create_account_invalid(
    client: Client, world: World, body: dict[str, Any], errors: dict[str, Any]
) -> None:
    status, answer = await post(client, world.admin, body)
    assert status == 422, answer
    assert answer == {
        "message": {"json": errors},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_admin_patches_every_field(client: Client, world: World) -> None:
    body = {
        "name": "Other Corp",
        "primary_color": "#1a3443",
        "secondary_color": "f1a122",
        "logo_url": "https://example.com/logo.png",
        "consultancy_account_id": world.acme,
        "attributes": {"contract": "gold"},
        "account_roles": [1],
        "plan_id": None,
    }
    status, answer = await patch(client, world.admin, world.other, body)
    assert status == 200, answer
    assert answer == {
        "id": world.other,
        "name": "Other Corp",
        "primary_color": "#1a3443",
        "secondary_color": "f1a122",
        "logo_url": "https://example.com/logo.png",
        "attributes": '{"contract": "gold"}',
        "account_roles": [{"id": 1, "name": "Consultancy"}],
        "consultancy_account_id": world.acme,
        "plan_id": None,
        "status": 200,
    }
    events = [e["event"] for e in await log_of(client, world, world.other)]
    # the seed's (CLI) events, then the update; user events name the account too
    assert events[:2] == [
        f"Created account 'Other' ({world.other}) via CLI",
        "User someone created",
    ]
    event = events[-1]
    assert event.startswith("Account Updated, Field: name (Other -> Other Corp), ")
    assert "primary_color (None -> #1a3443)" in event
    assert "account_roles ([] -> [1])" in event
    # the same again changes nothing, and logs nothing
    status, _ = await patch(client, world.admin, world.other, body)
    assert status == 200
    assert len(await log_of(client, world, world.other)) == len(events)


async def test_member_patches_own_account_but_not_its_roles(
    client: Client, world: World
) -> None:
    status, answer = await patch(
        client, world.member, world.acme, {"primary_color": "#abc"}
    )
    assert status == 200, answer
    assert answer["primary_color"] == "#abc"
    bodies: list[dict[str, Any]] = [{"account_roles": []}, {"plan_id": None}]
    for body in bodies:
        status, answer = await patch(client, world.member, world.acme, body)
        assert status == 403, answer
    # and not another account
    status, answer = await patch(client, world.member, world.other, {"name": "X"})
    assert (status, answer) == (403, FORBIDDEN)


async def test_consultant_patches_client_account(client: Client, world: World) -> None:
    status, answer = await patch(
        client, world.consultant, world.client_account, {"logo_url": None}
    )
    assert status == 200, answer
    # a consultant may only name their own account as consultancy
    status, answer = await patch(
        client, world.consultant, world.client_account, {"consultancy_account_id": 2}
    )
    assert status == 403, answer
    assert answer["message"] == (
        "You can only set consultancy_account_id to your own account."
    )


async def test_patch_unknown_and_duplicate(client: Client, world: World) -> None:
    status, answer = await patch(client, world.admin, 999, {"name": "X"})
    assert (status, answer) == (
        404,
        {"message": "Account 999 not found", "status": 404},
    )
    status, answer = await patch(client, world.admin, world.other, {"name": "Acme"})
    assert status == 422
    assert answer["message"] == {
        "json": {"name": ["An account with name 'Acme' already exists."]}
    }
    resp = await client.patch(
        f"/api/v3_0/accounts/{world.other}",
        data=b"{",
        headers={**identity(world.admin), "Content-Type": "application/json"},
    )
    assert resp.status == 400


async def test_accounts_page_counts_users_and_assets(
    client: Client, world: World
) -> None:
    resp = await client.get("/api/v3_0/accounts?page=1", headers=identity(world.admin))
    body = await resp.json()
    acme = next(a for a in body["data"] if a["id"] == world.acme)
    assert acme["user_count"] == 6
    assert acme["asset_count"] == 0
