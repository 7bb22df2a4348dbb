"""Malformed and oversized requests of issue 10 on real processes, a neighbour beside:
deep JSON (item 9), bodies around the gateway's internal thresholds (item 10) and
header lines the parser refuses, carrying a token (item 11).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Final

import aiohttp
import pytest

from tests.abuse.harness import (
    ADMIN,
    OTHER,
    AbuseDb,
    AbuseStack,
    Neighbour,
    start_abuse_stack,
)
from tests.faults.conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

DEEP: Final = "[" * 5000 + "]" * 5000
# Body sizes on both sides of the gateway's 64 KiB and 256 KiB thresholds.
SIZES: Final = (64 * 1024 - 1, 64 * 1024 + 1, 100_000, 256 * 1024 - 1, 256 * 1024 + 1)


def reading_neighbour(abuse: AbuseStack, token: str) -> Neighbour:
    """Account A reads its sensor's data, 5 times a second."""

    async def step() -> str | None:
        status, body = await abuse.call(
            token,
            "GET",
            f"/sensors/{abuse.sensor_a}/data"
            "?start=2026-01-01T00:00:00%2B00:00&duration=PT24H&unit=MW",
        )
        return None if status == 200 and isinstance(body, dict) else str(status)

    return Neighbour(step, workers=2, pause=0.2)


def sized_body(size: int) -> bytes:
    """A sensor-data POST of about `size` bytes (padded with spaces to exactly it)."""
    values = [1.5] * (size // 5)
    while True:
        body = json.dumps(
            {
                "start": "2027-01-01T00:00:00+00:00",
                "duration": f"PT{15 * len(values)}M",
                "unit": "MW",
                "values": values,
            }
        ).encode()
        if len(body) <= size:
            return body + b" " * (size - len(body))
        values = values[: -max(1, (len(body) - size) // 4)]


async def test_deep_json_bodies_sizes_and_bad_headers_beside_a_neighbour(
    stack: Stack, abuse_template: AbuseDb, session: aiohttp.ClientSession
) -> None:
    abuse = await start_abuse_stack(stack, abuse_template, session)
    neighbour = reading_neighbour(abuse, await abuse.login(ADMIN))
    attacker = await abuse.login(OTHER)
    await neighbour.baseline(1.5)
    answers: Counter[str] = Counter()
    sent = 0
    async with neighbour.beside():
        for _ in range(5):
            # Item 9: deep JSON, with and without a token.
            for path, method, token in (
                ("/api/requestAuthToken", "POST", None),
                ("/api/v3_0/assets", "POST", attacker),
                (f"/api/v3_0/sensors/{abuse.sensor_b}/data", "POST", attacker),
                (
                    f"/api/v3_0/sensors/{abuse.sensor_b}/schedules/trigger",
                    "POST",
                    attacker,
                ),
            ):
                headers = {**abuse.headers, "Content-Type": "application/json"}
                if token is not None:
                    headers["Authorization"] = token
                async with session.request(
                    method, abuse.url(path), data=DEEP, headers=headers
                ) as response:
                    body = await response.json(content_type=None)
                    sent += 1
                    answers[f"deep {response.status}"] += 1
                    assert response.status in (400, 422), (path, body)
                    assert isinstance(body, dict), body
                    assert body.get("message"), body
            # Item 11: a header line with a control byte, carrying the token.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", abuse.gateway.port
            )
            writer.write(
                (
                    f"GET /api/v3_0/sensors HTTP/1.1\r\nHost: {abuse.headers['Host']}\r\n"
                    f"Authorization: {attacker}\r\nX-Bad: a\x01b\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            sent += 1
            head, _, payload = raw.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] == b"400", raw[:200]
            assert b"\r\nServer: flexhost\r\n" in head, head
            assert json.loads(payload)["status"] == 400
            answers["bad header 400"] += 1
        # Item 10: every size around the thresholds passes, with a length and chunked.
        for size in SIZES:
            body = sized_body(size)
            assert len(body) == size
            for chunked in (False, True):

                async def chunks(data: bytes = body) -> object:
                    for at in range(0, len(data), 16 * 1024):
                        yield data[at : at + 16 * 1024]

                async with session.post(
                    abuse.url(f"/api/v3_0/sensors/{abuse.sensor_b}/data"),
                    data=chunks() if chunked else body,
                    headers={
                        **abuse.auth(attacker),
                        "Content-Type": "application/json",
                    },
                ) as response:
                    text = await response.text()
                    sent += 1
                    assert response.status == 200, (size, chunked, text[:200])
                    answers[f"size {response.status}"] += 1
    log = stack.processes.log("gateway") + stack.processes.log("backend")
    assert attacker not in log, "a token reached a log"
    assert "Traceback" not in log
    neighbour.report(
        "deep JSON, bodies of 64-257 KiB, bad header lines",
        sent,
        ", ".join(f"{k}: {n}" for k, n in sorted(answers.items())),
    )
