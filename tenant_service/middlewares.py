"""Request id + error mapping, and identity verification."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from contract.identity import HEADER, Identity, IdentityError, claimed_tenant
from contract.logs import REQUEST_ID, TENANT
from contract.routes import PREFLIGHT, is_public_path, preflight_response
from tenant_service import keys
from tenant_service.api.v3_0 import respond
from tenant_service.errors import (
    ApiError,
    ForbiddenError,
    UnauthorizedError,
    from_exception,
)
from tenant_service.identity import Principal
from tenant_service.logs import write_access
from tenant_service.store import users as user_store
from tenant_service.store.users import to_ms
from tenant_service.tenancy import TenantState
from tenant_service.writes import WriteTurn

logger = logging.getLogger(__name__)

REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
REQUEST_ID_HEADER: Final = "X-Request-Id"
PROBE_PATHS: Final = frozenset({"/healthz", "/readyz"})


def _error_response(err: ApiError) -> web.Response:
    response = respond(err.body(), status=err.http_status)
    response.headers.update(err.headers)
    return response


def _http_error_response(exc: web.HTTPException) -> web.Response:
    response = respond({"message": exc.reason, "status": exc.status}, exc.status)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


@web.middleware
async def request_id_and_errors(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Tag the request, map every error to a JSON envelope, add headers, log access."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex
    request[keys.REQUEST_ID] = request_id
    id_token = REQUEST_ID.set(request_id)
    # A dedicated backend's tenant; a pool's is known once the identity is.
    tenant_token = TENANT.set(request.app[keys.SETTINGS].name or None)
    started = time.perf_counter()
    try:
        response: web.StreamResponse
        try:
            response = await handler(request)
        except ApiError as err:
            response = _error_response(err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if (
                isinstance(exc, web.HTTPMethodNotAllowed)
                and request.method == PREFLIGHT
            ):
                response = preflight_response(set(exc.allowed_methods))
            else:
                response = _http_error_response(exc)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as err:
            response = _error_response(from_exception(err))
        _add_headers(request, response, request_id)
        # Passing probes (every few seconds from each gateway worker) are not logged.
        if response.status != 200 or request.path not in PROBE_PATHS:
            tenant = request.get(keys.TENANT)
            write_access(
                method=request.method,
                path=request.path,
                status=response.status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                tenant=tenant.name if tenant is not None else None,
            )
        return response
    finally:
        TENANT.reset(tenant_token)
        REQUEST_ID.reset(id_token)


def _add_headers(
    request: web.Request, response: web.StreamResponse, request_id: str
) -> None:
    response.headers[REQUEST_ID_HEADER] = request_id
    path = request.path
    if path == "/api" or path.startswith("/api/"):
        tenant = request.get(keys.TENANT)
        settings = tenant.settings if tenant is not None else request.app[keys.SETTINGS]
        version = settings.flexmeasures_version
        response.headers["FlexMeasures-Version"] = version
        if path == "/api/v3_0" or path.startswith("/api/v3_0/"):
            response.headers["API-Version"] = "v3_0"


def _guarded(path: str) -> bool:
    return path in ("/api", "/internal") or path.startswith(("/api/", "/internal/"))


@web.middleware
async def identity(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a valid gateway identity on /api and /internal; pick its tenant and
    load the user.

    The assertion's audience, read unverified, only names whose secret to verify
    it with; verified with that tenant's secret and audience, it makes that the
    request's tenant. An unknown audience is a 401 like any bad assertion.
    """
    path = request.path
    if not _guarded(path):
        return await handler(request)
    token = request.headers.get(HEADER)
    if not token:
        raise UnauthorizedError()
    directory = request.app[keys.TENANTS]
    tenant = await directory.lookup(claimed_tenant(token))
    if tenant is None:
        logger.warning("identity refused: not for a tenant of this backend")
        raise UnauthorizedError()
    settings = tenant.settings
    try:
        verified = request.app[keys.IDENTITIES].verify(
            token, secret=settings.secret.get(), tenant=tenant.name
        )
    except IdentityError as err:
        logger.warning("identity refused: %s", err)
        raise UnauthorizedError() from err
    request[keys.TENANT] = tenant
    request[keys.IDENTITY] = verified
    log_token = TENANT.set(tenant.name)
    try:
        async with directory.using(tenant):
            return await _identified(request, handler, tenant, verified)
    finally:
        TENANT.reset(log_token)


async def _identified(
    request: web.Request,
    handler: Handler,
    tenant: TenantState,
    verified: Identity,
) -> web.StreamResponse:
    """Serve a request of a verified identity: the service's, or a user's."""
    path = request.path
    internal = path == "/internal" or path.startswith("/internal/")
    method = "GET" if request.method == "HEAD" else request.method
    if verified.is_service:
        if internal or is_public_path(method, path):
            return await handler(request)
        raise UnauthorizedError()
    if internal:
        raise ForbiddenError()
    if verified.user_id is None or verified.auth_time_ms is None:
        raise UnauthorizedError()
    engine = tenant.engine
    principals = tenant.principals
    # SQLite has one writer at a time: this process's writes take turns (fairly
    # across accounts) rather than fail with "database is locked". A handler takes
    # its turn only for its write transaction, never while it reads a body.
    serialize = method != "GET" and engine.dialect.name == "sqlite"
    turn = WriteTurn(tenant.write_queue if serialize else None, 0)
    try:
        async with engine.connect() as conn:
            if method == "GET":
                # Reads need no transaction: no BEGIN/ROLLBACK round trips.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            user = principals.get(verified.user_id)
            if user is None:
                user = await user_store.get_user(conn, verified.user_id)
                if user is not None:
                    principals.put(user)
            if user is None or not user.active:
                logger.warning(
                    "identity of unknown or inactive user %s", verified.user_id
                )
                raise UnauthorizedError()
            if user.tokens_valid_after is not None and verified.auth_time_ms < to_ms(
                user.tokens_valid_after
            ):
                logger.warning("revoked token of user %s", user.id)
                raise UnauthorizedError()
            request[keys.PRINCIPAL] = Principal(
                user_id=user.id,
                account_id=user.account_id,
                roles=frozenset(user.role_names),
                username=user.username,
            )
            request[keys.CONN] = conn
            turn.account_id = user.account_id
            request[keys.WRITE_TURN] = turn
            tenant.seen.seen(engine, user.id)
            try:
                return await handler(request)
            finally:
                # A body read may have swapped the connection (api.v3_0.
                # without_connection): close the one in use now.
                if request[keys.CONN] is not conn:
                    await request[keys.CONN].close()
    finally:
        # After the connection has ended its transaction (commit or rollback).
        turn.give_back()
