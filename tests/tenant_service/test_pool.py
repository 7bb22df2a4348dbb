"""Pool backends: tenants sharing one process, each with its own database and secret.

Two tenants (acme, beta) share a pool app served on loopback, each on its own
database copied from the world template (so the same ids exist in both). Beta
tries every way to reach acme's data; idle engines close; the connection budget
holds; a tenant added to the file is served without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from contract.config import Secret
from contract.identity import HEADER
from tenant_service import keys
from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.store.db import create_engine
from tenant_service.tenancy import Directory
from tests.helpers.databases import (
    Drops,
    Template,
    Templates,
    asyncpg_url,
    fresh_db_name,
    pg_admin,
)
from tests.helpers.net import free_port
from tests.helpers.schedules import battery, make_site, trigger
from tests.helpers.wait import until
from tests.tenant_service.conftest import (
    SECRET,
    UNAUTHORIZED,
    Client,
    ClientFactory,
    World,
    identity,
    make_asset,
    make_sensor,
)

ADDRESS = "http://127.0.0.1:8201"
SECRET_B = "beta-secret-0123456789abcdef-0123456789"
SECRET_OTHER = "other-secret-0123456789abcdef-012345678"
TENANTS_YAML = f"""\
tenants:
  - subdomain: acme
    backends: ["{ADDRESS}"]
  - subdomain: beta
    backends: ["{ADDRESS}/"]
  - subdomain: other   # another pool's tenant
    backends: ["http://127.0.0.1:8202"]
"""


@dataclass(frozen=True, slots=True)
class Databases:
    """Where a test's tenants keep their data."""

    template: str  # TENANT_DATABASE_URL with {tenant}
    make: Any  # async (tenant) -> url: a copy of the world template for a tenant
    admin_url: str | None  # PostgreSQL: the server's admin URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def databases(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    templates: Templates,
    world_template: Template[World],
    drops: Drops,
) -> AsyncIterator[Databases]:
    """Copies of the world database per tenant, on SQLite or PostgreSQL."""
    if request.param == "sqlite":
        template = f"sqlite+aiosqlite:///{tmp_path}/{{tenant}}.sqlite3"

        async def make_file(tenant: str) -> str:
            url = template.replace("{tenant}", tenant)
            await templates.copy_sqlite(world_template, url)
            return url

        yield Databases(template, make_file, None)
        return
    admin: str = request.getfixturevalue("pg_admin_url")
    prefix = fresh_db_name()
    made: list[str] = []

    async def make_pg(tenant: str) -> str:
        name = f"{prefix}_{tenant}"
        await templates.create_pg(world_template, admin, name)
        made.append(name)
        return asyncpg_url(admin, name)

    yield Databases(asyncpg_url(admin, f"{prefix}_{{tenant}}"), make_pg, admin)
    for name in made:
        drops.drop(admin, name)


@dataclass(frozen=True, slots=True)
class Pool:
    """A pool app serving acme and beta, and what it was made of."""

    client: Client
    settings: Settings
    tenants_file: Path
    secrets: Path
    databases: Databases
    world: World  # the same ids in both tenants' databases

    @property
    def directory(self) -> Directory:
        """The app's tenants."""
        return self.client.app[keys.TENANTS]


def pool_settings(tmp_path: Path, template: str, **changes: Any) -> Settings:
    """A pool's settings on the tenants file and secrets under tmp_path."""
    base = Settings(
        name="",
        database_url=template,
        secret=Secret(""),
        tenants_file=tmp_path / "tenants.yaml",
        address=ADDRESS,
        secrets_dir=tmp_path / "secrets",
        reload_interval=0.1,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
async def pool_factory(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    databases: Databases,
    templates: Templates,
    world_template: Template[World],
) -> Any:
    """Make a pool app (settings changed as given) over acme's and beta's databases."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for tenant, secret in (("acme", SECRET), ("beta", SECRET_B)):
        (secrets / tenant).write_text(secret)
    (secrets / "other").write_text(SECRET_OTHER)
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(TENANTS_YAML)
    url = await databases.make("acme")
    await databases.make("beta")
    world = templates.result(world_template, url)

    async def make(**changes: Any) -> Pool:
        settings = pool_settings(tmp_path, databases.template, **changes)
        client = await aiohttp_client(create_app(settings))
        return Pool(client, settings, tenants_file, secrets, databases, world)

    return make


@pytest.fixture
async def pool(pool_factory: Any) -> Pool:
    """A pool app with the default settings (fast reloads)."""
    made: Pool = await pool_factory()
    return made


def as_beta(user_id: int | None = None) -> dict[str, str]:
    """Beta's identity headers."""
    return identity(user_id, tenant="beta", secret=SECRET_B)


async def answer(
    client: Client, method: str, path: str, headers: dict[str, str], **kw: Any
) -> tuple[int, Any]:
    """Status and JSON body of a request."""
    response = await client.request(method, path, headers=headers, **kw)
    return response.status, await response.json()


def masked(body: Any, number: int) -> str:
    """The body as JSON with the number (an id) as ID."""
    return re.sub(rf"(?<![0-9]){number}(?![0-9])", "ID", json.dumps(body))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_audience(token: str, audience: Any) -> str:
    """The assertion with its audience changed and its signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["aud"] = audience
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


# --- isolation ------------------------------------------------------------------


async def test_pool_serves_each_tenant_its_own_database(pool: Pool) -> None:
    world, client = pool.world, pool.client
    assert len(pool.directory) == 2, "acme and beta; other is on another address"
    assert pool.directory.open_engines == 0, "no engine before a request"
    mine = await make_asset(client, world.account_admin, name="acme-only")
    status, listed = await answer(
        client, "GET", "/api/v3_0/assets", identity(world.account_admin)
    )
    assert status == 200
    assert "acme-only" in [asset["name"] for asset in listed]
    status, listed = await answer(
        client, "GET", "/api/v3_0/assets", as_beta(world.account_admin)
    )
    assert status == 200
    assert "acme-only" not in [asset["name"] for asset in listed]
    status, body = await answer(
        client, "GET", f"/api/v3_0/assets/{mine['id']}", as_beta(world.admin)
    )
    assert status == 404, body


def forged_identities(world: World) -> dict[str, str]:
    """Assertions that must not reach acme (nor beta as acme)."""
    acme = identity(world.admin)[HEADER]
    now = int(time.time())
    claims = jwt.decode(acme, options={"verify_signature": False})
    return {
        "beta's secret, audience acme": identity(world.admin, secret=SECRET_B)[HEADER],
        "acme's secret, audience beta": identity(world.admin, tenant="beta")[HEADER],
        "acme's assertion, audience changed to beta": with_audience(acme, "beta"),
        "beta's assertion, audience changed to acme": with_audience(
            as_beta(world.admin)[HEADER], "acme"
        ),
        "both audiences": with_audience(acme, ["acme", "beta"]),
        "another pool's tenant": identity(
            world.admin, tenant="other", secret=SECRET_OTHER
        )[HEADER],
        "an unknown tenant": identity(world.admin, tenant="nobody")[HEADER],
        "no audience": with_audience(acme, None),
        "unsigned": jwt.encode(
            {**claims, "iat": now, "exp": now + 30}, key=None, algorithm="none"
        ),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/v3_0/assets",
        "/api/v3_0/users",
        "/api/v3_0/accounts",
        "/internal/users/lookup",
    ],
)
async def test_pool_forged_or_replayed_assertions_are_401(
    pool: Pool, path: str
) -> None:
    world = pool.world
    method = "POST" if path.startswith("/internal") else "GET"
    kw: dict[str, Any] = (
        {"json": {"email": "admin@acme.test"}} if method == "POST" else {}
    )
    for why, token in forged_identities(world).items():
        status, body = await answer(pool.client, method, path, {HEADER: token}, **kw)
        assert (status, body) == (401, UNAUTHORIZED), why
    status, _ = await answer(
        pool.client, "GET", "/api/v3_0/assets", as_beta(world.admin)
    )
    assert status == 200, "beta's own assertion works"


async def test_pool_ids_and_names_of_another_tenant_do_not_exist(
    pool: Pool, redis_url: str, redis_prefix: str
) -> None:
    """Beta asks for acme's objects by id and name: answered as ids that never
    existed (FlexMeasures' 404/422 shapes), nothing of acme's in any answer."""
    world, client = pool.world, pool.client
    acme = identity(world.admin)
    # acme's objects, created through its API (ids beyond the shared seed's)
    asset = await make_asset(client, world.account_admin, name="acme-secret-site")
    sensor = await make_sensor(client, world.member, asset["id"], "acme-secret-power")
    status, note = await answer(
        client,
        "POST",
        f"/api/v3_0/assets/{asset['id']}/annotations",
        acme,
        json={
            "content": "acme-secret-note",
            "start": "2026-01-01T02:00:00+01:00",
            "end": "2026-01-01T04:00:00+01:00",
        },
    )
    assert status == 201, note
    status, account = await answer(
        client, "POST", "/api/v3_0/accounts", acme, json={"name": "acme-secret-co"}
    )
    assert status == 201, account
    status, user = await answer(
        client,
        "POST",
        "/api/v3_0/users",
        acme,
        json={
            "email": "secret@acme.test",
            "username": "acme-secret-user",
            "account_id": world.acme,
        },
    )
    assert status == 201, user

    never = 987654
    beta = as_beta(world.admin)  # beta's most powerful user
    for template in (
        "/api/v3_0/assets/{}",
        "/api/v3_0/assets/{}/sensors",
        "/api/v3_0/assets/{}/chart_annotations",
        "/api/v3_0/assets/{}/auditlog",
        "/api/v3_0/sensors/{}",
        "/api/v3_0/sensors/{}/data?start=2026-01-01T00:00:00Z&duration=PT1H&unit=kW",
        "/api/v3_0/accounts/{}",
        "/api/v3_0/accounts/{}/auditlog",
        "/api/v3_0/users/{}",
        "/api/v3_0/users/{}/auditlog",
    ):
        acme_id = {
            "assets": asset["id"],
            "sensors": sensor,
            "accounts": account["id"],
            "users": user["id"],
        }[template.split("/")[3]]
        theirs = await answer(client, "GET", template.format(acme_id), beta)
        unknown = await answer(client, "GET", template.format(never), beta)
        assert theirs[0] in (400, 404, 422), (template, theirs)
        assert theirs[0] == unknown[0], template
        assert masked(theirs[1], acme_id) == masked(unknown[1], never), template
        assert "acme-secret" not in json.dumps(theirs)

    # names: listings and lookups by name or email show nothing of acme's
    for path in (
        "/api/v3_0/assets?filter=acme-secret",
        "/api/v3_0/assets",
        "/api/v3_0/sensors",
        "/api/v3_0/accounts",
        "/api/v3_0/users?include_inactive=true",
        f"/api/v3_0/users?account_id={world.acme}&include_inactive=true",
    ):
        status, body = await answer(client, "GET", path, beta)
        assert status == 200, (path, body)
        assert "acme-secret" not in json.dumps(body), path
    status, body = await answer(
        client,
        "POST",
        "/internal/users/lookup",
        as_beta(),
        json={"email": "secret@acme.test"},
    )
    assert status == 404, body
    assert "acme" not in json.dumps(body)


async def test_pool_job_ids_of_another_tenant_are_unknown(
    pool_factory: Any, redis_url: str, redis_prefix: str
) -> None:
    """Acme's job (queued, no worker) is unknown to beta: its queue is acme's."""
    pool = await pool_factory(redis_url=redis_url, redis_prefix=redis_prefix)
    world, client = pool.world, pool.client
    acme, beta = identity(world.member), as_beta(world.admin)
    site = await make_site(client, world)
    status, job = await trigger(client, world.member, site.power, battery(site))
    assert status == 202, job
    job_id = job["job"]
    status, mine = await answer(client, "GET", f"/api/v3_0/jobs/{job_id}", acme)
    assert status == 202, mine
    theirs = await answer(client, "GET", f"/api/v3_0/jobs/{job_id}", beta)
    unknown = await answer(client, "GET", f"/api/v3_0/jobs/{uuid.uuid4()}", beta)
    assert theirs[0] == unknown[0] == 404, theirs
    assert theirs[1]["status"] == unknown[1]["status"]
    assert "Scheduling" not in json.dumps(theirs)
    status, body = await answer(
        client, "GET", f"/api/v3_0/sensors/{site.power}/schedules/{job_id}", beta
    )
    assert status in (400, 404, 422), body
    assert "Scheduling job" not in json.dumps(body)
    status, body = await answer(client, "GET", "/api/v3_0/jobs", beta)
    assert status == 200, body
    assert job_id not in json.dumps(body)


# --- idle costs nothing, the connection budget, the file followed ------------------


async def connections_to(pool: Pool, *tenants: str) -> int:
    """PostgreSQL: the server's connections to these tenants' databases now."""
    assert pool.databases.admin_url is not None
    names = [
        make_url(pool.databases.template.replace("{tenant}", tenant)).database
        for tenant in tenants
    ]
    conn = await asyncpg.connect(pool.databases.admin_url)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1::text[])",
            names,
        )
    finally:
        await conn.close()
    return int(found)


async def test_pool_readyz_is_process_level(pool: Pool) -> None:
    status, body = await answer(pool.client, "GET", "/readyz", {})
    assert (status, body) == (
        200,
        {"status": "ok", "tenants": 2, "open_engines": 0, "database_connections": 0},
    )
    assert pool.directory.open_engines == 0, "no tenant's database opened"


async def test_pool_idle_engine_closes_and_reopens(pool_factory: Any) -> None:
    pool = await pool_factory(idle_close=0.3)
    postgres = pool.databases.admin_url is not None
    headers = identity(pool.world.member)
    acme = pool.directory.get("acme")
    assert acme is not None
    assert not acme.is_open
    status, _ = await answer(pool.client, "GET", "/api/v3_0/assets", headers)
    assert status == 200
    assert acme.is_open
    if postgres:
        assert await connections_to(pool, "acme") >= 1
    started = time.monotonic()
    await until(lambda: not acme.is_open, 10, "idle close")
    took = time.monotonic() - started
    print(f"engine closed {took:.2f} s after the request (idle close 0.3 s)")
    budget = pool.directory.budget
    assert budget is not None
    await until(lambda: budget.held == 0, 10, "its connections closed")
    if postgres:
        await until(lambda: _none_left(pool, "acme"), 10, "no connection left")
    started = time.perf_counter()
    status, _ = await answer(pool.client, "GET", "/api/v3_0/assets", headers)
    print(
        f"first request after the close: {1000 * (time.perf_counter() - started):.1f} ms"
    )
    assert status == 200
    assert acme.is_open
    status, _ = await answer(pool.client, "GET", "/readyz", {})
    assert status == 200


async def _none_left(pool: Pool, tenant: str) -> bool:
    return await connections_to(pool, tenant) == 0


async def test_pool_budget_waits_then_503_then_closes_the_idle_engine(
    pool_factory: Any,
) -> None:
    pool = await pool_factory(db_connections=1, db_connection_wait=0.3)
    world = pool.world
    directory = pool.directory
    acme, beta = directory.get("acme"), directory.get("beta")
    assert acme is not None
    assert beta is not None
    # Acme holds the process's only connection (a request of acme in flight).
    async with directory.using(acme), acme.engine.connect() as held:
        await held.execute(text("SELECT 1"))
        response = await pool.client.get(
            "/api/v3_0/assets", headers=as_beta(world.member)
        )
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert await response.json() == {
            "message": "All database connections are in use; please try again "
            "in a second.",
            "status": "SERVICE_UNAVAILABLE",
        }
    # Acme is idle now (its connection kept in its pool): beta's request closes
    # acme's engine, the least recently used idle one, to make room.
    status, _ = await answer(
        pool.client, "GET", "/api/v3_0/assets", as_beta(world.member)
    )
    assert status == 200
    assert beta.is_open
    assert not acme.is_open
    assert directory.budget is not None
    assert directory.budget.held == 1


async def test_pool_never_holds_more_connections_than_its_budget(
    pool_factory: Any,
) -> None:
    """Many requests of both tenants at once: they wait for room (or get 503),
    and the connections held (counted by PostgreSQL too) stay within budget."""
    pool = await pool_factory(db_connections=2, db_connection_wait=5.0)
    world = pool.world
    budget = pool.directory.budget
    assert budget is not None
    postgres = pool.databases.admin_url is not None
    most_held = most_seen = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal most_held, most_seen
        while not done.is_set():
            most_held = max(most_held, budget.held)
            if postgres:
                most_seen = max(most_seen, await connections_to(pool, "acme", "beta"))
            await asyncio.sleep(0.01)

    async def get(headers: dict[str, str]) -> int:
        response = await pool.client.get("/api/v3_0/assets", headers=headers)
        await response.read()
        status: int = response.status
        return status

    sampler = asyncio.create_task(sample())
    users = (world.member, world.admin, world.reader, world.account_admin)
    started = time.perf_counter()
    statuses = await asyncio.gather(
        *(
            get(identity(user) if i % 2 else as_beta(user))
            for i in range(40)
            for user in users
        )
    )
    took = time.perf_counter() - started
    done.set()
    await sampler
    print(
        f"160 requests of 2 tenants on a budget of 2: {took:.2f} s, "
        f"statuses {sorted(set(statuses))}, most held {most_held}, "
        f"most seen by PostgreSQL {most_seen if postgres else '-'}"
    )
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) > 0
    assert most_held <= 2
    assert most_seen <= 2


async def test_pool_follows_the_tenants_file(pool: Pool, tmp_path: Path) -> None:
    """A tenant added is served at once, without a restart (its own database);
    a broken file leaves the last good one; a tenant removed is refused."""
    world, client = pool.world, pool.client
    own = await pool.databases.make("gammadb")
    (pool.secrets / "gamma").write_text("gamma-secret-0123456789abcdef-012345678")
    gamma = identity(
        world.account_admin,
        tenant="gamma",
        secret="gamma-secret-0123456789abcdef-012345678",
    )
    status, _ = await answer(client, "GET", "/api/v3_0/assets", gamma)
    assert status == 401, "not in the file yet"
    await asyncio.sleep(1.1)  # an unknown audience re-reads the file once a second
    pool.tenants_file.write_text(
        TENANTS_YAML
        + f'  - subdomain: gamma\n    backends: ["{ADDRESS}"]\n    database: {own}\n'
    )
    status, _ = await answer(client, "GET", "/api/v3_0/assets", gamma)
    assert status == 200, "served at its first request"
    gamma_state = pool.directory.get("gamma")
    assert gamma_state is not None
    assert gamma_state.settings.database_url == own
    await make_asset(client, world.account_admin, name="acme-site")
    status, listed = await answer(client, "GET", "/api/v3_0/assets", gamma)
    assert "acme-site" not in json.dumps(listed)

    pool.tenants_file.write_text("tenants: [")
    await asyncio.sleep(0.5)  # several polls
    status, _ = await answer(client, "GET", "/api/v3_0/assets", as_beta(world.member))
    assert status == 200, "the last good file stays in force"

    pool.tenants_file.write_text(
        TENANTS_YAML.replace("subdomain: beta", "subdomain: b2")
    )
    await until(lambda: pool.directory.get("beta") is None, 10, "beta removed")
    status, body = await answer(
        client, "GET", "/api/v3_0/assets", as_beta(world.member)
    )
    assert (status, body) == (401, UNAUTHORIZED)


# --- a pool process -----------------------------------------------------------------


def start_pool(tmp_path: Path, port: int, template: str) -> subprocess.Popen[bytes]:
    """`python -m tenant_service` as a pool on tmp_path's tenants file and secrets."""
    with (tmp_path / "pool.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tenant_service"],
            env={
                **os.environ,
                "TENANT_TENANTS_FILE": str(tmp_path / "tenants.yaml"),
                "TENANT_ADDRESS": ADDRESS,
                "TENANT_PORT": str(port),
                "TENANT_DATABASE_URL": template,
                "TENANT_SECRETS_DIR": str(tmp_path / "secrets"),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_databases(
    request: pytest.FixtureRequest, tmp_path: Path, drops: Drops
) -> AsyncIterator[str]:
    """A TENANT_DATABASE_URL ({tenant}) of empty databases for acme and beta."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/db/{{tenant}}.sqlite3"
        return
    admin: str = request.getfixturevalue("pg_admin_url")
    prefix = fresh_db_name()
    for tenant in ("acme", "beta"):
        await pg_admin(admin, f'CREATE DATABASE "{prefix}_{tenant}"')
    yield asyncpg_url(admin, f"{prefix}_{{tenant}}")
    for tenant in ("acme", "beta"):
        drops.drop(admin, f"{prefix}_{tenant}")


async def schema_revision(url: str) -> str | None:
    """The database's alembic revision (None: no schema)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return found.scalar()
    except DBAPIError:
        return None
    finally:
        await engine.dispose()


async def test_pool_process_migrates_each_database_at_its_first_request(
    tmp_path: Path, empty_databases: str
) -> None:
    """`python -m tenant_service` as a pool on fresh, empty databases: /readyz
    opens none; each tenant's first request creates its schema."""
    template = empty_databases
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acme").write_text(SECRET)
    (secrets / "beta").write_text(SECRET_B)
    (tmp_path / "tenants.yaml").write_text(TENANTS_YAML)
    port = free_port()
    proc = start_pool(tmp_path, port, template)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                assert proc.poll() is None, (tmp_path / "pool.log").read_text()
                try:
                    async with session.get(f"{base}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await until(ready, 30, "the pool's /readyz")
            assert not (tmp_path / "db").exists(), "no database opened by a probe"
            assert await schema_revision(template.replace("{tenant}", "acme")) is None
            for tenant, headers in (("acme", identity()), ("beta", as_beta())):
                started = time.perf_counter()
                async with session.post(
                    f"{base}/internal/users/lookup",
                    json={"email": "nobody@example.test"},
                    headers=headers,
                ) as response:
                    body = await response.json()
                took = 1000 * (time.perf_counter() - started)
                print(f"{tenant}: first request, migrating its database: {took:.0f} ms")
                assert response.status == 404, body
                assert body["status"] == "UNKNOWN_USER"
                url = template.replace("{tenant}", tenant)
                assert await schema_revision(url) is not None
            async with session.get(f"{base}/readyz") as response:
                assert await response.json() == {
                    "status": "ok",
                    "tenants": 2,
                    "open_engines": 2,
                    "database_connections": 2,
                }
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


async def test_pool_noisy_neighbour(pool_factory: Any) -> None:
    """Acme at full load (16 clients in another process, each sending its next
    request at once); beta's p50 alone and beside it, printed (figures only)."""
    pool = await pool_factory()
    world, client = pool.world, pool.client
    path = "/api/v3_0/assets"

    async def beta_p50(count: int = 100) -> float:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            response = await client.get(path, headers=as_beta(world.member))
            await response.read()
            assert response.status == 200
            times.append(time.perf_counter() - started)
        return 1000 * statistics.median(times)

    await beta_p50(10)  # engines open, caches warm
    quiet = await beta_p50()
    url = str(client.make_url(path))
    load = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.helpers.load",
        *(url, "acme", SECRET, str(world.member), "16", "4"),
        stdout=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(1.0)  # the load process started and running
    loaded = await beta_p50()
    out, _ = await load.communicate()
    print(
        f"beta p50 alone {quiet:.1f} ms, beside acme at full load {loaded:.1f} ms "
        f"({loaded / quiet:.1f}x; acme: {out.decode().strip()} requests in 4 s)"
    )
