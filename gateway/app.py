"""Wiring of the gateway application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
from aiohttp import web
from yarl import URL

from contract import redis as contract_redis
from contract.drain import Drain
from contract.tenants_file import TenantsConfig, load_tenants

from . import keys
from .api import routes
from .auth import REDIS_ERRORS, RedisClient, TokenStore
from .capacity import Capacity
from .config import Settings
from .health import ReplicaHealth, probe_forever
from .identity import IdentityCache
from .limits import RateLimiter
from .logs import AccessLog
from .metrics import MULTIPROCESS_ENV, Metrics
from .middlewares import add_standard_headers, front
from .reset_mail import mail_ctx
from .server import close_if_asked
from .tenants import ConfigWatcher, TenantRegistry
from .web import (
    account_new,
    acting,
    asset_tools,
    assets,
    charts,
    dashboard,
    jobs,
    reset,
    setup_pages,
    users,
    views,
)

logger = logging.getLogger(__name__)


# Connections per gateway process: a waiting pool for a plain Redis; the Sentinel
# and Cluster pools cannot wait, so they may open more before failing.
POOL_MAX_CONNECTIONS: Final = 256
UNPOOLED_MAX_CONNECTIONS: Final = 4096


def connect_redis(settings: Settings) -> RedisClient:
    """The gateway's Redis client: of a Sentinel-managed master, a cluster or a URL."""
    return contract_redis.connect_async(
        settings.redis,
        pool_size=POOL_MAX_CONNECTIONS,
        unpooled_size=UNPOOLED_MAX_CONNECTIONS,
    )


async def close_redis(redis: RedisClient) -> None:
    """Close the client, and for a Sentinel-managed master the sentinels' clients."""
    await contract_redis.close_async(redis)


def redis_target(settings: Settings) -> str:
    """Where the gateway's Redis is, for logs (no password)."""
    if settings.redis_sentinels:
        nodes = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"master {settings.redis_sentinel_master!r} of sentinels {nodes}"
    url = URL(settings.redis_url).with_query(None)  # a password may be in either
    if url.absolute:
        url = url.with_user(None)
    return f"cluster node {url}" if settings.redis_cluster else str(url)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    redis = connect_redis(settings)
    try:
        await redis.ping()
    except REDIS_ERRORS as err:  # start anyway: token paths answer 503 until it is back
        logger.error("Redis (%s) is not reachable yet: %s", redis_target(settings), err)
    tokens = TokenStore(redis, settings.key_prefix, metrics=app[keys.METRICS])
    app[keys.REDIS] = redis
    app[keys.TOKENS] = tokens
    app[keys.LIMITER] = RateLimiter(
        redis, settings.key_prefix, settings.rate_limit_failure, app[keys.METRICS]
    )
    follower = asyncio.create_task(tokens.follow_revocations())
    yield
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    settling = app[keys.SETTLING]
    if settling:  # cancelled logins giving back their slots: let them finish
        await asyncio.wait(set(settling), timeout=settings.redis_timeout * 4)
    await close_redis(redis)


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    app[keys.METRICS].close()


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    # No limit here: Capacity bounds the connections per replica (and how long a
    # request waits for one) outside aiohttp's connect timeout.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=60)
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    # aiohttp re-sends a GET, PUT or DELETE without a body to the same replica once
    # after a reset; proxy.may_retry alone decides (aio-libs/aiohttp#10790: no
    # public switch, this is the one aiohttp's own TestClient sets).
    session._retry_connection = False
    app[keys.HTTP] = session
    yield
    await session.close()


async def _health_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        probe_forever(
            app[keys.REGISTRY], app[keys.HEALTH], app[keys.SETTINGS].health_interval
        )
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _watch_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[keys.WATCHER].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings, tenants: TenantsConfig | None = None
) -> web.Application:
    """The gateway app; `tenants` defaults to settings.tenants_path (ConfigError).

    Metrics go to files in $PROMETHEUS_MULTIPROC_DIR when the supervisor set it
    (several workers), else they stay in this process.
    """
    config = (
        tenants
        if tenants is not None
        else load_tenants(settings.tenants_path, secrets_dir=settings.secrets_dir)
    )
    # Middlewares, outermost first: the drain's count of requests in flight
    # (contract.drain.Drain), then one that runs, in order: request id + errors, path
    # guard, forwarded headers (trusted proxies only), tenant from host (see
    # middlewares.front). Token checks happen per route: FlexMeasures' public
    # routes (contract.routes.PUBLIC) are known only after routing.
    drain = Drain()
    registry = TenantRegistry(config)
    metrics = Metrics(
        multiprocess_dir=os.environ.get(MULTIPROCESS_ENV) or None,
        per_tenant=settings.metrics_per_tenant,
        pool_of=registry.pool,
    )
    app = web.Application(
        middlewares=[
            drain.middleware(),
            front(
                settings.trusted_proxies,
                AccessLog(enabled=settings.access_log),
                metrics,
            ),
        ],
        client_max_size=64 * 1024,
    )
    app[keys.SETTINGS] = settings
    app[keys.REGISTRY] = registry
    app[keys.METRICS] = metrics
    app[keys.WATCHER] = ConfigWatcher(
        registry,
        settings.tenants_path,
        settings.secrets_dir,
        settings.reload_interval,
        metrics=metrics,
    )
    app[keys.ROUND_ROBIN] = {}
    app[keys.SETTLING] = set()
    app[keys.IDENTITIES] = IdentityCache()
    app[keys.HEALTH] = ReplicaHealth()
    app[keys.DRAIN] = drain
    app[keys.CAPACITY] = Capacity(
        settings.upstream_connections,
        settings.upstream_share_per_token,
        settings.upstream_share_per_address,
        settings.upstream_wait,
    )
    # Unwound in reverse: mails under way end before HTTP and Redis close.
    app.cleanup_ctx.extend(
        [_metrics_ctx, _redis_ctx, _http_ctx, _watch_ctx, _health_ctx, mail_ctx]
    )
    app.on_response_prepare.append(add_standard_headers)
    app.on_response_prepare.append(close_if_asked)
    app.add_routes(routes)
    setup_pages(
        app,
        [
            views.routes,
            dashboard.routes,
            assets.routes,
            jobs.routes,
            reset.routes,
            charts.routes,
            acting.routes,
            users.routes,
            asset_tools.routes,
            account_new.routes,
        ],
    )
    return app
