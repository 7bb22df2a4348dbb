"""The whole path in one process: real gateway, real tenant backends, real Redis and DBs.

Includes the real `flexmeasures-client` package from PyPI talking to the gateway.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from contract.config import Secret
from gateway.app import create_app as create_gateway
from gateway.auth import TokenStore
from gateway.config import Settings as GatewaySettings
from tenant_service.app import create_app as create_backend
from tenant_service.config import Settings as BackendSettings
from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine, migrate
from tests.gateway.conftest import tenants_text, write_secret

PASSWORD = "a long demo password"
Client = TestClient[web.Request, web.Application]
COMPANY = {"Host": "company.flexmeasures.io"}
ACME = {"Host": "acme.localhost"}


@dataclass(frozen=True, slots=True)
class Stack:
    """The gateway client and the ids seeded in company's database."""

    gateway: Client
    admin_id: int
    member_id: int
    account_id: int
    backend_url: str


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


async def seed(url: str, tenant: str, password_hash: str) -> tuple[int, int, int]:
    """Migrate and add an account with an account-admin and a plain member."""
    await migrate(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            account = await account_store.create_account(conn, name=f"{tenant} Inc.")
            admin = await user_store.create_user(
                conn,
                email=f"admin@{tenant}.test",
                username="admin",
                account_id=account,
                password_hash=password_hash,
                role_names=["account-admin"],
            )
            member = await user_store.create_user(
                conn,
                email=f"member@{tenant}.test",
                username="member",
                account_id=account,
                password_hash=password_hash,
                role_names=[],
            )
    finally:
        await engine.dispose()
    return account, admin, member


@pytest.fixture
async def stack(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
    database_url: str,
    sqlite_database_url: str,
    redis_url: str,
    redis_prefix: str,
    password_hash: str,
    tmp_path: Path,
    backend_options: dict[str, Any],
) -> Stack:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    account, admin, member = await seed(database_url, "company", password_hash)
    acme_url = sqlite_database_url.replace("tenant.sqlite3", "acme.sqlite3")
    await seed(acme_url, "acme", password_hash)
    urls = {}
    for tenant, url in (("company", database_url), ("acme", acme_url)):
        secret = write_secret(secrets_dir, tenant)
        options = backend_options if tenant == "company" else {}
        server = await aiohttp_server(
            create_backend(
                BackendSettings(
                    name=tenant, database_url=url, secret=Secret(secret), **options
                )
            )
        )
        urls[tenant] = str(server.make_url("")).rstrip("/")
    path = tmp_path / "tenants.yaml"
    path.write_text(
        tenants_text(
            [
                {"subdomain": "company", "backends": [urls["company"]]},
                {"subdomain": "acme", "backends": [urls["acme"]]},
            ]
        )
    )
    gateway = await aiohttp_client(
        create_gateway(
            GatewaySettings(
                tenants_path=path,
                redis_url=redis_url,
                key_prefix=redis_prefix,
                secrets_dir=secrets_dir,
            )
        )
    )
    return Stack(gateway, admin, member, account, urls["company"])


async def login(stack: Stack, email: str, headers: dict[str, str] = COMPANY) -> str:
    response = await stack.gateway.post(
        "/api/requestAuthToken",
        json={"email": email, "password": PASSWORD},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    token: str = (await response.json())["auth_token"]
    return token


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


class LoopbackResolver(AbstractResolver):
    """Resolves every tenant host name to 127.0.0.1 (*.localhost does not resolve here)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
async def fm_session() -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=LoopbackResolver())
    )
    yield session
    await session.close()


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
