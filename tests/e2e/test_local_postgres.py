"""`flexhost up --database-url`: every tenant on its own PostgreSQL database, each
created by the launcher when missing (also for a tenant added while it runs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.helpers.databases import Drops, asyncpg_url, fresh_db_name
from tests.helpers.launcher import (
    PASSWORD,
    Launcher,
    eventually_login,
    launcher_env,
    login_answer,
    tenant_entry,
)
from tests.helpers.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]


def pooled(subdomain: str, port: int) -> str:
    """A tenant of a tenants file without a demo account."""
    return f'  - subdomain: {subdomain}\n    backends: ["http://127.0.0.1:{port}"]\n'


@pytest.fixture
async def prefix(pg_admin_url: str, drops: Drops) -> AsyncIterator[str]:
    """A fresh database name prefix; its databases are dropped afterwards."""
    name = fresh_db_name()
    yield name
    conn = await asyncpg.connect(pg_admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", name
        )
    finally:
        await conn.close()
    for row in rows:
        drops.drop(pg_admin_url, row["datname"])


async def databases(admin_url: str, prefix: str) -> list[str]:
    """The tenants whose database (`<prefix>_<tenant>`) exists."""
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            f"{prefix}_",
        )
    finally:
        await conn.close()
    return sorted(row["datname"].removeprefix(f"{prefix}_") for row in rows)


async def migrated(admin_url: str, prefix: str, tenant: str) -> bool:
    """Whether the tenant's database has our schema."""
    server = admin_url.rsplit("/", 1)[0]
    conn = await asyncpg.connect(f"{server}/{prefix}_{tenant}")
    try:
        found = await conn.fetchval("SELECT to_regclass('public.alembic_version')")
    finally:
        await conn.close()
    return found is not None


async def test_up_gives_each_tenant_its_own_postgresql_database(
    tmp_path: Path, http: aiohttp.ClientSession, pg_admin_url: str, prefix: str
) -> None:
    gw, pool, solo = (free_port() for _ in range(3))
    tenants = tmp_path / "tenants.yaml"
    text = "tenants:\n" + pooled("pool-a", pool) + pooled("pool-b", pool)
    text += tenant_entry("solo", solo)
    tenants.write_text(text)
    template = asyncpg_url(pg_admin_url, prefix + "_{tenant}")
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD), ["--database-url", template])
    try:
        await up.wait_for(r"flexhost is up", 90)
        assert await databases(pg_admin_url, prefix) == ["pool-a", "pool-b", "solo"]
        # The dedicated demo tenant: seeded in its database, served by its backend.
        await eventually_login(http, gw, "solo", PASSWORD, 30)
        assert await migrated(pg_admin_url, prefix, "solo")
        # A pool tenant: its schema made in its own database on its first request.
        assert not await migrated(pg_admin_url, prefix, "pool-a")
        status, answer = await login_answer(http, gw, "pool-a")
        assert status == 404, answer
        assert "nobody@pool-a.test" in answer  # its backend looked the user up
        assert await migrated(pg_admin_url, prefix, "pool-a")
        assert not await migrated(pg_admin_url, prefix, "pool-b")
        assert not list((tmp_path / ".flexhost").glob("*.sqlite3"))

        tenants.write_text(text + pooled("late", pool))
        deadline = time.monotonic() + 20
        while "late" not in await databases(pg_admin_url, prefix):
            assert time.monotonic() < deadline, up.output()
            await asyncio.sleep(0.2)
        await up.wait_for(r"created database \S+_late", 5)
        # The pool serves it (it follows the checked copy, written after the
        # database was made): its first request migrates it.
        deadline = time.monotonic() + 20
        while "nobody@late.test" not in (await login_answer(http, gw, "late"))[1]:
            assert time.monotonic() < deadline, up.output()
            await asyncio.sleep(0.2)
        assert await migrated(pg_admin_url, prefix, "late")

        # A database that cannot be made while it runs (a name PostgreSQL would
        # cut): said, the last good config stays, the others are served; the
        # file mended, it goes on.
        long = "x" * (64 - len(prefix))  # <prefix>_<long>: 65 bytes
        tenants.write_text(text + pooled("late", pool) + pooled(long, pool))
        await up.wait_for(r"longer than 63 bytes.*the last good config stays", 20)
        assert await databases(pg_admin_url, prefix) == [
            "late",
            "pool-a",
            "pool-b",
            "solo",
        ]
        assert "nobody@late.test" in (await login_answer(http, gw, "late"))[1]
        tenants.write_text(text + pooled("late", pool) + pooled("later", pool))
        await up.wait_for(r"created database \S+_later", 20)
        assert await up.interrupt() == 0, up.output()
    finally:
        await up.kill()
