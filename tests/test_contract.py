"""Each rule of contract/ holds in both services: gateway and backend agree."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.config import ConfigError, Secret
from contract.identity import (
    HEADER,
    REVOKE_HEADER,
    SERVICE,
    Caller,
    IdentityError,
    sign_identity,
    verify_identity,
)
from contract.names import valid_tenant_name
from contract.routes import PUBLIC, PUBLIC_OPS, VERSION_PREFIX
from contract.tenants_file import parse_tenants
from deploy.k8s import K8sOptions, render_file
from deploy.local import Stack, UpOptions, backend_specs
from gateway import proxy
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from gateway.config import load_settings as load_gateway_settings
from gateway.identity import IdentityCache
from tenant_service.app import create_app as create_backend
from tenant_service.config import Settings as BackendSettings
from tenant_service.config import load_settings as load_backend_settings
from tenant_service.identity import VerifiedIdentities
from tenant_service.store.db import migrate

SECRET = "contract-secret-0123456789abcdef-0123456789"
TENANT = "xn--caf-dma"
NAMES = [
    "acme",
    "xn--caf-dma",
    "a--b",
    "a",
    "0",
    "9lives",
    "a" * 63,
    "a" * 64,
    "-acme",
    "acme-",
    "Acme",
    "ac_me",
    "ac.me",
    "café",
    "acme\n",
    " acme",
]


def _gateway_accepts(name: str, tmp_path: Path) -> bool:
    text = yaml.safe_dump(
        {"tenants": [{"subdomain": name, "backends": ["http://127.0.0.1:1"]}]}
    )
    try:
        parse_tenants(text, secrets_dir=tmp_path, check_secrets=False)
    except ConfigError:
        return False
    return True


def _backend_accepts(name: str) -> bool:
    try:
        load_backend_settings({"TENANT_NAME": name, "TENANT_SECRET": SECRET})
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("name", NAMES)
def test_tenant_name_same_rule_in_both(name: str, tmp_path: Path) -> None:
    assert _gateway_accepts(name, tmp_path) == valid_tenant_name(name)
    assert _backend_accepts(name) == valid_tenant_name(name)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab09-_.A", max_size=66))
def test_tenant_name_gateway_accepts_iff_backend_accepts(name: str) -> None:
    assert _gateway_accepts(name, Path("/nonexistent")) == _backend_accepts(name)


async def test_flexhost_up_passes_a_punycode_tenant_to_its_backend(
    tmp_path: Path,
) -> None:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        yaml.safe_dump(
            {"tenants": [{"subdomain": TENANT, "backends": ["http://127.0.0.1:8101"]}]}
        )
    )
    data = tmp_path / "data"
    stack = Stack(UpOptions(tenants, data, redis_url="redis://127.0.0.1:6379/0"))
    config = (
        await stack.load()
    )  # creates the tenant's secret file, as `flexhost up` does
    (name, spec), *_ = backend_specs(config, data).items()
    child = stack._backend_spec(name, spec)
    backend = load_backend_settings(dict(child.env))
    assert backend.name == TENANT
    assert backend.database_url.endswith(f"/{TENANT}.sqlite3")
    assert backend.queue_name == f"flexhost:{TENANT}:scheduling"
    gateway = load_gateway_settings(dict(stack._gateway_spec().env))
    # The gateway follows the checked copy, written once the secret exists.
    assert gateway.tenants_path == stack.checked_file.absolute()
    assert gateway.tenants_path.read_bytes() == tenants.read_bytes()
    assert "flexhost-xn--caf-dma" in render_file(tenants, K8sOptions(image="f:1"))


def _assertion(secret: str, tenant: str, caller: Caller, now: float | None) -> str:
    return sign_identity(
        secret=secret,
        tenant=tenant,
        caller=caller,
        host=f"{tenant}.localhost",
        scheme="https",
        request_id="r1",
        now=now,
    )


def test_identity_signed_by_gateway_verifies_in_backend() -> None:
    user = Caller(user_id=7, account_id=3, roles=("admin",), auth_time_ms=1000)
    token = IdentityCache().get(
        secret=SECRET, tenant=TENANT, caller=user, host="h", scheme="https"
    )
    identity = VerifiedIdentities().verify(token, secret=SECRET, tenant=TENANT)
    assert (identity.user_id, identity.account_id, identity.auth_time_ms) == (
        7,
        3,
        1000,
    )
    assert (identity.host, identity.scheme) == ("h", "https")
    service = verify_identity(
        _assertion(SECRET, TENANT, SERVICE, None), secret=SECRET, tenant=TENANT
    )
    assert service.is_service


@pytest.mark.parametrize(
    ("token", "tenant"),
    [
        pytest.param(_assertion(SECRET, "acme", SERVICE, None), TENANT, id="other"),
        pytest.param(_assertion("x" * 40, TENANT, SERVICE, None), TENANT, id="key"),
        pytest.param(
            _assertion(SECRET, TENANT, SERVICE, time.time() - 600), TENANT, id="old"
        ),
        pytest.param(
            _assertion(SECRET, TENANT, SERVICE, None)[:-2] + "AA", TENANT, id="tamper"
        ),
    ],
)
def test_identity_refused_by_backend(token: str, tenant: str) -> None:
    with pytest.raises(IdentityError):
        VerifiedIdentities().verify(token, secret=SECRET, tenant=tenant)


def test_revoke_header_is_the_one_the_gateway_drops() -> None:
    assert REVOKE_HEADER.lower() in proxy._DROP_RESPONSE
    assert HEADER.lower() in proxy._DROP_REQUEST


SENTINELS = [
    "10.0.0.1:26379,10.0.0.2",
    " a:1 , b ",
    "[::1]:26380,[fe80::1]",
    "host",
    "a:port",
    "::1:26379",
    "a:0",
    ",",
]


@pytest.mark.parametrize("text", SENTINELS)
def test_sentinels_parsed_alike_by_both(text: str) -> None:
    def gateway() -> object:
        try:
            env = {
                "GATEWAY_REDIS_SENTINELS": text,
                "GATEWAY_REDIS_SENTINEL_MASTER": "m",
            }
            return load_gateway_settings(env).redis
        except ConfigError as err:
            return [p.removeprefix("GATEWAY_") for p in err.problems]

    def backend() -> object:
        env = {
            "TENANT_NAME": "acme",
            "TENANT_SECRET": SECRET,
            "TENANT_REDIS_SENTINELS": text,
            "TENANT_REDIS_SENTINEL_MASTER": "m",
        }
        try:
            return load_backend_settings(env).redis
        except ConfigError as err:
            return [p.removeprefix("TENANT_") for p in err.problems]

    ours, theirs = gateway(), backend()
    if isinstance(ours, list) or isinstance(theirs, list):
        assert ours == theirs
    else:
        assert (ours.sentinels, ours.sentinel_master) == (  # type: ignore[attr-defined]
            theirs.sentinels,  # type: ignore[attr-defined]
            theirs.sentinel_master,  # type: ignore[attr-defined]
        )


def _problems(
    load: Callable[[dict[str, str]], object], env: dict[str, str]
) -> list[str]:
    """What is wrong with `env`, without the variable names."""
    try:
        load(env)
    except ConfigError as err:
        return [p.split(":", 1)[1] for p in err.problems]
    return []


@pytest.mark.parametrize("raw", ["1", "true", " Yes ", "off", "FALSE", "maybe", "2"])
def test_flags_read_alike_by_both(raw: str) -> None:
    gateway = _problems(load_gateway_settings, {"GATEWAY_REDIS_CLUSTER": raw})
    backend = _problems(
        load_backend_settings,
        {
            "TENANT_NAME": "a",
            "TENANT_SECRET": SECRET,
            "TENANT_ALLOW_DATA_OVERWRITE": raw,
        },
    )
    assert gateway == backend


@pytest.mark.parametrize("raw", ["1", "300", "0", "-5", "many", "1.5", ""])
def test_counts_read_alike_by_both(raw: str) -> None:
    gateway = _problems(load_gateway_settings, {"GATEWAY_WORKERS": raw})
    backend = _problems(
        load_backend_settings,
        {"TENANT_NAME": "a", "TENANT_SECRET": SECRET, "TENANT_PASSWORD_CHECKS": raw},
    )
    assert gateway == backend


def test_secrets_never_show_in_either_settings(tmp_path: Path) -> None:
    password, token = "redis-password-123", "metrics-token-0123456789"
    gateway = load_gateway_settings(
        {"GATEWAY_REDIS_PASSWORD": password, "GATEWAY_METRICS_TOKEN": token}
    )
    backend = load_backend_settings(
        {
            "TENANT_NAME": "acme",
            "TENANT_SECRET": SECRET,
            "TENANT_REDIS_PASSWORD": password,
        }
    )
    for shown in (repr(gateway), repr(backend), repr(gateway.redis), str(backend)):
        assert password not in shown
        assert token not in shown
        assert SECRET not in shown
    assert repr(backend.secret) == repr(gateway.metrics_token) == "Secret('***')"
    assert backend.secret.get() == SECRET  # one accessor on both sides
    assert gateway.redis.password == backend.redis.password == Secret(password)


Client = TestClient[web.Request, web.Application]
ROUTES = [
    *(
        (method, VERSION_PREFIX + (f"/{tail}" if tail else ""))
        for method, tail in sorted(PUBLIC)  # one order in every xdist worker
    ),
    ("GET", VERSION_PREFIX + "/docs/swagger-ui.css"),
    *sorted(PUBLIC_OPS),
]
PRIVATE = [
    ("GET", VERSION_PREFIX + "/sensors"),
    ("GET", VERSION_PREFIX + "/docs/a/b.css"),
    ("POST", VERSION_PREFIX + "/health/ready"),
    ("GET", "/api/ops/other"),
]


async def refused_for_want_of_a_user(response: ClientResponse) -> bool:
    """The 401 of a missing or bad user token (getLatestTaskRun's own 401, for a
    missing task-check token, is FlexMeasures' task-status answer instead)."""
    if response.status != 401:
        return False
    body = await response.json()
    return isinstance(body, dict) and body.get("status") == "UNAUTHORIZED"


@pytest.mark.parametrize(
    ("method", "path", "public"),
    [
        *((m, p, True) for m, p in ROUTES),
        *((m, p, False) for m, p in PRIVATE),
    ],
)
async def test_public_routes_public_in_both(
    method: str,
    path: str,
    public: bool,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    """Tokenless via the gateway, service identity at the backend: 401 iff private."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'tenant.sqlite3'}"
    await migrate(url)
    backend_settings = BackendSettings(
        name=TENANT, database_url=url, secret=Secret(SECRET)
    )
    backend = await aiohttp_client(create_backend(backend_settings))
    service = _assertion(SECRET, TENANT, SERVICE, None)
    direct = await backend.request(method, path, headers={HEADER: service})
    assert (not await refused_for_want_of_a_user(direct)) == public, await direct.text()

    server = await aiohttp_server(create_backend(backend_settings))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / TENANT).write_text(SECRET)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        yaml.safe_dump(
            {"tenants": [{"subdomain": TENANT, "backends": [str(server.make_url(""))]}]}
        )
    )
    gateway = await aiohttp_client(
        create_gateway(
            GatewaySettings(
                tenants_path=tenants,
                redis_url=redis_url,
                key_prefix=redis_prefix,
                secrets_dir=secrets,
            )
        )
    )
    answer = await gateway.request(
        method, path, headers={"Host": f"{TENANT}.localhost"}
    )
    assert (not await refused_for_want_of_a_user(answer)) == public, await answer.text()
    if public:  # the backend's own answer came through
        assert answer.status == direct.status
