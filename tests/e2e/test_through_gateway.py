"""The whole path in one process: real gateway, real tenant backends, real Redis and DBs.

Includes the real `flexmeasures-client` package from PyPI talking to the gateway.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from redis.asyncio import Redis

from gateway.auth import TokenStore
from tests.helpers.stack import ACME, COMPANY, PASSWORD, Stack, login


async def test_users_and_accounts_through_the_gateway(stack: Stack) -> None:
    token = await login(stack, "admin@company.test")
    auth = {**COMPANY, "Authorization": token}
    response = await stack.gateway.get("/api/v3_0/users", headers=auth)
    assert response.status == 200
    users = await response.json()
    assert {u["email"] for u in users} == {"admin@company.test", "member@company.test"}
    response = await stack.gateway.get(
        f"/api/v3_0/users/{stack.member_id}", headers=auth
    )
    assert (await response.json())["account_id"] == stack.account_id
    response = await stack.gateway.get(
        f"/api/v3_0/accounts/{stack.account_id}", headers=auth
    )
    assert (await response.json())["name"] == "company Inc."
    response = await stack.gateway.get("/api/v3_0", headers=COMPANY)
    listing = await response.json()
    assert listing["version"] == "3.0"
    assert any(
        s["url"] == "http://company.flexmeasures.io/api/v3_0/users"
        for s in listing["services"]
    )
    response = await stack.gateway.get("/api/v3_0/health/ready", headers=COMPANY)
    assert await response.json() == {"database_sql": True, "status": 200}
    response = await stack.gateway.get("/api/ops/ping", headers=COMPANY)
    assert await response.json() == {"message": "ok", "status": 200}


async def test_login_failures_with_the_real_backend(stack: Stack) -> None:
    response = await stack.gateway.post(
        "/api/requestAuthToken",
        json={"email": "admin@company.test", "password": "wrong"},
        headers=COMPANY,
    )
    assert response.status == 401
    assert await response.json() == {
        "errors": ["User password does not match."],
        "status": 401,
    }
    response = await stack.gateway.post(
        "/api/requestAuthToken",
        json={"email": "nobody@company.test", "password": "x"},
        headers=COMPANY,
    )
    assert response.status == 404
    # A company user does not exist at acme.
    response = await stack.gateway.post(
        "/api/requestAuthToken",
        json={"email": "member@company.test", "password": PASSWORD},
        headers=ACME,
    )
    assert response.status == 404


async def test_token_does_not_cross_tenants(stack: Stack) -> None:
    token = await login(stack, "admin@company.test")
    response = await stack.gateway.get(
        "/api/v3_0/users", headers={**ACME, "Authorization": token}
    )
    assert response.status == 401


async def test_backend_refuses_requests_without_gateway_identity(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/api/v3_0/users", "/internal/credentials", "/api/ops/ping"):
            async with session.get(
                stack.backend_url + path, headers={"X-FlexHost-Identity": "forged"}
            ) as response:
                assert response.status == 401, path
                assert (await response.json())["status"] == "UNAUTHORIZED"


async def test_password_reset_revokes_tokens_at_once(stack: Stack) -> None:
    admin = await login(stack, "admin@company.test")
    member = await login(stack, "member@company.test")
    member_again = await login(stack, "member@company.test")
    response = await stack.gateway.patch(
        f"/api/v3_0/users/{stack.member_id}/password-reset",
        headers={**COMPANY, "Authorization": admin},
    )
    assert response.status == 200, await response.text()
    for token in (member, member_again):
        response = await stack.gateway.get(
            "/api/v3_0/users", headers={**COMPANY, "Authorization": token}
        )
        assert response.status == 401
    # The old password no longer works either.
    response = await stack.gateway.post(
        "/api/requestAuthToken",
        json={"email": "member@company.test", "password": PASSWORD},
        headers=COMPANY,
    )
    assert response.status == 401


async def test_deactivation_revokes_tokens_and_blocks_login(stack: Stack) -> None:
    admin = await login(stack, "admin@company.test")
    member = await login(stack, "member@company.test")
    response = await stack.gateway.patch(
        f"/api/v3_0/users/{stack.member_id}",
        json={"active": False},
        headers={**COMPANY, "Authorization": admin},
    )
    assert response.status == 200, await response.text()
    response = await stack.gateway.get(
        "/api/v3_0/users", headers={**COMPANY, "Authorization": member}
    )
    assert response.status == 401
    response = await stack.gateway.post(
        "/api/requestAuthToken",
        json={"email": "member@company.test", "password": PASSWORD},
        headers=COMPANY,
    )
    assert response.status == 401
    assert await response.json() == {"errors": ["Account is disabled."], "status": 401}


async def test_revocation_holds_even_if_redis_keeps_the_token(
    stack: Stack, redis: Redis, redis_prefix: str
) -> None:
    """The backend itself refuses tokens issued before a revocation."""
    admin = await login(stack, "admin@company.test")
    member = await login(stack, "member@company.test")
    saved = {
        key: await redis.dump(key)
        async for key in redis.scan_iter(match=f"{redis_prefix}:tok:*")
    }
    response = await stack.gateway.patch(
        f"/api/v3_0/users/{stack.member_id}/password-reset",
        headers={**COMPANY, "Authorization": admin},
    )
    assert response.status == 200
    for key, value in saved.items():  # as if Redis had missed the revocation
        assert value is not None
        await redis.restore(key, 60_000, value, replace=True)
    response = await stack.gateway.get(
        "/api/v3_0/users", headers={**COMPANY, "Authorization": member}
    )
    assert response.status == 401


async def test_flexmeasures_client_login_users_and_stale_token_relogin(
    stack: Stack, fm_session: aiohttp.ClientSession, redis: Redis, redis_prefix: str
) -> None:
    from flexmeasures_client import FlexMeasuresClient

    port = stack.gateway.port
    client: Any = FlexMeasuresClient(
        email="admin@company.test",
        password=PASSWORD,
        host=f"company.localhost:{port}",
        ssl=False,
        session=fm_session,
    )
    versions = await client.get_versions()
    assert "v3_0" in str(versions)
    user = await client.get_user()
    assert user["email"] == "admin@company.test"
    assert user["id"] == stack.admin_id
    assert client.server_version == "1.0.1"
    account = await client.get_account()
    assert account["id"] == stack.account_id
    first_token = client.access_token
    # The token goes stale (revoked at every gateway): the client logs in again.
    assert await TokenStore(redis, redis_prefix).revoke_user("company", stack.admin_id)
    user = await client.get_user()
    assert user["email"] == "admin@company.test"
    assert client.access_token != first_token
