"""Several gateways on one Redis: a revocation at one is seen by all at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway import keys
from gateway.auth import TokenCache, TokenRecord, TokenStore
from tests.gateway.conftest import (
    GatewayFactory,
    start_echo,
    tenants_text,
    write_secret,
)

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]
HOST = {"Host": "company.localhost"}


async def until_live(client: Client) -> None:
    cache = client.app[keys.TOKENS].cache
    for _ in range(100):
        if cache.live:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the revocation feed did not come up")


@pytest.fixture
async def two_gateways(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> tuple[Client, Client]:
    _, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    text = tenants_text([{"subdomain": "company", "backends": [url]}])
    first, second = await make_gateway(text), await make_gateway(text)
    await until_live(first)
    await until_live(second)
    return first, second


async def status(client: Client, token: str) -> int:
    response = await client.get(
        "/api/v3_0/users", headers={**HOST, "Authorization": token}
    )
    return response.status


async def test_token_issued_at_one_gateway_works_at_another(
    two_gateways: tuple[Client, Client],
) -> None:
    first, second = two_gateways
    response = await first.post(
        "/api/requestAuthToken", json={"email": "a@b.cd", "password": "x"}, headers=HOST
    )
    token = (await response.json())["auth_token"]
    assert await status(second, token) == 200


async def test_revocation_at_one_gateway_is_seen_by_all_at_once(
    two_gateways: tuple[Client, Client], redis: Redis, redis_prefix: str
) -> None:
    first, second = two_gateways
    response = await first.post(
        "/api/requestAuthToken", json={"email": "a@b.cd", "password": "x"}, headers=HOST
    )
    token = (await response.json())["auth_token"]
    assert await status(first, token) == 200
    assert await status(second, token) == 200  # now in both caches
    assert await first.app[keys.TOKENS].revoke(token)
    await asyncio.sleep(0.05)  # pub/sub delivery on loopback
    assert await status(second, token) == 401
    assert await status(first, token) == 401


async def test_user_revocation_reaches_other_gateways(
    two_gateways: tuple[Client, Client], redis: Redis, redis_prefix: str
) -> None:
    first, second = two_gateways
    response = await first.post(
        "/api/requestAuthToken", json={"email": "a@b.cd", "password": "x"}, headers=HOST
    )
    token = (await response.json())["auth_token"]
    assert await status(second, token) == 200
    store = TokenStore(redis, redis_prefix)
    assert await store.revoke_user("company", 7) == 1
    await asyncio.sleep(0.05)
    assert await status(second, token) == 401


def test_token_cache_respects_ttl_and_liveness() -> None:
    record = TokenRecord("company", 1, 2, (), 0, "api")
    cache = TokenCache(max_age=5.0, max_entries=10)
    cache.put("a", record, 60_000)
    assert cache.get("a") is None  # not live: never trusted
    cache.set_live(True)
    cache.put("a", record, 60_000)
    cache.put("b", record, 0)  # expiring token: not cached
    assert cache.get("a") == record
    assert cache.get("b") is None
    cache.evict(["a"])
    assert cache.get("a") is None
    for i in range(25):
        cache.put(str(i), record, 60_000)
    assert len(cache._entries) <= 10
    cache.put("c", record, 60_000)
    cache.set_live(False)
    cache.set_live(True)
    assert cache.get("c") is None  # a new subscription starts empty


async def test_cached_entry_never_outlives_the_token() -> None:
    record = TokenRecord("company", 1, 2, (), 0, "api")
    cache = TokenCache(max_age=5.0)
    cache.set_live(True)
    cache.put("a", record, 30)  # 30 ms left on the token
    assert cache.get("a") == record
    await asyncio.sleep(0.05)
    assert cache.get("a") is None
