"""Fixtures of the e2e tests (the stack itself is in tests/helpers/stack.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.helpers.stack import Stack


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
    """A client session that resolves every host to 127.0.0.1."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=LoopbackResolver())
    )
    yield session
    await session.close()


@pytest.fixture
def worker(
    stack: Stack,  # the database is seeded first
    database_url: str,
    redis_url: str,
    redis_prefix: str,
) -> Iterator[None]:
    """A real scheduling worker process on company's queue (see backend_options)."""
    env = {
        **os.environ,
        "TENANT_NAME": "company",
        "TENANT_SECRET": "worker-secret-0123456789abcdef-0123456789",
        "TENANT_DATABASE_URL": database_url,
        "TENANT_REDIS_URL": redis_url,
        "TENANT_REDIS_PREFIX": redis_prefix,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenant_service.scheduling.worker"], env=env
    )
    yield
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
