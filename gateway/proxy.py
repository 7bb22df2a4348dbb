"""Stream a request to one of the tenant's backend replicas and the answer back."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from contract.identity import HEADER as IDENTITY_HEADER
from contract.identity import REVOKE_HEADER
from contract.routes import TASK_TOKEN_HEADER
from contract.tenants_file import TenantConfig

from . import keys
from .errors import (
    ApiError,
    BadRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from .server import close_after_answer
from .upstream import attempt, client_timeout

logger = logging.getLogger(__name__)

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never passed to a backend: credentials, our own assertion, and what we set ourselves.
_DROP_REQUEST: Final = HOP_BY_HOP | {
    "host",
    "authorization",
    "cookie",
    IDENTITY_HEADER.lower(),
    TASK_TOKEN_HEADER.lower(),  # set by the gateway only (api.proxy_ops)
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "forwarded",
    "x-request-id",
    "content-length",
}
_DROP_RESPONSE: Final = HOP_BY_HOP | {
    "server",
    "date",
    "content-length",
    REVOKE_HEADER.lower(),
    IDENTITY_HEADER.lower(),
    "set-cookie",
}
# Bodies up to this size are buffered (faster); larger or unknown ones are streamed.
BUFFER_LIMIT: Final = 256 * 1024
CHUNK: Final = 64 * 1024
# The most the gateway reads of a backend's answer to its own calls (`fetch`).
FETCH_LIMIT: Final = 32 * 1024 * 1024
UNREADABLE_BODY: Final = "The request body could not be read to its end."
_SKIP_AUTO_HEADERS: Final = ("User-Agent", "Accept-Encoding", "Accept", "Content-Type")


def _connection_listed(headers: CIMultiDictProxy[str]) -> set[str]:
    """Header names a Connection header marks as hop-by-hop."""
    listed: set[str] = set()
    for value in headers.getall("Connection", []):
        listed.update(token.strip().lower() for token in value.split(",") if token)
    return listed


def upstream_headers(
    request: web.Request, identity: str, client_ip: str, host: str, scheme: str
) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop and credentials, plus ours."""
    listed = _connection_listed(request.headers)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in _DROP_REQUEST or lower in listed:
            continue
        out.add(name, value)
    if request.body_exists and request.content_length is not None:
        out["Content-Length"] = str(request.content_length)
    out["X-Forwarded-For"] = client_ip
    out["X-Forwarded-Host"] = host
    out["X-Forwarded-Proto"] = scheme
    out["X-Request-Id"] = request[keys.REQUEST_ID]
    out[IDENTITY_HEADER] = identity
    return out


def response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    """The backend's headers minus hop-by-hop and internal ones."""
    listed = _connection_listed(upstream.headers)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        lower = name.lower()
        if lower in _DROP_RESPONSE or lower in listed:
            continue
        out.add(name, value)
    return out


async def forward(
    request: web.Request,
    tenant: TenantConfig,
    identity: str,
    *,
    target: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> tuple[web.StreamResponse, str | None]:
    """Send the request to a replica; the answer and any revoke-user signal.

    Replicas are tried as gateway/upstream.py says: a streamed body is never sent
    twice.
    """
    raw = target if target is not None else request.raw_path
    headers = upstream_headers(
        request,
        identity,
        request[keys.CLIENT_IP],
        request[keys.PUBLIC_AUTHORITY],  # with the port the client used
        request[keys.SCHEME],
    )
    headers.update(extra_headers or {})
    length = request.content_length
    if length is not None and length > tenant.max_body_bytes:
        raise PayloadTooLargeError(
            "Request body exceeds the configured limit of "
            f"{tenant.max_body_bytes} bytes."
        )
    settings = request.app[keys.SETTINGS]
    body: bytes | AsyncIterator[bytes] | None = None
    reader: BodyReader | None = None
    replayable = True
    if request.body_exists:
        reader = BodyReader(
            request,
            tenant.max_body_bytes,
            settings.body_timeout,
            settings.body_min_rate,
        )
        if length is not None and length <= BUFFER_LIMIT:
            body = await reader.read()
        else:
            body = reader.chunks()
            replayable = False
    session = request.app[keys.HTTP]
    timeout = client_timeout(settings.connect_timeout, read=tenant.upstream_timeout)

    async def send(backend: str) -> aiohttp.ClientResponse:
        try:
            return await session.request(
                request.method,
                URL(backend + raw, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=timeout,
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
            )
        except (aiohttp.ClientError, TimeoutError) as err:
            if reader is not None and reader.error is not None:
                # The client's body failed (too slow, too large, cut off): the
                # upstream request is aborted; the replica is fine.
                raise reader.error from err
            raise

    async with attempt(
        request, tenant, send, method=request.method, replayable=replayable
    ) as upstream:
        try:
            return await _relay(request, upstream, tenant)
        finally:
            upstream.release()


class BodyReader:
    """The client's request body, read within its deadline and minimum rate.

    A read may wait at most `idle` seconds for the next bytes; and the time spent
    waiting for the client in all (not the time spent sending to the backend) may
    exceed `idle` by at most one second per `rate` bytes received (Apache's
    mod_reqtimeout `body=20,MinRate=500`). Else 408 and the connection closes.
    The first error is kept in `error`: aiohttp's client wraps what a body raises.
    """

    __slots__ = ("error", "idle", "limit", "rate", "request", "seen", "waited")

    def __init__(
        self, request: web.Request, limit: int, idle: float, rate: int
    ) -> None:
        self.request = request
        self.limit = limit
        self.idle = idle
        self.rate = rate
        self.seen = 0
        self.waited = 0.0
        self.error: ApiError | None = None

    async def read(self) -> bytes:
        """The whole body (buffered)."""
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as chunks of at most CHUNK bytes (streamed)."""
        while True:
            chunk = await self._next()
            if not chunk:
                return
            yield chunk

    async def _next(self) -> bytes:
        content = self.request.content
        try:
            chunk = content.read_nowait(CHUNK)  # what has arrived: no wait, no timer
            if not chunk and not content.at_eof():
                chunk = await self._wait()
        except (OSError, RequestPayloadError) as err:
            raise self._fail(BadRequestError(UNREADABLE_BODY), close=True) from err
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise self._fail(
                PayloadTooLargeError(
                    f"Request body exceeds the configured limit of {self.limit} bytes."
                ),
                close=False,  # aiohttp reads what is left for a while (lingering)
            )
        return chunk

    async def _wait(self) -> bytes:
        allowed = self.idle
        if self.rate:
            allowed = min(allowed, self.idle + self.seen / self.rate - self.waited)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(max(allowed, 0.0)):
                chunk = await self.request.content.read(CHUNK)
        except TimeoutError as err:
            rate = f" and at least {self.rate} bytes/s" if self.rate else ""
            raise self._fail(
                RequestTimeoutError(
                    "The request body did not arrive in time (pauses of at most "
                    f"{self.idle:g} s{rate})."
                ),
                close=True,
            ) from err
        self.waited += loop.time() - started
        return chunk

    def _fail(self, err: ApiError, *, close: bool) -> ApiError:
        if self.error is None:
            self.error = err
            if close:
                close_after_answer(self.request)
        return err


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, tenant: TenantConfig
) -> tuple[web.StreamResponse, str | None]:
    revoke = upstream.headers.get(REVOKE_HEADER)
    headers = response_headers(upstream)
    length = upstream.content_length
    try:
        if length is not None and length <= BUFFER_LIMIT:
            data = await upstream.read()
            return web.Response(
                status=upstream.status,
                reason=upstream.reason,
                body=data,
                headers=headers,
            ), revoke
        if request.method == "HEAD" or upstream.status in (204, 304):
            return web.Response(
                status=upstream.status, reason=upstream.reason, headers=headers
            ), revoke
    except TimeoutError as err:
        raise UpstreamTimeoutError(
            f"The backend of tenant '{tenant.subdomain}' did not answer in time."
        ) from err
    except aiohttp.ClientError as err:
        raise UpstreamUnavailableError(
            f"The backend of tenant '{tenant.subdomain}' broke off its answer."
        ) from err
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    response.headers.extend(headers)
    if length is not None:
        response.content_length = length
    # Headers go out before the body: a backend failing mid-body can only be
    # signalled by cutting the connection, as every proxy does (never by writing a
    # second answer into the stream already started).
    await response.prepare(request)
    chunks = upstream.content.iter_chunked(CHUNK)
    while True:
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            break
        except (aiohttp.ClientError, TimeoutError) as err:
            logger.warning(
                "backend of %s broke off a streamed answer (%s); closing the client's "
                "connection",
                tenant.subdomain,
                type(err).__name__,
            )
            if request.transport is not None:
                request.transport.close()
            return response, revoke
        await response.write(chunk)
    await response.write_eof()
    return response, revoke


@dataclass(frozen=True, slots=True)
class BackendAnswer:
    """A backend's whole answer to a call the gateway made itself."""

    status: int
    content_type: str
    body: bytes
    revoke: str | None = None  # the backend's revoke-user signal (REVOKE_HEADER)

    def json(self) -> object:
        """The body as JSON (ValueError if it is not, or is nested too deep)."""
        try:
            return json.loads(self.body)
        except RecursionError as err:
            raise ValueError("JSON nested too deep") from err


async def fetch(
    request: web.Request,
    tenant: TenantConfig,
    identity: str,
    target: str,
    *,
    limit: int = FETCH_LIMIT,
    method: str = "GET",
    json_body: object = None,
    body: bytes | None = None,
    content_type: str | None = None,
) -> BackendAnswer:
    """`method` `target` (default GET) at a replica as `identity`; the answer, buffered.

    For the gateway's own calls (pages), not for relaying a client's request: no
    client headers are passed on. Replicas are tried as gateway/upstream.py says
    (a POST, PATCH or DELETE is not sent again once a replica may have seen it).
    `json_body`, if not None, is sent as JSON; else `body` (raw bytes, of
    `content_type`), if given.
    """
    headers = {
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "X-Forwarded-For": request[keys.CLIENT_IP],
        "X-Forwarded-Host": request[keys.PUBLIC_AUTHORITY],
        "X-Forwarded-Proto": request[keys.SCHEME],
        "X-Request-Id": request[keys.REQUEST_ID],
        IDENTITY_HEADER: identity,
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    timeout = client_timeout(
        request.app[keys.SETTINGS].connect_timeout, total=tenant.upstream_timeout
    )
    session = request.app[keys.HTTP]
    data = body
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"

    async def send(backend: str) -> BackendAnswer:
        async with session.request(
            method,
            URL(backend + target, encoded=True),
            headers=headers,
            data=data,
            allow_redirects=False,
            timeout=timeout,
        ) as upstream:
            answer = await _read_limited(upstream, limit, tenant)
        return BackendAnswer(
            upstream.status,
            upstream.content_type,
            answer,
            upstream.headers.get(REVOKE_HEADER),
        )

    async with attempt(request, tenant, send, method=method) as answer:
        return answer


async def _read_limited(
    upstream: aiohttp.ClientResponse, limit: int, tenant: TenantConfig
) -> bytes:
    length = upstream.content_length
    if length is not None and length > limit:
        raise UpstreamUnavailableError(
            f"The backend of tenant '{tenant.subdomain}' answered more than "
            f"{limit} bytes."
        )
    chunks: list[bytes] = []
    seen = 0
    async for chunk in upstream.content.iter_chunked(CHUNK):
        seen += len(chunk)
        if seen > limit:
            raise UpstreamUnavailableError(
                f"The backend of tenant '{tenant.subdomain}' answered more than "
                f"{limit} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)
