"""The gateway on Redis Sentinel and on Redis Cluster: real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from gateway.app import connect_redis, create_app
from gateway.auth import TokenCache, TokenStore, token_hash
from gateway.config import Settings
from tests.gateway.conftest import EchoBackend, start_echo, tenants_text, write_secret
from tests.redis_servers import (
    ClusterSetup,
    SentinelSetup,
    cluster_setup,
    sentinel_setup,
)

pytestmark = pytest.mark.slow

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
HOST = {"Host": "company.localhost"}
USERS = "/api/v3_0/users"


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with sentinel_setup(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    with cluster_setup(tmp_path_factory.mktemp("cluster")) as setup:
        yield setup


async def login(client: Client, email: str = "a@b.cd") -> str:
    response = await client.post(
        "/api/requestAuthToken",
        json={"email": email, "password": "pw"},
        headers=HOST,
    )
    assert response.status == 200, await response.text()
    token: str = (await response.json())["auth_token"]
    return token


async def get_users(client: Client, token: str) -> int:
    response = await client.get(USERS, headers={**HOST, "Authorization": token})
    await response.read()
    return response.status


async def company_gateway(
    aiohttp_client: ClientFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    tmp_path: Path,
    **settings: object,
) -> tuple[Client, EchoBackend]:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    path = tmp_path / "tenants.yaml"
    path.write_text(
        tenants_text(
            [
                {
                    "subdomain": "company",
                    "backends": [url],
                    "rate_limits": {"per_token": "3/minute", "per_tenant": "5/minute"},
                }
            ]
        )
    )
    app = create_app(
        Settings(
            tenants_path=path,
            secrets_dir=secrets_dir,
            reload_interval=0.1,
            **settings,  # type: ignore[arg-type]
        )
    )
    return await aiohttp_client(app), backend


async def test_gateway_keeps_tokens_on_the_sentinels_master(
    sentinel: SentinelSetup,
    aiohttp_client: ClientFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    client, _ = await company_gateway(
        aiohttp_client,
        aiohttp_server,
        secrets_dir,
        tmp_path,
        redis_sentinels=sentinel.sentinels,
        redis_sentinel_master=sentinel.master_name,
        redis_url="redis://127.0.0.1:1/0",  # not used with sentinels
        key_prefix=redis_prefix,
    )
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["redis"] is True
    token = await login(client)
    assert await get_users(client, token) == 200
    master = Redis.from_url(sentinel.master_url)
    try:
        assert await master.exists(f"{redis_prefix}:tok:{token_hash(token)}")
    finally:
        await master.aclose()


async def until_live(*stores: TokenStore) -> None:
    for _ in range(100):
        if all(store.cache.live for store in stores):
            return
        await asyncio.sleep(0.05)
    pytest.fail("the revocation feed did not come up")


async def test_tokens_issue_look_up_and_revoke_across_cluster_nodes(
    cluster: ClusterSetup, redis_prefix: str
) -> None:
    # Two gateways, each starting from another node: a revocation at one is heard
    # at the other (pub/sub over the cluster bus), wherever the keys live.
    one = RedisCluster.from_url(cluster.url(0))
    two = RedisCluster.from_url(cluster.url(1))
    here = TokenStore(one, redis_prefix, cache=TokenCache())
    there = TokenStore(two, redis_prefix, cache=TokenCache())
    followers = [asyncio.create_task(s.follow_revocations()) for s in (here, there)]
    try:
        await until_live(here, there)

        def node_of(key: str) -> str:
            node = one.get_node_from_key(key)
            assert node is not None
            return node.name

        user_node = node_of(f"{redis_prefix}:utok:company:7")
        tokens: list[str] = []
        token_nodes: set[str] = set()
        while len(tokens) < 3 or token_nodes <= {user_node}:
            assert len(tokens) < 40  # the set and a token key on two nodes, at last
            token, _ = await here.issue(
                tenant="company", user_id=7, account_id=3, roles=(), ttl=60
            )
            tokens.append(token)
            token_nodes.add(node_of(f"{redis_prefix}:tok:{token_hash(token)}"))
        for token in tokens:
            record = await there.lookup(token)
            assert record is not None
            assert (record.tenant, record.user_id) == ("company", 7)
            assert there.cache.get(token_hash(token)) is not None  # cached there
        assert len(await there.user_tokens("company", 7)) == len(tokens)

        assert await here.revoke(tokens[0])
        for _ in range(100):
            if there.cache.get(token_hash(tokens[0])) is None:
                break
            await asyncio.sleep(0.02)
        assert await there.lookup(tokens[0]) is None

        assert await here.revoke_user("company", 7) == len(tokens)
        for _ in range(100):
            if all(there.cache.get(token_hash(t)) is None for t in tokens):
                break
            await asyncio.sleep(0.02)
        assert [await there.lookup(t) for t in tokens] == [None] * len(tokens)
        assert await here.revoke_user("company", 7) == 0
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        await one.aclose()
        await two.aclose()


async def test_gateway_on_a_cluster_limits_revokes_and_throttles(
    cluster: ClusterSetup,
    aiohttp_client: ClientFactory,
    aiohttp_server: Server,
    secrets_dir: Path,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    client, backend = await company_gateway(
        aiohttp_client,
        aiohttp_server,
        secrets_dir,
        tmp_path,
        redis_cluster=True,
        redis_url=cluster.url(2),
        key_prefix=redis_prefix,
        login_failures_per_email=2,
        rate_limit_failure="closed",  # a script refused by the cluster would be a 503
    )
    response = await client.get("/readyz")
    assert response.status == 200

    # Revoke-all: the backend asks for it in an answer (as after a password reset).
    first, second = await login(client), await login(client)

    async def revoke(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"X-FlexHost-Revoke-User": "7"})

    backend.handler = revoke
    assert await get_users(client, first) == 200  # tenant budget: 1 of 5
    backend.handler = None
    assert [await get_users(client, t) for t in (first, second)] == [401, 401]

    # Rate limits: 3 per token, 5 for the tenant (both buckets in one script).
    third = await login(client)
    assert [await get_users(client, third) for _ in range(4)] == [200, 200, 200, 429]
    fourth = await login(client)
    response = await client.get(USERS, headers={**HOST, "Authorization": fourth})
    assert response.status == 200  # tenant budget: 5 of 5
    response = await client.get(USERS, headers={**HOST, "Authorization": fourth})
    assert response.status == 429
    assert response.headers["X-RateLimit-Limit"] == "5"

    # Failed logins: counted per email and address, then refused.
    async def wrong_password(request: web.Request) -> web.Response:
        return web.json_response({"status": "WRONG_PASSWORD"}, status=401)

    backend.handler = wrong_password
    statuses = []
    for _ in range(3):
        response = await client.post(
            "/api/requestAuthToken",
            json={"email": "x@b.cd", "password": "nope"},
            headers=HOST,
        )
        statuses.append(response.status)
    assert statuses == [401, 401, 429]
    assert 0 < int(response.headers["Retry-After"]) <= 900


def test_connect_redis_picks_the_configured_topology(
    sentinel: SentinelSetup, tmp_path: Path
) -> None:
    path = tmp_path / "tenants.yaml"
    assert type(connect_redis(Settings(tenants_path=path))) is Redis
    cluster = connect_redis(
        Settings(tenants_path=path, redis_cluster=True, redis_url="redis://h:7000")
    )
    assert isinstance(cluster, RedisCluster)
    master = connect_redis(
        Settings(
            tenants_path=path,
            redis_sentinels=sentinel.sentinels,
            redis_sentinel_master=sentinel.master_name,
        )
    )
    assert isinstance(master, Redis)
    assert isinstance(master.connection_pool, SentinelConnectionPool)
