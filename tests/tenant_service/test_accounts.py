"""The accounts API."""

from __future__ import annotations

from tests.tenant_service.conftest import FORBIDDEN, Client, World, identity


async def test_accounts_member_sees_own(client: Client, world: World) -> None:
    resp = await client.get("/api/v3_0/accounts", headers=identity(world.member))
    body = await resp.json()
    assert [a["name"] for a in body] == ["Acme"]
    assert set(body[0]) == {
        "id",
        "name",
        "primary_color",
        "secondary_color",
        "logo_url",
        "attributes",
        "account_roles",
        "consultancy_account_id",
        "plan_id",
    }
    assert body[0]["plan_id"] is None
    assert body[0]["account_roles"][0]["name"] == "Consultancy"
    assert body[0]["attributes"] == "{}"


async def test_accounts_consultant_and_admin(client: Client, world: World) -> None:
    resp = await client.get("/api/v3_0/accounts", headers=identity(world.consultant))
    assert [a["name"] for a in await resp.json()] == ["Acme", "Client"]
    resp = await client.get("/api/v3_0/accounts", headers=identity(world.reader))
    assert [a["name"] for a in await resp.json()] == ["Acme", "Other", "Client"]
    resp = await client.get(
        "/api/v3_0/accounts?page=1&per-page=2", headers=identity(world.admin)
    )
    body = await resp.json()
    assert body["num-records"] == 3
    assert [a["name"] for a in body["data"]] == ["Acme", "Other"]


async def test_get_account(client: Client, world: World) -> None:
    resp = await client.get(
        f"/api/v3_0/accounts/{world.acme}", headers=identity(world.member)
    )
    assert (await resp.json())["name"] == "Acme"
    resp = await client.get(
        f"/api/v3_0/accounts/{world.other}", headers=identity(world.member)
    )
    assert resp.status == 403
    assert await resp.json() == FORBIDDEN
    resp = await client.get(
        f"/api/v3_0/accounts/{world.client_account}",
        headers=identity(world.client_user),
    )
    client_account = await resp.json()
    assert client_account["consultancy_account_id"] == world.acme
    resp = await client.get("/api/v3_0/accounts/999", headers=identity(world.admin))
    # FlexMeasures 1.0.1's api/common AccountIdField: 404 (#12)
    assert resp.status == 404
    assert await resp.json() == {"message": "Account 999 not found", "status": 404}
    resp = await client.get("/api/v3_0/accounts/x", headers=identity(world.admin))
    assert resp.status == 422
