"""Refused before the body (#10 item 1, backend side), on real processes.

Account B opens many requests to account A's sensor through the gateway, each
sending its head and the start of a body that never ends (a Content-Length far
above what is sent). The backend checks access before it reads a body, so each
gets its 403 while the body is still "arriving", and holds nothing of the tenant:
A's neighbour keeps writing beside it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Final

import aiohttp
import pytest

from tests.abuse.harness import (
    OTHER,
    VICTIM,
    AbuseDb,
    AbuseStack,
    Neighbour,
    start_abuse_stack,
)
from tests.faults.conftest import Stack

pytestmark = pytest.mark.slow

ATTACKS: Final = 40  # requests with a body that never ends, all open at once
ANSWER_TIMEOUT: Final = 10.0
CLAIMED: Final = 1_000_000


async def stalled_post(abuse: AbuseStack, token: str, path: str) -> int:
    """A POST whose body stops after a few bytes; the status of its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", abuse.gateway.port)
    try:
        head = "\r\n".join(
            [
                f"POST {path} HTTP/1.1",
                f"Host: {abuse.headers['Host']}",
                f"Authorization: {token}",
                "Content-Type: application/json",
                f"Content-Length: {CLAIMED}",
            ]
        )
        writer.write(head.encode() + b"\r\n\r\n" + b'{"values": [1, 2, 3')
        await writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT):
            answer = await reader.readuntil(b"\r\n\r\n")
        return int(answer.split(b" ", 2)[1])
    finally:
        writer.close()


async def test_stalled_bodies_to_another_accounts_sensor_are_refused_at_once(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(stack, abuse_template, session)
    victim = await abuse.login(VICTIM)
    attacker = await abuse.login(OTHER)
    steps = itertools.count()

    async def step() -> str | None:
        minute = next(steps)
        status, body = await abuse.call(
            victim,
            "POST",
            f"/sensors/{abuse.sensor_a}/data",
            {
                "values": [1.0],
                "start": f"2026-02-{1 + minute // 96:02d}T{minute % 96 // 4:02d}:"
                f"{minute % 4 * 15:02d}:00+00:00",
                "duration": "PT15M",
                "unit": "MW",
            },
        )
        return None if status == 200 else f"{status} {json.dumps(body)[:80]}"

    neighbour = Neighbour(step)
    await neighbour.baseline(1.5)
    path = f"/api/v3_0/sensors/{abuse.sensor_a}/data"
    async with neighbour.beside():
        statuses = await asyncio.gather(
            *(stalled_post(abuse, attacker, path) for _ in range(ATTACKS))
        )
        await asyncio.sleep(1.0)  # the neighbour goes on beside the refusals
    neighbour.report(
        "stalled bodies to another account's sensor",
        ATTACKS,
        extra=f"attacker answers={sorted(set(statuses))}",
    )
    assert statuses == [403] * ATTACKS
