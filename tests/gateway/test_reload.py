"""tenants.yaml edited while the gateway runs."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import keys
from gateway.tenants import Look
from tests.gateway.conftest import (
    GatewayFactory,
    start_echo,
    tenants_text,
    write_secret,
)

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]


async def status_within(
    client: Client, host: str, expected: int, seconds: float = 2.0
) -> float:
    """Poll GET /api/ until it answers `expected`; the time it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        response = await client.get("/api/", headers={"Host": host})
        if response.status == expected:
            return loop.time() - started
        if loop.time() - started > seconds:
            pytest.fail(
                f"{host} answered {response.status}, not {expected}, for {seconds}s"
            )
        await asyncio.sleep(0.05)


@pytest.fixture
async def setup(
    make_gateway: GatewayFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    tmp_path: Path,
) -> tuple[Client, Path, str]:
    secret = write_secret(secrets_dir, "company")
    write_secret(secrets_dir, "acme")
    _, url = await start_echo(aiohttp_server, secret, "company")
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [url]}])
    )
    return client, tmp_path / "tenants.yaml", url


async def test_added_tenant_answers_within_2s_and_removed_stops(
    setup: tuple[Client, Path, str],
) -> None:
    client, path, url = setup
    assert (await client.get("/api/", headers={"Host": "acme.localhost"})).status == 404
    path.write_text(
        tenants_text(
            [
                {"subdomain": "company", "backends": [url]},
                {"subdomain": "acme", "backends": [url]},
            ]
        )
    )
    assert await status_within(client, "acme.localhost", 200) < 2
    path.write_text(tenants_text([{"subdomain": "acme", "backends": [url]}]))
    await status_within(client, "company.localhost", 404)


async def test_suspended_tenant_is_403_naming_the_suspension(
    setup: tuple[Client, Path, str],
) -> None:
    client, path, url = setup
    path.write_text(
        tenants_text(
            [{"subdomain": "company", "backends": [url], "status": "suspended"}]
        )
    )
    await status_within(client, "company.localhost", 403)
    response = await client.get(
        "/api/v3_0/users", headers={"Host": "company.localhost"}
    )
    body = await response.json()
    assert body == {
        "message": "Tenant 'company' is suspended; please contact support.",
        "status": "TENANT_SUSPENDED",
    }


@pytest.mark.parametrize(
    "broken",
    [
        "tenants: [\n  - subdomain: acme\n",
        "tenants:\n  - subdomain: company\n    backends: [http://x:1]\n"
        "  - subdomain: company\n    backends: [http://x:1]\n",
        "tenants:\n  - subdomain: acme\n",
        "tenants:\n  - subdomain: acme\n    backends: [http://x:1]\n    token_ttl: -5\n",
        None,  # the file deleted
        "\x00\x01garbage",
    ],
)
async def test_broken_file_keeps_last_good_config_and_logs_places(
    setup: tuple[Client, Path, str],
    caplog: pytest.LogCaptureFixture,
    broken: str | None,
) -> None:
    client, path, _ = setup
    watcher = client.app[keys.WATCHER]
    failures = watcher.failures
    with caplog.at_level(logging.ERROR, logger="gateway.tenants"):
        if broken is None:
            path.unlink()
        else:
            path.write_text(broken)
        for _ in range(40):
            if watcher.failures > failures:
                break
            await asyncio.sleep(0.05)
    assert watcher.failures == failures + 1
    assert (
        await client.get("/api/", headers={"Host": "company.localhost"})
    ).status == 200
    assert (await client.get("/api/", headers={"Host": "acme.localhost"})).status == 404
    messages = [r.getMessage() for r in caplog.records]
    assert any("last good config stays in force" in m for m in messages)
    if broken is not None:
        assert any("tenants.yaml:" in m for m in messages if "rejected:" in m)


async def test_request_in_flight_survives_reload(
    make_gateway: GatewayFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    tmp_path: Path,
) -> None:
    secret = write_secret(secrets_dir, "company")
    write_secret(secrets_dir, "acme")
    backend, url = await start_echo(aiohttp_server, secret, "company")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.json_response({"done": True})

    backend.handler = slow
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [url]}])
    )
    path = tmp_path / "tenants.yaml"
    pending = asyncio.ensure_future(
        client.get("/api/v3_0", headers={"Host": "company.localhost"})
    )
    await asyncio.sleep(0.1)
    path.write_text(tenants_text([{"subdomain": "acme", "backends": [url]}]))
    await status_within(client, "company.localhost", 404)
    response = await pending
    assert response.status == 200
    assert await response.json() == {"done": True}


async def test_big_reload_runs_in_a_thread_while_requests_are_served(
    setup: tuple[Client, Path, str],
    secrets_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, path, url = setup
    watcher = client.app[keys.WATCHER]
    reloads = watcher.reloads
    started = threading.Event()
    served = threading.Event()
    threads: list[int] = []
    real_look = watcher.look

    def look() -> Look:
        """The real reload, held until a request has been answered meanwhile."""
        threads.append(threading.get_ident())
        started.set()
        found = real_look()
        # On the event loop no request could be answered now: the wait times out.
        served.wait(30)
        return found

    monkeypatch.setattr(watcher, "look", look)
    interval = sys.getswitchinterval()
    frozen = gc.get_freeze_count()
    names = [f"t{i:04d}" for i in range(2000)]
    for name in names:
        write_secret(secrets_dir, name)
    entries: list[dict[str, object]] = [
        {"subdomain": name, "backends": [url]} for name in ["company", *names]
    ]
    path.write_text(tenants_text(entries))
    latencies: list[float] = []
    began = time.perf_counter()
    while watcher.reloads == reloads:
        sent = time.perf_counter()
        response = await client.get("/api/", headers={"Host": "company.localhost"})
        assert response.status == 200
        if started.is_set():
            latencies.append(time.perf_counter() - sent)
            served.set()
        await asyncio.sleep(0.005)
    print(
        f"\nreload of {len(entries)} tenants: {watcher.last_reload_seconds:.2f} s "
        f"in its thread, {time.perf_counter() - began:.2f} s from the write; "
        f"{len(latencies)} requests answered meanwhile, the slowest in "
        f"{1000 * max(latencies):.1f} ms"
    )
    assert served.is_set()
    assert threads
    assert threading.get_ident() not in threads
    assert watcher.reloads == reloads + 1
    assert (
        await client.get("/api/", headers={"Host": "t1999.localhost"})
    ).status == 200
    # What the reload changed for the process while it ran is back.
    assert gc.isenabled()
    assert sys.getswitchinterval() == interval
    # The new tenants are out of the cyclic collector's walks (frozen).
    assert gc.get_freeze_count() >= frozen + 2 * len(entries)
