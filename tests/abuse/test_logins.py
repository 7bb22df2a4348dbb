"""Login floods (issue 10, items 3 and 4) beside a neighbour who logs in and works.

Real processes, default limits: the gateway lets at most 2 password checks of one
email be in flight (GATEWAY_LOGIN_CHECKS_PER_EMAIL), 5 failures per email, 100
tokens per user an hour; the backend runs at most 3 checks at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import pytest

from tests.abuse.harness import (
    ADMIN,
    OTHER,
    PASSWORD,
    VICTIM,
    AbuseDb,
    AbuseStack,
    Neighbour,
    start_abuse_stack,
)
from tests.faults.conftest import Stack

pytestmark = pytest.mark.slow


async def attempt(abuse: AbuseStack, email: str, password: str) -> tuple[int, str]:
    """One requestAuthToken; (status, Retry-After)."""
    async with abuse.session.post(
        abuse.url("/api/requestAuthToken"),
        json={"email": email, "password": password},
        headers=abuse.headers,
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        await response.read()
        return response.status, response.headers.get("Retry-After", "")


def neighbour_of(abuse: AbuseStack, token: str | None = None) -> Neighbour:
    """ADMIN (account A) logs in (each step, unless given a token), then reads its
    sensor and its account's users."""

    async def step() -> str | None:
        own = token
        if own is None:
            try:
                own = await abuse.login(ADMIN)
            except AssertionError as err:
                return str(err)[:80]
        for path in (f"/sensors/{abuse.sensor_a}", "/users"):
            status, _ = await abuse.call(own, "GET", path)
            if status != 200:
                return f"GET {path}: {status}"
        return None

    return Neighbour(step, pause=0.05)


async def test_150_concurrent_correct_logins_leave_the_neighbour_alone(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(stack, abuse_template, session)
    neighbour = neighbour_of(abuse)
    await neighbour.baseline(2.0)
    tally: Counter[int] = Counter()
    waits: set[str] = set()
    waves = 0
    async with neighbour.beside():
        started = time.monotonic()
        while waves < 12 and time.monotonic() - started < 4.0:
            answers = await asyncio.gather(
                *(attempt(abuse, OTHER, PASSWORD) for _ in range(150))
            )
            waves += 1
            for status, wait in answers:
                tally[status] += 1
                if status != 200:
                    waits.add(wait)
            await asyncio.sleep(0.2)
    neighbour.report(
        f"150 concurrent correct logins x{waves}",
        sum(tally.values()),
        f"attacker answers {dict(sorted(tally.items()))}, Retry-After {sorted(waits)}",
    )
    # A burst of one account is cut at the gateway (at most 2 of its checks in
    # flight), the rest is 429 with Retry-After; never more tokens than the
    # 100 an hour (start_abuse_stack minted one).
    assert set(tally) <= {200, 429, 503}, tally
    assert 1 <= tally[200] <= 99, tally
    assert tally[429] >= waves * 150 - 99, tally
    assert all(wait.isdigit() and int(wait) >= 1 for wait in waits), waits


async def test_tokens_per_user_stop_a_login_flood(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(
        stack, abuse_template, session, gateway_env={"TOKENS_PER_USER": "10/hour"}
    )
    neighbour = neighbour_of(abuse, await abuse.login(ADMIN))
    await neighbour.baseline(1.0)
    tally: Counter[int] = Counter()
    async with neighbour.beside():
        for _ in range(40):  # one after another: the per-email bound is no help here
            status, wait = await attempt(abuse, OTHER, PASSWORD)
            tally[status] += 1
            if status == 429:
                assert 1 <= int(wait) <= 3600
    neighbour.report(
        "40 sequential correct logins, 10 tokens per hour",
        sum(tally.values()),
        f"attacker answers {dict(sorted(tally.items()))}",
    )
    # start_abuse_stack minted one token of OTHER already.
    assert tally == Counter({200: 9, 429: 31})


async def test_60_concurrent_wrong_passwords_reach_the_backend_5_times(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(stack, abuse_template, session)
    neighbour = neighbour_of(abuse)
    await neighbour.baseline(1.0)
    tally: Counter[int] = Counter()
    async with neighbour.beside():
        for _ in range(6):
            answers = await asyncio.gather(
                *(attempt(abuse, VICTIM, "not the password") for _ in range(60))
            )
            for status, wait in answers:
                tally[status] += 1
                if status == 429:
                    assert int(wait) >= 1
    neighbour.report(
        "60 concurrent wrong passwords x6",
        sum(tally.values()),
        f"attacker answers {dict(sorted(tally.items()))}",
    )
    # Exactly 5 failures were checked (each wave gets at least one until then).
    assert tally == Counter({401: 5, 429: 6 * 60 - 5})
    status, wait = await attempt(abuse, VICTIM, PASSWORD)
    assert status == 429
    assert 1 <= int(wait) <= 900


async def test_a_flood_past_the_gateway_bound_meets_the_backends_bound(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    """With the gateway's bounds lifted, 150 checks reach the backend at once: it
    runs 3, lets others wait 1 s at most, answers the rest 503 at once; the
    neighbour's API calls are not starved."""
    abuse = await start_abuse_stack(
        stack,
        abuse_template,
        session,
        gateway_env={
            "LOGIN_CHECKS_PER_EMAIL": "1000",
            "LOGIN_FAILURES_PER_EMAIL": "1000",
            "LOGIN_FAILURES_PER_ADDRESS": "1000",
            "TOKENS_PER_USER": "off",
        },
    )
    neighbour = neighbour_of(abuse, await abuse.login(ADMIN))
    await neighbour.baseline(1.0)
    tally: Counter[int] = Counter()
    waits: set[str] = set()
    slowest = 0.0
    async with neighbour.beside():
        for _ in range(2):

            async def timed() -> tuple[int, str, float]:
                started = time.monotonic()
                status, wait = await attempt(abuse, OTHER, PASSWORD)
                return status, wait, time.monotonic() - started

            for status, wait, seconds in await asyncio.gather(
                *(timed() for _ in range(150))
            ):
                tally[status] += 1
                slowest = max(slowest, seconds)
                if status == 503:
                    waits.add(wait)
    neighbour.report(
        "150 concurrent correct logins x2 past the gateway's per-email bound",
        sum(tally.values()),
        f"attacker answers {dict(sorted(tally.items()))}, Retry-After "
        f"{sorted(waits)}, slowest attacker answer {slowest:.1f} s",
    )
    assert set(tally) <= {200, 503}, tally
    assert tally[503] > 0, tally  # 150 argon2 checks take far longer than 3 x 1 s
    assert waits == {"1"}
