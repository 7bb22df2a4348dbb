"""Request id + errors, path guard, forwarded headers, tenant, and token auth."""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import unquote

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import keys, logs
from .config import DEFAULT_FM_VERSION
from .errors import (
    ApiError,
    InvalidPathError,
    TenantSuspendedError,
    UnknownTenantError,
)
from .tenants import normalize_host

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Paths that are not about a tenant (liveness, readiness, metrics).
HOSTLESS_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
USER_ID: Final = web.RequestKey("user_id", int)
UPSTREAM: Final = web.RequestKey("upstream", str)


def error_response(err: ApiError) -> web.Response:
    """The JSON answer for an ApiError."""
    return web.json_response(err.body(), status=err.status, headers=err.headers)


def _http_error_body(exc: web.HTTPException, request: web.Request) -> dict[str, object]:
    if exc.status == 404:
        message = f"No endpoint at {request.path}."
    elif exc.status == 405:
        message = f"The method {request.method} is not allowed for {request.path}."
    elif exc.status == 413:
        message = "Request body is too large."
    else:
        message = exc.reason
    return {"message": message, "status": exc.status}


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, log context, JSON errors (never a traceback) and the access line."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
    request[keys.REQUEST_ID] = request_id
    logs.REQUEST_ID.set(request_id)
    logs.TENANT.set("-")
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as err:
        status = err.status
        if status >= 500:
            logger.warning("%s %s: %s", request.method, request.path, err.message)
        return error_response(err)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response(
            _http_error_body(exc, request), status=exc.status, headers=allow
        )
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(
            {"message": "An internal error has occurred.", "status": "INTERNAL_ERROR"},
            status=500,
        )
    finally:
        access_logger.info(
            "%s %s %d",
            request.method,
            request.path,
            status,
            extra={
                "method": request.method,
                "path": request.path,
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": request.get(USER_ID),
                "upstream": request.get(UPSTREAM),
            },
        )


def _is_bad_segment(segment: str) -> bool:
    decoded = unquote(segment)
    return (
        decoded in (".", "..") or "/" in decoded or "\\" in decoded or "\x00" in decoded
    )


@web.middleware
async def path_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse dot segments, empty segments and encoded separators in the raw path."""
    raw = request.raw_path.split("?", 1)[0]
    segments = raw.split("/")[1:]
    inner = segments[:-1]  # a trailing slash is fine (`/api/`)
    if (
        not raw.startswith("/")
        or any(s == "" for s in inner)
        or any(_is_bad_segment(s) for s in segments)
    ):
        raise InvalidPathError(
            "The request path is not valid: no '.', '..', '//' or encoded separators."
        )
    return await handler(request)


def forwarded(trusted: tuple[str, ...]) -> Middleware:
    """Client address, public host, scheme; X-Forwarded-* from trusted proxies only."""
    networks = tuple(ipaddress.ip_network(net, strict=False) for net in trusted)

    def is_trusted(peer: str) -> bool:
        if not networks:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in networks)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote or ""
        host = request.headers.get("Host", "")
        scheme = "http"
        client = peer
        if is_trusted(peer):
            chain = [
                ip.strip()
                for ip in request.headers.get("X-Forwarded-For", "").split(",")
                if ip.strip()
            ]
            # The right-most address not of a trusted proxy is the client.
            for ip in reversed(chain):
                client = ip
                if not is_trusted(ip):
                    break
            host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
            if proto in ("http", "https"):
                scheme = proto
        request[keys.CLIENT_IP] = client
        request[keys.PUBLIC_HOST] = normalize_host(host)
        request[keys.SCHEME] = scheme
        return await handler(request)

    return middleware


@web.middleware
async def tenant_from_host(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Resolve the tenant from the host; unknown -> 404, suspended -> 403."""
    if request.path in HOSTLESS_PATHS:
        return await handler(request)
    host = request[keys.PUBLIC_HOST]
    tenant = request.app[keys.REGISTRY].resolve(host)
    if tenant is None:
        shown = host[:100] if host else "(none)"
        raise UnknownTenantError(f"No tenant for host '{shown}'.")
    logs.TENANT.set(tenant.subdomain)
    if tenant.status == "suspended":
        raise TenantSuspendedError(
            f"Tenant '{tenant.subdomain}' is suspended; please contact support."
        )
    request[keys.TENANT] = tenant
    return await handler(request)


async def add_standard_headers(
    request: web.Request, response: web.StreamResponse
) -> None:
    """on_response_prepare: request id everywhere, FlexMeasures' version under /api."""
    request_id = request.get(keys.REQUEST_ID)
    if request_id:
        response.headers["X-Request-Id"] = request_id
    if request.path == "/api" or request.path.startswith("/api/"):
        tenant = request.get(keys.TENANT)
        response.headers["FlexMeasures-Version"] = (
            tenant.flexmeasures_version if tenant else DEFAULT_FM_VERSION
        )
        version = request.match_info.get("version") if request.match_info else None
        if tenant is not None and version is not None and version in tenant.versions:
            response.headers["API-Version"] = version
