"""Every error the gateway makes itself is JSON in FlexMeasures' envelope."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.gateway.conftest import (
    GatewayFactory,
    start_echo,
    tenants_text,
    write_secret,
)
from tests.helpers.net import free_port

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def gateway(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> Client:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({})

    backend.handler = hang
    for name in ("down", "paused"):
        write_secret(secrets_dir, name)
    return await make_gateway(
        tenants_text(
            [
                {
                    "subdomain": "company",
                    "backends": [url],
                    "upstream_timeout": 0.2,
                    "max_body_bytes": 2048,
                },
                {"subdomain": "down", "backends": [f"http://127.0.0.1:{free_port()}"]},
                {"subdomain": "paused", "backends": [url], "status": "suspended"},
            ]
        )
    )


JSON = {"Content-Type": "application/json"}
CASES = [
    # (method, path, host, extra headers, body, status, code)
    ("GET", "/api/", "nobody.localhost", {}, None, 404, "UNKNOWN_TENANT"),
    ("GET", "/api/", "paused.localhost", {}, None, 403, "TENANT_SUSPENDED"),
    ("GET", "/api/v3_0/users", "company.localhost", {}, None, 401, "UNAUTHORIZED"),
    (
        "GET",
        "/api/v3_0/users",
        "company.localhost",
        {"Authorization": "x"},
        None,
        401,
        "UNAUTHORIZED",
    ),
    ("GET", "/api/nothing", "company.localhost", {}, None, 404, 404),
    ("DELETE", "/api/", "company.localhost", {}, None, 405, 405),
    ("GET", "/api/v9_9", "company.localhost", {}, None, 404, 404),
    ("GET", "/api/v2_0/assets", "company.localhost", {}, None, 410, 410),
    ("POST", "/api/requestAuthToken", "company.localhost", JSON, b"{", 400, 400),
    (  # JSON nested too deep for the parser
        "POST",
        "/api/requestAuthToken",
        "company.localhost",
        JSON,
        b"[" * 10_000 + b"]" * 10_000,
        400,
        400,
    ),
    (
        "POST",
        "/api/requestAuthToken",
        "company.localhost",
        JSON,
        b"{}",
        422,
        "UNPROCESSABLE_ENTITY",
    ),
    (
        "POST",
        "/api/requestAuthToken",
        "company.localhost",
        {},
        b"x" * 70_000,
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    ("POST", "/api/v3_0", "company.localhost", {}, b"x" * 4096, 401, "UNAUTHORIZED"),
    ("GET", "/api/v3_0", "company.localhost", {}, None, 504, "UPSTREAM_TIMEOUT"),
    ("GET", "/api/v3_0", "down.localhost", {}, None, 502, "UPSTREAM_UNAVAILABLE"),
    (
        "POST",
        "/api/requestAuthToken",
        "down.localhost",
        JSON,
        b'{"email": "a@b.cd", "password": "x"}',
        502,
        "UPSTREAM_UNAVAILABLE",
    ),
    # Errors on page paths (not /api) are HTML pages: tests/gateway/test_pages.py.
]


@pytest.mark.parametrize(
    ("method", "path", "host", "headers", "body", "status", "code"), CASES
)
async def test_error_envelope(
    gateway: Client,
    method: str,
    path: str,
    host: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    code: str | int,
) -> None:
    response = await gateway.request(
        method,
        path,
        headers={"Host": host, **headers},
        data=io.BytesIO(body) if body is not None else None,
    )
    assert response.status == status
    assert response.content_type == "application/json"
    answer = await response.json()
    assert answer["status"] == code
    assert isinstance(answer.get("message") or answer.get("errors"), str | dict | list)
    assert response.headers["X-Request-Id"]
    if path.startswith("/api"):
        assert response.headers["FlexMeasures-Version"] == "1.0.1"
    assert "Traceback" not in await response.text()
