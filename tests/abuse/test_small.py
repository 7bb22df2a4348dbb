"""Smaller attacks of issue 10: dashboard reads past the rate limit (item 6), and an
encoded `auth%5Ftoken` parameter carrying the token to the backend (item 8).

Each runs on real processes (tests/abuse/harness.py) with a well-behaved neighbour
of the same tenant beside the attacker.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from typing import Final

import aiohttp
import pytest
from yarl import URL

from tests.abuse.harness import (
    ADMIN,
    OTHER,
    PASSWORD,
    START,
    AbuseDb,
    AbuseStack,
    Neighbour,
    start_abuse_stack,
)
from tests.faults.conftest import Stack, tenant_entry
from tests.helpers.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

DASHBOARD_LIMIT: Final = 200
# Spellings of the token parameter that aiohttp's query parser decodes to
# `auth_token`; "T" is the token.
SPELLINGS: Final = (
    "auth%5Ftoken=T",
    "auth%5ftoken=T",
    "%61uth_token=T",
    "%61%75%74%68%5F%74%6F%6B%65%6E=T",
    "a=1&auth%5Ftoken=T",
    "auth_token=T&auth%5Ftoken=T",
    "auth%5Ftoken=T#x",
)


def sensor_step(abuse: AbuseStack, token: str) -> Neighbour:
    """A neighbour reading account A's sensor with its own token, 4 times a second."""

    async def step() -> str | None:
        status, body = await abuse.call(token, "GET", f"/sensors/{abuse.sensor_a}")
        if status == 200 and isinstance(body, dict) and body["id"] == abuse.sensor_a:
            return None
        return f"{status}"

    return Neighbour(step, workers=2, pause=0.25)


async def page_session(abuse: AbuseStack, email: str) -> str:
    """The session cookie of a login through the login form."""
    host = abuse.headers["Host"]
    async with abuse.session.post(
        abuse.url("/login"),
        data={"email": email, "password": PASSWORD, "next": "/dashboard"},
        headers={"Host": host, "Origin": f"http://{host}"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303, await response.text()
        cookie = response.cookies["flexhost_session"].value
    return f"flexhost_session={cookie}"


async def test_dashboard_reads_with_a_session_are_rate_limited(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(
        stack,
        abuse_template,
        session,
        tenant={
            "rate_limits": {
                "per_token": f"{DASHBOARD_LIMIT}/minute",
                "per_tenant": "off",
            }
        },
    )
    neighbour = sensor_step(abuse, await abuse.login(ADMIN))
    cookie = await page_session(abuse, OTHER)
    url = abuse.url(f"/dashboard/api/sensors/{abuse.sensor_b}/data")
    query = {"start": START, "duration": "PT1H", "unit": "MW"}
    statuses: Counter[int] = Counter()
    limited_bodies: Counter[str] = Counter()

    async def attacker(count: int) -> None:
        for _ in range(count):
            async with session.get(
                url, params=query, headers={**abuse.headers, "Cookie": cookie}
            ) as response:
                statuses[response.status] += 1
                if response.status == 429:
                    body = await response.json()
                    limited_bodies[body["status"]] += 1
                    assert response.headers["X-RateLimit-Limit"] == str(DASHBOARD_LIMIT)
                    assert int(response.headers["Retry-After"]) >= 1
                else:
                    await response.read()

    await neighbour.baseline(2.0)
    async with neighbour.beside():
        started = time.monotonic()
        await asyncio.gather(*(attacker(80) for _ in range(10)))
        took = time.monotonic() - started
    sent = sum(statuses.values())
    neighbour.report(
        "dashboard reads past the rate limit",
        sent,
        f"attacker answers {dict(statuses)}",
    )
    # The bucket takes the limit at once, then refills at limit per minute; a lease
    # of permits (limit / 50) may go unused.
    refilled = math.ceil(took * DASHBOARD_LIMIT / 60)
    assert statuses[200] >= DASHBOARD_LIMIT - DASHBOARD_LIMIT // 50
    assert statuses[200] <= DASHBOARD_LIMIT + refilled
    assert statuses[429] == sent - statuses[200]
    assert limited_bodies == Counter({"TOO_MANY_REQUESTS": statuses[429]})


class Recorder:
    """A TCP relay in front of the backend that keeps every byte sent to it."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = free_port()
        self.received = bytearray()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.server.wait_closed()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.backend_port
            )
        except OSError:
            writer.close()
            return

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, keep: bool
        ) -> None:
            try:
                while chunk := await source.read(65536):
                    if keep:
                        self.received += chunk
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(
            pipe(reader, up_writer, True), pipe(up_reader, writer, False)
        )


async def test_encoded_auth_token_never_reaches_the_backend(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(stack, abuse_template, session)
    recorder = Recorder(abuse.backend.port)
    await recorder.start()
    try:
        # The gateway now reaches the backend through the recorder only.
        stack.write_tenants([tenant_entry("company", [recorder.url])])
        neighbour = sensor_step(abuse, await abuse.login(ADMIN))
        token = await abuse.login(OTHER)
        for _ in range(100):
            seen = len(recorder.received)
            status, _ = await abuse.call(token, "GET", f"/sensors/{abuse.sensor_b}")
            if status == 200 and len(recorder.received) > seen:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the gateway never used the recorder")
        statuses: Counter[int] = Counter()

        async def attacker(spelling: str, count: int) -> None:
            query = spelling.replace("T", token)
            target = abuse.url(f"/api/v3_0/sensors/{abuse.sensor_b}?{query}")
            for _ in range(count):
                async with session.get(
                    URL(target, encoded=True), headers=abuse.headers
                ) as response:
                    await response.read()
                    statuses[response.status] += 1

        await neighbour.baseline(2.0)
        async with neighbour.beside():
            await asyncio.gather(*(attacker(s, 30) for s in SPELLINGS))
        sent = sum(statuses.values())
        received = bytes(recorder.received)
        neighbour.report(
            "auth%5Ftoken spellings",
            sent,
            f"attacker answers {dict(statuses)}; backend received {len(received)} B",
        )
        assert statuses == Counter({200: len(SPELLINGS) * 30})  # each authenticated
        assert b"/api/v3_0/sensors/" in received
        assert token.encode() not in received
    finally:
        await recorder.close()
