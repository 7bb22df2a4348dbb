"""Abuse tests: real processes on loopback (the fault tests' harness), one attacker
and a well-behaved neighbour of the same tenant beside it (tests/abuse/harness.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.abuse.harness import AbuseDb, seed_abuse_db
from tests.faults.conftest import stack

__all__ = ["abuse_template", "session", "stack"]


@pytest.fixture(scope="session")
def abuse_template(tmp_path_factory: pytest.TempPathFactory) -> AbuseDb:
    """One seeded database per test session (migrating and hashing take a while)."""
    path = tmp_path_factory.mktemp("abuse-db") / "template.sqlite3"
    return asyncio.run(seed_abuse_db(path))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client with room for many connections (attacks open many)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        yield client
