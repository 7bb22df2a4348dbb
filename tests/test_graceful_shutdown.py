"""Graceful shutdown of real processes: SIGTERM drains, nothing in flight is lost.

Backends run as `python -m tenant_service`, the gateway as `python -m gateway` (two
workers) or in-process in front of real backend processes; everything on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from contract.config import Secret
from contract.identity import SERVICE, sign_identity
from gateway import keys as gateway_keys
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from tenant_service import keys as backend_keys
from tenant_service.app import create_app as create_backend
from tenant_service.config import Settings as BackendSettings
from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine, migrate
from tests.helpers.net import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TENANT = "company"
HOST = {"Host": f"{TENANT}.localhost"}
SECRET = "graceful-secret-0123456789abcdef-0123456789"
EMAIL = "admin@company.test"
PASSWORD = "a graceful password"
GRACE = 5
Client = TestClient[web.Request, web.Application]


class Processes:
    """Child processes of a test; whatever is left is stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, module: str, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        self.children.append(proc)
        return proc

    def backend(
        self, name: str, port: int, database_url: str
    ) -> subprocess.Popen[bytes]:
        return self.start(
            name,
            "tenant_service",
            {
                "TENANT_NAME": TENANT,
                "TENANT_DATABASE_URL": database_url,
                "TENANT_SECRET": SECRET,
                "TENANT_PORT": str(port),
                "TENANT_SHUTDOWN_GRACE": str(GRACE),
            },
        )

    def stop_all(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    """A migrated SQLite file with one account and its admin."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'company.sqlite3'}"
    await migrate(url)
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            account = await account_store.create_account(conn, name="Company")
            await user_store.create_user(
                conn,
                email=EMAIL,
                username="admin",
                account_id=account,
                password_hash=password_hash,
                role_names=["account-admin"],
            )
    finally:
        await engine.dispose()
    return url


async def _wait_ready(
    url: str, proc: subprocess.Popen[bytes], seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{url}: the process exited with {proc.returncode}")
            try:
                async with session.get(
                    url, timeout=aiohttp.ClientTimeout(total=1)
                ) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    pytest.fail(f"{url} did not answer 200 within {seconds} s")


async def _refuses(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except (ConnectionRefusedError, ConnectionResetError):
        # reset: our connect sat in the backlog of a listener that just closed
        return True
    writer.close()
    return False


async def _wait_refused(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await _refuses(port):
        if time.monotonic() > deadline:
            pytest.fail(f"port {port} still accepts connections after {seconds} s")
        await asyncio.sleep(0.02)


async def _exit_code(proc: subprocess.Popen[bytes], seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        if time.monotonic() > deadline:
            pytest.fail(f"process {proc.pid} still runs {seconds} s after SIGTERM")
        await asyncio.sleep(0.02)
    return proc.returncode


def _head(answer: bytes) -> str:
    return answer.split(b"\r\n\r\n", 1)[0].decode()


async def test_backend_finishes_a_request_in_flight_then_exits_0(
    processes: Processes, database_url: str
) -> None:
    port = free_port()
    proc = processes.backend("backend", port, database_url)
    await _wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    identity = sign_identity(
        secret=SECRET,
        tenant=TENANT,
        caller=SERVICE,
        host=HOST["Host"],
        scheme="http",
        request_id="graceful",
    )
    body = json.dumps({"email": EMAIL, "password": PASSWORD}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # A slow upload: the handler runs, waiting for the rest of the body.
    writer.write(
        (
            "POST /internal/credentials HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-FlexHost-Identity: {identity}\r\n\r\n"
        ).encode()
        + body[:10]
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    await _wait_refused(port, 3.0)
    await asyncio.sleep(0.3)
    assert proc.poll() is None, "exited with a request in flight"
    writer.write(body[10:])
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head = _head(answer)
    assert head.startswith("HTTP/1.1 200"), head
    assert "Connection: close" in head  # the client learns to go elsewhere
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["active"] is True
    assert await _exit_code(proc, GRACE) == 0
    print(f"backend exited 0, {time.monotonic() - signalled:.2f} s after SIGTERM")


async def test_backend_cuts_a_request_past_the_grace_and_exits_0(
    processes: Processes, database_url: str
) -> None:
    port = free_port()
    proc = processes.backend("backend", port, database_url)
    await _wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /internal/credentials HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        b"Content-Type: application/json\r\nX-FlexHost-Identity: "
        + sign_identity(
            secret=SECRET,
            tenant=TENANT,
            caller=SERVICE,
            host=HOST["Host"],
            scheme="http",
            request_id="graceful",
        ).encode()
        + b"\r\n\r\n{"
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert await _exit_code(proc, GRACE + 5) == 0  # the body never comes
    assert time.monotonic() - signalled >= GRACE - 0.5
    writer.close()


async def test_gateway_workers_drain_on_sigterm_to_the_supervisor(
    processes: Processes,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        if request.path == "/readyz":
            return web.json_response({"status": "ok"})
        entered.set()
        await asyncio.wait_for(release.wait(), 20)
        return web.json_response({"slow": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    backend = await aiohttp_server(app)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / TENANT).write_text(SECRET)
    tenants = tmp_path / "tenants.yaml"
    backend_url = str(backend.make_url("")).rstrip("/")
    tenants.write_text(
        yaml.safe_dump({"tenants": [{"subdomain": TENANT, "backends": [backend_url]}]})
    )
    port = free_port()
    proc = processes.start(
        "gateway",
        "gateway",
        {
            "GATEWAY_PORT": str(port),
            "GATEWAY_WORKERS": "2",
            "GATEWAY_TENANTS_PATH": str(tenants),
            "GATEWAY_SECRETS_DIR": str(secrets_dir),
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_KEY_PREFIX": redis_prefix,
            "GATEWAY_SHUTDOWN_GRACE": str(GRACE),
        },
    )
    base = f"http://127.0.0.1:{port}"
    await _wait_ready(f"{base}/healthz", proc)
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(
            session.get(
                f"{base}/api/v3_0", headers=HOST, timeout=aiohttp.ClientTimeout(20)
            )
        )
        await asyncio.wait_for(entered.wait(), 10)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await _wait_refused(port, 3.0)  # both workers closed their listener
        assert proc.poll() is None, "exited with a request in flight"
        release.set()
        response = await in_flight
        assert response.status == 200
        assert await response.json() == {"slow": True}
        assert response.headers["Connection"] == "close"
        response.release()
    assert await _exit_code(proc, GRACE + 5) == 0
    print(f"gateway exited 0, {time.monotonic() - signalled:.2f} s after SIGTERM")


async def test_rolling_restart_of_two_backends_loses_no_request(
    processes: Processes,
    database_url: str,
    aiohttp_client: Callable[..., Awaitable[Client]],
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    ports = [free_port(), free_port()]
    procs = {
        port: processes.backend(f"backend-{port}", port, database_url) for port in ports
    }
    for port, proc in procs.items():
        await _wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / TENANT).write_text(SECRET)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        yaml.safe_dump(
            {
                "tenants": [
                    {
                        "subdomain": TENANT,
                        "backends": [f"http://127.0.0.1:{port}" for port in ports],
                    }
                ]
            }
        )
    )
    client = await aiohttp_client(
        create_gateway(
            GatewaySettings(
                tenants_path=tenants,
                redis_url=redis_url,
                key_prefix=redis_prefix,
                secrets_dir=secrets_dir,
                health_interval=0.2,
                access_log=False,
            )
        )
    )
    sent = ok = 0
    errors: list[str] = []
    restarted = asyncio.Event()
    deadline = time.monotonic() + 60

    async def load() -> None:
        nonlocal sent, ok
        while (not restarted.is_set() or sent < 300) and time.monotonic() < deadline:
            sent += 1
            try:
                response = await client.get("/api/v3_0", headers=HOST)
                await response.read()
            except aiohttp.ClientError as err:
                errors.append(type(err).__name__)
                continue
            if response.status == 200:
                ok += 1
            else:
                errors.append(str(response.status))
            await asyncio.sleep(0.005)

    async def roll() -> None:
        for port in ports:
            await asyncio.sleep(0.5)
            procs[port].send_signal(signal.SIGTERM)
            assert await _exit_code(procs[port], GRACE + 2) == 0
            procs[port] = processes.backend(f"backend-{port}", port, database_url)
            await _wait_ready(f"http://127.0.0.1:{port}/healthz", procs[port])
        await asyncio.sleep(0.5)
        restarted.set()

    await asyncio.gather(roll(), *(load() for _ in range(4)))
    print(f"rolling restart: sent={sent} ok={ok} errors={len(errors)} {errors[:5]}")
    assert sent >= 300
    assert errors == []
    assert ok == sent


async def test_backend_probes_need_no_identity_and_readyz_fails_while_draining(
    database_url: str, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    app = create_backend(
        BackendSettings(name=TENANT, database_url=database_url, secret=Secret(SECRET))
    )
    client = await aiohttp_client(app)
    response = await client.get("/healthz")
    assert (response.status, await response.json()) == (200, {"status": "ok"})
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "database_sql": True}
    assert (await client.get("/api/ops/ping")).status == 401  # still needs one
    app[backend_keys.DRAIN].start()
    response = await client.get("/readyz")
    assert (response.status, await response.json()) == (503, {"status": "DRAINING"})
    assert response.headers["Connection"] == "close"


async def test_gateway_readyz_fails_while_draining(
    aiohttp_client: Callable[..., Awaitable[Client]],
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(yaml.safe_dump({"tenants": []}))
    client = await aiohttp_client(
        create_gateway(
            GatewaySettings(
                tenants_path=tenants, redis_url=redis_url, key_prefix=redis_prefix
            )
        )
    )
    assert (await client.get("/readyz")).status == 200
    client.app[gateway_keys.DRAIN].start()
    response = await client.get("/readyz")
    assert (response.status, await response.json()) == (503, {"status": "DRAINING"})
    assert response.headers["Connection"] == "close"
