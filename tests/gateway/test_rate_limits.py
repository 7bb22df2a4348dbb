"""Rate limits per token and per tenant: exact in Redis across gateways, as FlexMeasures."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from contract.config import ConfigError
from contract.rates import Rate, RateLimits, parse_rate
from contract.tenants_file import parse_tenants
from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.limits import Bucket, LocalBuckets
from tests.gateway.conftest import (
    EchoBackend,
    GatewayFactory,
    RedisProcess,
    metric,
    scrape,
    start_echo,
    tenants_text,
    write_secret,
)
from tests.helpers.wait import until

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]
HOST = {"Host": "company.localhost"}
USERS = "/api/v3_0/users"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


async def login(client: Client) -> str:
    response = await client.post(
        "/api/requestAuthToken",
        json={"email": "a@b.cd", "password": "pw"},
        headers=HOST,
    )
    assert response.status == 200, await response.text()
    token: str = (await response.json())["auth_token"]
    return token


async def get_users(client: Client, token: str) -> ClientResponse:
    response = await client.get(USERS, headers={**HOST, "Authorization": token})
    await response.read()
    return response


async def burst(client: Client, token: str, count: int) -> list[ClientResponse]:
    return await asyncio.gather(*(get_users(client, token) for _ in range(count)))


@pytest.fixture
async def company(aiohttp_server: Server, secrets_dir: Path) -> tuple[EchoBackend, str]:
    return await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )


def company_yaml(url: str, **limits: object) -> str:
    return tenants_text(
        [{"subdomain": "company", "backends": [url], "rate_limits": limits}]
    )


async def test_rate_limit_exact_under_concurrency(
    make_gateway: GatewayFactory, company: tuple[EchoBackend, str]
) -> None:
    backend, url = company
    client = await make_gateway(company_yaml(url, per_token="20/minute"))
    token = await login(client)
    backend.seen.clear()
    before = time.time()

    answers = await burst(client, token, 50)

    passed = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 429]
    assert (len(passed), len(refused)) == (20, 30)
    assert len(backend.seen) == 20  # the refused never reached the backend
    # Each answer tells how many are left, as FlexMeasures' limiter does.
    assert sorted(int(a.headers["X-RateLimit-Remaining"]) for a in passed) == list(
        range(20)
    )
    for answer in answers:
        assert answer.headers["X-RateLimit-Limit"] == "20"
        assert int(answer.headers["X-RateLimit-Reset"]) >= int(before)
        assert int(answer.headers["Retry-After"]) >= 1
    for answer in refused:
        assert answer.headers["X-RateLimit-Remaining"] == "0"
        # 20 per minute refill one every 3 s: at most 3 s to wait (less when the
        # burst itself took a while on a busy machine).
        assert 1 <= int(answer.headers["Retry-After"]) <= 3
        assert await answer.json() == {
            "message": "You hit a rate limit. The limit you hit allows 20 per 1 minute.",
            "result": "Rejected",
            "status": "TOO_MANY_REQUESTS",
        }
    text = await scrape(client)
    assert (
        metric(
            text,
            "flexhost_gateway_rate_limited_total",
            pool=url,  # by default by pool: the tenant's backend addresses
            scope="token",
        )
        == 30
    )
    assert (
        metric(
            text,
            "flexhost_gateway_requests_total",
            pool=url,
            route="api_proxy",
            status="4xx",
        )
        == 30
    )


async def test_rate_limit_shared_by_two_gateways_on_one_redis(
    make_gateway: GatewayFactory, company: tuple[EchoBackend, str]
) -> None:
    _, url = company
    first = await make_gateway(company_yaml(url, per_token="20/minute"))
    second = await make_gateway(company_yaml(url, per_token="20/minute"))
    token = await login(first)

    answers = await asyncio.gather(burst(first, token, 25), burst(second, token, 25))

    statuses = [a.status for batch in answers for a in batch]
    assert statuses.count(200) == 20
    assert statuses.count(429) == 30  # apart, each would have let 20 through


async def test_rate_limit_leases_never_exceed_the_limit(
    make_gateway: GatewayFactory, company: tuple[EchoBackend, str]
) -> None:
    """At 500 per minute each gateway leases 10 permits at a time: never more than
    500 pass, and at most a lease per gateway goes unused."""
    _, url = company
    # 600 requests at once on the test's own event loop wait for Redis connections
    # longer than the 1 s default on a busy machine (503s, seen in CI): this test
    # counts permits, so its gateways may wait longer.
    patient = {"redis_timeout": 5.0}
    first = await make_gateway(company_yaml(url, per_token="500/minute"), **patient)
    second = await make_gateway(company_yaml(url, per_token="500/minute"), **patient)
    token = await login(first)

    started = time.monotonic()
    answers = await asyncio.gather(burst(first, token, 300), burst(second, token, 300))
    # The bucket refills 500 per minute meanwhile (GCRA): that many more may pass.
    refill = math.ceil((time.monotonic() - started) * 500 / 60)

    passed = sum(a.status == 200 for batch in answers for a in batch)
    assert 500 - 2 * 10 <= passed <= 500 + refill
    statuses = sorted({a.status for batch in answers for a in batch})
    assert sum(a.status == 429 for batch in answers for a in batch) == 600 - passed, (
        statuses
    )


async def test_rate_limit_per_tenant_counts_every_token_but_not_bad_ones(
    make_gateway: GatewayFactory, company: tuple[EchoBackend, str]
) -> None:
    _, url = company
    client = await make_gateway(
        company_yaml(url, per_token=None, per_tenant="10 per minute")
    )
    first, second = await login(client), await login(client)
    # A wrong token is refused before the limits: it cannot spend the tenant's.
    for _ in range(5):
        answer = await get_users(client, "not-a-token")
        assert answer.status == 401
        assert "X-RateLimit-Limit" not in answer.headers

    answers = await asyncio.gather(burst(client, first, 8), burst(client, second, 8))

    statuses = [a.status for batch in answers for a in batch]
    assert statuses.count(200) == 10
    refused = [a for batch in answers for a in batch if a.status == 429]
    assert len(refused) == 6
    body = await refused[0].json()
    assert body["message"].endswith("allows 10 per 1 minute.")
    assert refused[0].headers["X-RateLimit-Limit"] == "10"
    text = await scrape(client)
    assert (
        metric(
            text,
            "flexhost_gateway_rate_limited_total",
            pool=url,
            scope="tenant",
        )
        == 6
    )


async def test_rate_limit_headers_name_the_tighter_limit(
    make_gateway: GatewayFactory, company: tuple[EchoBackend, str]
) -> None:
    _, url = company
    client = await make_gateway(
        company_yaml(url, per_token="5/minute", per_tenant="100/minute")
    )
    token = await login(client)
    answer = await get_users(client, token)
    assert answer.headers["X-RateLimit-Limit"] == "5"
    assert answer.headers["X-RateLimit-Remaining"] == "4"
    answers = await burst(client, token, 5)
    assert [a.status for a in answers].count(429) == 1


async def test_rate_limit_never_on_health_ready_public_paths_or_login(
    make_gateway: GatewayFactory, company: tuple[EchoBackend, str]
) -> None:
    _, url = company
    client = await make_gateway(company_yaml(url, per_token="2/minute"))
    tokens = [await login(client) for _ in range(4)]  # its own throttle, not this
    token = tokens[0]
    for _ in range(5):
        for path in ("/api/v3_0/health/ready", "/api/v3_0", "/api/"):
            answer = await client.get(path, headers={**HOST, "Authorization": token})
            assert answer.status == 200, path
            assert not any(h in answer.headers for h in RATE_HEADERS), path
    statuses = [a.status for a in await burst(client, token, 3)]
    assert sorted(statuses) == [200, 200, 429]


async def test_rate_limit_headers_on_every_answer_keep_a_backends_retry_after(
    make_gateway: GatewayFactory, company: tuple[EchoBackend, str]
) -> None:
    backend, url = company
    client = await make_gateway(company_yaml(url))  # the default: 500 per minute
    token = await login(client)

    async def busy(request: web.Request) -> web.Response:
        status = 429 if request.path.endswith("trigger") else 404
        return web.json_response(
            {"message": "busy", "status": status},
            status=status,
            headers={"Retry-After": "300"} if status == 429 else None,
        )

    backend.handler = busy
    answer = await client.post(
        "/api/v3_0/sensors/1/schedules/trigger",
        json={},
        headers={**HOST, "Authorization": token},
    )
    assert answer.status == 429
    assert answer.headers["Retry-After"] == "300"  # the backend's trigger limit
    assert answer.headers["X-RateLimit-Limit"] == "500"
    assert answer.headers["X-RateLimit-Remaining"] == "499"
    answer = await get_users(client, token)
    assert answer.status == 404
    assert answer.headers["X-RateLimit-Remaining"] == "498"
    assert int(answer.headers["Retry-After"]) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_rate_limit_when_redis_refuses_its_counters(
    aiohttp_client: Callable[..., Awaitable[Client]],
    company: tuple[EchoBackend, str],
    redis_process: RedisProcess,
    secrets_dir: Path,
    tmp_path: Path,
    policy: str,
) -> None:
    backend, url = company
    path = tmp_path / "tenants.yaml"
    path.write_text(company_yaml(url, per_token="5/minute"))
    redis_url = f"redis://127.0.0.1:{redis_process.port}/0"
    settings = Settings(
        tenants_path=path,
        redis_url=redis_url,
        secrets_dir=secrets_dir,
        redis_timeout=0.5,
        rate_limit_failure="closed" if policy == "closed" else "open",
    )
    client = await aiohttp_client(create_app(settings))

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await until(ready)
    token = await login(client)
    admin = Redis.from_url(redis_url)
    # Redis over its memory limit refuses writes: token lookups (reads) still
    # work, the counters (a script that writes) do not.
    await admin.config_set("maxmemory", 1)
    try:
        backend.seen.clear()
        answers = [await get_users(client, token) for _ in range(8)]
    finally:
        await admin.config_set("maxmemory", 0)
        await admin.aclose()

    statuses = [a.status for a in answers]
    if policy == "open":
        # The same limit, counted in this process alone.
        assert statuses == [200] * 5 + [429] * 3
        assert answers[-1].headers["X-RateLimit-Limit"] == "5"
        assert answers[-1].headers["X-RateLimit-Remaining"] == "0"
        assert len(backend.seen) == 5
    else:
        assert statuses == [503] * 8
        assert answers[0].headers["Retry-After"] == "1"
        assert (await answers[0].json())["status"] == "RATE_LIMIT_UNAVAILABLE"
        assert backend.seen == []
    text = await scrape(client)
    assert metric(text, "flexhost_gateway_rate_limit_store_errors_total") == 8
    # Back in Redis: its counter was never charged.
    assert (await get_users(client, token)).status == 200


def test_local_buckets_count_like_the_script() -> None:
    local = LocalBuckets()
    buckets = [
        Bucket("token", "t", Rate(3, 60)),
        Bucket("tenant", "n", Rate(4, 60)),
    ]
    verdicts = [local.check(buckets) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True] * 3
    assert [v.remaining for v in verdicts] == [2, 1, 0]
    other = [Bucket("token", "u", Rate(3, 60)), buckets[1]]
    assert local.check(other).allowed  # the tenant's 4th
    refused = local.check(other)
    assert not refused.allowed
    assert refused.scope == "tenant"
    assert 14_000 < refused.retry_ms <= 15_000  # the 4 per minute refill every 15 s
    assert local.check(buckets).scope == "token"  # both full: the longer wait


def test_local_buckets_stay_bounded() -> None:
    local = LocalBuckets(max_entries=10)
    for i in range(100):
        assert local.check([Bucket("token", f"k{i}", Rate(1, 60))]).allowed
    assert len(local) <= 10


def test_parse_tenants_rate_limits() -> None:
    config = parse_tenants(
        "tenants:\n"
        "  - {subdomain: a, backends: ['http://x:1']}\n"
        "  - subdomain: b\n"
        "    backends: ['http://x:1']\n"
        "    rate_limits: {per_token: off, per_tenant: 20000/minute}\n"
        "  - subdomain: c\n"
        "    backends: ['http://x:1']\n"
        "    rate_limits: {per_token: '10 per 5 minutes'}\n",
        check_secrets=False,
    )
    a, b, c = (t.rate_limits for t in config.tenants)
    assert a == RateLimits(per_token=Rate(500, 60), per_tenant=None)
    assert b == RateLimits(per_token=None, per_tenant=Rate(20000, 60))
    assert c.per_token == Rate(10, 300)
    assert str(c.per_token) == "10 per 5 minutes"


@pytest.mark.parametrize(
    "limits",
    [RateLimits(), RateLimits(None, Rate(20000, 60)), RateLimits(Rate(10, 300), None)],
)
def test_rate_limits_as_yaml_parse_back(limits: RateLimits) -> None:
    text = tenants_text(
        [
            {
                "subdomain": "a",
                "backends": ["http://x:1"],
                "rate_limits": limits.as_yaml(),
            }
        ]
    )
    assert parse_tenants(text, check_secrets=False).tenants[0].rate_limits == limits


def test_parse_tenants_rate_limit_problems_have_their_place() -> None:
    with pytest.raises(ConfigError) as info:
        parse_tenants(
            "tenants:\n"
            "  - subdomain: a\n"
            "    backends: ['http://x:1']\n"
            "    rate_limits:\n"
            "      per_token: lots\n"
            "      per_tenant: 0/minute\n"
            "      per_user: 5/minute\n"
            "  - subdomain: b\n"
            "    backends: ['http://x:1']\n"
            "    rate_limits: 5/minute\n",
            source="t.yaml",
            check_secrets=False,
        )
    problems = info.value.problems
    assert problems[0].startswith(
        't.yaml:5:18: tenants[0].rate_limits.per_token: must be like "500/minute"'
    )
    assert problems[1].startswith("t.yaml:6:19: tenants[0].rate_limits.per_tenant:")
    assert problems[2] == "t.yaml:7:7: tenants[0].rate_limits.per_user: unknown field"
    assert problems[3] == "t.yaml:10:18: tenants[1].rate_limits: must be a mapping"


@given(
    st.integers(1, 100_000),
    st.sampled_from([1, 2, 60, 300, 3600, 7200, 86400]),
)
def test_parse_rate_round_trips(limit: int, period: int) -> None:
    rate = Rate(limit, period)
    assert parse_rate(str(rate)) == rate


@given(st.text(max_size=40))
def test_parse_rate_raises_only_value_error(text: str) -> None:
    try:
        rate = parse_rate(text)
    except ValueError:
        return
    assert rate.limit >= 1
    assert rate.period >= 1


def test_load_settings_rate_limit_failure() -> None:
    assert load_settings({}).rate_limit_failure == "open"
    closed = load_settings({"GATEWAY_RATE_LIMIT_FAILURE": "closed"})
    assert closed.rate_limit_failure == "closed"
    with pytest.raises(ConfigError, match="GATEWAY_RATE_LIMIT_FAILURE"):
        load_settings({"GATEWAY_RATE_LIMIT_FAILURE": "sometimes"})
