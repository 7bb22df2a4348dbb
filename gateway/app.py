"""Wiring of the gateway application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import keys
from .api import routes
from .auth import TokenStore
from .config import Settings, TenantsConfig, load_tenants
from .identity import IdentityCache
from .logs import AccessLog
from .middlewares import add_standard_headers, front
from .tenants import ConfigWatcher, TenantRegistry
from .web import dashboard, setup_pages, views

logger = logging.getLogger(__name__)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
    )
    try:
        await redis.ping()
    except RedisError as err:  # start anyway: token paths answer 503 until it is back
        logger.error("Redis at %s is not reachable yet: %s", settings.redis_url, err)
    tokens = TokenStore(redis, settings.key_prefix)
    app[keys.REDIS] = redis
    app[keys.TOKENS] = tokens
    follower = asyncio.create_task(tokens.follow_revocations())
    yield
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    await redis.aclose()


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=60)
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    app[keys.HTTP] = session
    yield
    await session.close()


async def _watch_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[keys.WATCHER].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings, tenants: TenantsConfig | None = None
) -> web.Application:
    """The gateway app; `tenants` defaults to settings.tenants_path (ConfigError)."""
    config = (
        tenants
        if tenants is not None
        else load_tenants(settings.tenants_path, secrets_dir=settings.secrets_dir)
    )
    # One middleware runs, in order: request id + errors, path guard, forwarded
    # headers (trusted proxies only), tenant from host (see middlewares.front).
    # Token checks happen per route: FlexMeasures' public routes (api.PUBLIC) are
    # known only after routing.
    app = web.Application(
        middlewares=[
            front(settings.trusted_proxies, AccessLog(enabled=settings.access_log))
        ],
        client_max_size=64 * 1024,
    )
    registry = TenantRegistry(config)
    app[keys.SETTINGS] = settings
    app[keys.REGISTRY] = registry
    app[keys.WATCHER] = ConfigWatcher(
        registry, settings.tenants_path, settings.secrets_dir, settings.reload_interval
    )
    app[keys.ROUND_ROBIN] = {}
    app[keys.IDENTITIES] = IdentityCache()
    app.cleanup_ctx.extend([_redis_ctx, _http_ctx, _watch_ctx])
    app.on_response_prepare.append(add_standard_headers)
    app.add_routes(routes)
    setup_pages(app, [views.routes, dashboard.routes])
    return app
