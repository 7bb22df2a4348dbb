"""The gateway's own routes: version listing, tokens, and the versioned proxy."""

from __future__ import annotations

import asyncio
import functools
import hmac
import html
import json
import logging
import re
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from yarl import URL

from contract.identity import SERVICE, Caller
from contract.routes import (
    TASK_RUN_PATH,
    TASK_TOKEN_HEADER,
    is_public_path,
    is_public_tail,
)
from contract.tenants_file import SUNSET_VERSIONS, TenantConfig

from . import keys
from .auth import REDIS_ERRORS
from .errors import (
    BadRequestError,
    LoginFailedError,
    NotFoundError,
    PayloadTooLargeError,
    SunsetError,
    TokenStoreUnavailableError,
    UnauthorizedError,
    UnprocessableError,
)
from .forwarded import through_proxy
from .login import verify_login
from .proxy import forward
from .reset_mail import mail_reset_link
from .signing import identity_for

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

LISTING_MESSAGE: Final = (
    "For these API versions a public endpoint is available, listing its service. "
    "For example: /api/v3_0. An authentication token can be requested at: "
    "/api/requestAuthToken"
)
UNREADABLE: Final = (
    "The browser (or proxy) sent a request that this server could not understand."
)
LOGIN_BODY_LIMIT: Final = 64 * 1024
AUTH_TOKEN: Final = "auth_token"  # FlexMeasures' query parameter of a token
SUNSET_DATE: Final = "Mon, 01 May 2023 00:00:00 GMT"
PASSWORD_RESET_RE: Final = re.compile(r"users/(\d{1,18})/password-reset")
SUNSET_LINK: Final = "https://flexmeasures.readthedocs.io/en/latest/api/change_log.html"


def _tenant(request: web.Request) -> TenantConfig:
    return request[keys.TENANT]


def _identity(request: web.Request, tenant: TenantConfig, caller: Caller) -> str:
    return identity_for(request, tenant, caller)


@functools.lru_cache(maxsize=256)
def _listing_body(flexmeasures_version: str, versions: tuple[str, ...]) -> bytes:
    return json.dumps(
        {
            "flexmeasures_version": flexmeasures_version,
            "message": LISTING_MESSAGE,
            "status": 200,
            "versions": list(versions),
        }
    ).encode()


@routes.get("/api")
@routes.get("/api/")
async def get_versions(request: web.Request) -> web.Response:
    """FlexMeasures' version listing for this tenant."""
    tenant = _tenant(request)
    return web.Response(
        body=_listing_body(tenant.flexmeasures_version, tenant.versions),
        content_type="application/json",
    )


def is_json(mimetype: str) -> bool:
    """Werkzeug's `is_json`: application/json or application/*+json."""
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


async def _login_payload(request: web.Request) -> tuple[str, str]:
    if request.content_length is not None and request.content_length > LOGIN_BODY_LIMIT:
        raise PayloadTooLargeError(
            f"Request body exceeds the configured limit of {LOGIN_BODY_LIMIT} bytes."
        )
    raw = await request.content.read(LOGIN_BODY_LIMIT + 1)
    if len(raw) > LOGIN_BODY_LIMIT:
        raise PayloadTooLargeError(
            f"Request body exceeds the configured limit of {LOGIN_BODY_LIMIT} bytes."
        )
    data: Any = {}
    # As webargs' json location: a body that is not JSON by its Content-Type (a
    # form, none at all) or is empty counts as no fields, so FlexMeasures
    # answers 422 naming the missing ones.
    if is_json(request.content_type) and raw.strip():
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            # RecursionError: arrays or objects nested too deep for the parser.
            raise BadRequestError(UNREADABLE) from err
    if not isinstance(data, dict):
        raise UnprocessableError({"_schema": ["Invalid input type."]})
    problems: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    for field in ("email", "password"):
        value = data.get(field)
        if value is None:
            problems[field] = ["Missing data for required field."]
        elif not isinstance(value, str):
            problems[field] = ["Not a valid string."]
        elif not value or len(value) > 1024:
            problems[field] = ["Length must be between 1 and 1024."]
        else:
            values[field] = value
    if "email" in values and "@" not in values["email"]:
        problems["email"] = ["Not a valid email address."]
    if problems:
        raise UnprocessableError(problems)
    return values["email"], values["password"]


@routes.post("/api/requestAuthToken")
async def request_auth_token(request: web.Request) -> web.Response:
    """Check email and password with the tenant's backend, then mint a token.

    Throttled with the login page (gateway/throttle.py): 429 TOO_MANY_REQUESTS past
    the failed-login, checks-in-flight or tokens-per-user limits, 503 while the
    backend is busy checking other passwords; each with Retry-After.
    """
    tenant = _tenant(request)
    email, password = await _login_payload(request)
    login = await verify_login(request, tenant, email, password)
    uniform = "Invalid email or password."
    if login.outcome == "unknown-user":
        if tenant.hide_account_existence:
            raise LoginFailedError(uniform, 401)
        shown = html.escape(email[:254])
        raise LoginFailedError(f"User with email '{shown}' does not exist", 404)
    if login.outcome == "wrong-password":
        message = (
            uniform
            if tenant.hide_account_existence
            else ("User password does not match.")
        )
        raise LoginFailedError(message, 401)
    if login.outcome == "inactive":
        message = uniform if tenant.hide_account_existence else "Account is disabled."
        raise LoginFailedError(message, 401)
    token, _ = await request.app[keys.TOKENS].issue(
        tenant=tenant.subdomain,
        user_id=login.user_id,
        account_id=login.account_id,
        roles=login.roles,
        ttl=tenant.token_ttl,
    )
    request[keys.USER_ID] = login.user_id
    logger.info(
        "token issued", extra={"user_id": login.user_id, "ttl": tenant.token_ttl}
    )
    return web.json_response(
        {"auth_token": token, "status": 200, "user_id": login.user_id},
        headers={"Cache-Control": "no-store"},
    )


def _token_from(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        header = header.strip()
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return header
    return request.query.get(AUTH_TOKEN)


def _is_auth_token(part: str) -> bool:
    """Whether a `name=value` part of a query names auth_token once decoded.

    Decoded by yarl, as aiohttp's `request.query` decodes it (`%5F`, `%61`, either
    case of hex, `+`), so every spelling that authenticates is recognised.
    """
    name = part.partition("=")[0]
    if "%" not in name:
        return name == AUTH_TOKEN
    return AUTH_TOKEN in URL.build(query_string=name, encoded=True).query


def _without_auth_token(request: web.Request) -> str:
    """The request's target for a backend: every auth_token parameter removed.

    The token is a secret and must not reach a backend's request line (or its
    logs), in whatever spelling the query parser accepted it. The query is the one
    aiohttp parsed (up to a `#`); a fragment is never passed on.
    """
    raw = request.raw_path
    if "?" not in raw and "#" not in raw:
        return raw
    url = request.rel_url
    query = url.raw_query_string
    parts = query.split("&")
    kept = [part for part in parts if not _is_auth_token(part)]
    if len(kept) == len(parts) and "#" not in raw:
        return raw  # nothing to remove
    kept_query = "&".join(kept)
    return f"{url.raw_path}?{kept_query}" if kept_query else url.raw_path


async def _caller(request: web.Request, tenant: TenantConfig) -> Caller:
    token = _token_from(request)
    if not token:
        raise UnauthorizedError()
    record = await request.app[keys.TOKENS].lookup(token)
    # A page session's id works only as its cookie, never as an API token.
    if record is None or record.tenant != tenant.subdomain or record.kind == "session":
        raise UnauthorizedError()
    request[keys.USER_ID] = record.user_id
    return Caller(
        user_id=record.user_id,
        account_id=record.account_id,
        roles=record.roles,
        auth_time_ms=record.issued_at_ms,
    )


async def _rate_limit(request: web.Request, tenant: TenantConfig) -> None:
    """Charge an authenticated API request to its token's and tenant's limits."""
    token = _token_from(request)
    if not token:  # _caller let it through, so there is one
        return
    headers = await request.app[keys.LIMITER].charge(tenant, token)
    if headers is not None:  # middlewares.add_standard_headers puts them on the answer
        request[keys.RATE_HEADERS] = headers


async def _proxy(
    request: web.Request,
    caller: Caller,
    extra_headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    tenant = _tenant(request)
    response, revoke = await forward(
        request,
        tenant,
        _identity(request, tenant, caller),
        target=_without_auth_token(request),
        extra_headers=extra_headers,
    )
    if revoke is not None:
        try:
            user_id = int(revoke)
            count = await request.app[keys.TOKENS].revoke_user(
                tenant.subdomain, user_id
            )
            logger.info("revoked %d token(s) of user %d", count, user_id)
        except (ValueError, TokenStoreUnavailableError):
            # The backend refuses the old tokens by itself (tokens_valid_after).
            logger.exception("could not revoke tokens of user %r", revoke)
        if response.status == 200 and _reset_of(request) == revoke:
            # FlexMeasures mails reset instructions; here a one-time link.
            mail_reset_link(request, tenant, int(revoke))
    return response


def _reset_of(request: web.Request) -> str | None:
    """The user id of a `PATCH /api/v3_0/users/<id>/password-reset` (else None)."""
    if request.method != "PATCH" or request.match_info.get("version") != "v3_0":
        return None
    found = PASSWORD_RESET_RE.fullmatch(request.match_info.get("tail", ""))
    return str(int(found.group(1))) if found else None


@routes.route("*", "/api/ops/{tail:.*}")
async def proxy_ops(request: web.Request) -> web.StreamResponse:
    """FlexMeasures' ops endpoints; `ping` is public.

    getLatestTaskRun takes no user token: FlexMeasures compares its Authorization
    header with the task-check token, which only the tenant's backend knows.
    """
    tenant = _tenant(request)
    method = "GET" if request.method == "HEAD" else request.method
    path = f"/api/ops/{request.match_info['tail']}"
    if path == TASK_RUN_PATH and method == "GET":
        given = request.headers.get("Authorization")
        extra = {TASK_TOKEN_HEADER: given} if given is not None else None
        return await _proxy(request, SERVICE, extra)
    if is_public_path(method, path):
        return await _proxy(request, SERVICE)
    return await _proxy(request, await _caller(request, tenant))


@routes.route("*", r"/api/{version:v[0-9][0-9_]*}")
@routes.route("*", r"/api/{version:v[0-9][0-9_]*}/{tail:.*}")
async def proxy_versioned(request: web.Request) -> web.StreamResponse:
    """`/api/<version>/...`: version served, token valid for this tenant, then proxy."""
    tenant = _tenant(request)
    version = request.match_info["version"]
    if version not in tenant.versions:
        if version in SUNSET_VERSIONS:
            number = version[1:].replace("_", ".")
            raise SunsetError(
                f"API version {number} has been sunset. Please upgrade to API version "
                f"3.0. See {SUNSET_LINK} for more information.",
                headers={
                    "Deprecation": "Tue, 13 Dec 2022 23:59:59 GMT",
                    "Sunset": SUNSET_DATE,
                    "Link": f'<{SUNSET_LINK}>; rel="deprecation"; type="text/html", '
                    f'<{SUNSET_LINK}>; rel="sunset"; type="text/html"',
                },
            )
        raise NotFoundError(f"API version {version} is not available on this server.")
    tail = request.match_info.get("tail", "")
    method = "GET" if request.method == "HEAD" else request.method
    if is_public_tail(method, tail):
        return await _proxy(request, SERVICE)
    caller = await _caller(request, tenant)
    await _rate_limit(request, tenant)
    return await _proxy(request, caller)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: not draining, config loaded and Redis reachable."""
    if request.app[keys.DRAIN].started:
        return web.json_response({"status": "DRAINING"}, status=503)
    try:
        await request.app[keys.REDIS].ping()
    except REDIS_ERRORS:
        return web.json_response(
            {"status": "TOKEN_STORE_UNAVAILABLE", "redis": False}, status=503
        )
    tenants = len(request.app[keys.REGISTRY].config.tenants)
    return web.json_response({"status": "ok", "redis": True, "tenants": tenants})


@routes.get("/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of every worker, for ops only.

    Not on a tenant's host, nor through a (public) proxy unless a token is set; the
    token when set.
    """
    settings = request.app[keys.SETTINGS]
    expected = settings.metrics_token
    if request.app[keys.REGISTRY].resolve(request[keys.PUBLIC_HOST]) is not None or (
        expected is None and through_proxy(request, settings.trusted_proxies)
    ):
        raise web.HTTPNotFound()  # a tenant's host serves its API, not our internals
    if expected is not None:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), expected.get().encode()):
            denied = UnauthorizedError()
            denied.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            raise denied
    # In a thread: it reads the workers' files, and per tenant it is megabytes
    # (prometheus-client's values and registry take their own locks).
    body = await asyncio.to_thread(request.app[keys.METRICS].exposition)
    return web.Response(
        body=body,
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )
