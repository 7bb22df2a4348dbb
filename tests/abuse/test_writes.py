"""Amplified writes (#10 item 2) against a real SQLite backend behind a gateway.

Account B posts the largest writes a request may make (87-byte bodies spanning
TENANT_MAX_BELIEFS_PER_REQUEST quarter-hours, fresh ones and repeats of the same)
from several connections at once, plus bodies one step over the limit, while a
neighbour in account A posts small series. The neighbour's writes must all
succeed; its p99 is printed beside its p99 without the attack.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Final

import aiohttp
import pytest

from tenant_service.config import DEFAULT_MAX_BELIEFS_PER_REQUEST
from tests.abuse.harness import OTHER, VICTIM, AbuseDb, Neighbour, start_abuse_stack
from tests.faults.conftest import Stack

pytestmark = pytest.mark.slow

LIMIT: Final = DEFAULT_MAX_BELIEFS_PER_REQUEST
ATTACKERS: Final = 3  # B's connections writing at once
ROUNDS: Final = 4  # max-size writes per connection (every other one a repeat)
EPOCH: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
QUARTER: Final = dt.timedelta(minutes=15)


def at(quarters: int) -> str:
    return (EPOCH + quarters * QUARTER).isoformat()


async def test_max_size_writes_leave_another_accounts_writes_served(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(stack, abuse_template, session)
    victim = await abuse.login(VICTIM)
    attacker = await abuse.login(OTHER)
    steps = itertools.count()

    async def step() -> str | None:
        # A's small series: two quarter-hours a time, always new.
        start = at(2 * next(steps) + 10_000_000)
        status, body = await abuse.call(
            victim,
            "POST",
            f"/sensors/{abuse.sensor_a}/data",
            {"values": [1.0, 2.0], "start": start, "duration": "PT30M", "unit": "MW"},
        )
        return None if status == 200 else f"{status} {str(body)[:80]}"

    neighbour = Neighbour(step)
    await neighbour.baseline(2.0)
    statuses: list[int] = []

    async def attack(worker: int) -> None:
        for round_ in range(ROUNDS):
            block = worker * ROUNDS + round_ - round_ % 2  # odd rounds repeat
            status, body = await abuse.call(
                attacker,
                "POST",
                f"/sensors/{abuse.sensor_b}/data",
                {
                    "values": [1],
                    "start": at(block * LIMIT),
                    "duration": f"PT{LIMIT * 15}M",
                    "unit": "MW",
                },
            )
            assert status == 200, body
            statuses.append(status)
            status, body = await abuse.call(
                attacker,
                "POST",
                f"/sensors/{abuse.sensor_b}/data",
                {
                    "values": [1],
                    "start": at(block * LIMIT),
                    "duration": f"PT{(LIMIT + 1) * 15}M",
                    "unit": "MW",
                },
            )
            assert status == 422, body
            assert str(LIMIT) in str(body)
            statuses.append(status)

    async with neighbour.beside():
        await asyncio.gather(*(attack(worker) for worker in range(ATTACKERS)))
    stored = statuses.count(200)
    neighbour.report(
        "max-size writes",
        len(statuses),
        extra=f"stored={stored} x {LIMIT} rows, refused={statuses.count(422)}",
    )
    assert stored == ATTACKERS * ROUNDS
