"""Redis settings of both services: one Sentinel parser, one way to connect.

The gateway talks to Redis with asyncio clients (a pooled server, a Sentinel
master or a cluster); a backend's RQ queue needs blocking clients of one server
(a URL or a Sentinel master). Both build their clients from RedisSettings here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.sentinel

from contract.config import Secret

DEFAULT_SENTINEL_PORT: Final = 26379
SCHEMES: Final = ("redis://", "rediss://", "unix://")


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """Comma-separated `host:port` (port default 26379, IPv6 as `[::1]:26379`).

    ValueError naming the first entry that is not one.
    """
    nodes: list[tuple[str, int]] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        if entry.startswith("["):
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"not host:port: {entry!r}")
            colon, port_text = rest[:1], rest[1:]
        elif entry.count(":") > 1:
            raise ValueError(f"write an IPv6 address as [addr]:port: {entry!r}")
        else:
            host, colon, port_text = entry.partition(":")
        if colon and not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"not host:port: {entry!r}")
        port = int(port_text) if colon else DEFAULT_SENTINEL_PORT
        if not host or not 1 <= port <= 65535:
            raise ValueError(f"not host:port: {entry!r}")
        nodes.append((host, port))
    if not nodes:
        raise ValueError("no host:port given")
    return tuple(nodes)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where Redis is and how long to wait for it (seconds)."""

    url: str | None = None
    # The sentinels (host, port) watching the master of this name, instead of url.
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = ""
    cluster: bool = False  # url names one node of a Redis Cluster
    # Of the servers (a sentinel's master, the cluster's nodes, the url's server);
    # the sentinels are asked without one.
    password: Secret | None = None
    timeout: float = 1.0  # of each command
    connect_timeout: float = 1.0  # of a connect, and of each question to a sentinel
    health_check_interval: int = 0  # seconds idle before a connection is pinged


def _client_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """The keyword arguments every client of these settings is made with."""
    return {
        "password": settings.password.get() if settings.password else None,
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "health_check_interval": settings.health_check_interval,
    }


def _sentinel_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """Of the sentinels' own clients: no password, the connect timeout for both."""
    return {
        "socket_timeout": settings.connect_timeout,
        "socket_connect_timeout": settings.connect_timeout,
    }


def _url(settings: RedisSettings) -> str:
    if settings.url is None:
        raise ValueError("no Redis URL or sentinels configured")
    return settings.url


def connect(settings: RedisSettings) -> redis.Redis:
    """A blocking client of the master the sentinels name, else of the URL.

    No I/O here; ValueError when neither is set (or for a cluster: RQ needs one
    server).
    """
    if settings.cluster:
        raise ValueError("a blocking client of a Redis Cluster is not supported")
    if settings.sentinels:
        sentinel = redis.sentinel.Sentinel(
            list(settings.sentinels), sentinel_kwargs=_sentinel_kwargs(settings)
        )
        master: redis.Redis = sentinel.master_for(
            settings.sentinel_master, **_client_kwargs(settings)
        )
        return master
    return redis.Redis.from_url(_url(settings), **_client_kwargs(settings))


def close(client: redis.Redis) -> None:
    """Close a client of connect(), and the sentinels' clients behind it."""
    client.close()
    pool = client.connection_pool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            sentinel.close()


AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


def connect_async(
    settings: RedisSettings, *, pool_size: int, unpooled_size: int
) -> AsyncClient:
    """An asyncio client of a Sentinel-managed master, a cluster or a URL.

    A plain server gets a bounded pool of `pool_size` that makes a command wait
    (up to the timeout) for a free connection; the Sentinel and Cluster pools
    cannot wait, so they may open `unpooled_size`. No I/O here: each connects on
    first use (a cluster first asks for its slots).
    """
    kwargs = _client_kwargs(settings)
    if settings.sentinels:
        sentinel = redis.asyncio.sentinel.Sentinel(
            list(settings.sentinels), sentinel_kwargs=_sentinel_kwargs(settings)
        )
        master: redis.asyncio.Redis = sentinel.master_for(
            settings.sentinel_master, max_connections=unpooled_size, **kwargs
        )
        return master
    if settings.cluster:
        return redis.asyncio.cluster.RedisCluster.from_url(
            _url(settings), max_connections=unpooled_size, **kwargs
        )
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        _url(settings), max_connections=pool_size, timeout=settings.timeout, **kwargs
    )
    # The client owns the pool, so aclose() disconnects every pooled connection.
    return redis.asyncio.Redis.from_pool(pool)


async def close_async(client: AsyncClient) -> None:
    """Close a client of connect_async(), and for a Sentinel master the sentinels'."""
    await client.aclose()
    if isinstance(client, redis.asyncio.Redis) and isinstance(
        client.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool
    ):
        for sentinel in client.connection_pool.sentinel_manager.sentinels:
            await sentinel.aclose()
