"""The e2e stack: a real gateway before two real backends (company, acme), on Redis.

A pytest plugin (listed in tests/conftest.py): its fixtures serve the tests in
tests/e2e and the gateway and tenant_service tests that go through the stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

from contract.config import Secret
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from tenant_service.app import create_app as create_backend
from tenant_service.config import Settings as BackendSettings
from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.helpers.databases import Template, Templates
from tests.helpers.tenants import tenants_text, write_secret

PASSWORD: Final = "a long demo password"
COMPANY: Final = {"Host": "company.flexmeasures.io"}
ACME: Final = {"Host": "acme.localhost"}
Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True, slots=True)
class Stack:
    """The gateway client and the ids seeded in company's database."""

    gateway: Client
    admin_id: int
    member_id: int
    account_id: int
    backend_url: str


async def seed(url: str, tenant: str) -> tuple[int, int, int]:
    """Add an account with an account-admin and a plain member to a migrated DB."""
    password_hash = hash_password(PASSWORD)
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


COMPANY_TEMPLATE: Final = Template("stack-company", partial(seed, tenant="company"))
ACME_TEMPLATE: Final = Template("stack-acme", partial(seed, tenant="acme"))


@pytest.fixture(scope="session")
def stack_template() -> Template[tuple[int, int, int]]:
    """What company's database starts as in the stack (see database_template)."""
    return COMPANY_TEMPLATE


@pytest.fixture
def backend_options() -> dict[str, object]:
    """Extra settings of the e2e stack's company backend (a module may override it)."""
    return {}


@pytest.fixture
async def stack(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
    database_url: str,
    sqlite_database_url: str,
    templates: Templates,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    backend_options: dict[str, Any],
) -> Stack:
    """The gateway over company (on `database_url`) and acme (on SQLite), seeded."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    # database_url starts as a copy of COMPANY_TEMPLATE (see database_template).
    account, admin, member = templates.result(COMPANY_TEMPLATE, database_url)
    acme_url = sqlite_database_url.replace("tenant.sqlite3", "acme.sqlite3")
    await templates.copy_sqlite(ACME_TEMPLATE, acme_url)
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
    """A token for `email` (password PASSWORD) from the stack's gateway."""
    response = await stack.gateway.post(
        "/api/requestAuthToken",
        json={"email": email, "password": PASSWORD},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    token: str = (await response.json())["auth_token"]
    return token


async def seed_asset_and_sensor(stack: Stack) -> tuple[int, int]:
    """POST /assets and POST /sensors through the gateway; (asset id, sensor id)."""
    token = await login(stack, "admin@company.test")
    auth = {**COMPANY, "Authorization": token}
    response = await stack.gateway.get("/api/v3_0/assets/types", headers=auth)
    assert response.status == 200, await response.text()
    types = {t["name"]: t["id"] for t in await response.json()}
    response = await stack.gateway.post(
        "/api/v3_0/assets",
        json={
            "name": "Battery 1",
            "generic_asset_type_id": types["battery"],
            "account_id": stack.account_id,
            "latitude": 52.37,
            "longitude": 4.89,
        },
        headers=auth,
    )
    assert response.status == 201, await response.text()
    asset_id: int = (await response.json())["id"]
    response = await stack.gateway.post(
        "/api/v3_0/sensors",
        json={
            "name": "power",
            "unit": "MW",
            "event_resolution": "PT15M",
            "generic_asset_id": asset_id,
            "timezone": "Europe/Amsterdam",
        },
        headers=auth,
    )
    assert response.status == 201, await response.text()
    sensor_id: int = (await response.json())["id"]
    return asset_id, sensor_id


def flexmeasures_client(
    stack: Stack, session: ClientSession, email: str = "admin@company.test"
) -> Any:
    """The real flexmeasures-client on the stack's gateway, polling fast."""
    from flexmeasures_client import FlexMeasuresClient

    return FlexMeasuresClient(
        email=email,
        password=PASSWORD,
        host=f"company.localhost:{stack.gateway.port}",
        ssl=False,
        session=session,
        request_retry_interval=0.2,
        job_polling_interval=0.2,
        job_polling_timeout=60,
    )
