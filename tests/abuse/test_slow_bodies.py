"""Slow clients (issue 10, item 1): trickling bodies and headers of one client.

Before: 600 chunked POSTs sending 1 byte every 5 s held every backend connection of
the gateway, and the tenant's other requests got 502 for as long as they lasted.
Now each is cut with 408 after the body deadline, one token holds at most its share
of the connections (the rest get 429 at once), and a neighbour of the same tenant
keeps working. Real processes (tests/abuse/harness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Final

import aiohttp
import pytest

from tests.abuse.harness import (
    ADMIN,
    OTHER,
    START,
    AbuseDb,
    AbuseStack,
    Neighbour,
    start_abuse_stack,
)
from tests.faults.conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

# The gateway's connections per replica in these tests, and what follows from them.
CONNECTIONS: Final = 32
PER_TOKEN: Final = CONNECTIONS // 4  # GATEWAY_UPSTREAM_SHARE_PER_TOKEN 0.25
ATTACKERS: Final = 3 * PER_TOKEN
DEADLINE_S: Final = 2
ATTACK_S: Final = 8.0
GATEWAY_ENV: Final = {
    "UPSTREAM_CONNECTIONS": str(CONNECTIONS),
    "BODY_TIMEOUT": str(DEADLINE_S),
    "HEADER_TIMEOUT": str(DEADLINE_S),
}


def writing_neighbour(abuse: AbuseStack, token: str) -> Neighbour:
    """Account B's user posting a day's values to its sensor, then reading it back."""

    async def step() -> str | None:
        status, body = await abuse.call(
            token,
            "POST",
            f"/sensors/{abuse.sensor_b}/data",
            {"start": START, "duration": "PT1H", "unit": "MW", "values": [1, 2, 3, 4]},
        )
        if status != 200:
            return f"POST {status}"
        status, body = await abuse.call(token, "GET", f"/sensors/{abuse.sensor_b}")
        return (
            None if status == 200 and body["id"] == abuse.sensor_b else f"GET {status}"
        )

    return Neighbour(step, workers=2, pause=0.1)


async def _status(reader: asyncio.StreamReader) -> int:
    """The status of the gateway's answer; 0 if it closed without one."""
    line = await reader.readline()
    return int(line.split()[1]) if line.startswith(b"HTTP/1.") else 0


async def _trickle(
    abuse: AbuseStack, head: bytes, piece: bytes, until: float, tally: Counter[int]
) -> None:
    """Send `head`, then `piece` every second until answered; again until `until`
    (after a 429 its Retry-After later)."""
    while time.monotonic() < until:
        reader, writer = await asyncio.open_connection("127.0.0.1", abuse.gateway.port)
        try:
            writer.write(head)
            answer = asyncio.create_task(_status(reader))
            while not answer.done():
                await asyncio.wait([answer], timeout=1.0)
                if not answer.done():
                    writer.write(piece)
            status = answer.result()
            tally[status] += 1
            if status == 429:
                await asyncio.sleep(1.0)  # its Retry-After
        except (ConnectionError, ValueError, IndexError):
            tally[-1] += 1  # cut without an answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_trickling_bodies_of_one_token_leave_the_neighbour_working(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(
        stack, abuse_template, session, gateway_env=GATEWAY_ENV
    )
    attacker = await abuse.login(ADMIN)
    neighbour = writing_neighbour(abuse, await abuse.login(OTHER))
    await neighbour.baseline(2.0)
    head = (
        f"POST /api/v3_0/sensors/{abuse.sensor_a}/data HTTP/1.1\r\n"
        f"Host: {abuse.headers['Host']}\r\nAuthorization: {attacker}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    tally: Counter[int] = Counter()
    until = time.monotonic() + ATTACK_S
    async with neighbour.beside():
        await asyncio.gather(
            *(
                _trickle(abuse, head, b"1\r\n \r\n", until, tally)  # 1 byte a second
                for _ in range(ATTACKERS)
            )
        )
    neighbour.report(
        f"{ATTACKERS} trickling chunked POSTs of one token "
        f"(share {PER_TOKEN} of {CONNECTIONS} connections)",
        sum(tally.values()),
        f"answers {dict(sorted(tally.items()))}",
    )
    # Those holding a connection were cut at the deadline, the others refused at once.
    assert set(tally) <= {408, 429}, tally
    assert tally[408] >= PER_TOKEN
    assert tally[429] >= ATTACKERS - PER_TOKEN


async def test_trickling_headers_leave_the_neighbour_working(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(
        stack, abuse_template, session, gateway_env=GATEWAY_ENV
    )
    neighbour = writing_neighbour(abuse, await abuse.login(OTHER))
    await neighbour.baseline(2.0)
    head = (
        f"GET /api/v3_0/sensors/{abuse.sensor_a} HTTP/1.1\r\n"
        f"Host: {abuse.headers['Host']}\r\n"
    ).encode()
    tally: Counter[int] = Counter()
    until = time.monotonic() + ATTACK_S
    async with neighbour.beside():
        await asyncio.gather(
            *(_trickle(abuse, head, b"X", until, tally) for _ in range(100))
        )
    neighbour.report(
        "100 connections trickling their headers", sum(tally.values()), str(tally)
    )
    assert set(tally) == {408}, tally
