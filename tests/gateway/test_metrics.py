"""GET /metrics: what the gateway counts, per pool or tenant, summed over its workers.

By default the first label is the tenant's pool (its backend addresses); the tests
that count per tenant opt in with metrics_per_tenant (GATEWAY_METRICS_PER_TENANT).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Final

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from contract.config import ConfigError, Secret
from gateway.config import load_settings
from gateway.metrics import route_name
from tests.gateway.conftest import (
    EchoBackend,
    GatewayFactory,
    metric,
    scrape,
    start_echo,
    tenants_text,
    write_secret,
)
from tests.helpers.net import free_port

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]
COMPANY = {"Host": "company.localhost"}
ACME = {"Host": "acme.localhost"}
REQUESTS = "flexhost_gateway_requests_total"
# Typed view of prometheus-client's untyped merge of multiprocess files.
merge_files: Final[Callable[[list[str]], Iterable[Metric]]] = (
    MultiProcessCollector.merge
)


async def login(
    client: Client, host: dict[str, str] = COMPANY
) -> aiohttp.ClientResponse:
    response = await client.post(
        "/api/requestAuthToken",
        json={"email": "a@b.cd", "password": "pw"},
        headers=host,
    )
    await response.read()
    return response


@pytest.fixture
async def two_tenants(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> tuple[Client, EchoBackend, str]:
    secret = write_secret(secrets_dir, "company")
    backend, url = await start_echo(aiohttp_server, secret, "company")
    _, acme_url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "acme"), "acme"
    )
    client = await make_gateway(
        tenants_text(
            [
                {"subdomain": "company", "backends": [url]},
                {"subdomain": "acme", "backends": [acme_url]},
            ]
        ),
        metrics_per_tenant=True,
    )
    return client, backend, secret


async def test_metrics_count_requests_per_tenant_route_and_status(
    two_tenants: tuple[Client, EchoBackend, str],
) -> None:
    client, _, secret = two_tenants
    token = (await (await login(client)).json())["auth_token"]
    for _ in range(3):
        response = await client.get(
            "/api/v3_0/users/7", headers={**COMPANY, "Authorization": token}
        )
        assert response.status == 200
    for _ in range(2):
        assert (await client.get("/api/", headers=ACME)).status == 200
    assert (
        await client.get("/api/", headers={"Host": "nobody.localhost"})
    ).status == 404
    assert (await client.get("/login", headers=COMPANY)).status == 200
    assert (await client.get("/nothing/here", headers=COMPANY)).status == 404

    text = await scrape(client)

    def requests(**labels: str) -> float:
        return metric(text, REQUESTS, **labels)

    assert (
        requests(tenant="company", route="api_proxy", method="GET", status="2xx") == 3
    )
    assert requests(tenant="company", route="login", method="POST", status="2xx") == 1
    assert requests(tenant="company", route="login", method="GET", status="2xx") == 1
    assert requests(tenant="company", route="other", status="4xx") == 1
    assert requests(tenant="acme", route="api_versions", status="2xx") == 2
    assert requests(tenant="-", route="api_versions", status="4xx") == 1
    assert (
        metric(
            text,
            "flexhost_gateway_request_duration_seconds_count",
            tenant="company",
            route="api_proxy",
        )
        == 3
    )
    assert (
        metric(
            text, "flexhost_gateway_tokens_issued_total", tenant="company", kind="api"
        )
        == 1
    )
    # Bounded labels only: no paths, user ids, tokens or secrets.
    for leak in (token, secret, "/api/v3_0/users", "nobody", "user_id", 'id="7"'):
        assert leak not in text


def series(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of the samples of `name` in an exposition."""
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


@pytest.mark.parametrize("per_tenant", [False, True])
async def test_metrics_by_pool_stay_flat_in_the_number_of_tenants(
    make_gateway: GatewayFactory, secrets_dir: Path, per_tenant: bool
) -> None:
    pools = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    names = [f"t{i:03d}" for i in range(120)]
    for name in names:
        write_secret(secrets_dir, name)
    entries: list[dict[str, object]] = [
        {"subdomain": name, "backends": [pools[i % 2]]} for i, name in enumerate(names)
    ]
    client = await make_gateway(tenants_text(entries), metrics_per_tenant=per_tenant)
    for name in names:
        response = await client.get("/api/", headers={"Host": f"{name}.localhost"})
        assert response.status == 200
    assert (await client.get("/api/", headers={"Host": "no.localhost"})).status == 404

    text = await scrape(client)
    found = series(text, REQUESTS)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    print(
        f"\n{len(names)} tenants on {len(pools)} pools, per_tenant={per_tenant}: "
        f"{len(lines)} series, {len(text)} bytes; {REQUESTS}: {len(found)} series"
    )
    assert metric(text, REQUESTS, route="api_versions", status="2xx") == len(names)
    if per_tenant:
        assert {labels["tenant"] for labels in found} == {*names, "-"}
        assert metric(text, REQUESTS, tenant="t007", route="api_versions") == 1
    else:
        # One series per pool (and "-": no tenant), whatever the number of tenants.
        assert all("tenant" not in labels for labels in found)
        assert {labels["pool"] for labels in found} == {*pools, "-"}
        assert metric(text, REQUESTS, pool=pools[1], status="2xx") == len(names) / 2
        assert not any(f'"{name}"' in text for name in names)


async def test_metrics_count_login_failures_and_throttle(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": [url]}]),
        login_failures_per_email=2,
        metrics_per_tenant=True,
    )
    verdicts = iter([404, 401])

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({}, status=next(verdicts))

    backend.handler = refuse
    statuses = [(await login(client)).status for _ in range(3)]
    assert statuses == [404, 401, 429]

    text = await scrape(client)

    def failures(reason: str) -> float:
        return metric(
            text,
            "flexhost_gateway_login_failures_total",
            tenant="company",
            reason=reason,
        )

    assert failures("unknown_user") == 1
    assert failures("wrong_password") == 1
    assert failures("throttled") == 1
    assert metric(text, "flexhost_gateway_login_throttled_total", tenant="company") == 1
    assert metric(text, "flexhost_gateway_tokens_issued_total") == 0


async def poll(client: Client, check: Callable[[str], bool], seconds: float = 3) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        text = await scrape(client)
        if check(text):
            return text
        if loop.time() > deadline:
            pytest.fail(f"metrics did not get there in {seconds}s:\n{text}")
        await asyncio.sleep(0.05)


async def test_metrics_count_config_reloads_and_rejections(
    make_gateway: GatewayFactory, secrets_dir: Path, tmp_path: Path
) -> None:
    write_secret(secrets_dir, "company")
    write_secret(secrets_dir, "acme")
    one = tenants_text([{"subdomain": "company", "backends": ["http://127.0.0.1:9"]}])
    client = await make_gateway(one)
    path = tmp_path / "tenants.yaml"
    text = await scrape(client)
    assert metric(text, "flexhost_gateway_config_ok") == 1
    assert metric(text, "flexhost_gateway_config_reloads_total") == 0

    path.write_text(
        tenants_text(
            [
                {"subdomain": "company", "backends": ["http://127.0.0.1:9"]},
                {"subdomain": "acme", "backends": ["http://127.0.0.1:9"]},
            ]
        )
    )
    await poll(
        client, lambda t: metric(t, "flexhost_gateway_config_reloads_total") == 1
    )
    path.write_text("tenants:\n  - subdomain: Not Valid\n")
    text = await poll(
        client,
        lambda t: metric(t, "flexhost_gateway_config_reload_failures_total") == 1,
    )
    assert metric(text, "flexhost_gateway_config_ok") == 0
    assert metric(text, "flexhost_gateway_config_reloads_total") == 1
    assert (await client.get("/api/", headers=ACME)).status == 200  # last good


async def test_metrics_count_upstream_errors_by_kind(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> None:
    slow, slow_url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "slow"), "slow"
    )
    broken, broken_url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "broken"), "broken"
    )
    write_secret(secrets_dir, "down")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    async def cut(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        await asyncio.sleep(0.1)
        return web.json_response({})

    slow.handler = hang
    broken.handler = cut
    client = await make_gateway(
        tenants_text(
            [
                {"subdomain": "slow", "backends": [slow_url], "upstream_timeout": 0.2},
                {"subdomain": "broken", "backends": [broken_url]},
                {"subdomain": "down", "backends": [f"http://127.0.0.1:{free_port()}"]},
            ]
        ),
        metrics_per_tenant=True,
    )
    for tenant, status in (("slow", 504), ("broken", 502), ("down", 502)):
        response = await client.get(
            "/api/v3_0/health/ready", headers={"Host": f"{tenant}.localhost"}
        )
        assert response.status == status, tenant

    text = await scrape(client)

    def errors(tenant: str, kind: str) -> float:
        return metric(
            text, "flexhost_gateway_upstream_errors_total", tenant=tenant, kind=kind
        )

    assert errors("slow", "timeout") == 1
    assert errors("broken", "failed") == 1
    assert errors("down", "unreachable") == 1
    assert metric(text, "flexhost_gateway_upstream_errors_total") == 3


async def test_metrics_not_on_a_tenant_host_and_token_when_set(
    make_gateway: GatewayFactory, secrets_dir: Path
) -> None:
    write_secret(secrets_dir, "company")
    metrics_token = "m" * 32
    client = await make_gateway(
        tenants_text([{"subdomain": "company", "backends": ["http://127.0.0.1:9"]}]),
        metrics_token=Secret(metrics_token),
    )
    # Through a tenant's host (what a public proxy forwards) it does not exist.
    response = await client.get(
        "/metrics", headers={**COMPANY, "Authorization": f"Bearer {metrics_token}"}
    )
    assert response.status == 404
    assert await response.json() == {
        "message": "No endpoint at /metrics.",
        "status": 404,
    }
    for given in ("", "Bearer wrong", metrics_token):  # the raw value is no bearer
        response = await client.get("/metrics", headers={"Authorization": given})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    text = await scrape(client, Authorization=f"Bearer {metrics_token}")
    assert "flexhost_gateway_requests_total" in text
    assert metrics_token not in text


async def test_metrics_not_through_a_trusted_proxy_without_a_token(
    make_gateway: GatewayFactory, secrets_dir: Path
) -> None:
    write_secret(secrets_dir, "company")
    yaml_text = tenants_text(
        [{"subdomain": "company", "backends": ["http://127.0.0.1:9"]}]
    )
    # What a public front forwards for the bare domain (no tenant's host).
    forwarded = {"Host": "flexmeasures.io", "X-Forwarded-For": "203.0.113.9"}
    client = await make_gateway(yaml_text, trusted_proxies=("127.0.0.1",))
    assert (await client.get("/metrics", headers=forwarded)).status == 404
    await scrape(client)  # straight from the scraper: served
    token = "m" * 32
    with_token = await make_gateway(
        yaml_text, trusted_proxies=("127.0.0.1",), metrics_token=Secret(token)
    )
    response = await with_token.get(
        "/metrics", headers={**forwarded, "Authorization": f"Bearer {token}"}
    )
    assert response.status == 200


def test_load_settings_metrics() -> None:
    settings = load_settings(
        {"GATEWAY_METRICS_TOKEN": "t" * 20, "GATEWAY_METRICS_DIR": "/run/metrics"}
    )
    assert settings.metrics_token == Secret("t" * 20)
    assert repr(settings.metrics_token) == "Secret('***')"
    assert settings.metrics_dir == Path("/run/metrics")
    assert not settings.metrics_per_tenant
    assert load_settings({}).metrics_dir is None
    assert load_settings({"GATEWAY_METRICS_PER_TENANT": "true"}).metrics_per_tenant
    with pytest.raises(ConfigError, match="GATEWAY_METRICS_TOKEN"):
        load_settings({"GATEWAY_METRICS_TOKEN": "short"})


@pytest.mark.parametrize(
    ("canonical", "name"),
    [
        ("/api/{version}/{tail}", "api_proxy"),
        ("/api/{version}", "api_proxy"),
        ("/api/requestAuthToken", "login"),
        ("/login", "login"),
        ("/api/ops/{tail}", "api_ops"),
        ("/api/", "api_versions"),
        ("/healthz", "probe"),
        ("/metrics", "metrics"),
        ("/static", "static"),
        ("/dashboard/api/sensors/{id}/data", "dashboard_api"),
        ("/dashboard", "page"),
        (None, "other"),
    ],
)
def test_route_name_is_bounded(canonical: str | None, name: str) -> None:
    assert route_name(canonical) == name


def _requests_in(path: Path) -> float:
    """Requests to GET /api/ counted in one worker's file."""
    total = 0.0
    for family in merge_files([str(path)]):
        for sample in family.samples:
            if sample.name == REQUESTS and sample.labels.get("route") == "api_versions":
                total += sample.value
    return total


@pytest.mark.slow
async def test_metrics_sum_over_worker_processes(
    redis_url: str, redis_prefix: str, secrets_dir: Path, tmp_path: Path
) -> None:
    write_secret(secrets_dir, "company")
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        tenants_text([{"subdomain": "company", "backends": ["http://127.0.0.1:9"]}])
    )
    metrics_dir = tmp_path / "metrics"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "2",
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_KEY_PREFIX": redis_prefix,
        "GATEWAY_TENANTS_PATH": str(tenants),
        "GATEWAY_SECRETS_DIR": str(secrets_dir),
        "GATEWAY_METRICS_DIR": str(metrics_dir),
        "GATEWAY_METRICS_PER_TENANT": "true",
        "GATEWAY_ACCESS_LOG": "false",
        "GATEWAY_SHUTDOWN_GRACE": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Each request on a new connection: SO_REUSEPORT spreads them by address.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while True:
                try:
                    async with session.get(f"{base}/healthz") as response:
                        if (
                            response.status == 200
                            and len(list(metrics_dir.glob("counter_*.db"))) == 2
                        ):
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert loop.time() < deadline, "the gateway did not start"
                await asyncio.sleep(0.1)
            sent = 0
            files = sorted(metrics_dir.glob("counter_*.db"))
            assert len(files) == 2  # one per worker
            for _ in range(30):  # batches, until both workers have answered some
                for _ in range(10):
                    async with session.get(f"{base}/api/", headers=COMPANY) as response:
                        assert response.status == 200
                    sent += 1
                if all(_requests_in(f) > 0 for f in files):
                    break
            assert all(_requests_in(f) > 0 for f in files), "one worker got all"
            for _ in range(4):  # whichever worker answers, it tells the sum
                async with session.get(f"{base}/metrics") as response:
                    text = await response.text()
                assert (
                    metric(text, REQUESTS, tenant="company", route="api_versions")
                    == sent
                )
            # A worker killed outright: the supervisor starts another and drops the
            # dead one's live gauge; what it counted stays in the sums.
            dead = int(files[0].stem.split("_")[1])
            gauge = metrics_dir / f"gauge_livemin_{dead}.db"
            assert gauge.exists()
            os.kill(dead, signal.SIGKILL)
            while gauge.exists() or len(list(metrics_dir.glob("counter_*.db"))) < 3:
                assert loop.time() < deadline + 20, "no new worker"
                await asyncio.sleep(0.1)
            assert files[0].exists()
            (new,) = set(metrics_dir.glob("counter_*.db")) - set(files)
            while _requests_in(new) == 0:  # until the new worker serves too
                assert loop.time() < deadline + 30, "the new worker does not serve"
                try:
                    async with session.get(f"{base}/api/", headers=COMPANY) as response:
                        assert response.status == 200
                    sent += 1
                except aiohttp.ClientConnectionError:
                    pass  # sent to the dead worker's socket
            for _ in range(4):
                async with session.get(f"{base}/metrics") as response:
                    text = await response.text()
                assert (
                    metric(text, REQUESTS, tenant="company", route="api_versions")
                    == sent
                )
                assert metric(text, "flexhost_gateway_config_ok") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert list(metrics_dir.glob("*.db")) == []  # cleaned at exit
