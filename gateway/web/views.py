"""Login, logout, the profile page with API tokens and keys.

Every POST is checked before anything is done: the login form by its origin
(there is no session yet), every other form by the session's CSRF secret and its
origin (sessions.csrf_valid). A new token or key is shown once, on the page that
answers the POST itself (never in a URL, the session or a redirect).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

from aiohttp import web
from multidict import MultiDictProxy

from contract.identity import Caller
from contract.tenants_file import TenantConfig
from gateway import keys
from gateway.auth import token_hash
from gateway.errors import (
    FormRejectedError,
    LoginBusyError,
    LoginRateLimitedError,
    NotFoundError,
    TokenStoreUnavailableError,
    TooManyRequestsError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from gateway.login import verify_login
from gateway.proxy import fetch
from gateway.signing import identity_for
from gateway.throttle import LoginThrottle
from gateway.words import lifetime_words

from . import render, sessions
from .calls import FORM_REJECTED, redirect
from .sessions import PageUser

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

HOME: Final = "/logged-in-user"
EMAIL_MAX: Final = 254  # the longest email address (RFC 3696 errata, RFC 5321)
PASSWORD_MAX: Final = 1024
NEXT_MAX: Final = 2048
KEY_NAME_MAX: Final = 80
DAY: Final = 24 * 3600
API_KINDS: Final = frozenset({"api", "api-key"})  # listed on the profile; no sessions
DIGEST_RE: Final = re.compile(r"[0-9a-f]{64}")
LOGIN_FAILED: Final = "Invalid email or password."
UNAVAILABLE: Final = (
    "Logging in is unavailable right now; please try again in a minute."
)
NOTICES: Final = {
    "logged-out": "You have been logged out.",
    "revoked-all": "All your API tokens, keys and sessions have been revoked. "
    "Please log in again.",
    "revoked": "The token has been revoked; it no longer works.",
    "expired": "Your session has ended; please log in again.",
}
Form = MultiDictProxy[Any]


def safe_next(value: str | None) -> str:
    """`value` if it is a path on this host, else the profile page.

    Only a plain absolute path is followed: one leading "/", no "//" or backslash
    anywhere, no scheme or host, printable ASCII only (no control characters).
    """
    if (
        not value
        or len(value) > NEXT_MAX
        or not value.startswith("/")
        or "//" in value
        or "\\" in value
        or any(not ("!" <= char <= "~") for char in value)
    ):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value


def _field(form: Form, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _when(ms: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _authority(request: web.Request) -> str:
    """The host (and port, unless the scheme's default) clients use for this tenant."""
    return request[keys.PUBLIC_AUTHORITY]


# --- login and logout ---------------------------------------------------------


def _login_page(
    request: web.Request,
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    response = render(
        request,
        "login.html",
        {
            "next": next_path,
            "email": email,
            "error": error,
            "notice": notice,
            "email_max": EMAIL_MAX,
            "reset_by_mail": request.app[keys.SETTINGS].mail_configured,
        },
        status=status,
    )
    response.headers.update(headers or {})
    return response


@routes.get("/login")
async def get_login(request: web.Request) -> web.Response:
    """The login form (a signed-in user goes on to `next`)."""
    next_path = safe_next(request.query.get("next"))
    if await sessions.current_user(request) is not None:
        return redirect(next_path)
    notice = NOTICES.get(request.query.get("notice", ""))
    return _login_page(request, next_path=next_path, notice=notice)


def _login_problem(email: str, password: str) -> str | None:
    if not email or not password:
        return "Please enter your email address and your password."
    if len(email) > EMAIL_MAX:
        return (
            f"That email address is too long: email addresses have at most "
            f"{EMAIL_MAX} characters."
        )
    if "@" not in email:
        return "Please enter a valid email address."
    if len(password) > PASSWORD_MAX:
        return f"That password is too long: at most {PASSWORD_MAX} characters."
    return None


@routes.post("/login")
async def post_login(request: web.Request) -> web.Response:
    """Check the password with the tenant's backend, then start a session."""
    tenant: TenantConfig = request[keys.TENANT]
    # No session yet, so no CSRF secret: a login must come from this very origin.
    if not sessions.same_origin(request):
        logger.warning("login form refused: foreign or missing origin")
        raise FormRejectedError(FORM_REJECTED)
    form = await request.post()
    email = _field(form, "email").strip()
    password = _field(form, "password")
    next_path = safe_next(_field(form, "next"))
    shown = email[:EMAIL_MAX]
    problem = _login_problem(email, password)
    if problem is not None:
        return _login_page(
            request, next_path=next_path, email=shown, error=problem, status=422
        )
    try:
        login = await verify_login(request, tenant, email, password)
        if not login.ok:
            logger.warning("login failed on the login page")
            return _login_page(
                request,
                next_path=next_path,
                email=shown,
                error=LOGIN_FAILED,
                status=401,
            )
        previous = await sessions.current_user(request)
        if previous is not None:  # never keep a session id across a login
            await sessions.end_session(request, previous)
        session_id = await sessions.start_session(
            request,
            tenant,
            user_id=login.user_id,
            account_id=login.account_id,
            roles=login.roles,
            email=email.lower(),
        )
    except (TooManyRequestsError, LoginRateLimitedError, LoginBusyError) as err:
        return _login_page(
            request,
            next_path=next_path,
            email=shown,
            error=err.message,
            status=err.status,
            headers=err.headers,
        )
    except (
        TokenStoreUnavailableError,
        UpstreamUnavailableError,
        UpstreamTimeoutError,
    ) as err:
        logger.warning("login page: %s", err.message)
        return _login_page(
            request,
            next_path=next_path,
            email=shown,
            error=UNAVAILABLE,
            status=err.status,
            headers={"Retry-After": "60"},
        )
    request[keys.USER_ID] = login.user_id
    logger.info("page session started", extra={"user_id": login.user_id})
    response = redirect(next_path)
    sessions.set_cookie(request, response, session_id)
    return response


@routes.get("/logout")
async def get_logout(request: web.Request) -> web.Response:
    """A confirmation form: a GET never logs out."""
    user = await sessions.current_user(request)
    if user is None:
        return redirect("/login")
    return render(request, "logout.html", {"user": user})


@routes.post("/logout")
async def post_logout(request: web.Request) -> web.Response:
    """End the session and clear its cookie."""
    user = await sessions.current_user(request)
    if user is not None:
        form = await request.post()
        if not sessions.csrf_valid(request, user, _field(form, "csrf_token")):
            logger.warning("logout form refused: CSRF check failed")
            raise FormRejectedError(FORM_REJECTED)
        await sessions.end_session(request, user)
        logger.info("page session ended", extra={"user_id": user.user_id})
    response = redirect("/login?notice=logged-out")
    sessions.clear_cookie(response)
    return response


# --- the profile page -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fresh:
    """A token just created, to be shown once."""

    token: str
    label: str
    expires: dt.datetime
    curl: str


@dataclass(frozen=True, slots=True)
class KeyForm:
    """What was entered in the API key form, and what is wrong with it."""

    name: str = ""
    days: str = ""
    errors: tuple[tuple[str, str], ...] = ()

    def error(self, field: str) -> str:
        """The problem with a field ("" if none)."""
        return dict(self.errors).get(field, "")


async def _require_user(request: web.Request) -> PageUser:
    """The signed-in user; else a redirect to the login page (then back here)."""
    user = await sessions.current_user(request)
    if user is None:
        raise web.HTTPSeeOther(
            f"/login?next={quote(HOME)}", headers={"Cache-Control": "no-store"}
        )
    request[keys.USER_ID] = user.user_id
    return user


async def _checked_form(request: web.Request) -> tuple[PageUser, Form]:
    """The user and the form of a POST that passed the CSRF and origin checks."""
    user = await _require_user(request)
    form = await request.post()
    if not sessions.csrf_valid(request, user, _field(form, "csrf_token")):
        logger.warning(
            "form refused: CSRF check failed", extra={"user_id": user.user_id}
        )
        raise FormRejectedError(FORM_REJECTED)
    return user, form


def _caller(user: PageUser) -> Caller:
    return Caller(
        user_id=user.user_id,
        account_id=user.record.account_id,
        roles=user.record.roles,
        auth_time_ms=user.login_ms,
    )


async def _backend_json(
    request: web.Request, tenant: TenantConfig, identity: str, target: str
) -> tuple[int, dict[str, Any] | None]:
    answer = await fetch(request, tenant, identity, target)
    try:
        body = answer.json()
    except ValueError:
        return answer.status, None
    return answer.status, body if isinstance(body, dict) else None


async def _details(
    request: web.Request, tenant: TenantConfig, user: PageUser
) -> dict[str, Any] | None:
    """The user and account as the backend's v3_0 API shows them to this user.

    None if the backend cannot tell right now. A 401 means the backend no longer
    accepts this login (e.g. a password reset): the session ends.
    """
    identity = identity_for(request, tenant, _caller(user))
    try:
        status, found = await _backend_json(
            request, tenant, identity, f"/api/v3_0/users/{user.user_id}"
        )
        if status == 401:
            await sessions.end_session(request, user)
            raise web.HTTPSeeOther(
                f"/login?notice=expired&next={quote(HOME)}",
                headers={"Cache-Control": "no-store"},
            )
        if status != 200 or found is None:
            logger.warning("profile: the backend answered %d for the user", status)
            return None
        account_id = found.get("account_id", user.record.account_id)
        status, account = await _backend_json(
            request, tenant, identity, f"/api/v3_0/accounts/{account_id}"
        )
    except (UpstreamUnavailableError, UpstreamTimeoutError) as err:
        logger.warning("profile: %s", err.message)
        return None
    embedded = found.get("account")
    if (status != 200 or account is None) and isinstance(embedded, dict):
        account = embedded
    last_login = found.get("last_login_at")
    try:
        last = dt.datetime.fromisoformat(last_login) if last_login else None
        if last is not None and last.tzinfo is None:  # FlexMeasures' naive UTC
            last = last.replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        last = None
    return {
        "email": found.get("email"),
        "username": found.get("username"),
        "active": found.get("active"),
        "timezone": found.get("timezone"),
        "last_login": last,
        "account_id": (account or {}).get("id", account_id),
        "account_name": (account or {}).get("name"),
    }


async def _token_rows(
    request: web.Request, tenant: TenantConfig, user: PageUser
) -> list[dict[str, Any]]:
    now_ms = dt.datetime.now(dt.UTC).timestamp() * 1000
    rows = []
    for digest, record, ttl_ms in await request.app[keys.TOKENS].user_tokens(
        tenant.subdomain, user.user_id
    ):
        if record.kind not in API_KINDS:
            continue
        rows.append(
            {
                "digest": digest,
                "short_id": digest[:8],
                "name": record.get("name") or "API token",
                "kind": "API key" if record.kind == "api-key" else "API token",
                "created": _when(record.issued_at_ms),
                "expires": _when(now_ms + ttl_ms) if ttl_ms > 0 else None,
            }
        )
    return rows


async def _profile_page(
    request: web.Request,
    user: PageUser,
    *,
    fresh: Fresh | None = None,
    key_form: KeyForm | None = None,
    status: int = 200,
) -> web.Response:
    tenant: TenantConfig = request[keys.TENANT]
    details = await _details(request, tenant, user)
    return render(
        request,
        "profile.html",
        {
            "user": user,
            "details": details,
            "roles": user.record.roles,
            "signed_in": _when(user.login_ms),
            "tokens": await _token_rows(request, tenant, user),
            "fresh": fresh,
            "key_form": key_form or KeyForm(),
            "token_life": lifetime_words(tenant.token_ttl),
            "key_max_days": max(1, tenant.api_key_max_ttl // DAY),
            "key_default_days": min(30, max(1, tenant.api_key_max_ttl // DAY)),
            "key_max_life": lifetime_words(tenant.api_key_max_ttl),
            "notice": NOTICES.get(request.query.get("notice", "")),
        },
        status=status,
    )


@routes.get("/logged-in-user")
async def get_logged_in_user(request: web.Request) -> web.Response:
    """Who you are, your API tokens and keys."""
    return await _profile_page(request, await _require_user(request))


async def _issue(
    request: web.Request,
    user: PageUser,
    *,
    kind: str,
    ttl: int,
    label: str,
    extra: dict[str, str] | None = None,
) -> Fresh:
    tenant: TenantConfig = request[keys.TENANT]
    # Counted with the user's logins (GATEWAY_TOKENS_PER_USER): 429 when used up.
    throttle = LoginThrottle.of(
        request.app[keys.REDIS], request.app[keys.SETTINGS], request.app[keys.SETTLING]
    )
    slot = await throttle.mint(tenant.subdomain, user.email or f"#{user.user_id}")
    try:
        token, record = await request.app[keys.TOKENS].issue(
            tenant=tenant.subdomain,
            user_id=user.user_id,
            account_id=user.record.account_id,
            roles=user.record.roles,
            ttl=ttl,
            kind=kind,
            extra=extra,
        )
    except BaseException:
        await throttle.give_back(slot)
        raise
    logger.info(
        "%s created on the profile page",
        kind,
        extra={"user_id": user.user_id, "token_id": token_hash(token)[:8]},
    )
    origin = f"{request[keys.SCHEME]}://{_authority(request)}"
    return Fresh(
        token=token,
        label=label,
        expires=_when(record.issued_at_ms + ttl * 1000),
        curl=f"curl -H 'Authorization: {token}' {origin}/api/v3_0/users",
    )


@routes.post("/logged-in-user/api-tokens")
async def post_api_token(request: web.Request) -> web.Response:
    """A fresh API token with the tenant's token lifetime, shown once."""
    user, _ = await _checked_form(request)
    tenant: TenantConfig = request[keys.TENANT]
    fresh = await _issue(
        request, user, kind="api", ttl=tenant.token_ttl, label="API token"
    )
    return await _profile_page(request, user, fresh=fresh, status=201)


def parse_key_form(name: str, days: str, max_days: int) -> KeyForm:
    """The API key form's values with a message per bad field."""
    errors: list[tuple[str, str]] = []
    name = name.strip()
    if not name:
        errors.append(("name", "Please give the key a name."))
    elif len(name) > KEY_NAME_MAX:
        errors.append(
            ("name", f"The name is too long: at most {KEY_NAME_MAX} characters.")
        )
    elif any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        errors.append(("name", "The name must not contain control characters."))
    days = days.strip()
    if not days.isascii() or not days.isdigit():
        errors.append(("days", f"Enter a whole number of days from 1 to {max_days}."))
    elif len(days) > 6 or not 1 <= int(days) <= max_days:
        errors.append(
            (
                "days",
                f"The lifetime must be from 1 to {max_days} days (the most "
                "this service allows).",
            )
        )
    return KeyForm(name=name[: KEY_NAME_MAX * 2], days=days[:12], errors=tuple(errors))


@routes.post("/logged-in-user/api-keys")
async def post_api_key(request: web.Request) -> web.Response:
    """A named API key with a chosen lifetime (at most api_key_max_ttl), shown once."""
    user, form = await _checked_form(request)
    tenant: TenantConfig = request[keys.TENANT]
    max_days = max(1, tenant.api_key_max_ttl // DAY)
    key_form = parse_key_form(_field(form, "name"), _field(form, "days"), max_days)
    if key_form.errors:
        return await _profile_page(request, user, key_form=key_form, status=422)
    fresh = await _issue(
        request,
        user,
        kind="api-key",
        ttl=min(int(key_form.days) * DAY, tenant.api_key_max_ttl),
        label=f"API key “{key_form.name}”",
        extra={"name": key_form.name},
    )
    return await _profile_page(request, user, fresh=fresh, status=201)


@routes.post("/logged-in-user/revoke")
async def post_revoke(request: web.Request) -> web.Response:
    """Revoke one of the user's API tokens or keys (named by its hash)."""
    user, form = await _checked_form(request)
    tenant: TenantConfig = request[keys.TENANT]
    digest = _field(form, "token")
    tokens = request.app[keys.TOKENS]
    own = {
        found
        for found, record, _ in await tokens.user_tokens(tenant.subdomain, user.user_id)
        if record.kind in API_KINDS
    }
    if not DIGEST_RE.fullmatch(digest) or digest not in own:
        raise NotFoundError("You have no such token; it may have expired already.")
    await tokens.revoke_digest(digest)
    logger.info(
        "token revoked on the profile page",
        extra={"user_id": user.user_id, "token_id": digest[:8]},
    )
    return redirect(f"{HOME}?notice=revoked")


@routes.post("/logged-in-user/revoke-all")
async def post_revoke_all(request: web.Request) -> web.Response:
    """Revoke every token, key and session of the user, then log in again."""
    user, _ = await _checked_form(request)
    tenant: TenantConfig = request[keys.TENANT]
    count = await request.app[keys.TOKENS].revoke_user(tenant.subdomain, user.user_id)
    logger.info(
        "revoked %d token(s) on the profile page",
        count,
        extra={"user_id": user.user_id},
    )
    response = redirect("/login?notice=revoked-all")
    sessions.clear_cookie(response)
    return response
