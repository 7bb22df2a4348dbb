"""Fixtures of the e2e tests (the stack itself is in tests/helpers/stack.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult


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
