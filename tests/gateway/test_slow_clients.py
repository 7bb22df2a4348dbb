"""Slow clients (#10, item 1): header and body deadlines, shares of the backend
connections, waiting for a connection, and malformed requests (item 11).

The gateway runs as `python -m gateway` serves it (GuardedRunner: our protocol with
the header deadline) on a loopback port; the backends are loopback aiohttp apps.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from contract.config import ConfigError
from gateway import keys
from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.server import MALFORMED, GuardedRunner
from tests.gateway.conftest import EchoBackend, start_echo, tenants_text, write_secret
from tests.helpers.net import free_port

Server = Callable[..., Awaitable[TestServer]]
HOST = "company.localhost"
# Seconds the tests wait for an answer that must come (far above every deadline).
PATIENCE = 10.0


@dataclass
class Gateway:
    """A gateway served by GuardedRunner on 127.0.0.1:port."""

    app: web.Application
    port: int
    session: aiohttp.ClientSession
    # Sessions from other loopback addresses (127.0.0.2, ...): other clients.
    others: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def token(self) -> str:
        """A fresh token (the echo backend's login says user 7)."""
        async with self.session.post(
            self.url + "/api/requestAuthToken",
            json={"email": "a@b.cd", "password": "pw"},
            headers={"Host": HOST},
        ) as response:
            assert response.status == 200
            token: str = (await response.json())["auth_token"]
            return token

    async def get(
        self, path: str, token: str, source: str = "127.0.0.1"
    ) -> tuple[int, dict[str, str], Any]:
        """GET `path` with `token`, from the loopback address `source`."""
        session = self.session
        if source != "127.0.0.1":
            if source not in self.others:
                self.others[source] = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0, local_addr=(source, 0))
                )
            session = self.others[source]
        async with session.get(
            self.url + path,
            headers={"Host": HOST, "Authorization": token},
            timeout=aiohttp.ClientTimeout(total=PATIENCE),
        ) as response:
            body = await response.json(content_type=None)
            return response.status, dict(response.headers), body


GatewayMaker = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make(
    redis_url: str, redis_prefix: str, secrets_dir: Path, tmp_path: Path
) -> AsyncIterator[GatewayMaker]:
    """Start a gateway in front of `backends` with Settings `overrides`."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []
    gateways: list[Gateway] = []

    async def start(backends: list[str], **overrides: Any) -> Gateway:
        path = tmp_path / "tenants.yaml"
        path.write_text(
            tenants_text(
                [{"subdomain": "company", "backends": backends, "upstream_timeout": 5}]
            )
        )
        settings = Settings(
            tenants_path=path,
            redis_url=redis_url,
            key_prefix=redis_prefix,
            secrets_dir=secrets_dir,
            **overrides,
        )
        app = create_app(settings)
        runner = GuardedRunner(
            app, header_timeout=settings.header_timeout, access_log=None
        )
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        sessions.append(session)
        gateway = Gateway(app, port, session)
        gateways.append(gateway)
        return gateway

    yield start
    for session in sessions:
        await session.close()
    for gateway in gateways:
        for other in gateway.others.values():
            await other.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def echo(aiohttp_server: Server, secrets_dir: Path) -> tuple[EchoBackend, str]:
    return await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )


async def _answer(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One HTTP answer: status line, headers (lower-case names), body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(
        reader.readexactly(int(headers.get("content-length", "0"))), PATIENCE
    )
    return lines[0], headers, body


async def _answer_while(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, piece: bytes
) -> tuple[str, dict[str, str], bytes]:
    """The answer, while `piece` is sent every 0.1 s (until the answer is there)."""

    async def trickle() -> None:
        while True:
            await asyncio.sleep(0.1)
            writer.write(piece)

    task = asyncio.create_task(trickle())
    try:
        return await _answer(reader)
    finally:
        task.cancel()


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the gateway closed the connection (nothing more comes)."""
    try:
        rest = await asyncio.wait_for(reader.read(), PATIENCE)
    except ConnectionResetError:
        return True
    return rest == b""


def _request(path: str, token: str, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {token}\r\n{extra}\r\n"
    ).encode()


def _assert_envelope(
    status_line: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str | int,
) -> dict[str, Any]:
    # (HTTP/1.0 for a request whose version could not be read)
    assert status_line.startswith(("HTTP/1.1 ", "HTTP/1.0 ")), status_line
    assert status_line[9:].startswith(f"{status} "), status_line
    assert headers["server"] == "flexhost"
    assert headers["content-type"].startswith("application/json")
    assert headers["connection"] == "close"
    assert len(headers["x-request-id"]) == 32
    parsed: dict[str, Any] = json.loads(body)
    assert parsed["status"] == code
    assert isinstance(parsed["message"], str)
    return parsed


# --- request headers -----------------------------------------------------------


async def test_headers_trickling_on_a_new_connection_get_408_and_a_close(
    make: GatewayMaker, echo: tuple[EchoBackend, str]
) -> None:
    gateway = await make([echo[1]], header_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /api/v3_0/users HTTP/1.1\r\nHost: ")
    # 1 byte now and then, never the end of the headers
    status_line, headers, body = await _answer_while(reader, writer, b"c")
    parsed = _assert_envelope(status_line, headers, body, 408, "REQUEST_TIMEOUT")
    assert "headers" in parsed["message"]
    assert await _closed(reader)
    writer.close()
    assert echo[0].seen == []


async def test_headers_trickling_on_a_keep_alive_connection_get_408(
    make: GatewayMaker, echo: tuple[EchoBackend, str]
) -> None:
    gateway = await make([echo[1]], header_timeout=0.5)
    token = await gateway.token()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(_request("/api/v3_0/users", token))
    status_line, headers, _ = await _answer(reader)
    assert status_line.startswith("HTTP/1.1 200")
    # Idle for longer than the header deadline: no request yet, so no 408 ...
    await asyncio.sleep(0.8)
    writer.write(_request("/api/v3_0/users", token))
    status_line, _, _ = await _answer(reader)
    assert status_line.startswith("HTTP/1.1 200")
    # ... but a next request trickling its headers gets one.
    writer.write(b"GET /api/v3_0/users HTTP/1.1\r\n")
    status_line, headers, body = await _answer_while(reader, writer, b"X")
    _assert_envelope(status_line, headers, body, 408, "REQUEST_TIMEOUT")
    assert await _closed(reader)
    writer.close()


async def test_headers_in_pieces_within_the_deadline_pass(
    make: GatewayMaker, echo: tuple[EchoBackend, str]
) -> None:
    gateway = await make([echo[1]], header_timeout=3.0)
    token = await gateway.token()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    raw = _request("/api/v3_0/users", token, "Connection: close\r\n")
    for i in range(0, len(raw), 20):
        writer.write(raw[i : i + 20])
        await asyncio.sleep(0.02)
    status_line, _, _ = await _answer(reader)
    assert status_line.startswith("HTTP/1.1 200")
    writer.close()


async def test_a_connection_sending_nothing_is_closed_without_an_answer(
    make: GatewayMaker, echo: tuple[EchoBackend, str]
) -> None:
    gateway = await make([echo[1]], header_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
    writer.close()


# --- request bodies ------------------------------------------------------------


class SlowSink:
    """A backend that reads the whole body; records how each read ended."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/readyz":
            return web.json_response({"status": "ok"})
        if request.path == "/internal/credentials":
            return web.json_response(
                {"user_id": 7, "account_id": 3, "roles": [], "active": True}
            )
        self.outcomes.append("started")
        try:
            body = await request.read()
        except (Exception, asyncio.CancelledError) as err:  # the upload was cut
            self.outcomes[-1] = f"cut: {type(err).__name__}"
            raise
        self.outcomes[-1] = f"read {len(body)}"
        return web.json_response({"size": len(body)})


@pytest.fixture
async def sink(aiohttp_server: Server, secrets_dir: Path) -> tuple[SlowSink, str]:
    write_secret(secrets_dir, "company")
    backend = SlowSink()
    server = await aiohttp_server(backend.app)
    return backend, str(server.make_url("")).rstrip("/")


def _post_head(token: str, length: int | None) -> bytes:
    framing = (
        f"Content-Length: {length}"
        if length is not None
        else "Transfer-Encoding: chunked"
    )
    return (
        f"POST /api/v3_0/sensors/1/data HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Authorization: {token}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


async def _until(check: Callable[[], bool]) -> None:
    """Poll `check` (state of a backend in this process) until it holds."""
    async with asyncio.timeout(PATIENCE):
        while not check():  # noqa: ASYNC110 - the state has no event to wait on
            await asyncio.sleep(0.02)


async def test_buffered_body_that_stalls_gets_408_and_the_replica_stays_in(
    make: GatewayMaker, sink: tuple[SlowSink, str]
) -> None:
    gateway = await make([sink[1]], body_timeout=0.4)
    token = await gateway.token()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(_post_head(token, 1000) + b'{"values": [')
    status_line, headers, body = await _answer(reader)
    parsed = _assert_envelope(status_line, headers, body, 408, "REQUEST_TIMEOUT")
    assert parsed["message"] == (
        "The request body did not arrive in time (pauses of at most 0.4 s and at "
        "least 500 bytes/s)."
    )
    assert await _closed(reader)
    writer.close()
    assert sink[0].outcomes == []  # a buffered body never reached the backend
    assert gateway.app[keys.HEALTH].ejected() == {}


async def test_streamed_body_trickling_is_cut_below_the_minimum_rate(
    make: GatewayMaker, sink: tuple[SlowSink, str]
) -> None:
    # No pause reaches the 1 s deadline, but 1 byte per 0.1 s is below 100 bytes/s.
    gateway = await make([sink[1]], body_timeout=1.0, body_min_rate=100)
    token = await gateway.token()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(_post_head(token, None))
    status_line, headers, body = await _answer_while(reader, writer, b"1\r\n \r\n")
    parsed = _assert_envelope(status_line, headers, body, 408, "REQUEST_TIMEOUT")
    assert "100 bytes/s" in parsed["message"]
    assert await _closed(reader)
    writer.close()
    # The upload to the backend was aborted, and that is no replica failure.
    await _until(lambda: bool(sink[0].outcomes) and sink[0].outcomes[0] != "started")
    assert sink[0].outcomes[0].startswith("cut: ")
    assert gateway.app[keys.HEALTH].ejected() == {}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_slow_body_within_deadline_and_rate_passes(
    make: GatewayMaker, sink: tuple[SlowSink, str], chunked: bool
) -> None:
    gateway = await make([sink[1]], body_timeout=2.0, body_min_rate=500)
    token = await gateway.token()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    piece = b"x" * 400
    writer.write(_post_head(token, None if chunked else 4 * len(piece)))
    for _ in range(4):  # 1,600 bytes over ~0.6 s: pauses and rate within bounds
        writer.write(b"190\r\n" + piece + b"\r\n" if chunked else piece)
        await asyncio.sleep(0.2)
    if chunked:
        writer.write(b"0\r\n\r\n")
    status_line, _, body = await _answer(reader)
    assert status_line.startswith("HTTP/1.1 200"), body
    assert json.loads(body) == {"size": 1600}
    writer.close()


# --- shares of the backend connections and waiting for one ---------------------


class Gate:
    """A backend whose API requests wait until `open` is set."""

    def __init__(self) -> None:
        self.waiting = 0
        self.answered = 0
        self.open = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/readyz":
            return web.json_response({"status": "ok"})
        if request.path == "/internal/credentials":
            return web.json_response(
                {"user_id": 7, "account_id": 3, "roles": [], "active": True}
            )
        self.waiting += 1
        await self.open.wait()
        self.answered += 1
        return web.json_response({"ok": True})


@pytest.fixture
async def gate(aiohttp_server: Server, secrets_dir: Path) -> tuple[Gate, str]:
    write_secret(secrets_dir, "company")
    backend = Gate()
    server = await aiohttp_server(backend.app)
    return backend, str(server.make_url("")).rstrip("/")


async def test_one_token_holds_at_most_its_share(
    make: GatewayMaker, gate: tuple[Gate, str]
) -> None:
    backend, url = gate
    # 8 connections per replica: 2 per token, 8 per address.
    gateway = await make([url], upstream_connections=8, upstream_share_per_token=0.25)
    first, second = await gateway.token(), await gateway.token()
    held = [
        asyncio.create_task(gateway.get("/api/v3_0/users", first)) for _ in range(2)
    ]
    await _until(lambda: backend.waiting == 2)
    status, headers, body = await gateway.get("/api/v3_0/users", first)
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert body == {
        "message": "Too many requests with this token are in progress at once (at "
        "most 2); please wait for some to finish.",
        "result": "Rejected",
        "status": "TOO_MANY_REQUESTS",
    }
    # Another token of the same tenant is not held back.
    other = asyncio.create_task(gateway.get("/api/v3_0/users", second))
    await _until(lambda: backend.waiting == 3)
    backend.open.set()
    assert [s for s, _, _ in await asyncio.gather(*held, other)] == [200, 200, 200]
    # Its share is free again.
    assert (await gateway.get("/api/v3_0/users", first))[0] == 200


async def test_one_address_holds_at_most_its_share(
    make: GatewayMaker, gate: tuple[Gate, str]
) -> None:
    backend, url = gate
    gateway = await make(
        [url],
        upstream_connections=8,
        upstream_share_per_token=1.0,
        upstream_share_per_address=0.375,  # 3 of 8
    )
    tokens = [await gateway.token() for _ in range(4)]
    held = [
        asyncio.create_task(gateway.get("/api/v3_0/users", token))
        for token in tokens[:3]
    ]
    await _until(lambda: backend.waiting == 3)
    status, _, body = await gateway.get("/api/v3_0/users", tokens[3])
    assert status == 429
    assert body["message"].startswith("Too many requests from your address")
    backend.open.set()
    assert [s for s, _, _ in await asyncio.gather(*held)] == [200, 200, 200]


async def test_a_full_replica_makes_requests_wait_then_503_without_ejection(
    make: GatewayMaker, gate: tuple[Gate, str]
) -> None:
    backend, url = gate
    gateway = await make(
        [url],
        upstream_connections=2,
        upstream_share_per_token=1.0,
        upstream_share_per_address=1.0,
        upstream_wait=1.0,  # the waiting request below needs about 0.05 s
    )
    tokens = [await gateway.token() for _ in range(3)]
    sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]  # 2 per address: 3 clients
    held = [
        asyncio.create_task(gateway.get("/api/v3_0/users", token, source))
        for token, source in zip(tokens[:2], sources, strict=False)
    ]
    await _until(lambda: backend.waiting == 2)
    status, headers, body = await gateway.get("/api/v3_0/users", tokens[2], sources[2])
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert body == {
        "message": "The backend of tenant 'company' is busy; please retry shortly.",
        "status": "UPSTREAM_BUSY",
    }
    assert gateway.app[keys.HEALTH].ejected() == {}
    # A request that gets a connection within the wait is answered.
    waiting = asyncio.create_task(gateway.get("/api/v3_0/users", tokens[2], sources[2]))
    await asyncio.sleep(0.05)
    backend.open.set()
    assert [s for s, _, _ in await asyncio.gather(*held, waiting)] == [200] * 3
    assert gateway.app[keys.HEALTH].ejected() == {}


async def test_a_full_replica_sends_requests_to_a_free_one(
    make: GatewayMaker, aiohttp_server: Server, secrets_dir: Path
) -> None:
    write_secret(secrets_dir, "company")
    gates = [Gate(), Gate()]
    urls = [str((await aiohttp_server(g.app)).make_url("")).rstrip("/") for g in gates]
    gateway = await make(
        urls,
        upstream_connections=1,
        upstream_share_per_token=1.0,
        upstream_share_per_address=1.0,
        upstream_wait=0.3,
    )
    tokens = [await gateway.token() for _ in range(3)]
    sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]  # 1 per address: 3 clients
    held = [
        asyncio.create_task(gateway.get("/api/v3_0/users", token, source))
        for token, source in zip(tokens[:2], sources, strict=False)
    ]
    # Round-robin would send the second to the first replica again half the time.
    await _until(lambda: gates[0].waiting + gates[1].waiting == 2)
    assert (gates[0].waiting, gates[1].waiting) == (1, 1)
    assert (await gateway.get("/api/v3_0/users", tokens[2], sources[2]))[0] == 503
    for g in gates:
        g.open.set()
    assert [s for s, _, _ in await asyncio.gather(*held)] == [200, 200]


# --- malformed requests ----------------------------------------------------------

SECRET_TOKEN = "s3cr3t-token-never-logged-0123456789"
MALFORMED_REQUESTS = {
    "control byte in a header": (
        f"GET /api/v3_0/users HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Authorization: {SECRET_TOKEN}\r\nX-Foo: a\x01b{SECRET_TOKEN}\r\n\r\n"
    ),
    "bad request line": f"GET /api/{SECRET_TOKEN}\x01 HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
    "bad header name": f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX {SECRET_TOKEN}: 1\r\n\r\n",
    "bad method": f"G\x01T /?auth_token={SECRET_TOKEN} HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED_REQUESTS.values(), ids=MALFORMED_REQUESTS)
async def test_malformed_requests_get_our_400_and_no_bytes_in_the_log(
    make: GatewayMaker,
    echo: tuple[EchoBackend, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    raw: str,
) -> None:
    gateway = await make([echo[1]])
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(raw.encode("latin-1"))
    status_line, headers, body = await _answer(reader)
    # FlexMeasures' body for a request it cannot read: the status as a number
    parsed = _assert_envelope(status_line, headers, body, 400, 400)
    assert parsed["message"] == MALFORMED
    assert "aiohttp" not in status_line + json.dumps(headers)
    assert await _closed(reader)
    writer.close()
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.exc_info or ''}"
        for r in caplog.records
    )
    logged += capsys.readouterr().out
    assert SECRET_TOKEN not in logged
    assert SECRET_TOKEN[:8] not in logged
    assert any(
        "malformed request from 127.0.0.1" in r.getMessage() for r in caplog.records
    )


# --- settings --------------------------------------------------------------------


def test_slow_client_settings_from_the_environment() -> None:
    settings = load_settings(
        {
            "GATEWAY_HEADER_TIMEOUT": "5",
            "GATEWAY_BODY_TIMEOUT": "30",
            "GATEWAY_BODY_MIN_RATE": "0",
            "GATEWAY_UPSTREAM_CONNECTIONS": "100",
            "GATEWAY_UPSTREAM_SHARE_PER_TOKEN": "1",
            "GATEWAY_UPSTREAM_SHARE_PER_ADDRESS": "0.1",
            "GATEWAY_UPSTREAM_WAIT": "0.5",
        }
    )
    assert (settings.header_timeout, settings.body_timeout) == (5.0, 30.0)
    assert settings.body_min_rate == 0
    assert settings.upstream_connections == 100
    assert settings.upstream_share_per_token == 1.0
    assert settings.upstream_share_per_address == 0.1
    assert settings.upstream_wait == 0.5
    defaults = load_settings({})
    assert (defaults.header_timeout, defaults.body_timeout) == (10.0, 20.0)
    assert (defaults.body_min_rate, defaults.upstream_connections) == (500, 256)
    assert defaults.upstream_wait == 5.0


def test_slow_client_settings_refuse_bad_values() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "GATEWAY_HEADER_TIMEOUT": "0",
                "GATEWAY_BODY_TIMEOUT": "soon",
                "GATEWAY_BODY_MIN_RATE": "-1",
                "GATEWAY_UPSTREAM_CONNECTIONS": "0",
                "GATEWAY_UPSTREAM_SHARE_PER_TOKEN": "0",
                "GATEWAY_UPSTREAM_SHARE_PER_ADDRESS": "1.5",
                "GATEWAY_UPSTREAM_WAIT": "-2",
            }
        )
    named = {problem.split(":")[0] for problem in caught.value.problems}
    assert named == {
        "GATEWAY_HEADER_TIMEOUT",
        "GATEWAY_BODY_TIMEOUT",
        "GATEWAY_BODY_MIN_RATE",
        "GATEWAY_UPSTREAM_CONNECTIONS",
        "GATEWAY_UPSTREAM_SHARE_PER_TOKEN",
        "GATEWAY_UPSTREAM_SHARE_PER_ADDRESS",
        "GATEWAY_UPSTREAM_WAIT",
    }
