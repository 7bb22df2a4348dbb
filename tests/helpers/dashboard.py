"""The dashboard's test site: the gateway over company's real backend, seeded.

A pytest plugin (listed in tests/conftest.py): its fixtures (`make_dash`, `dash`)
serve the dashboard, asset-page and jobs-page tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from rq.job import Job, JobStatus

from contract.config import Secret
from gateway import keys
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from gateway.web.sessions import COOKIE
from tenant_service.app import create_app as create_backend
from tenant_service.config import Settings as BackendSettings
from tenant_service.scheduling import jobs
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.gateway.conftest import tenants_text, write_secret
from tests.helpers.databases import Template, Templates
from tests.helpers.net import free_port

Client = TestClient[web.Request, web.Application]
COMPANY = {"Host": "company.localhost"}
ACME = {"Host": "acme.localhost"}
SITE = "Site <b>A</b>"
START = "2026-01-15T00:00:00+01:00"
VALUES = [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]


@dataclass(frozen=True, slots=True)
class User:
    """A user of the company backend."""

    id: int
    account_id: int
    roles: tuple[str, ...]
    email: str


@dataclass(frozen=True, slots=True)
class Dash:
    """The gateway and the users seeded in company's database."""

    gateway: Client
    admin: User
    outsider: User  # of another account of the same tenant


async def seed_users(url: str) -> tuple[User, User]:
    """Company's account-admin and one of another account, in a migrated DB."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            company = await account_store.create_account(conn, name="Company Inc.")
            other = await account_store.create_account(conn, name="Other Co.")
            admin = await user_store.create_user(
                conn,
                email="admin@company.test",
                username="admin",
                account_id=company,
                password_hash=None,
                role_names=["account-admin"],
            )
            outsider = await user_store.create_user(
                conn,
                email="someone@other.test",
                username="someone",
                account_id=other,
                password_hash=None,
                role_names=["account-admin"],
            )
    finally:
        await engine.dispose()
    return (
        User(admin, company, ("account-admin",), "admin@company.test"),
        User(outsider, other, ("account-admin",), "someone@other.test"),
    )


DashFactory = Callable[..., Awaitable[Dash]]
USERS: Final = Template("dashboard-users", seed_users)


@pytest.fixture
async def make_dash(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
    sqlite_database_url: str,
    templates: Templates,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> DashFactory:
    """The gateway over company's real backend; `rate_limits` for company."""

    async def factory(
        rate_limits: dict[str, str] | None = None,
        *,
        redis_timeout: float = 1.0,
        **backend: Any,
    ) -> Dash:
        secrets_dir = tmp_path / "secrets"
        secrets_dir.mkdir()
        admin, outsider = await templates.copy_sqlite(USERS, sqlite_database_url)
        secret = write_secret(secrets_dir, "company")
        write_secret(secrets_dir, "acme")
        server = await aiohttp_server(
            create_backend(
                BackendSettings(
                    name="company",
                    database_url=sqlite_database_url,
                    secret=Secret(secret),
                    **backend,
                )
            )
        )
        company: dict[str, object] = {
            "subdomain": "company",
            "backends": [str(server.make_url("")).rstrip("/")],
        }
        if rate_limits is not None:
            company["rate_limits"] = rate_limits
        path = tmp_path / "tenants.yaml"
        path.write_text(
            tenants_text(
                [
                    company,
                    # A backend nobody listens on: the dashboard's fault page.
                    {
                        "subdomain": "acme",
                        "backends": [f"http://127.0.0.1:{free_port()}"],
                    },
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
                    redis_timeout=redis_timeout,
                )
            )
        )
        return Dash(gateway, admin, outsider)

    return factory


@pytest.fixture
async def dash(make_dash: DashFactory) -> Dash:
    return await make_dash()


async def session(dash: Dash, user: User, tenant: str = "company") -> dict[str, str]:
    """Headers with a page session cookie of `user` (as a login would start it)."""
    session_id, _ = await dash.gateway.app[keys.TOKENS].issue(
        tenant=tenant,
        user_id=user.id,
        account_id=user.account_id,
        roles=user.roles,
        ttl=600,
        kind="session",
        extra={"email": user.email, "csrf": "csrf-secret"},
    )
    host = COMPANY if tenant == "company" else ACME
    return {**host, "Cookie": f"{COOKIE}={session_id}"}


async def api(dash: Dash, user: User) -> dict[str, str]:
    """Headers with an API token of `user`."""
    token, _ = await dash.gateway.app[keys.TOKENS].issue(
        tenant="company",
        user_id=user.id,
        account_id=user.account_id,
        roles=user.roles,
        ttl=600,
    )
    return {**COMPANY, "Authorization": token}


async def post(dash: Dash, auth: dict[str, str], path: str, body: object) -> Any:
    response = await dash.gateway.post(path, json=body, headers=auth)
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def asset_type(dash: Dash, auth: dict[str, str]) -> int:
    response = await dash.gateway.get("/api/v3_0/assets/types", headers=auth)
    types = {t["name"]: t["id"] for t in await response.json()}
    type_id: int = types["battery"]
    return type_id


@dataclass(frozen=True, slots=True)
class Seeded:
    site: int
    battery: int
    power: int
    price: int


async def seed(dash: Dash) -> Seeded:
    """Site (HTML in its name) > Battery, with a power and a price sensor; data."""
    auth = await api(dash, dash.admin)
    kind = await asset_type(dash, auth)
    site = await post(
        dash, auth, "/api/v3_0/assets", {"name": SITE, "generic_asset_type_id": kind}
    )
    battery = await post(
        dash,
        auth,
        "/api/v3_0/assets",
        {
            "name": "Battery",
            "generic_asset_type_id": kind,
            "parent_asset_id": site["id"],
        },
    )
    await post(
        dash,
        auth,
        "/api/v3_0/assets",
        {"name": "Annex", "generic_asset_type_id": kind},
    )
    power = await post(
        dash,
        auth,
        "/api/v3_0/sensors",
        {
            "name": "power <script>",
            "unit": "kW",
            "event_resolution": "PT15M",
            "generic_asset_id": battery["id"],
        },
    )
    price = await post(
        dash,
        auth,
        "/api/v3_0/sensors",
        {
            "name": "price",
            "unit": "EUR/MWh",
            "event_resolution": "PT1H",
            "generic_asset_id": site["id"],
        },
    )
    await post(
        dash,
        auth,
        f"/api/v3_0/sensors/{power['id']}/data",
        {"values": VALUES, "start": START, "duration": "PT2H", "unit": "kW"},
    )
    return Seeded(site["id"], battery["id"], power["id"], price["id"])


# --- pages ---------------------------------------------------------------------------


@contextmanager
def queued_job(redis_url: str, redis_prefix: str, job_id: str) -> Iterator[Job]:
    """Company's job as the queue keeps it (no worker runs in these tests)."""
    settings = BackendSettings(
        name="company",
        database_url="sqlite+aiosqlite:///unused.sqlite3",
        secret=Secret("x" * 32),
        redis_url=redis_url,
        redis_prefix=redis_prefix,
    )
    connection = jobs.connect(settings)
    try:
        job = jobs.fetch(connection, settings, job_id)
        assert job is not None, job_id
        yield job
    finally:
        jobs.close(connection)


def set_job_status(
    redis_url: str,
    redis_prefix: str,
    job_id: str,
    status: JobStatus,
    exception: dict[str, str] | None = None,
) -> None:
    """Mark company's queued job as a worker would leave it."""
    with queued_job(redis_url, redis_prefix, job_id) as job:
        if exception is not None:
            job.meta["exception"] = exception
            job.save_meta()  # type: ignore[no-untyped-call]  # rq leaves it untyped
        job.set_status(status)
