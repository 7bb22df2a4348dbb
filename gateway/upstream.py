"""The one way the gateway calls a tenant's backend: which replica, and when again.

Every call (a client's request relayed by the proxy, the pages' own requests, the
password check of a login) goes through `attempt`: replicas in round-robin order,
ejected ones last (gateway/health.py); each failure to reach one ejects it for a
while; a call goes to the next replica only when nothing was sent (any method) or
when a GET or HEAD whose body was buffered was reset before an answer. Waiting for
one of a replica's connections (gateway/capacity.py) is never a replica failure,
nor is a replica's answer that it is busy (`ReplicaBusy`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from typing import Final, Literal, TypeVar

import aiohttp
from aiohttp import web

from contract.tenants_file import TenantConfig

from . import keys
from .capacity import Capacity
from .errors import ApiError, UpstreamTimeoutError, UpstreamUnavailableError

logger = logging.getLogger(__name__)

# Methods sent again to another replica when the first reset the connection before
# answering (as nginx's proxy_next_upstream and Kong do). Connect failures are
# retried for every method: nothing was sent.
RETRY_AFTER_RESET: Final = frozenset({"GET", "HEAD"})

R = TypeVar("R")
Failure = Literal["connect", "reset", "timeout", "other"]


class ReplicaBusy(Exception):
    """A replica answered that it has no room now: the next one is asked.

    No replica failure. When every replica is busy the call ends with the `error`
    of the one that asked for the shortest wait.
    """

    def __init__(self, retry_after: int, error: ApiError) -> None:
        super().__init__(error.message)
        self.retry_after = retry_after
        self.error = error


def replica_order(app: web.Application, tenant: TenantConfig) -> list[str]:
    """The tenant's replicas to try in turn: round-robin, ejected ones last."""
    backends = tenant.backends
    if len(backends) == 1:
        return [backends[0]]
    counters = app[keys.ROUND_ROBIN]
    start = counters.get(tenant.subdomain, 0) % len(backends)
    counters[tenant.subdomain] = (start + 1) % len(backends)
    return app[keys.HEALTH].order(list(backends[start:] + backends[:start]))


def failure_kind(err: BaseException) -> Failure:
    """What a failed attempt at a replica means for retrying it elsewhere.

    connect: no connection was made, nothing was sent (refused, unreachable,
    connect timeout). reset: connected, then closed or reset before an answer.
    timeout: sent, no answer in time. other: a malformed answer.
    """
    if isinstance(err, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return "connect"
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(
        err,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientConnectionResetError
        | aiohttp.ClientOSError,
    ):
        return "reset"
    return "other"


def may_retry(kind: Failure, method: str, replayable: bool) -> bool:
    """Whether a request failing so may go to another replica.

    Every method when nothing was sent; after a reset only GET and HEAD, and only
    when the body (if any) was buffered: a streamed body is never replayed. A
    timeout is not retried (the budget is spent) and writes never are once sent.
    """
    return kind == "connect" or (
        kind == "reset" and replayable and method in RETRY_AFTER_RESET
    )


def client_timeout(
    connect: float, *, total: float | None = None, read: float | None = None
) -> aiohttp.ClientTimeout:
    """A call's timeouts: TCP connect, and the whole call or each read.

    Never aiohttp's `connect`, which counts waiting for a pooled connection
    (Capacity bounds that wait, and it is no replica failure).
    """
    return aiohttp.ClientTimeout(
        total=total, connect=None, sock_connect=connect, sock_read=read
    )


@asynccontextmanager
async def attempt(
    request: web.Request,
    tenant: TenantConfig,
    send: Callable[[str], Awaitable[R]],
    *,
    method: str = "GET",
    replayable: bool = True,
    counted: bool = True,
    task: str | None = None,
) -> AsyncIterator[R]:
    """What `send(backend)` returns for the first replica that answers.

    `send` raises aiohttp's errors or TimeoutError for a failed attempt, an
    ApiError for an answer that ends the call, ReplicaBusy to ask the next
    replica. `replayable`: the body (if any) can be sent again. `counted`: the
    call holds a share of the tenant's backend connections and one of the
    replica's (Capacity), while it runs and the caller uses the answer. `task`
    names what failed in the 502 ("check credentials"). Failures are 502
    UPSTREAM_UNAVAILABLE or 504 UPSTREAM_TIMEOUT.
    """
    app = request.app
    health = app[keys.HEALTH]
    capacity = app[keys.CAPACITY]
    order = replica_order(app, tenant)
    if counted:
        order = _free_first(capacity, order)
    share = (
        capacity.share(tenant.subdomain, _holder(request), request[keys.CLIENT_IP])
        if counted
        else nullcontext()
    )
    last_error: Exception | None = None
    busy: ReplicaBusy | None = None
    with share:
        for backend in order:
            request[keys.UPSTREAM] = backend
            slots = (
                await capacity.connection(backend, tenant.subdomain)
                if counted
                else None
            )
            try:
                try:
                    answer = await send(backend)
                except ReplicaBusy as err:
                    health.passed(backend)
                    logger.warning("backend %s busy: %s", backend, err.error.message)
                    if busy is None or err.retry_after < busy.retry_after:
                        busy = err
                    continue
                except (aiohttp.ClientError, TimeoutError) as err:
                    kind = failure_kind(err)
                    if kind != "other":
                        health.failed(backend, _describe(err))
                    if may_retry(kind, method, replayable):
                        last_error = err
                        logger.warning("backend %s failed: %s", backend, _describe(err))
                        _again_if_alone(order, backend, kind)
                        continue
                    raise _upstream_error(tenant, kind, err, task) from err
                health.passed(backend)
                # Outside the handlers above: what the caller does with the answer
                # is no attempt at a replica.
                yield answer
                return
            finally:
                if slots is not None:
                    slots.release()
    if busy is not None:
        raise busy.error
    raise UpstreamUnavailableError(
        f"The backend of tenant '{tenant.subdomain}' is unavailable."
    ) from last_error


def _free_first(capacity: Capacity, order: list[str]) -> list[str]:
    """`order` with the first replica that has a free connection moved first."""
    if len(order) > 1 and not capacity.free(order[0]):
        for i, backend in enumerate(order):
            if capacity.free(backend):
                return [backend, *order[:i], *order[i + 1 :]]
    return order


def _holder(request: web.Request) -> str | None:
    """Whose share of the backend connections a request uses: its token's (by the
    Authorization header, or the user's for a token in the query), else none."""
    header = request.headers.get("Authorization")
    if header:
        return header
    user_id = request.get(keys.USER_ID)
    return None if user_id is None else f"user:{user_id}"


def _again_if_alone(order: list[str], backend: str, kind: Failure) -> None:
    """A tenant's only replica that reset a GET gets it once more.

    The usual cause is a pooled keep-alive connection the backend had just closed;
    the next attempt goes out on another connection.
    """
    if kind == "reset" and order == [backend]:
        order.append(backend)


def _describe(err: BaseException) -> str:
    if isinstance(err, aiohttp.ClientConnectorError):
        return f"{type(err).__name__}: {err.os_error}"
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _upstream_error(
    tenant: TenantConfig, kind: Failure, err: BaseException, task: str | None
) -> UpstreamTimeoutError | UpstreamUnavailableError:
    if kind == "timeout":
        return UpstreamTimeoutError(
            f"The backend of tenant '{tenant.subdomain}' did not answer in time."
        )
    failed = f"failed to {task}" if task else f"failed: {type(err).__name__}"
    return UpstreamUnavailableError(
        f"The backend of tenant '{tenant.subdomain}' {failed}."
    )
