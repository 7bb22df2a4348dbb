"""Proxying to a loopback backend: bytes, headers, limits, and backend faults."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.gateway.conftest import (
    EchoBackend,
    GatewayFactory,
    raw_request,
    start_echo,
    tenants_text,
    write_secret,
)
from tests.helpers.net import free_port

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]
HOST = {"Host": "company.localhost"}


@pytest.fixture
async def gateway(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> tuple[Client, EchoBackend, str]:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    client = await make_gateway(
        tenants_text(
            [
                {
                    "subdomain": "company",
                    "backends": [url],
                    "upstream_timeout": 0.5,
                    "max_body_bytes": 2_000_000,
                    "aliases": ["energy.company.example"],
                }
            ]
        )
    )
    response = await client.post(
        "/api/requestAuthToken",
        json={"email": "a@b.cd", "password": "pw"},
        headers=HOST,
    )
    token = (await response.json())["auth_token"]
    backend.seen.clear()
    return client, backend, token


async def test_query_string_and_path_pass_byte_for_byte(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, backend, token = gateway
    raw = "/api/v3_0/sensors/1/data?start=2026-01-01T00%3A00%3A00%2B01%3A00&x=a+b&e=%C2%B0C&f"
    answer = await raw_request(
        client,
        f"GET {raw} HTTP/1.1\r\nHost: company.localhost\r\nAuthorization: {token}\r\n"
        "Connection: close\r\n\r\n",
    )
    assert answer.startswith("HTTP/1.1 200")
    assert "X-Backend: 1" in answer
    assert backend.seen[-1]["raw_path"] == raw


async def test_headers_hop_by_hop_and_secrets_are_dropped(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, backend, token = gateway
    response = await client.get(
        "/api/v3_0/users",
        headers={
            **HOST,
            "Authorization": token,
            "Cookie": "session=secret",
            "X-FlexHost-Identity": "forged",
            "Connection": "keep-alive, X-Private",
            "X-Private": "hop",
            "Keep-Alive": "timeout=5",
            "X-Forwarded-For": "6.6.6.6",
            "X-Custom": "kept",
            "FlexMeasures-Client-Version": "0.9.6",
        },
    )
    assert response.status == 200
    seen = backend.seen[-1]["headers"]
    assert isinstance(seen, Mapping)
    for gone in ("Authorization", "Cookie", "X-Private", "Keep-Alive"):
        assert gone not in seen
    assert seen["X-FlexHost-Identity"] != "forged"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Custom"] == "kept"
    assert seen["FlexMeasures-Client-Version"] == "0.9.6"
    claims = backend.seen[-1]["claims"]
    assert isinstance(claims, dict)
    assert claims["sub"] != "service:gateway"


async def test_every_api_response_has_version_and_request_id(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, backend, token = gateway
    for path in ("/api/", "/api", "/api/v3_0/users", "/api/nothing", "/api/v3_0"):
        response = await client.get(
            path, headers={**HOST, "Authorization": token, "X-Request-Id": "abc-123"}
        )
        assert response.headers["FlexMeasures-Version"] == "1.0.1"
        assert response.headers["X-Request-Id"] == "abc-123"
        assert response.headers["Server"] == "flexhost"
        assert response.content_type == "application/json"
    assert backend.seen[-1]["headers"]["X-Request-Id"] == "abc-123"  # type: ignore[index]


async def test_version_listing_shape(gateway: tuple[Client, EchoBackend, str]) -> None:
    client, _, _ = gateway
    for host in (
        "company.localhost:8080",
        "COMPANY.flexmeasures.io.",
        "energy.company.example",
    ):
        response = await client.get("/api/", headers={"Host": host})
        body = await response.json()
        assert set(body) == {"flexmeasures_version", "message", "status", "versions"}
        assert body["versions"] == ["v3_0"]
        assert body["status"] == 200


async def test_public_endpoints_need_no_token(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, backend, _ = gateway
    for path in ("/api/v3_0", "/api/v3_0/health/ready", "/api/ops/ping"):
        response = await client.get(path, headers=HOST)
        assert response.status == 200, path
        claims = backend.seen[-1]["claims"]
        assert isinstance(claims, dict)
        assert claims["sub"] == "service:gateway"
    response = await client.post("/api/ops/ping", headers=HOST)
    assert response.status == 401


async def test_unknown_and_sunset_versions(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, backend, token = gateway
    response = await client.get(
        "/api/v9_9/sensors", headers={**HOST, "Authorization": token}
    )
    assert response.status == 404
    assert (await response.json())["status"] == 404
    response = await client.post("/api/v1_3/postUdiEvent", headers=HOST)
    assert response.status == 410
    assert "has been sunset" in (await response.json())["message"]
    for header in ("Deprecation", "Sunset", "Link"):
        assert header in response.headers
    assert not backend.seen


@pytest.mark.parametrize(
    "path",
    [
        "/api/v3_0/../internal/credentials",
        "/api/v3_0/%2e%2e/internal/credentials",
        "/api/v3_0/%2E%2e/internal",
        "/api//v3_0/users",
        "/api/v3_0//users",
        "/api/v3_0/users%2f1",
        "/api/v3_0/./users",
        "/api/v3_0/users%5c1",
    ],
)
async def test_path_tricks_are_400(
    gateway: tuple[Client, EchoBackend, str], path: str
) -> None:
    client, backend, token = gateway
    answer = await raw_request(
        client,
        f"GET {path} HTTP/1.1\r\nHost: company.localhost\r\nAuthorization: {token}\r\n"
        "Connection: close\r\n\r\n",
    )
    assert answer.startswith("HTTP/1.1 400"), answer
    assert '"INVALID_PATH"' in answer
    assert not backend.seen


async def test_unknown_host_is_404_json(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, _, _ = gateway
    for host in ("evil.example", "a.company.localhost", "localhost", "", "[::1]:80"):
        response = await client.get("/api/", headers={"Host": host})
        assert response.status == 404
        body = await response.json()
        assert body["status"] == "UNKNOWN_TENANT"


async def test_large_body_streams_and_oversized_is_413(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, backend, token = gateway
    big = b"x" * 1_500_000
    response = await client.post(
        "/api/v3_0/sensors/1/data",
        data=io.BytesIO(big),
        headers={**HOST, "Authorization": token, "Content-Type": "application/json"},
    )
    assert response.status == 200
    assert backend.seen[-1]["body"] == big
    backend.seen.clear()
    response = await client.post(
        "/api/v3_0/sensors/1/data",
        data=io.BytesIO(b"x" * 2_000_001),
        headers={**HOST, "Authorization": token},
    )
    assert response.status == 413
    assert (await response.json())["status"] == "PAYLOAD_TOO_LARGE"
    assert not backend.seen


async def test_large_response_streams_back(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, backend, token = gateway
    payload = b"[" + b"1.5," * 300_000 + b"0]"

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for i in range(0, len(payload), 50_000):
            await response.write(payload[i : i + 50_000])
        await response.write_eof()
        return response

    backend.handler = big
    response = await client.get(
        "/api/v3_0/sensors/1/data", headers={**HOST, "Authorization": token}
    )
    assert response.status == 200
    assert await response.read() == payload
    assert response.headers["FlexMeasures-Version"] == "1.0.1"


async def test_backend_hanging_is_504(gateway: tuple[Client, EchoBackend, str]) -> None:
    client, backend, token = gateway

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    backend.handler = hang
    response = await client.get(
        "/api/v3_0/users", headers={**HOST, "Authorization": token}
    )
    assert response.status == 504
    assert (await response.json())["status"] == "UPSTREAM_TIMEOUT"


async def test_backend_closing_mid_response_is_502(
    gateway: tuple[Client, EchoBackend, str],
) -> None:
    client, backend, token = gateway

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        assert request.transport is not None
        request.transport.close()
        return response

    backend.handler = cut
    response = await client.get(
        "/api/v3_0/users", headers={**HOST, "Authorization": token}
    )
    assert response.status == 502
    assert (await response.json())["status"] == "UPSTREAM_UNAVAILABLE"


async def test_backend_down_is_502_and_other_replica_is_used(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    _backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    dead = f"http://127.0.0.1:{free_port()}"
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [dead, url]}])
    )
    for _ in range(4):  # round robin starts at each replica in turn
        response = await client.get("/api/v3_0", headers=HOST)
        assert response.status == 200
    client2 = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [dead]}])
    )
    response = await client2.get("/api/v3_0", headers=HOST)
    assert response.status == 502
    assert (await response.json())["status"] == "UPSTREAM_UNAVAILABLE"
    response = await client2.post(
        "/api/requestAuthToken", json={"email": "a@b.cd", "password": "x"}, headers=HOST
    )
    assert response.status == 502


async def test_trusted_proxy_forwarded_host_and_proto(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    text = tenants_text([{"subdomain": "company", "backends": [url]}])
    untrusted = await make_gateway(text)
    headers = {"Host": "127.0.0.1", "X-Forwarded-Host": "company.flexmeasures.io"}
    assert (await untrusted.get("/api/", headers=headers)).status == 404
    trusted = await make_gateway(text, trusted_proxies=("127.0.0.1/32",))
    response = await trusted.get(
        "/api/v3_0",
        headers={
            **headers,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    assert response.status == 200
    claims = backend.seen[-1]["claims"]
    assert isinstance(claims, dict)
    assert claims["host"] == "company.flexmeasures.io"
    assert claims["scheme"] == "https"
    assert backend.seen[-1]["headers"]["X-Forwarded-For"] == "203.0.113.9"  # type: ignore[index]


def test_free_port_is_free() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
