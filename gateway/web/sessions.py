"""Page sessions: a cookie naming a session kept in Redis, and CSRF checks.

A session is a token of kind "session" in the token store (gateway/auth.py): only
its sha256 is in Redis, it belongs to one tenant and one user, and it dies with every
revocation of the user's tokens (password reset, deactivation, "revoke all") at
every gateway at once. It is accepted only as the cookie, never as an API token.

- Idle expiry: each page view sets the key's TTL to GATEWAY_SESSION_IDLE (never past
  the absolute end). Absolute expiry: GATEWAY_SESSION_MAX after login.
- The cookie is host-only (no Domain attribute), so one tenant's cookie never reaches
  another tenant's host; HttpOnly; SameSite=Lax; Secure when the request came over
  https (directly or per X-Forwarded-Proto from a trusted proxy).
- CSRF: every form carries the session's random CSRF secret, and a POST must also
  come from this very origin (Origin, else Referer).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from contract.tenants_file import TenantConfig
from gateway import keys
from gateway.auth import TokenRecord
from gateway.tenants import DEFAULT_PORTS

COOKIE: Final = "flexhost_session"
SESSION_KIND: Final = "session"


@dataclass(frozen=True, slots=True)
class PageUser:
    """The signed-in user of a page request."""

    session_id: str  # the cookie's value (a secret: never log or render it)
    record: TokenRecord

    @property
    def user_id(self) -> int:
        """The user's id in the tenant's backend."""
        return self.record.user_id

    @property
    def email(self) -> str:
        """The email the user signed in with."""
        return self.record.get("email")

    @property
    def csrf(self) -> str:
        """The session's CSRF secret (rendered into forms)."""
        return self.record.get("csrf")

    @property
    def login_ms(self) -> int:
        """When the user signed in (ms since the epoch)."""
        return self.record.issued_at_ms


async def start_session(
    request: web.Request,
    tenant: TenantConfig,
    *,
    user_id: int,
    account_id: int,
    roles: tuple[str, ...],
    email: str,
) -> str:
    """A new session for a user who just proved their password; its id."""
    settings = request.app[keys.SETTINGS]
    session_id, _record = await request.app[keys.TOKENS].issue(
        tenant=tenant.subdomain,
        user_id=user_id,
        account_id=account_id,
        roles=roles,
        ttl=min(settings.session_idle, settings.session_max),
        kind=SESSION_KIND,
        extra={"email": email, "csrf": secrets.token_urlsafe(32)},
    )
    return session_id


def set_cookie(
    request: web.Request, response: web.StreamResponse, session_id: str
) -> None:
    """Put the session cookie on a response (host-only, HttpOnly, SameSite=Lax)."""
    response.set_cookie(
        COOKIE,
        session_id,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.get(keys.SCHEME) == "https",
        max_age=request.app[keys.SETTINGS].session_max,
    )


def clear_cookie(response: web.StreamResponse) -> None:
    """Remove the session cookie from the browser."""
    response.del_cookie(COOKIE, path="/")


async def current_user(request: web.Request) -> PageUser | None:
    """The request's live session of this tenant (refreshing its idle expiry)."""
    session_id = request.cookies.get(COOKIE)
    tenant = request.get(keys.TENANT)
    if not session_id or tenant is None:
        return None
    tokens = request.app[keys.TOKENS]
    record = await tokens.lookup(session_id)
    if (
        record is None
        or record.kind != SESSION_KIND
        or record.tenant != tenant.subdomain
    ):
        return None
    settings = request.app[keys.SETTINGS]
    left = record.issued_at_ms / 1000 + settings.session_max - time.time()
    if left <= 0:
        await tokens.revoke(session_id)
        return None
    await tokens.touch(session_id, int(min(settings.session_idle, left)))
    return PageUser(session_id, record)


async def end_session(request: web.Request, user: PageUser) -> None:
    """Forget the session at every gateway."""
    await request.app[keys.TOKENS].revoke(user.session_id)


def same_origin(request: web.Request) -> bool:
    """Whether a POST comes from a page of this very origin (Origin, else Referer).

    Scheme, host and port must all be the ones the client used for this request
    (a port left out is the scheme's default, 80 or 443).
    """
    expected = _origin_of(
        f"{request.get(keys.SCHEME, 'http')}://{request.get(keys.PUBLIC_AUTHORITY, '')}"
    )
    given = request.headers.get("Origin")
    if given is None:
        given = request.headers.get("Referer")
    if not given or expected is None:
        return False
    return _origin_of(given) == expected


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL; None if it has no http(s) origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    default = DEFAULT_PORTS.get(scheme)
    if default is None or not host:
        return None
    return scheme, host, port if port is not None else default


def csrf_valid(request: web.Request, user: PageUser, submitted: str | None) -> bool:
    """Whether a form POST carries the session's CSRF secret from this origin."""
    if not submitted or not user.csrf:
        return False
    return hmac.compare_digest(submitted, user.csrf) and same_origin(request)
