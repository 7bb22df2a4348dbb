"""The backend checks access before it reads a body (#10).

A caller who may not act on the object in the path gets its 403 (or 404) while
its body is still arriving: the request's head and a part of its body go over a
raw socket with a Content-Length larger than what is sent, and the answer must
come without the rest. A body that arrives slowly never holds the tenant's
single SQLite writer either: another account writes meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import pytest
from sqlalchemy.pool import QueuePool

from tenant_service import keys
from tests.tenant_service.conftest import (
    Client,
    World,
    identity,
    make_asset,
    make_sensor,
)

ANSWER_TIMEOUT: Final = 5.0
PARTIAL: Final = b'{"values": [1, 2, 3'
CLAIMED: Final = 1_000_000  # Content-Length: far more than is ever sent


async def open_request(
    client: Client, method: str, path: str, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a request's head and the start of its body; the body never ends."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {client.host}:{client.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {CLAIMED}"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + PARTIAL)
    await writer.drain()
    return reader, writer


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, Any]:
    """Status and JSON body of the answer, or TimeoutError."""
    async with asyncio.timeout(ANSWER_TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
    return status, json.loads(body) if body else None


@pytest.fixture
async def theirs(client: Client, world: World) -> dict[str, int]:
    """Objects of another account ("other") than the caller's (acme)."""
    asset = await make_asset(client, world.outsider, name="Theirs")
    sensor = await make_sensor(client, world.outsider, asset["id"], "power")
    return {"asset": asset["id"], "sensor": sensor, "user": world.outsider}


ROUTES: Final = [
    ("POST", "/api/v3_0/sensors/{sensor}/data", 403),
    ("POST", "/api/v3_0/sensors/{sensor}/data/upload", 403),
    ("GET", "/api/v3_0/sensors/{sensor}/data", 403),
    ("DELETE", "/api/v3_0/sensors/{sensor}/data", 403),
    ("PATCH", "/api/v3_0/sensors/{sensor}", 403),
    ("PATCH", "/api/v3_0/assets/{asset}", 403),
    ("PATCH", "/api/v3_0/users/{user}", 403),
    ("POST", "/api/v3_0/sensors/{sensor}/schedules/trigger", 403),
    ("POST", "/api/v3_0/assets/{asset}/schedules/trigger", 403),
    (
        "GET",
        "/api/v3_0/sensors/data?sensor=ea1.2018-06.io.flexmeasures:fm1.{sensor}",
        403,
    ),
    ("POST", "/api/v3_0/sensors/999999/data", 404),
    ("POST", "/api/v3_0/sensors/999999/data/upload", 422),
    ("PATCH", "/api/v3_0/assets/999999", 404),
    ("PATCH", "/api/v3_0/users/999999", 404),
]


@pytest.mark.parametrize(("method", "path", "expected"), ROUTES)
async def test_refused_before_the_body_arrives(
    client: Client,
    world: World,
    theirs: dict[str, int],
    method: str,
    path: str,
    expected: int,
) -> None:
    reader, writer = await open_request(
        client, method, path.format(**theirs), identity(world.member)
    )
    try:
        status, body = await read_answer(reader)
    finally:
        writer.close()
    assert status == expected, body
    if expected == 403:
        assert body["status"] == "INVALID_SENDER"


async def test_a_slow_body_holds_no_write_turn(
    client: Client, world: World, theirs: dict[str, int]
) -> None:
    """While acme's POST body trickles in, another account's write is served."""
    asset = await make_asset(client, world.admin, name="Ours", account_id=world.acme)
    sensor = await make_sensor(client, world.admin, asset["id"], "power")
    reader, writer = await open_request(
        client, "POST", f"/api/v3_0/sensors/{sensor}/data", identity(world.member)
    )
    try:
        for value in range(3):
            resp = await client.post(
                f"/api/v3_0/sensors/{theirs['sensor']}/data",
                json={
                    "values": [value],
                    "start": f"2026-01-01T0{value}:00:00+00:00",
                    "duration": "PT15M",
                    "unit": "kW",
                },
                headers=identity(world.outsider),
            )
            assert resp.status == 200, await resp.text()
        with pytest.raises(TimeoutError):  # still waiting for its body
            async with asyncio.timeout(0.2):
                await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_a_slow_body_holds_no_database_connection(
    client: Client, world: World
) -> None:
    """While bodies trickle in, none of them keeps a pooled connection."""
    asset = await make_asset(client, world.admin, name="Ours", account_id=world.acme)
    sensor = await make_sensor(client, world.admin, asset["id"], "power")
    app = client.app
    assert app is not None
    pool = app[keys.TENANTS].only().engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    writers = []
    for index in range(3):
        body = json.dumps(
            {
                "values": [1.0, 2.0],
                "start": f"2026-01-0{index + 1}T00:00:00+00:00",
                "duration": "PT30M",
                "unit": "kW",
            }
        ).encode()
        reader, writer = await asyncio.open_connection(client.host, client.port)
        head = "\r\n".join(
            [
                f"POST /api/v3_0/sensors/{sensor}/data HTTP/1.1",
                f"Host: {client.host}:{client.port}",
                *(f"{k}: {v}" for k, v in identity(world.member).items()),
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
            ]
        )
        writer.write(head.encode() + b"\r\n\r\n" + body[:10])
        await writer.drain()
        writers.append((reader, writer, body[10:]))
    try:
        # The three handlers wait for their bodies, each past its access check.
        for _ in range(100):
            await asyncio.sleep(0.01)
            if pool.checkedout() == 0:
                break
        assert pool.checkedout() == 0
        for reader, writer, rest in writers:
            writer.write(rest)
            await writer.drain()
            status, answer = await read_answer(reader)
            assert status == 200, answer
    finally:
        for _, writer, _ in writers:
            writer.close()
