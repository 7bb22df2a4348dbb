"""The abuse harness itself: a neighbour alone and beside a harmless load."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.abuse.harness import ADMIN, OTHER, AbuseDb, Neighbour, start_abuse_stack
from tests.faults.conftest import Stack

pytestmark = pytest.mark.slow


async def test_harness_reports_a_neighbour_beside_ordinary_load(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(stack, abuse_template, session)
    token = await abuse.login(ADMIN)
    other = await abuse.login(OTHER)

    async def step() -> str | None:
        status, body = await abuse.call(token, "GET", f"/sensors/{abuse.sensor_a}")
        return None if status == 200 and body["id"] == abuse.sensor_a else str(status)

    neighbour = Neighbour(step)
    await neighbour.baseline(1.0)
    sent = 0
    async with neighbour.beside():
        for _ in range(20):
            status, _ = await abuse.call(other, "GET", f"/sensors/{abuse.sensor_b}")
            assert status == 200
            sent += 1
            await asyncio.sleep(0.02)
    line = neighbour.report("ordinary load", sent)
    assert "neighbour failures=0" in line
    # Account B cannot read account A's sensor: the harness seeds two accounts.
    status, _ = await abuse.call(other, "GET", f"/sensors/{abuse.sensor_a}")
    assert status == 403
