"""Replica health and retries: dead replicas skipped, back ones used, safe retries."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import keys
from gateway.health import PROBE_PATH, ReplicaHealth
from gateway.proxy import BUFFER_LIMIT
from gateway.upstream import Failure, may_retry
from tests.gateway.conftest import (
    EchoBackend,
    GatewayFactory,
    start_echo,
    tenants_text,
    write_secret,
)
from tests.helpers.net import free_port

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]
HOST = {"Host": "company.localhost"}
# Long enough that no probe runs during a test of the passive checks.
NO_PROBES = 600.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Resetter:
    """A loopback server that reads a request's head, then resets the connection."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = b""
        line = head.split(b"\r\n", 1)[0].decode()
        if line and PROBE_PATH not in line:
            self.requests.append(line)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, before any byte of an answer

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def resetter() -> AsyncIterator[Resetter]:
    server = Resetter()
    await server.start()
    yield server
    await server.close()


async def _token(client: Client) -> str:
    token, _ = await client.app[keys.TOKENS].issue(
        tenant="company", user_id=7, account_id=3, roles=("account-admin",), ttl=600
    )
    return token


async def _wait_for(check: Callable[[], bool], seconds: float) -> float:
    """Seconds until `check()` holds (fails the test after `seconds`)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"condition not met within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


# --- the rules, on their own -------------------------------------------------


def test_replica_health_ejection_doubles_up_to_the_cap() -> None:
    clock = Clock()
    health = ReplicaHealth(first=1.0, longest=30.0, clock=clock)
    lengths = []
    for _ in range(7):
        health.failed("http://a", "refused")
        ejection = health.ejected()["http://a"]
        lengths.append(ejection.backoff)
        assert not health.is_up("http://a")
        clock.now = ejection.until  # the trial after the ejection fails again
        assert health.is_up("http://a")
    assert lengths == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_replica_health_one_outage_seen_by_many_requests_counts_once() -> None:
    clock = Clock()
    health = ReplicaHealth(clock=clock)
    for _ in range(5):
        health.failed("http://a", "refused")
        clock.now += 0.1
    assert health.ejected()["http://a"].backoff == 1.0


def test_replica_health_order_tries_ejected_last_and_never_drops_one() -> None:
    clock = Clock()
    health = ReplicaHealth(clock=clock)
    backends = ["http://a", "http://b", "http://c"]
    assert health.order(backends) == backends
    health.failed("http://a", "refused")
    clock.now += 0.5
    health.failed("http://b", "reset")
    assert health.order(backends) == ["http://c", "http://a", "http://b"]
    health.failed("http://c", "timeout")
    assert health.order(backends) == ["http://a", "http://b", "http://c"]
    clock.now += 0.6  # a's ejection is over: its turn again
    assert health.order(backends) == ["http://a", "http://b", "http://c"]
    assert health.order(["http://b", "http://c", "http://a"])[0] == "http://a"


def test_replica_health_answer_during_ejection_does_not_end_it() -> None:
    clock = Clock()
    health = ReplicaHealth(clock=clock)
    health.failed("http://a", "refused")
    health.passed("http://a")  # sent before the failure, finished during a drain
    assert not health.is_up("http://a")
    clock.now += 1.0
    health.passed("http://a")  # the trial after the ejection succeeded
    assert health.ejected() == {}
    health.failed("http://a", "refused")
    assert health.ejected()["http://a"].backoff == 1.0  # the back-off starts over


def test_replica_health_probed_down_until_a_probe_succeeds() -> None:
    clock = Clock()
    health = ReplicaHealth(clock=clock)
    health.probed("http://a", False, "refused")
    clock.now += 3600
    health.passed("http://a")
    assert not health.is_up("http://a")
    assert health.order(["http://a", "http://b"]) == ["http://b", "http://a"]
    health.failed("http://a", "refused")
    health.probed("http://a", True, "answered 200")
    assert health.is_up("http://a")
    assert health.ejected() == {}


def test_replica_health_forgets_replicas_no_longer_configured() -> None:
    health = ReplicaHealth()
    health.failed("http://a", "refused")
    health.probed("http://b", False, "refused")
    health.retain(["http://b", "http://c"])
    assert set(health.ejected()) == {"http://b"}


@pytest.mark.parametrize(
    ("kind", "method", "replayable", "retried"),
    [
        ("connect", "GET", True, True),
        ("connect", "POST", True, True),
        ("connect", "PATCH", False, True),  # a streamed body not yet read
        ("reset", "GET", True, True),
        ("reset", "HEAD", True, True),
        ("reset", "GET", False, False),  # a streamed body is never replayed
        ("reset", "PUT", True, False),
        ("reset", "DELETE", True, False),
        ("reset", "POST", True, False),
        ("reset", "PATCH", True, False),
        ("timeout", "GET", True, False),
        ("other", "GET", True, False),
    ],
)
def test_may_retry_rules(
    kind: Failure, method: str, replayable: bool, retried: bool
) -> None:
    assert may_retry(kind, method, replayable) is retried


# --- passive: through a real gateway ---------------------------------------------


async def test_dead_replica_is_skipped_after_its_first_failure(
    make_gateway: GatewayFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    dead = f"http://127.0.0.1:{free_port()}"
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [dead, url]}]),
        health_interval=NO_PROBES,
    )
    with caplog.at_level(logging.WARNING, logger="gateway"):
        for _ in range(20):
            response = await client.get("/api/v3_0", headers=HOST)
            assert response.status == 200
    assert len(backend.seen) == 20
    assert not client.app[keys.HEALTH].is_up(dead)
    ejections = [r for r in caplog.records if "ejected" in r.getMessage()]
    assert len(ejections) == 1


async def test_resetting_replica_gets_one_request_then_is_skipped(
    make_gateway: GatewayFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    resetter: Resetter,
) -> None:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    broken = resetter.url
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [broken, url]}]),
        health_interval=NO_PROBES,
    )
    for _ in range(10):
        response = await client.get("/api/v3_0", headers=HOST)
        assert response.status == 200
    assert len(resetter.requests) == 1
    assert len(backend.seen) == 10


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("GET", 200),
        ("HEAD", 200),
        ("POST", 502),
        ("PUT", 502),
        ("PATCH", 502),
        ("DELETE", 502),
    ],
)
async def test_reset_after_sending_is_retried_for_get_and_head_only(
    make_gateway: GatewayFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    resetter: Resetter,
    method: str,
    status: int,
) -> None:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    broken = resetter.url
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [broken, url]}]),
        health_interval=NO_PROBES,
    )
    token = await _token(client)
    # DELETE without a body: aiohttp itself would re-send it after a reset.
    body = b'{"value": 1}' if method in ("POST", "PUT", "PATCH") else None
    response = await client.request(
        method,
        "/api/v3_0/sensors/1",
        data=body,
        headers={**HOST, "Authorization": token, "Content-Type": "application/json"},
    )
    assert response.status == status
    assert resetter.requests == [f"{method} /api/v3_0/sensors/1 HTTP/1.1"]
    if status == 502:
        assert (await response.json())["status"] == "UPSTREAM_UNAVAILABLE"
        assert backend.seen == []
    else:
        assert [seen["method"] for seen in backend.seen] == [method]


async def test_only_replica_resetting_a_get_gets_it_once_more(
    make_gateway: GatewayFactory, secrets_dir: Path, resetter: Resetter
) -> None:
    write_secret(secrets_dir, "company")
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [resetter.url]}]),
        health_interval=NO_PROBES,
    )
    response = await client.get("/api/v3_0", headers=HOST)
    assert response.status == 502
    assert resetter.requests == ["GET /api/v3_0 HTTP/1.1"] * 2
    token = await _token(client)
    response = await client.delete(
        "/api/v3_0/sensors/1", headers={**HOST, "Authorization": token}
    )
    assert response.status == 502
    assert resetter.requests[2:] == ["DELETE /api/v3_0/sensors/1 HTTP/1.1"]


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
async def test_every_method_is_retried_when_the_connection_is_refused(
    make_gateway: GatewayFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    method: str,
) -> None:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    dead = f"http://127.0.0.1:{free_port()}"
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [dead, url]}]),
        health_interval=NO_PROBES,
    )
    token = await _token(client)
    response = await client.request(
        method,
        "/api/v3_0/sensors/1",
        data=b'{"value": 1}',
        headers={**HOST, "Authorization": token, "Content-Type": "application/json"},
    )
    assert response.status == 200
    assert [(s["method"], s["body"]) for s in backend.seen] == [
        (method, b'{"value": 1}')
    ]


async def test_streamed_body_goes_whole_to_the_next_replica_after_a_refusal(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    dead = f"http://127.0.0.1:{free_port()}"
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [dead, url]}]),
        health_interval=NO_PROBES,
    )
    token = await _token(client)
    big = bytes(range(256)) * (3 * BUFFER_LIMIT // 256)
    response = await client.put(
        "/api/v3_0/sensors/1",
        data=io.BytesIO(big),  # no length known up front: streamed
        headers={**HOST, "Authorization": token},
    )
    assert response.status == 200
    assert backend.seen[-1]["body"] == big


async def test_streamed_body_is_never_replayed_after_a_reset(
    make_gateway: GatewayFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    resetter: Resetter,
) -> None:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    broken = resetter.url
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [broken, url]}]),
        health_interval=NO_PROBES,
    )
    token = await _token(client)
    response = await client.get(
        "/api/v3_0/sensors/1",
        data=io.BytesIO(b"x" * (3 * BUFFER_LIMIT)),
        headers={**HOST, "Authorization": token},
    )
    assert response.status == 502
    assert (await response.json())["status"] == "UPSTREAM_UNAVAILABLE"
    assert len(resetter.requests) == 1
    assert backend.seen == []


async def test_replica_timing_out_is_504_then_skipped(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    secret = write_secret(secrets_dir, "company")
    slow, slow_url = await start_echo(aiohttp_server, secret, "company")
    backend, url = await start_echo(aiohttp_server, secret, "company")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    slow.handler = hang
    client = await make_gateway(
        tenants_text(
            [
                {
                    "subdomain": "company",
                    "backends": [slow_url, url],
                    "upstream_timeout": 0.3,
                }
            ]
        ),
        health_interval=NO_PROBES,
    )
    response = await client.get("/api/v3_0", headers=HOST)
    assert response.status == 504  # sent and unanswered: not sent again
    assert (await response.json())["status"] == "UPSTREAM_TIMEOUT"
    assert backend.seen == []
    for _ in range(4):
        assert (await client.get("/api/v3_0", headers=HOST)).status == 200
    assert len(slow.seen) == 1
    assert len(backend.seen) == 4


async def test_replicas_all_ejected_are_still_tried(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    secret = write_secret(secrets_dir, "company")
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": urls}]),
        health_interval=NO_PROBES,
    )
    response = await client.get("/api/v3_0", headers=HOST)
    assert response.status == 502
    health = client.app[keys.HEALTH]
    assert not health.is_up(urls[0])
    assert not health.is_up(urls[1])
    backend = EchoBackend(secret, "company")
    await aiohttp_server(backend.app, port=ports[1])
    assert not health.is_up(urls[1])  # still ejected, and tried all the same
    response = await client.get("/api/v3_0", headers=HOST)
    assert response.status == 200
    assert len(backend.seen) == 1


# --- active: probes -------------------------------------------------------------


async def test_replica_that_comes_back_is_used_within_two_probe_intervals(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    interval = 0.3
    secret = write_secret(secrets_dir, "company")
    live, url = await start_echo(aiohttp_server, secret, "company")
    port = free_port()
    back_url = f"http://127.0.0.1:{port}"
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [back_url, url]}]),
        health_interval=interval,
    )
    health = client.app[keys.HEALTH]
    # Found down by the probes alone, without a request failing on it.
    await _wait_for(lambda: not health.is_up(back_url), 5 * interval)
    assert health.ejected()[back_url].probed_down
    for _ in range(6):
        assert (await client.get("/api/v3_0", headers=HOST)).status == 200
    assert len(live.seen) == 6
    back = EchoBackend(secret, "company")
    await aiohttp_server(back.app, port=port)
    started = time.monotonic()
    while not back.seen:
        assert time.monotonic() - started < 2 * interval + 0.5, "not used again"
        assert (await client.get("/api/v3_0", headers=HOST)).status == 200
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - started
    print(f"replica back in rotation after {elapsed:.2f} s (probe every {interval} s)")
    assert health.is_up(back_url)


async def test_probes_follow_a_reloaded_tenants_file(
    make_gateway: GatewayFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    tmp_path: Path,
) -> None:
    interval = 0.2
    _backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [url]}]),
        health_interval=interval,
    )
    health = client.app[keys.HEALTH]
    added = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "tenants.yaml"
    path.write_text(tenants_text([{"subdomain": "company", "backends": [url, added]}]))
    await _wait_for(lambda: not health.is_up(added), 3.0)
    assert health.is_up(url)
    path.write_text(tenants_text([{"subdomain": "company", "backends": [url]}]))
    await _wait_for(lambda: added not in health.ejected(), 3.0)


async def test_probes_go_once_per_address_whatever_the_tenants_there(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    # Two pools: 40 tenants on one address, 10 on another, 5 naming both.
    probes: dict[str, int] = {}
    enough = asyncio.Event()

    async def count(request: web.Request) -> web.Response:
        if request.path == PROBE_PATH:
            probes[request.host] = probes.get(request.host, 0) + 1
            if min(probes.values()) >= 5 and len(probes) == 2:
                enough.set()
        return web.json_response({"status": "ok"})

    urls = []
    for _ in range(2):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", count)
        server = await aiohttp_server(app)
        urls.append(f"http://127.0.0.1:{server.port}")
    big, small = urls
    entries: list[dict[str, object]] = []
    for i in range(55):
        name = f"t{i:02d}"
        write_secret(secrets_dir, name)
        backends = [big] if i < 40 else [small] if i < 50 else [small, big]
        entries.append({"subdomain": name, "backends": backends})
    client = await make_gateway(tenants_text(entries), health_interval=0.05)
    assert client.app[keys.REGISTRY].backends == {big, small}
    async with asyncio.timeout(30):
        await enough.wait()
    await client.close()  # no more probes
    counts = {url: probes[url.removeprefix("http://")] for url in urls}
    print(f"\nprobes of 55 tenants on 2 addresses: {counts}")
    # Per tenant, the big pool would get 45 probes a round to the small one's 15.
    assert abs(counts[big] - counts[small]) <= 1
