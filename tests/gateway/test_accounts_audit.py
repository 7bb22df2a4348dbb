"""Through the gateway (#12): account and user creation, audit logs, preflights.

One happy path per new route, and FlexMeasures' answer to a CORS preflight: 200,
no body, the route's methods in `Allow`, without a token and without any user's
identity reaching the backend.
"""

from __future__ import annotations

from typing import Any

import pytest

from tenant_service.passwords import hash_password
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.helpers.stack import COMPANY, PASSWORD, Stack, login, seed_asset_and_sensor


async def admin_token(stack: Stack, database_url: str) -> str:
    """A token of a new platform admin of company."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await user_store.create_user(
                conn,
                email="root@company.test",
                username="root",
                account_id=stack.account_id,
                password_hash=hash_password(PASSWORD),
                role_names=["admin"],
            )
    finally:
        await engine.dispose()
    return await login(stack, "root@company.test")


async def call(
    stack: Stack, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    response = await stack.gateway.request(
        method, path, json=body, headers={**COMPANY, "Authorization": token}
    )
    return response.status, await response.json()


async def test_accounts_users_and_audit_logs_through_the_gateway(
    stack: Stack, database_url: str
) -> None:
    token = await admin_token(stack, database_url)
    status, account = await call(
        stack, "POST", "/api/v3_0/accounts", token, {"name": "Client Co"}
    )
    assert status == 201, account
    path = f"/api/v3_0/accounts/{account['id']}"
    status, patched = await call(
        stack, "PATCH", path, token, {"primary_color": "#1a3443"}
    )
    assert (status, patched["primary_color"]) == (200, "#1a3443")
    status, user = await call(
        stack,
        "POST",
        "/api/v3_0/users",
        token,
        {"email": "new@client.test", "username": "new", "account_id": account["id"]},
    )
    assert status == 201, user
    status, log = await call(stack, "GET", path + "/auditlog", token)
    assert status == 200
    assert [e["event"] for e in log] == [
        f"Created account 'Client Co' ({account['id']})",
        "Account Updated, Field: primary_color (None -> #1a3443)",
        "User new created",
    ]
    status, log = await call(
        stack, "GET", f"/api/v3_0/users/{user['id']}/auditlog", token
    )
    assert (status, [e["event"] for e in log]) == (200, ["User new created"])
    # the new user has no usable password until they set one
    response = await stack.gateway.post(
        "/api/requestAuthToken",
        json={"email": "new@client.test", "password": user["email"]},
        headers=COMPANY,
    )
    assert response.status == 401
    asset_id, sensor_id = await seed_asset_and_sensor(stack)
    status, page = await call(
        stack, "GET", f"/api/v3_0/assets/{asset_id}/auditlog", token
    )
    assert status == 200
    assert [e["event"] for e in page["data"]] == [
        f"Created asset 'Battery 1': {asset_id}",
        f"Created sensor 'power': {sensor_id}",
    ]
    assert {e["active_user_name"] for e in page["data"]} == {"admin"}


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/v3_0/assets", "GET, HEAD, POST, OPTIONS"),
        ("/api/v3_0/assets/1", "GET, HEAD, PATCH, DELETE, OPTIONS"),
        ("/api/v3_0/accounts/1/auditlog", "GET, HEAD, OPTIONS"),
        ("/api/requestAuthToken", "POST, OPTIONS"),
        ("/api/", "GET, HEAD, OPTIONS"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {
            "Origin": "http://example.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    ],
    ids=["plain", "cors"],
)
async def test_preflight_as_flexmeasures(
    stack: Stack, path: str, allow: str, headers: dict[str, str]
) -> None:
    response = await stack.gateway.options(path, headers={**COMPANY, **headers})
    assert response.status == 200
    assert response.headers["Allow"] == allow
    assert await response.read() == b""
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["FlexMeasures-Version"] == "1.0.1"
    # FlexMeasures' CORS_ORIGINS is empty by default: no CORS headers
    assert not [h for h in response.headers if h.startswith("Access-Control-")]
    # not charged to any limit (there is no token to charge)
    assert "X-RateLimit-Limit" not in response.headers


async def test_preflight_of_unknown_path_is_404(stack: Stack) -> None:
    response = await stack.gateway.options("/api/v3_0/nothing", headers=COMPANY)
    assert response.status == 404
    response = await stack.gateway.options("/api/v9_9/assets", headers=COMPANY)
    assert response.status == 404
