"""Pages calling the tenant's v3_0 API as the signed-in user.

The signed identity is the one an API token of the session's user would give, so
the backend's access rules (and its messages) apply unchanged: a page shows what the
API answers, a 403 as a clear "not allowed" and a 422 as messages by field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from contract.identity import Caller
from gateway import keys
from gateway.errors import ApiError, FormRejectedError, TokenStoreUnavailableError
from gateway.proxy import fetch
from gateway.signing import identity_for
from gateway.web import render, sessions
from gateway.web.sessions import PageUser

logger = logging.getLogger(__name__)

API: Final = "/api/v3_0"
FORM_REJECTED: Final = (
    "This form could not be verified: it is out of date or was sent from another "
    "site. Nothing was changed; please reload the page and try again."
)
Form = MultiDictProxy[Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """The backend's answer to a page's call: status, JSON (None if none)."""

    status: int
    body: object

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300

    def message(self) -> str:
        """The answer's message as one sentence (FlexMeasures' error shapes)."""
        return message_of(self.body)

    def field_errors(self) -> dict[str, str]:
        """A 422's messages by field (`{"message": {"json": {field: [...]}}}`)."""
        found: dict[str, str] = {}
        message = self.body.get("message") if isinstance(self.body, dict) else None
        if isinstance(message, dict):
            for fields in message.values():
                if isinstance(fields, dict):
                    for name, texts in fields.items():
                        found[str(name)] = message_of({"message": texts})
        return found


class PageError(Exception):
    """A page that cannot be shown: its status and message (error.html)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def message_of(body: object) -> str:
    """The text of an error body (`message` or `errors`: text, list or mapping)."""
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        return " ".join(filter(None, (message_of(item) for item in body)))
    if isinstance(body, dict):
        if "message" in body or "errors" in body:
            return message_of(body.get("message", body.get("errors")))
        return " ".join(filter(None, (message_of(v) for v in body.values())))
    return ""


async def page_user(request: web.Request) -> PageUser:
    """The session's user (charged one request of the tenant's rate limits).

    No session: a redirect to the login page, then back here.
    """
    user = await sessions.current_user(request)
    if user is None:
        raise to_login(request)
    request[keys.USER_ID] = user.user_id
    headers = await request.app[keys.LIMITER].charge(
        request[keys.TENANT], user.session_id
    )
    if headers is not None:
        request[keys.RATE_HEADERS] = headers
    return user


def to_login(request: web.Request) -> web.HTTPSeeOther:
    """A redirect to the login page that comes back to this page (if a GET)."""
    back = request.path_qs if request.method == "GET" else request.path
    return web.HTTPSeeOther(
        f"/login?next={quote(back, safe='/?=&')}",
        headers={"Cache-Control": "no-store"},
    )


def redirect(location: str) -> web.Response:
    """A 303 to `location` after a form's POST."""
    return web.Response(
        status=303, headers={"Location": location, "Cache-Control": "no-store"}
    )


async def checked_form(request: web.Request, user: PageUser) -> Form:
    """The POSTed form, if it carries the session's CSRF secret from this origin."""
    form = await request.post()
    token = form.get("csrf_token")
    if not sessions.csrf_valid(request, user, token if isinstance(token, str) else ""):
        logger.warning("form refused: CSRF check failed")
        raise FormRejectedError(FORM_REJECTED)
    return form


def text_field(form: Form, name: str, limit: int = 1000) -> str:
    """A form field as text ("" if missing or a file), cut at `limit` characters."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


async def call(
    request: web.Request,
    user: PageUser,
    target: str,
    *,
    method: str = "GET",
    body: object = None,
) -> Answer:
    """`method` `target` (under /api/v3_0) as the session's user.

    A 401 ends the page (the backend no longer accepts this login: a redirect to
    the login page). When the backend says a user's tokens are void (deactivation,
    password reset), they are revoked here too, sessions included.
    """
    tenant = request[keys.TENANT]
    record = user.record
    caller = Caller(
        user_id=record.user_id,
        account_id=record.account_id,
        roles=record.roles,
        auth_time_ms=record.issued_at_ms,
    )
    identity = identity_for(request, tenant, caller)
    answer = await fetch(
        request, tenant, identity, API + target, method=method, json_body=body
    )
    if answer.revoke is not None:
        try:
            count = await request.app[keys.TOKENS].revoke_user(
                tenant.subdomain, int(answer.revoke)
            )
            logger.info("revoked %d token(s) of user %s", count, answer.revoke)
        except (ValueError, TokenStoreUnavailableError):
            # The backend refuses the old tokens by itself (tokens_valid_after).
            logger.exception("could not revoke tokens of user %r", answer.revoke)
    if answer.status == 401:
        await sessions.end_session(request, user)
        raise to_login(request)
    try:
        parsed = answer.json() if answer.body else None
    except ValueError:
        parsed = None
    return Answer(answer.status, parsed)


def refusal(answer: Answer, what: str) -> PageError:
    """The page for a backend's refusal of `what` ("this account", ...)."""
    if answer.status == 403:
        return PageError(
            403, f"You are not allowed to see {what}: the API refused (403)."
        )
    if answer.status in (404, 422):  # FlexMeasures answers an unknown id with 422
        return PageError(404, f"There is no {what}.")
    return PageError(502, answer.message() or "The backend gave an unreadable answer.")


def error_page(request: web.Request, user: PageUser, err: PageError) -> web.Response:
    """A page error as error.html (signed in: with the navigation)."""
    if err.status >= 500:
        logger.warning("%s %s: %s", request.method, request.path, err.message)
    return render(
        request,
        "error.html",
        {"user": user, "status": err.status, "message": err.message},
        status=err.status,
    )


def unavailable(err: ApiError) -> PageError:
    """A gateway fault (backend down, too slow, rate limit) as a page error."""
    return PageError(err.status, err.message)


def int_param(request: web.Request, name: str, default: int, *, most: int) -> int:
    """A positive integer query parameter (the default if missing or bad)."""
    raw = request.query.get(name, "")
    if raw.isascii() and raw.isdigit() and len(raw) <= 9:
        return max(1, min(int(raw), most))
    return default
