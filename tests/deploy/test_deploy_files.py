"""deploy/: the nginx site, systemd units, container files and Kubernetes manifests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from contract.config import ConfigError
from contract.config import Secret as TenantSecret
from contract.tenants_file import parse_tenants
from deploy.cli import build_parser, main
from deploy.k8s import (
    SECRETS_DIR,
    K8sOptions,
    backend_url,
    render,
    service_name,
)
from gateway.config import Settings as GatewaySettings
from gateway.config import load_settings
from tenant_service.app import create_app as create_tenant_app
from tenant_service.config import Settings as TenantSettings
from tenant_service.config import load_settings as load_tenant_settings
from tests.helpers.net import free_port

REPO: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = REPO / "deploy"
SITE: Final = DEPLOY / "nginx" / "flexhost.conf"
UNITS: Final = DEPLOY / "systemd"
CONTAINERFILE: Final = DEPLOY / "container" / "Containerfile"
EXAMPLE: Final = DEPLOY / "k8s" / "example.yaml"
CERT_DIR: Final = "/etc/ssl/flexhost/"
GATEWAY_PLACEHOLDER: Final = re.compile(r"server 10\.0\.1\.\d+:8080")
TENANT_HOST: Final = "company.flexmeasures.io"

Server = Callable[..., Awaitable[TestServer]]


def _tool(name: str, *fallbacks: str) -> str:
    """The path of a command the test needs; a clear failure when it is missing."""
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        f"`{name}` is needed for this test and was not found: "
        f"`apt-get install {name}` (Debian package)",
        pytrace=False,
    )


# --- nginx ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway self-signed wildcard certificate: DIR/fullchain.pem, privkey.pem."""
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            _tool("openssl"),
            "req", "-x509", "-nodes", "-days", "2",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(directory / "privkey.pem"),
            "-out", str(directory / "fullchain.pem"),
            "-subj", "/CN=flexmeasures.io",
            "-addext", "subjectAltName=DNS:flexmeasures.io,DNS:*.flexmeasures.io",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory


def _site(
    tmp_path: Path,
    certificate: Path,
    *,
    gateways: list[int] | None = None,
    http_port: int | None = None,
    https_port: int | None = None,
) -> str:
    """The site with certificate and log paths in tmp; optionally on loopback ports."""
    text = SITE.read_text()
    assert CERT_DIR in text
    assert "/var/log/nginx/" in text
    text = text.replace(CERT_DIR, f"{certificate}/")
    text = text.replace("/var/log/nginx/", f"{tmp_path}/")
    if gateways is not None:
        servers = iter(gateways * 2)
        text, count = GATEWAY_PLACEHOLDER.subn(
            lambda _m: f"server 127.0.0.1:{next(servers)}", text
        )
        assert count >= 2, "the upstream lists the gateways as 10.0.1.x:8080"
    if http_port is not None and https_port is not None:
        text = re.sub(r"(?m)^\s*listen \[::\]:.*;\n", "", text)
        text, http = re.subn(r"listen 80\b", f"listen 127.0.0.1:{http_port}", text)
        text, https = re.subn(r"listen 443\b", f"listen 127.0.0.1:{https_port}", text)
        assert http >= 2
        assert https >= 2
    return text


def _nginx_conf(tmp_path: Path, site: str) -> Path:
    """A minimal nginx.conf that includes `site`, every path in tmp_path."""
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would switch to `nobody`, who cannot read tmp_path.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\n"
        f"pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"{temp}\n"
        f"    access_log {tmp_path}/access.log;\n"
        f"    include {tmp_path}/site.conf;\n"
        "}\n"
    )
    return conf


def _nginx_args(tmp_path: Path, conf: Path) -> list[str]:
    nginx = _tool("nginx", "/usr/sbin/nginx")
    return [nginx, "-c", str(conf), "-p", f"{tmp_path}/", "-e", f"{tmp_path}/error.log"]


def test_nginx_site_passes_nginx_t(tmp_path: Path, certificate: Path) -> None:
    # `nginx -t` binds the listen sockets: free loopback ports, so no root is needed
    site = _site(tmp_path, certificate, http_port=free_port(), https_port=free_port())
    conf = _nginx_conf(tmp_path, site)
    result = subprocess.run(
        [*_nginx_args(tmp_path, conf), "-t"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


class FakeGateway:
    """A real HTTP server standing in for the gateways: records what nginx sends."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.first_bytes = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        received = 0
        async for chunk in request.content.iter_any():
            received += len(chunk)
            self.first_bytes.set()
        peer = (
            request.transport.get_extra_info("peername") if request.transport else None
        )
        self.requests.append(
            {
                "headers": CIMultiDict(request.headers),
                "version": f"{request.version.major}.{request.version.minor}",
                "peer_port": peer[1] if peer else None,
                "received": received,
            }
        )
        return web.json_response({"received": received})


async def _wait_port(port: int, proc: asyncio.subprocess.Process, log: Path) -> None:
    for _ in range(100):
        if proc.returncode is not None:
            text = await asyncio.to_thread(log.read_text)
            pytest.fail(f"nginx exited {proc.returncode}: {text}")
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    text = await asyncio.to_thread(log.read_text)
    pytest.fail(f"nginx did not listen on {port}: {text}")


@dataclasses.dataclass
class Front:
    """nginx running the site on loopback ports."""

    http_port: int
    https_port: int
    tls: ssl.SSLContext

    def https(self, path: str) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"


@asynccontextmanager
async def _run_nginx(
    tmp_path: Path, certificate: Path, gateways: list[int]
) -> AsyncIterator[Front]:
    """nginx with the site, in the foreground, its gateways at `gateways` ports."""
    http_port, https_port = free_port(), free_port()
    site = _site(
        tmp_path,
        certificate,
        gateways=gateways,
        http_port=http_port,
        https_port=https_port,
    )
    conf = _nginx_conf(tmp_path, site)
    proc = await asyncio.create_subprocess_exec(
        *_nginx_args(tmp_path, conf),
        "-g",
        "daemon off;",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _wait_port(https_port, proc, tmp_path / "error.log")
        tls = ssl.create_default_context(cafile=str(certificate / "fullchain.pem"))
        yield Front(http_port, https_port, tls)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@pytest.fixture
async def gateway(aiohttp_server: Server) -> tuple[FakeGateway, int]:
    fake = FakeGateway()
    server = await aiohttp_server(fake.app, host="127.0.0.1")
    assert server.port is not None
    return fake, server.port


@pytest.fixture
async def front(
    tmp_path: Path, certificate: Path, gateway: tuple[FakeGateway, int]
) -> AsyncIterator[Front]:
    async with _run_nginx(tmp_path, certificate, [gateway[1]]) as running:
        yield running


async def test_nginx_redirects_http_to_https(front: Front) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.get(
            f"http://127.0.0.1:{front.http_port}/api/v3_0/sensors?page=2",
            headers={"Host": TENANT_HOST},
            allow_redirects=False,
        )
        assert response.status == 308
        assert response.headers["Location"] == (
            f"https://{TENANT_HOST}/api/v3_0/sensors?page=2"
        )


async def test_nginx_passes_forwarded_headers_over_keepalive(
    front: Front, gateway: tuple[FakeGateway, int]
) -> None:
    fake, _port = gateway
    async with aiohttp.ClientSession() as session:
        for request_id in ("abc-123", None):
            headers = {
                "Host": TENANT_HOST,
                "X-Forwarded-For": "203.0.113.9",
                "X-FlexHost-Identity": "forged",
                "Connection": "close",
            }
            if request_id:
                headers["X-Request-Id"] = request_id
            response = await session.get(
                front.https("/api/v3_0/users"),
                headers=headers,
                ssl=front.tls,
                server_hostname=TENANT_HOST,
            )
            assert response.status == 200
            assert response.headers["Strict-Transport-Security"].startswith(
                "max-age=63072000; includeSubDomains"
            )
    first, second = fake.requests
    for seen in (first, second):
        sent = seen["headers"]
        assert sent["Host"] == TENANT_HOST
        assert sent["X-Forwarded-Host"] == TENANT_HOST
        assert sent["X-Forwarded-Proto"] == "https"
        # appended: the gateway takes the right-most untrusted address
        assert sent["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
        assert "X-FlexHost-Identity" not in sent
        assert seen["version"] == "1.1"
        assert sent.get("Connection", "").lower() != "close"
    assert first["headers"]["X-Request-Id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", second["headers"]["X-Request-Id"])
    # the second request reused nginx's keep-alive connection to the gateway
    assert first["peer_port"] == second["peer_port"]


async def test_nginx_streams_request_bodies(
    front: Front, gateway: tuple[FakeGateway, int]
) -> None:
    fake, _port = gateway
    chunk = b"0" * 65536

    async def body() -> AsyncIterator[bytes]:
        yield chunk
        # nginx must pass the start on before the rest exists (no request buffering)
        await asyncio.wait_for(fake.first_bytes.wait(), 10)
        for _ in range(127):
            yield chunk

    async with aiohttp.ClientSession() as session:
        response = await session.post(
            front.https("/api/v3_0/sensors/1/data"),
            data=body(),
            headers={"Host": TENANT_HOST, "Content-Type": "application/json"},
            ssl=front.tls,
            server_hostname=TENANT_HOST,
        )
        assert response.status == 200
        assert await response.json() == {"received": 128 * 65536}


async def _raw_https(front: Front, host: str, head: str) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", front.https_port, ssl=front.tls, server_hostname=host
    )
    try:
        writer.write(head.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def test_nginx_refuses_large_bodies_with_json(front: Front) -> None:
    answer = await _raw_https(
        front,
        TENANT_HOST,
        "POST /api/v3_0/sensors/1/data HTTP/1.1\r\n"
        f"Host: {TENANT_HOST}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000000\r\nConnection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"application/json" in head
    assert json.loads(body)["status"] == "PAYLOAD_TOO_LARGE"


async def test_nginx_hides_metrics_and_unknown_hosts(front: Front) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.get(
            front.https("/metrics"),
            headers={"Host": TENANT_HOST},
            ssl=front.tls,
            server_hostname=TENANT_HOST,
        )
        assert response.status == 404
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.get(
                f"http://127.0.0.1:{front.http_port}/", headers={"Host": "evil.example"}
            )
    with pytest.raises(ssl.SSLError):
        await _raw_https(front, "evil.example", "GET / HTTP/1.1\r\n\r\n")


async def test_nginx_answers_json_when_no_gateway_is_up(
    tmp_path: Path, certificate: Path
) -> None:
    async with (
        _run_nginx(tmp_path, certificate, [free_port()]) as front,
        aiohttp.ClientSession() as session,
    ):
        response = await session.get(
            front.https("/api/"),
            headers={"Host": TENANT_HOST},
            ssl=front.tls,
            server_hostname=TENANT_HOST,
        )
        assert response.status == 502
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["status"] == "UPSTREAM_UNAVAILABLE"


# --- systemd --------------------------------------------------------------------

UNIT_COMMANDS: Final = {
    "flexhost-gateway.service": ("gateway", "/etc/flexhost/gateway.env"),
    "flexhost-tenant@.service": ("tenant", "/etc/flexhost/tenant-%i.env"),
    "flexhost-worker@.service": ("worker", "/etc/flexhost/tenant-%i.env"),
    "flexhost-pool@.service": ("pool", "/etc/flexhost/pool-%i.env"),
    "flexhost-pool-worker@.service": ("pool-worker", "/etc/flexhost/pool-%i.env"),
}
# Pools take their address from the env file: the instance names the file only.
POOL_COMMANDS: Final = frozenset({"pool", "pool-worker"})


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values of a unit file (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize("name", sorted(UNIT_COMMANDS))
def test_systemd_unit_has_required_settings(name: str) -> None:
    command, env_file = UNIT_COMMANDS[name]
    unit = _unit(UNITS / name)
    assert set(unit) == {"Unit", "Service", "Install"}
    assert unit["Unit"]["Description"]
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["EnvironmentFile"] == env_file
    assert service["User"] == "flexhost"
    assert service["Group"] == "flexhost"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"].endswith("s")
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    # ExecStart is an existing `flexhost` command (the %i instance: a tenant name,
    # or a pool's, whose address is in its env file)
    program, *args = shlex.split(service["ExecStart"])
    assert Path(program).name == "flexhost"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "flexhost" in scripts
    assert args[0] == command
    parsed = build_parser().parse_args([a.replace("%i", "company") for a in args])
    assert parsed.command == command
    assert ("%i" in args) == (
        name.endswith("@.service") and command not in POOL_COMMANDS
    )


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed; the unit parser test still runs")
    flexhost = Path(sys.executable).parent / "flexhost"
    assert flexhost.exists(), "install the package: pip install -e ."
    files = []
    for name in UNIT_COMMANDS:
        text = (UNITS / name).read_text()
        assert "/opt/flexhost/bin/flexhost " in text
        # verify checks that ExecStart's program exists: point it at this venv's
        target = tmp_path / name.replace("@.", "@company.")
        target.write_text(text.replace("/opt/flexhost/bin/flexhost", str(flexhost)))
        files.append(str(target))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *files], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def _env_file(path: Path) -> tuple[dict[str, str], str]:
    """The set variables of an example env file, and its whole text."""
    text = path.read_text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values, text


@pytest.mark.parametrize(
    ("example", "prefix", "settings", "skip"),
    [
        ("gateway.env.example", "GATEWAY_", GatewaySettings, set()),
        ("tenant.env.example", "TENANT_", TenantSettings, {"name", "secret"}),
    ],
)
def test_env_example_documents_every_setting(
    example: str, prefix: str, settings: type, skip: set[str]
) -> None:
    _values, text = _env_file(UNITS / example)
    missing = [
        f"{prefix}{field.name.upper()}"
        for field in dataclasses.fields(settings)
        if field.name not in skip
        and not re.search(rf"(?m)^#?{prefix}{field.name.upper()}=", text)
    ]
    assert not missing


def test_env_examples_are_valid_settings(tmp_path: Path) -> None:
    gateway, _ = _env_file(UNITS / "gateway.env.example")
    load_settings(gateway)
    tenant, text = _env_file(UNITS / "tenant.env.example")
    assert re.search(r"(?m)^#TENANT_SECRET=$", text)
    secret = tmp_path / "company"
    secret.write_text("s" * 48)
    load_tenant_settings(
        {**tenant, "TENANT_NAME": "company", "TENANT_SECRET_FILE": str(secret)}
    )
    pool, _text = _env_file(UNITS / "pool.env.example")
    settings = load_tenant_settings(pool)
    assert settings.pooled
    assert settings.port == 8201  # TENANT_ADDRESS's


# --- container ------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_containerfile_runs_flexhost_as_non_root() -> None:
    steps = _instructions(CONTAINERFILE.read_text())
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert all(steps[i][1].startswith("python:3.11-slim") for i in stages)
    final = steps[stages[-1] :]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets a USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    entrypoint = json.loads(next(rest for word, rest in final if word == "ENTRYPOINT"))
    cmd = json.loads(next(rest for word, rest in final if word == "CMD"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["flexhost"]
    assert "flexhost" in scripts
    assert cmd == ["gateway"]
    # the same image runs the other parts by arguments
    for args in (cmd, ["tenant", "company"], ["worker", "company"]):
        assert build_parser().parse_args(args).command == args[0]
    # what it copies exists, and .dockerignore lets it into the build context
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[[line.startswith("#") for line in ignore].index(False)] == "*"
    for word, rest in steps:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), source
                assert f"!{source.rstrip('/')}" in "\n".join(ignore).replace(
                    "/\n", "\n"
                )


# --- Kubernetes -----------------------------------------------------------------

TENANTS: Final = """\
base_domains: [flexmeasures.io]
tenants:
  - subdomain: company
    name: Company Inc.
    backends: ["http://10.0.0.5:8101", "http://10.0.0.6:8101"]
    aliases: [energy.company.com]
    token_ttl: 3600
    secret: env:FLEXHOST_TEST_K8S_SECRET
    pending_schedule_accepted: true
    colors: {primary: "#112233"}
    rate_limits: {per_token: "100/minute", per_tenant: "10 per 5 minutes"}
  - subdomain: acme
    backends: ["http://127.0.0.1:8102"]
    status: suspended
    upstream_timeout: 12.5
    secret: file:{secret_file}
"""
SECRET_VALUES: Final = (
    "env-secret-value-0123456789abcdef",
    "file-secret-0123456789abcdefghij",
)


@pytest.fixture
def tenants_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tenants file whose secrets resolve here: they must still never be rendered."""
    monkeypatch.setenv("FLEXHOST_TEST_K8S_SECRET", SECRET_VALUES[0])
    secret_file = tmp_path / "acme.secret"
    secret_file.write_text(SECRET_VALUES[1])
    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS.replace("{secret_file}", str(secret_file)))
    return path


def _k8s(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["deploy", "k8s", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container["env"]}


def test_k8s_renders_every_object_per_tenant(
    tenants_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _k8s(
        capsys,
        "--tenants", str(tenants_file),
        "--image", "registry.example.com/flexhost:1.2.3",
        "--namespace", "fm",
        "--gateway-replicas", "3",
        "--redis-host", "redis.internal",
    )  # fmt: skip
    assert code == 0, err
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Namespace", "fm"),
        ("ConfigMap", "flexhost-tenants"),
        ("Service", "redis"),
        ("Deployment", "flexhost-gateway"),
        ("Service", "flexhost-gateway"),
        ("PodDisruptionBudget", "flexhost-gateway"),
        ("NetworkPolicy", "flexhost-backends"),
        ("Deployment", "flexhost-company"),
        ("Service", "flexhost-company"),
        ("Deployment", "flexhost-company-worker"),
        ("Deployment", "flexhost-acme"),
        ("Service", "flexhost-acme"),
        ("Deployment", "flexhost-acme-worker"),
    ]
    assert all(d["metadata"].get("namespace", "fm") == "fm" for d in docs)
    objects = _by_kind_name(docs)
    assert objects[("Service", "redis")]["spec"] == {
        "type": "ExternalName",
        "externalName": "redis.internal",
    }

    gateway = objects[("Deployment", "flexhost-gateway")]
    assert gateway["spec"]["replicas"] == 3
    pod = gateway["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 15
    container = _container(gateway)
    assert container["image"] == "registry.example.com/flexhost:1.2.3"
    assert container["args"] == ["gateway"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    env = _env(container)
    assert env["GATEWAY_SECRETS_DIR"]["value"] == SECRETS_DIR
    assert env["GATEWAY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "flexhost-gateway",
        "key": "redis-url",
    }
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["secrets"] == SECRETS_DIR
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert [s["secret"] for s in volumes["secrets"]["projected"]["sources"]] == [
        {"name": f"flexhost-{t}", "items": [{"key": "identity-secret", "path": t}]}
        for t in ("company", "acme")
    ]
    assert volumes["tenants"]["configMap"]["name"] == "flexhost-tenants"
    assert Path(env["GATEWAY_TENANTS_PATH"]["value"]).parent == Path(mounts["tenants"])
    service = objects[("Service", "flexhost-gateway")]
    assert (
        service["spec"]["selector"].items()
        <= (pod_labels := gateway["spec"]["template"]["metadata"]["labels"]).items()
    )
    assert pod_labels.items() >= gateway["spec"]["selector"]["matchLabels"].items()

    for tenant, replicas in (("company", 2), ("acme", 1)):
        backend = objects[("Deployment", f"flexhost-{tenant}")]
        assert backend["spec"]["replicas"] == replicas
        container = _container(backend)
        assert container["args"] == ["tenant", tenant]
        # outside /api: no gateway identity needed (test_k8s_backend_probes_...)
        assert container["readinessProbe"]["httpGet"] == {
            "path": "/readyz",
            "port": "http",
        }
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
        env = _env(container)
        for name, key in (
            ("TENANT_DATABASE_URL", "database-url"),
            ("TENANT_REDIS_URL", "redis-url"),
        ):
            assert env[name]["valueFrom"]["secretKeyRef"] == {
                "name": f"flexhost-{tenant}",
                "key": key,
            }
        assert env["TENANT_PENDING_SCHEDULE_ACCEPTED"]["value"] == (
            "true" if tenant == "company" else "false"
        )
        service = objects[("Service", f"flexhost-{tenant}")]
        assert service["spec"]["ports"][0]["port"] == 8101
        assert service["spec"]["selector"].items() <= (
            backend["spec"]["template"]["metadata"]["labels"].items()
        )
        worker = objects[("Deployment", f"flexhost-{tenant}-worker")]
        assert worker["spec"]["replicas"] == 1
        assert _container(worker)["args"] == ["worker", tenant]
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 180
        assert "TENANT_REDIS_URL" in _env(_container(worker))

    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        security = _container(deployment)["securityContext"]
        assert security["allowPrivilegeEscalation"] is False


async def test_k8s_backend_probes_need_no_identity(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    sqlite_database_url: str,
) -> None:
    config = parse_tenants(
        "tenants:\n  - subdomain: company\n    backends: [http://h:1]\n",
        check_secrets=False,
    )
    docs = yaml.safe_load_all(render(config, K8sOptions(image="i"), "t.yaml"))
    backend = _by_kind_name([d for d in docs if d])[("Deployment", "flexhost-company")]
    container = _container(backend)
    paths = {
        container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    settings = TenantSettings(
        name="company", database_url=sqlite_database_url, secret=TenantSecret("s" * 40)
    )
    client = await aiohttp_client(create_tenant_app(settings))
    for path in sorted(paths):
        response = await client.get(path)  # no X-FlexHost-Identity, as a kubelet
        assert response.status == 200, (path, await response.text())


def test_k8s_replicas_option_sets_every_backend(
    tenants_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = _k8s(capsys, "--tenants", str(tenants_file), "--replicas", "4")
    assert code == 0
    objects = _by_kind_name([d for d in yaml.safe_load_all(out) if d])
    assert objects[("Deployment", "flexhost-company")]["spec"]["replicas"] == 4
    assert objects[("Deployment", "flexhost-acme")]["spec"]["replicas"] == 4
    assert objects[("Deployment", "flexhost-gateway")]["spec"]["replicas"] == 2


def test_k8s_never_renders_secret_values(
    tenants_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = _k8s(capsys, "--tenants", str(tenants_file))
    assert code == 0
    for value in SECRET_VALUES:
        assert value not in out
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        for item in _container(deployment)["env"]:
            if re.search(r"URL|SECRET$|PASSWORD", item["name"]):
                assert "value" not in item, item["name"]


def test_k8s_gateway_tenants_yaml_points_at_the_services(
    tenants_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = _k8s(capsys, "--tenants", str(tenants_file), "--namespace", "fm")
    assert code == 0
    objects = _by_kind_name([d for d in yaml.safe_load_all(out) if d])
    text = objects[("ConfigMap", "flexhost-tenants")]["data"]["tenants.yaml"]
    rendered = parse_tenants(text, secrets_dir=Path(SECRETS_DIR), check_secrets=False)
    given = parse_tenants(tenants_file.read_text(), check_secrets=False)
    assert rendered.base_domains == given.base_domains
    assert len(rendered.tenants) == len(given.tenants)
    for before, after in zip(given.tenants, rendered.tenants, strict=True):
        sub = before.subdomain
        assert after.backends == (f"http://flexhost-{sub}.fm.svc:8101",)
        assert after.secret_ref == f"file:{SECRETS_DIR}/{sub}"
        # everything else is the tenant as given
        assert (
            dataclasses.replace(
                before, backends=after.backends, secret_ref=after.secret_ref
            )
            == after
        )
        service = objects[("Service", f"flexhost-{sub}")]
        assert service["spec"]["ports"][0]["port"] == 8101


def test_k8s_refuses_an_invalid_tenants_file_as_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "tenants.yaml"
    broken.write_text(
        "tenants:\n"
        "  - subdomain: company\n"
        "    backends: [ftp://x]\n"
        "  - subdomain: company\n"
        "    token_ttl: 5\n"
    )
    assert main(["tenants", "check", str(broken)]) == 1
    problems = capsys.readouterr().out.splitlines()
    assert len(problems) >= 3
    code, out, err = _k8s(capsys, "--tenants", str(broken))
    assert code == 1
    assert out == ""
    assert err.splitlines() == [*problems, f"{broken}: {len(problems)} problem(s)"]


@pytest.mark.parametrize(
    ("subdomains", "clash"),
    [
        (["gateway"], "Deployment flexhost-gateway is also the gateway's"),
        (
            ["acme", "acme-worker"],
            'Deployment flexhost-acme-worker is also tenant "acme"',
        ),
        (
            ["acme-worker", "acme"],
            'Deployment flexhost-acme-worker is also tenant "acme-worker"',
        ),
    ],
)
def test_k8s_refuses_tenants_whose_objects_share_names(
    subdomains: list[str], clash: str
) -> None:
    # Each on its own address: dedicated (tenants sharing one are a pool).
    text = "tenants:\n" + "".join(
        f"  - subdomain: {s}\n    backends: [http://127.0.0.1:{8101 + i}]\n"
        for i, s in enumerate(subdomains)
    )
    config = parse_tenants(text, check_secrets=False)
    with pytest.raises(ConfigError) as caught:
        render(config, K8sOptions(image="flexhost:1"), source="t.yaml")
    assert len(caught.value.problems) == 1
    assert clash in caught.value.problems[0]


def test_k8s_service_names_fit_a_dns_label() -> None:
    sub = "a" * 63
    name = service_name(sub)
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
    assert service_name("b" + sub[1:]) != name
    assert backend_url(sub, "ns") == f"http://{name}.ns.svc:8101"
    config = parse_tenants(
        f"tenants:\n  - subdomain: {sub}\n    backends: [http://h:1]\n",
        check_secrets=False,
    )
    docs = list(yaml.safe_load_all(render(config, K8sOptions(image="i"), "t.yaml")))
    services = [d["metadata"]["name"] for d in docs if d and d["kind"] == "Service"]
    assert services == ["flexhost-gateway", name]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--namespace", "Not_A_Label"),
        ("--image", "flex host"),
        ("--trusted-proxies", "10.0.0.0/8,nginx.internal"),
    ],
)
def test_k8s_refuses_bad_options(
    tenants_file: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    code, out, err = _k8s(capsys, "--tenants", str(tenants_file), option, value)
    assert (code, out) == (1, "")
    assert err.startswith(f"{option}: ")


@pytest.mark.parametrize("option", ["--gateway-replicas", "--replicas"])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_k8s_refuses_replicas_below_one(
    tenants_file: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        _k8s(capsys, "--tenants", str(tenants_file), option, value)
    assert caught.value.code == 2
    assert "must be a whole number >= 1" in capsys.readouterr().err


def test_k8s_example_is_up_to_date(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    text = EXAMPLE.read_text()
    # line 2 of the header is the command that rendered the file
    command = text.splitlines()[1].removeprefix("#").strip()
    words = shlex.split(command)
    assert words[:3] == ["flexhost", "deploy", "k8s"]
    assert main(words[1:]) == 0
    fresh = capsys.readouterr().out
    assert fresh == text, (
        f"deploy/k8s/example.yaml is stale: run `{command} > deploy/k8s/example.yaml`"
    )


def test_k8s_redis_through_sentinel(
    tenants_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With sentinels, no pod gets a Redis URL; the password stays in the Secrets."""
    code, out, _err = _k8s(
        capsys,
        "--tenants",
        str(tenants_file),
        "--redis-sentinels",
        "sentinel-0:26379,sentinel-1:26379",
        "--redis-sentinel-master",
        "flexhost",
    )
    assert code == 0
    deployments = [
        d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"
    ]
    assert deployments
    for deployment in deployments:
        env = _env(_container(deployment))
        assert not any(name.endswith("_REDIS_URL") for name in env)
        prefix = "GATEWAY" if "gateway" in deployment["metadata"]["name"] else "TENANT"
        assert env[f"{prefix}_REDIS_SENTINELS"]["value"] == (
            "sentinel-0:26379,sentinel-1:26379"
        )
        assert env[f"{prefix}_REDIS_SENTINEL_MASTER"]["value"] == "flexhost"
        password = env[f"{prefix}_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password["key"] == "redis-password"
        assert password["optional"] is True
    code, _out, err = _k8s(
        capsys, "--tenants", str(tenants_file), "--redis-sentinels", "s:26379"
    )
    assert code != 0
    assert "give both or neither" in err
