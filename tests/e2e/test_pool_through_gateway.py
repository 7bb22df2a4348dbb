"""A real gateway before one pool backend serving two tenants (company, acme)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestServer

from contract.config import Secret
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from tenant_service.app import create_app as create_backend
from tenant_service.config import Settings as BackendSettings
from tests.helpers.databases import Templates
from tests.helpers.net import free_port
from tests.helpers.stack import (
    ACME,
    ACME_TEMPLATE,
    COMPANY,
    COMPANY_TEMPLATE,
    PASSWORD,
    Client,
)
from tests.helpers.tenants import tenants_text, write_secret


async def test_gateway_before_a_pool_of_two_tenants(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
    templates: Templates,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """Both tenants log in and read their own data through one pool process; a
    token of one is refused on the other's host."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    urls = {}
    for tenant, template in (("company", COMPANY_TEMPLATE), ("acme", ACME_TEMPLATE)):
        write_secret(secrets_dir, tenant)
        urls[tenant] = f"sqlite+aiosqlite:///{tmp_path / tenant}.sqlite3"
        await templates.copy_sqlite(template, urls[tenant])
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    path = tmp_path / "tenants.yaml"
    path.write_text(
        tenants_text(
            [
                {"subdomain": tenant, "backends": [address], "database": url}
                for tenant, url in urls.items()
            ]
        )
    )
    pool = BackendSettings(
        name="",
        database_url="sqlite+aiosqlite:///unused/{tenant}.sqlite3",
        secret=Secret(""),
        tenants_file=path,
        address=address,
        secrets_dir=secrets_dir,
    )
    await aiohttp_server(create_backend(pool), port=port)
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
    tokens = {}
    for tenant, host in (("company", COMPANY), ("acme", ACME)):
        response = await gateway.post(
            "/api/requestAuthToken",
            json={"email": f"admin@{tenant}.test", "password": PASSWORD},
            headers=host,
        )
        assert response.status == 200, await response.text()
        tokens[tenant] = (await response.json())["auth_token"]
        response = await gateway.get(
            "/api/v3_0/accounts", headers={**host, "Authorization": tokens[tenant]}
        )
        assert response.status == 200, await response.text()
        names = [account["name"] for account in await response.json()]
        assert names == [f"{tenant} Inc."]
    response = await gateway.get(
        "/api/v3_0/accounts", headers={**ACME, "Authorization": tokens["company"]}
    )
    assert response.status == 401
    assert not (tmp_path / "unused").exists(), "each tenant's own database"
