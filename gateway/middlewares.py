"""Request id + errors, path guard, forwarded headers, tenant, and token auth."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from contract.logs import REQUEST_ID, TENANT
from contract.routes import PREFLIGHT, preflight_response
from contract.tenants_file import DEFAULT_FM_VERSION

from . import keys
from .errors import (
    SERVER_NAME,
    ApiError,
    InternalError,
    InvalidPathError,
    TenantSuspendedError,
    UnknownTenantError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    error_response,
)
from .forwarded import proxy_networks, resolve_forwarded
from .logs import AccessLog
from .metrics import NO_TENANT, Metrics
from .web import error_page

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Paths that are not about a tenant (liveness, readiness, metrics).
HOSTLESS_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
INVALID_PATH: Final = (
    "The request path is not valid: no '.', '..', '//' or encoded separators."
)


def is_page(path: str) -> bool:
    """Whether errors on `path` are HTML pages (not /api, the dashboard's JSON
    endpoints, probes or static files)."""
    return not (
        path == "/api"
        or path.startswith(("/api/", "/static/", "/dashboard/api/"))
        or path in HOSTLESS_PATHS
    )


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


def _is_bad_segment(segment: str) -> bool:
    decoded = unquote(segment)
    return (
        decoded in (".", "..") or "/" in decoded or "\\" in decoded or "\x00" in decoded
    )


def check_path(raw_path: str) -> None:
    """Refuse dot segments, empty segments and encoded separators in the raw path."""
    raw = raw_path.split("?", 1)[0]
    if not raw.startswith("/"):
        raise InvalidPathError(INVALID_PATH)
    if "//" not in raw and "%" not in raw and "/." not in raw and "\\" not in raw:
        return  # the common case: nothing to decode
    segments = raw.split("/")[1:]
    # A trailing slash is fine (`/api/`); an empty inner segment is not.
    if any(s == "" for s in segments[:-1]) or any(_is_bad_segment(s) for s in segments):
        raise InvalidPathError(INVALID_PATH)


def resolve_tenant(request: web.Request) -> None:
    """The tenant of the public host; unknown -> 404, suspended -> 403."""
    host = request[keys.PUBLIC_HOST]
    tenant = request.app[keys.REGISTRY].resolve(host)
    if tenant is None:
        shown = host[:100] if host else "(none)"
        raise UnknownTenantError(f"No tenant for host '{shown}'.")
    TENANT.set(tenant.subdomain)
    if tenant.status == "suspended":
        raise TenantSuspendedError(
            f"Tenant '{tenant.subdomain}' is suspended; please contact support."
        )
    request[keys.TENANT] = tenant


def upstream_kind(err: UpstreamTimeoutError | UpstreamUnavailableError) -> str:
    """The metric label of a backend failure: timeout, unreachable or failed."""
    if isinstance(err, UpstreamTimeoutError):
        return "timeout"
    if isinstance(
        err.__cause__, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
    ):
        return "unreachable"
    return "failed"


def front(
    trusted: tuple[str, ...], access_log: AccessLog, metrics: Metrics
) -> Middleware:
    """The gateway's one middleware; its steps run in this order.

    1. request id and log context; every error below becomes a JSON envelope
       (never a traceback) and every request one access line and its metrics;
    2. path guard (no dot segments or encoded separators reach a backend);
    3. forwarded headers, from trusted proxies only;
    4. tenant from host (not for /healthz, /readyz, /metrics).
    Token checks happen per route, as FlexMeasures' public routes are known only
    after routing (contract.routes.PUBLIC). One middleware instead of four saves a
    coroutine layer per step on every request.
    """
    trusted_networks = proxy_networks(trusted)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request[keys.REQUEST_ID] = request_id
        REQUEST_ID.set(request_id)
        TENANT.set(None)
        started = time.perf_counter()
        status = 500
        try:
            check_path(request.raw_path)
            resolve_forwarded(request, trusted_networks)
            if request.path not in HOSTLESS_PATHS:
                resolve_tenant(request)
            response = await handler(request)
            status = response.status
            return response
        except ApiError as err:
            status = err.status
            if status >= 500:
                logger.warning("%s %s: %s", request.method, request.path, err.message)
                if isinstance(err, UpstreamTimeoutError | UpstreamUnavailableError):
                    tenant = request.get(keys.TENANT)
                    metrics.upstream_error(
                        tenant.subdomain if tenant is not None else NO_TENANT,
                        upstream_kind(err),
                    )
            if is_page(request.path):
                return error_page(request, status, err.message, headers=err.headers)
            return error_response(err)
        except web.HTTPException as exc:
            status = exc.status
            if exc.status < 400:
                raise
            if (
                isinstance(exc, web.HTTPMethodNotAllowed)
                and request.method == PREFLIGHT
                and not is_page(request.path)
            ):
                # A preflight of the gateway's own routes (/api/, requestAuthToken):
                # FlexMeasures' 200, no body, the route's methods.
                status = 200
                return preflight_response(set(exc.allowed_methods))
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            if is_page(request.path):
                message = (
                    f"There is no page at {request.path}."
                    if exc.status == 404
                    else str(_http_error_body(exc, request)["message"])
                )
                return error_page(request, exc.status, message, headers=allow)
            return web.json_response(
                _http_error_body(exc, request), status=exc.status, headers=allow
            )
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, request.path)
            if request.writer.output_size > 0:
                # An answer has started: a second one would corrupt the stream.
                if request.transport is not None:
                    request.transport.close()
                raise
            if is_page(request.path):
                return error_page(request, 500, "An internal error has occurred.")
            return error_response(InternalError())
        finally:
            elapsed = time.perf_counter() - started
            tenant = request.get(keys.TENANT)
            metrics.request_done(
                tenant.subdomain if tenant is not None else NO_TENANT,
                request.method,
                status,
                metrics.route(request.match_info.route.resource),
                elapsed,
            )
            access_log.write(
                request.method,
                request.path,
                status,
                round(elapsed * 1000, 2),
                request_id=request_id,
                tenant=tenant.subdomain if tenant is not None else None,
                user_id=request.get(keys.USER_ID),
                upstream=request.get(keys.UPSTREAM),
                client=request.get(keys.CLIENT_IP),
            )

    return middleware


async def add_standard_headers(
    request: web.Request, response: web.StreamResponse
) -> None:
    """on_response_prepare: request id; FlexMeasures' version and rate limits (/api)."""
    response.headers["Server"] = SERVER_NAME
    rate = request.get(keys.RATE_HEADERS)
    if rate is not None:
        retry_after = response.headers.get("Retry-After")
        response.headers.update(rate)
        if retry_after is not None:  # the answer's own (a backend's 429, a 503)
            response.headers["Retry-After"] = retry_after
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
