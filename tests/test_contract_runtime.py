"""The runtime part of the contract: one log line schema, one drain, one serve loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import json
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

import gateway.__main__
import tenant_service.__main__
from contract import logs
from contract.background import BACKGROUND_NICENESS, in_background
from contract.config import Secret
from contract.drain import SIGNALS, Drain, serve
from deploy.local import IN_FLIGHT_RE
from gateway import keys as gateway_keys
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from gateway.logs import AccessLog
from tenant_service import keys as backend_keys
from tenant_service.app import create_app as create_backend
from tenant_service.config import Settings as BackendSettings
from tenant_service.scheduling import worker
from tenant_service.store.db import migrate
from tests.helpers.net import free_port

Client = TestClient[web.Request, web.Application]
BASE_KEYS = {"ts", "level", "logger", "message", "request_id", "tenant"}
ACCESS_KEYS = BASE_KEYS | {"method", "path", "status", "duration_ms"}
SECRET = "contract-secret-0123456789abcdef-0123456789"


@contextlib.contextmanager
def json_logging() -> Iterator[None]:
    """The services' logging setup within; the test's own afterwards.

    Entered in the test itself: the JSON handler then writes to the stdout that
    capsys captures.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    logs.setup_logging()
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_every_process_sets_up_the_same_logging() -> None:
    for module in (gateway.__main__, tenant_service.__main__, worker):
        assert vars(module)["setup_logging"] is logs.setup_logging


@pytest.mark.parametrize("service", ["gateway", "tenant_service"])
def test_log_record_has_the_schema_keys(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger(f"{service}.proxy")
    with json_logging():
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed %s", "here", extra={"upstream": "http://b:1"})
        logger.warning("outside", extra={"tenant": "not-the-context's"})
    failed, outside = _lines(capsys.readouterr().out)
    assert set(failed) == BASE_KEYS | {"exc_info", "upstream"}
    assert failed["message"] == "failed here"
    assert failed["logger"] == f"{service}.proxy"
    assert failed["level"] == "ERROR"
    assert "ValueError: boom" in str(failed["exc_info"])
    assert (failed["request_id"], failed["tenant"]) == (None, None)
    assert set(outside) == BASE_KEYS
    assert outside["tenant"] is None  # an extra never replaces a schema key
    assert str(outside["ts"]).endswith("Z")


def test_log_record_names_the_request_and_tenant_of_its_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def handle() -> None:
        logs.REQUEST_ID.set("req-1")
        logs.TENANT.set("acme")
        logging.getLogger("tenant_service.api").warning("within")

    with json_logging():
        contextvars.copy_context().run(handle)
    (line,) = _lines(capsys.readouterr().out)
    assert (line["request_id"], line["tenant"]) == ("req-1", "acme")


Services = Callable[[], Awaitable[tuple[web.Application, web.Application]]]


@pytest.fixture
def services(
    redis_url: str, redis_prefix: str, sqlite_database_url: str, tmp_path: Path
) -> Services:
    """Makes a gateway (no tenants) and a backend of tenant "acme" (migrated)."""

    async def make() -> tuple[web.Application, web.Application]:
        tenants = tmp_path / "tenants.yaml"
        tenants.write_text(yaml.safe_dump({"tenants": []}))
        front = create_gateway(
            GatewaySettings(
                tenants_path=tenants, redis_url=redis_url, key_prefix=redis_prefix
            )
        )
        await migrate(sqlite_database_url)
        backend = create_backend(
            BackendSettings(
                name="acme", database_url=sqlite_database_url, secret=Secret(SECRET)
            )
        )
        return front, backend

    return make


async def test_access_lines_of_both_services_have_the_same_keys(
    aiohttp_client: Callable[..., Awaitable[Client]],
    capsys: pytest.CaptureFixture[str],
    services: Services,
) -> None:
    # Made here: AccessLog takes sys.stdout when built, which capsys has replaced.
    gateway_app, backend_app = await services()
    front = await aiohttp_client(gateway_app)
    backend = await aiohttp_client(backend_app)
    capsys.readouterr()
    headers = {"X-Request-Id": "same-1", "Authorization": "never-logged-token"}
    with json_logging():
        assert (await front.get("/nowhere", headers=headers)).status == 404
        assert (await backend.get("/api/v3_0/users", headers=headers)).status == 401
    out = capsys.readouterr().out
    assert "never-logged-token" not in out
    access = [line for line in _lines(out) if str(line["logger"]).endswith(".access")]
    by_service = {str(line["logger"]): line for line in access}
    gateway_line = by_service["gateway.access"]
    backend_line = by_service["tenant_service.access"]
    # Only what the gateway knows besides: here, the client's address.
    assert set(gateway_line) - set(backend_line) == {"client"}
    assert set(backend_line) == ACCESS_KEYS
    assert gateway_line["request_id"] == backend_line["request_id"] == "same-1"
    assert gateway_line["message"] == "GET /nowhere 404"
    assert backend_line["message"] == "GET /api/v3_0/users 401"
    assert backend_line["tenant"] == "acme"
    assert gateway_line["tenant"] is None  # no tenant at that host


def test_gateway_access_line_leaves_out_what_is_not_known() -> None:
    stream = io.StringIO()
    AccessLog(stream).write("GET", "/healthz", 200, 0.12, user_id=None, client="::1")
    line = json.loads(stream.getvalue())
    assert set(line) == ACCESS_KEYS | {"client"}
    AccessLog(stream, enabled=False).write("GET", "/", 200, 1.0)
    assert stream.getvalue().count("\n") == 1


# --- Drain: one class, tested once; each service's /readyz uses it -------------


async def test_drain_counts_requests_and_closes_connections_once_started(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    drain = Drain()
    release = asyncio.Event()

    arrived: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]

    async def slow(request: web.Request) -> web.Response:
        arrived[drain.in_flight - 1].set()
        await release.wait()
        return web.Response(text="done")

    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[drain.middleware()])
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    client = await aiohttp_client(app)
    response = await client.get("/fast")
    assert response.headers.get("Connection") != "close"
    await drain.settle()  # nothing in flight: at once
    pending = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in arrived)), 5)
    assert drain.in_flight == 2
    drain.start()
    settled = asyncio.create_task(drain.settle())
    await asyncio.sleep(0.05)
    assert not settled.done()
    release.set()
    await asyncio.wait_for(settled, 5)
    assert drain.in_flight == 0
    for response in await asyncio.gather(*pending):
        assert (response.status, await response.text()) == (200, "done")
        assert response.headers["Connection"] == "close"


async def test_each_service_answers_readyz_from_the_shared_drain(
    aiohttp_client: Callable[..., Awaitable[Client]], services: Services
) -> None:
    front, backend = await services()
    drains = [
        (front, front[gateway_keys.DRAIN]),
        (backend, backend[backend_keys.DRAIN]),
    ]
    for app, drain in drains:
        assert type(drain) is Drain
        client = await aiohttp_client(app)
        assert (await client.get("/readyz")).status == 200
        drain.start()
        response = await client.get("/readyz")
        assert (response.status, await response.json()) == (503, {"status": "DRAINING"})
        assert response.headers["Connection"] == "close"


# --- the serve loop -----------------------------------------------------------


@pytest.fixture
def own_signal_handlers() -> Iterator[None]:
    """The test process's SIGTERM/SIGINT handlers, put back after the test."""
    saved = {signum: signal.getsignal(signum) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("own_signal_handlers")
@pytest.mark.parametrize("name", ["gateway process 4242", "tenant acme"])
async def test_serve_drains_on_sigterm_and_says_what_it_waits_for(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    drain = Drain()
    release = asyncio.Event()
    started = asyncio.Event()

    async def upload(request: web.Request) -> web.Response:
        started.set()
        await release.wait()
        return web.Response(text="kept")

    app = web.Application(middlewares=[drain.middleware()])
    app.router.add_get("/", upload)
    port = free_port()
    logger = logging.getLogger("tests.contract")
    serving = asyncio.create_task(
        serve(
            app,
            drain,
            name=name,
            host="127.0.0.1",
            port=port,
            grace=5,
            logger=logger,
        )
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                await (await session.get(f"http://127.0.0.1:{port}/nowhere")).read()
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        request = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/"))
        await asyncio.wait_for(started.wait(), 5)
        # The loop's handler has been installed before any request was served.
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(500):
            if drain.started:
                break
            await asyncio.sleep(0.01)
        assert drain.started
        assert not serving.done()  # the request in flight gets its grace
        release.set()
        response = await asyncio.wait_for(request, 5)
        assert (response.status, await response.text()) == (200, "kept")
        assert response.headers["Connection"] == "close"
    await asyncio.wait_for(serving, 5)
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert messages[0] == f"{name} listening on http://127.0.0.1:{port}"
    assert messages[-1] == f"{name} stopped"
    (draining,) = [m for m in messages if "draining" in m]
    found = IN_FLIGHT_RE.search(draining)  # what `flexhost up` reports
    assert found is not None
    assert int(found[2]) == 1
    assert found[1] == ("4242" if name.startswith("gateway") else None)


async def test_background_work_runs_in_one_thread_at_a_lower_cpu_priority() -> None:
    """A reload's parse gets the CPU after the event loop's thread, not beside it."""

    def where() -> tuple[int, int]:
        tid = threading.get_native_id()
        return tid, os.getpriority(os.PRIO_PROCESS, tid)

    loop_tid, loop_nice = where()
    (first, nice), (second, _) = await asyncio.gather(
        in_background(where), in_background(where)
    )
    assert first == second != loop_tid
    assert nice == min(19, loop_nice + BACKGROUND_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, loop_tid) == loop_nice
