"""Fixtures of the e2e tests (the stack itself is in tests/helpers/stack.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from contract.config import Secret
from tenant_service.config import Settings
from tests.helpers.schedules import worker_process
from tests.helpers.stack import Stack, flexmeasures_client


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
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with short timeouts (for a `flexhost up` on loopback)."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        yield session


@pytest.fixture
async def fm_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that resolves every host to 127.0.0.1."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=LoopbackResolver())
    )
    yield session
    await session.close()


@pytest.fixture
def company_worker(
    stack: Stack,  # the database is seeded first
    database_url: str,
    redis_url: str,
    redis_prefix: str,
) -> Iterator[None]:
    """A real worker process on company's job queue (set `backend_options` too)."""
    settings = Settings(
        name="company",
        database_url=database_url,
        secret=Secret("worker-secret-0123456789abcdef-0123456789"),
        redis_url=redis_url,
        redis_prefix=redis_prefix,
    )
    with worker_process(settings):
        yield


@pytest.fixture
def job_client(stack: Stack, fm_session: aiohttp.ClientSession) -> Any:
    """flexmeasures-client as company's admin, polling jobs every 0.2 s (60 s)."""
    return flexmeasures_client(stack, fm_session)
