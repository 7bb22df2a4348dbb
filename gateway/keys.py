"""Typed keys for app and request state."""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import ClientSession, web

from contract.drain import Drain
from contract.tenants_file import TenantConfig

from .auth import RedisClient, TokenStore
from .capacity import Capacity
from .config import Settings
from .health import ReplicaHealth
from .identity import IdentityCache
from .limits import RateLimiter
from .metrics import Metrics
from .tenants import ConfigWatcher, TenantRegistry

SETTINGS: Final = web.AppKey("settings", Settings)
REGISTRY: Final = web.AppKey("registry", TenantRegistry)
WATCHER: Final = web.AppKey("watcher", ConfigWatcher)
REDIS: Final[web.AppKey[RedisClient]] = web.AppKey("redis")
TOKENS: Final = web.AppKey("tokens", TokenStore)
HTTP: Final = web.AppKey("http", ClientSession)
ROUND_ROBIN: Final = web.AppKey("round_robin", dict[str, int])
IDENTITIES: Final = web.AppKey("identities", IdentityCache)
METRICS: Final = web.AppKey("metrics", Metrics)
LIMITER: Final = web.AppKey("limiter", RateLimiter)
HEALTH: Final = web.AppKey("health", ReplicaHealth)
DRAIN: Final = web.AppKey("drain", Drain)
CAPACITY: Final = web.AppKey("capacity", Capacity)
# Redis calls that must finish even when their request is cancelled (a login giving
# back its slots); awaited before Redis closes at shutdown.
SETTLING: Final = web.AppKey("settling", set[asyncio.Task[None]])

REQUEST_ID: Final = web.RequestKey("request_id", str)
TENANT: Final = web.RequestKey("tenant", TenantConfig)
PUBLIC_HOST: Final = web.RequestKey("public_host", str)
# The host with the port the client used (none if the scheme's default), for URLs.
PUBLIC_AUTHORITY: Final = web.RequestKey("public_authority", str)
SCHEME: Final = web.RequestKey("scheme", str)
CLIENT_IP: Final = web.RequestKey("client_ip", str)
# Who is calling (a token's or page session's user) and the replica last asked,
# for the access line.
USER_ID: Final = web.RequestKey("user_id", int)
UPSTREAM: Final = web.RequestKey("upstream", str)
# Set on a request whose answer must close the connection (its body was not read
# to the end: a 408, a 413 while the client still sends).
CLOSE_CONNECTION: Final = web.RequestKey("close_connection", bool)
# X-RateLimit-* and Retry-After of a rate-limited request, for every answer to it.
RATE_HEADERS: Final = web.RequestKey("rate_headers", dict[str, str])
