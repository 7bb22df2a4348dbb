"""Requests aiohttp's parser refuses get a JSON 400 from the backend, and no byte of
them lands in its log (#10, item 11). Served as `python -m tenant_service` does."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.errors import BadRequestError
from tenant_service.server import QuietRunner
from tenant_service.store.db import migrate
from tests.helpers.net import free_port

SECRET_TOKEN = "s3cr3t-identity-never-logged-0123456789"
MALFORMED = {
    "control byte in a header": (
        "GET /api/v3_0/users HTTP/1.1\r\nHost: x\r\n"
        f"X-FlexHost-Identity: {SECRET_TOKEN}\r\nX-Foo: a\x01b{SECRET_TOKEN}\r\n\r\n"
    ),
    "bad request line": f"GET /api/{SECRET_TOKEN}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad method": f"G\x01T /?t={SECRET_TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.fixture
async def port(settings: Settings) -> AsyncIterator[int]:
    await migrate(settings.database_url)
    runner = QuietRunner(create_app(settings), access_log=None)
    await runner.setup()
    chosen = free_port()
    await web.TCPSite(runner, "127.0.0.1", chosen).start()
    yield chosen
    await runner.cleanup()


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED)
async def test_malformed_requests_get_a_json_400_and_no_bytes_in_the_log(
    port: int,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    raw: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw.encode("latin-1"))
    answer = await asyncio.wait_for(reader.read(), 10)  # then the connection closes
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == "400", lines[0]
    headers = {
        k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
    }
    assert headers["content-type"].startswith("application/json")
    assert headers["connection"] == "close"
    assert len(headers["x-request-id"]) == 32
    assert json.loads(body) == {
        "message": BadRequestError.default_message,
        "status": 400,
    }
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.exc_info or ''}"
        for r in caplog.records
    )
    logged += capsys.readouterr().out
    assert SECRET_TOKEN[:8] not in logged
    assert any(
        "malformed request from 127.0.0.1" in r.getMessage() for r in caplog.records
    )
