"""The pages' test sites: company and acme on real SQLite backends behind a gateway.

A pytest plugin (listed in tests/conftest.py): its fixtures (`make_site`, `site`)
serve the page tests of the gateway and the password-reset tests.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from contract.config import Secret
from gateway.app import create_app
from gateway.config import Settings
from gateway.web.views import HOME
from tenant_service.app import create_app as create_backend
from tenant_service.config import Settings as BackendSettings
from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.gateway.conftest import tenants_text, write_secret
from tests.helpers.databases import Template, Templates

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]
PASSWORD = "a long page password"
COMPANY = "company.localhost"
ACME = "acme.localhost"
EVIL_NAME = "<script>alert('x')</script>Bob & <b>Co</b>"
EVIL_ACCOUNT = "Company <img src=x onerror=alert(1)> Inc."
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
FRESH_RE = re.compile(r'id="fresh-token" value="([^"]+)"')
LOGIN_FAILED = "Invalid email or password."


@dataclass(frozen=True, slots=True)
class Site:
    """The gateway client and the ids seeded in company's database."""

    client: Client
    admin_id: int
    member_id: int
    account_id: int


@pytest.fixture(scope="session")
def pages_password_hash() -> str:
    return hash_password(PASSWORD)


async def seed(url: str, tenant: str, password_hash: str) -> tuple[int, int, int]:
    """An account with an admin (an HTML name), a member and an inactive user."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            account = await account_store.create_account(
                conn, name=EVIL_ACCOUNT if tenant == "company" else "Acme"
            )
            ids = []
            for name, roles in (("admin", ["account-admin"]), ("member", [])):
                ids.append(
                    await user_store.create_user(
                        conn,
                        email=f"{name}@{tenant}.test",
                        username=EVIL_NAME if name == "admin" else name,
                        account_id=account,
                        password_hash=password_hash,
                        role_names=roles,
                    )
                )
            gone = await user_store.create_user(
                conn,
                email=f"gone@{tenant}.test",
                username="gone",
                account_id=account,
                password_hash=password_hash,
            )
            await user_store.update_user(conn, gone, {"active": False})
    finally:
        await engine.dispose()
    return account, ids[0], ids[1]


SiteFactory = Callable[..., Awaitable[Site]]
Ids = tuple[int, int, int]


@pytest.fixture(scope="module")
def site_templates(pages_password_hash: str) -> dict[str, Template[Ids]]:
    """Each tenant's database: migrated and seeded once per process, then copied."""
    return {
        tenant: Template(
            f"pages-{tenant}",
            partial(seed, tenant=tenant, password_hash=pages_password_hash),
        )
        for tenant in ("company", "acme")
    }


@pytest.fixture
def make_site(
    aiohttp_client: Callable[..., Awaitable[Client]],
    aiohttp_server: Server,
    secrets_dir: Path,
    tmp_path: Path,
    templates: Templates,
    site_templates: dict[str, Template[Ids]],
    redis_url: str,
    redis_prefix: str,
) -> SiteFactory:
    """Company and acme on real backends (SQLite); gateway settings as given."""
    urls: dict[str, str] = {}
    seeded: dict[str, Ids] = {}

    async def factory(**overrides: Any) -> Site:
        if not urls:
            for tenant in ("company", "acme"):
                database = f"sqlite+aiosqlite:///{tmp_path / tenant}.sqlite3"
                seeded[tenant] = await templates.copy_sqlite(
                    site_templates[tenant], database
                )
                server = await aiohttp_server(
                    create_backend(
                        BackendSettings(
                            name=tenant,
                            database_url=database,
                            secret=Secret(write_secret(secrets_dir, tenant)),
                        )
                    )
                )
                urls[tenant] = str(server.make_url("")).rstrip("/")
        path = tmp_path / "tenants.yaml"
        path.write_text(
            tenants_text(
                [
                    {
                        "subdomain": "company",
                        "backends": [urls["company"]],
                        "token_ttl": 3600,
                        "api_key_max_ttl": 7 * 86400,
                    },
                    {"subdomain": "acme", "backends": [urls["acme"]]},
                ]
            )
        )
        settings = Settings(
            tenants_path=path,
            redis_url=overrides.pop("redis_url", redis_url),
            key_prefix=redis_prefix,
            secrets_dir=secrets_dir,
            **overrides,
        )
        client = await aiohttp_client(create_app(settings))
        account, admin, member = seeded["company"]
        return Site(client, admin, member, account)

    return factory


@pytest.fixture
async def site(make_site: SiteFactory) -> Site:
    return await make_site()


def page_headers(host: str = COMPANY, origin: str | None = None) -> dict[str, str]:
    return {"Host": host, "Origin": origin or f"http://{host}"}


async def post_login(
    client: Client,
    email: str,
    password: str = PASSWORD,
    *,
    host: str = COMPANY,
    next_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> ClientResponse:
    data = {"email": email, "password": password}
    if next_path is not None:
        data["next"] = next_path
    return await client.post(
        "/login",
        data=data,
        headers=headers or page_headers(host),
        allow_redirects=False,
    )


async def logged_in(client: Client, email: str = "admin@company.test") -> str:
    """Log in; the profile page's CSRF token."""
    response = await post_login(client, email)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == HOME
    return await csrf_of(client)


async def csrf_of(client: Client, host: str = COMPANY) -> str:
    response = await client.get(HOME, headers={"Host": host}, allow_redirects=False)
    assert response.status == 200, await response.text()
    found = CSRF_RE.search(await response.text())
    assert found is not None
    return found.group(1)


async def post_form(
    client: Client,
    path: str,
    data: dict[str, str],
    *,
    host: str = COMPANY,
    origin: str | None = None,
) -> ClientResponse:
    return await client.post(
        path, data=data, headers=page_headers(host, origin), allow_redirects=False
    )


async def api_status(client: Client, token: str, host: str = COMPANY) -> int:
    response = await client.get(
        "/api/v3_0/users", headers={"Host": host, "Authorization": token}
    )
    return response.status


async def fresh_token(client: Client, csrf: str) -> str:
    response = await post_form(
        client, "/logged-in-user/api-tokens", {"csrf_token": csrf}
    )
    assert response.status == 201, await response.text()
    found = FRESH_RE.search(await response.text())
    assert found is not None
    return found.group(1)


async def token_keys(redis: Redis, prefix: str) -> set[bytes]:
    return {key async for key in redis.scan_iter(match=f"{prefix}:tok:*")}


def session_cookie(response: ClientResponse) -> str:
    (header,) = [
        value
        for value in response.headers.getall("Set-Cookie")
        if value.startswith("flexhost_session=")
    ]
    return header


# --- login ---------------------------------------------------------------------
