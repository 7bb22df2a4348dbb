"""Pages calling the tenant's v3_0 API as the signed-in user.

The signed identity is the one an API token of the session's user would give, so
the backend's access rules (and its messages) apply unchanged: a page shows what the
API answers, a 403 as a clear "not allowed" and a 422 as messages by field.

Two ways of calling are here, both shared by several pages: `call` (an `Answer`
with parsed JSON; error.html) for the accounts, users and asset tools pages, and
`fetch_as` (the backend's answer as it came; dashboard_error.html) for the
dashboard, asset, chart, acting and jobs pages.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import MultiDictProxy

from contract.identity import Caller
from gateway import keys
from gateway.errors import (
    ApiError,
    FormRejectedError,
    TokenStoreUnavailableError,
    UpstreamUnavailableError,
)
from gateway.proxy import BackendAnswer, fetch
from gateway.signing import identity_for
from gateway.web import render, sessions
from gateway.web.sessions import PageUser
from gateway.web.values import Pages, int_of, text_of, when

logger = logging.getLogger(__name__)

API: Final = "/api/v3_0"
FORM_REJECTED: Final = (
    "This form could not be verified: it is out of date or was sent from another "
    "site. Nothing was changed; please reload the page and try again."
)
Form = MultiDictProxy[Any]
MAX_PAGE: Final = 100_000  # the highest page number a paged list is asked for
LOG_PER_PAGE: Final = 20
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Listings are read in pages of PAGE_SIZE, up to MAX_LISTED items (a page with
# more would be of no use to anyone; the API has them all).
PAGE_SIZE: Final = 1000
MAX_LISTED: Final = 5000


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


async def signed_in(request: web.Request) -> PageUser | None:
    """The session's user, charged one request of the tenant's rate limits.

    Pages read the same data as the API, so they count as the API does: the
    session has a bucket of the tenant's `per_token` size of its own (as each API
    token has), and shares the tenant's `per_tenant` bucket. Past a limit it is
    FlexMeasures' 429 (JSON under /dashboard/api, a page elsewhere) with
    X-RateLimit-* and Retry-After. No session: nothing is charged.
    """
    user = await sessions.current_user(request)
    if user is None:
        return None
    request[keys.USER_ID] = user.user_id
    headers = await request.app[keys.LIMITER].charge(
        request[keys.TENANT], user.session_id
    )
    if headers is not None:  # middlewares.add_standard_headers puts them on the answer
        request[keys.RATE_HEADERS] = headers
    return user


async def page_user(request: web.Request) -> PageUser:
    """The session's user (charged one request of the tenant's rate limits).

    No session: a redirect to the login page, then back here.
    """
    user = await signed_in(request)
    if user is None:
        raise to_login(request)
    return user


def to_login(request: web.Request) -> web.HTTPSeeOther:
    """A redirect to the login page that comes back to this page (if a GET).

    The way back is one query value, so its own "?", "=" and "&" are escaped: a
    page's whole query comes back, not only its first parameter.
    """
    back = request.path_qs if request.method == "GET" else request.path
    return web.HTTPSeeOther(
        f"/login?next={quote(back, safe='/')}",
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
    identity = identity_for(request, tenant, caller_of(user))
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


async def audit_log(
    request: web.Request, user: PageUser, target: str, number: int
) -> dict[str, Any]:
    """An audit log page: rows, pages, or why it is not shown."""
    query = {
        "page": number,
        "per_page": LOG_PER_PAGE,
        "sort-by": "event_datetime",
        "sort-dir": "desc",
    }
    answer = await call(request, user, f"{target}?{urlencode(query)}")
    if answer.status == 403:
        return {"refused": "You are not allowed to see this audit log."}
    if answer.status != 200:
        return {"refused": answer.message() or "The audit log is unavailable."}
    body = answer.body
    if isinstance(body, list):  # the account log: every record at once
        records = sorted(
            (r for r in body if isinstance(r, dict)),
            key=lambda r: when(r.get("event_datetime")) or EPOCH,
            reverse=True,
        )
        pages = Pages(number, LOG_PER_PAGE, len(records))
        start = (number - 1) * LOG_PER_PAGE
        records = records[start : start + LOG_PER_PAGE]
    elif isinstance(body, dict) and isinstance(body.get("data"), list):
        records = [r for r in body["data"] if isinstance(r, dict)]
        pages = Pages(number, LOG_PER_PAGE, int_of(body.get("num-records")) or 0)
    else:
        return {"refused": "The audit log is unavailable."}
    rows = [
        {
            "event": text_of(r.get("event")),
            "when": when(r.get("event_datetime")),
            "actor": text_of(r.get("active_user_name")),
            "actor_id": int_of(r.get("active_user_id")),
        }
        for r in records
    ]
    return {"rows": rows, "pages": pages}


# --- the backend's answer as it came (the dashboard's pages) ---------------------


def caller_of(user: PageUser) -> Caller:
    """Who the session's user is to the backend (as their API token would say)."""
    record = user.record
    return Caller(
        user_id=record.user_id,
        account_id=record.account_id,
        roles=record.roles,
        auth_time_ms=record.issued_at_ms,
    )


async def fetch_as(request: web.Request, user: PageUser, target: str) -> BackendAnswer:
    """GET `target` from the tenant's backend as the session's user."""
    tenant = request[keys.TENANT]
    identity = identity_for(request, tenant, caller_of(user))
    return await fetch(request, tenant, identity, target)


class BackendAnswerError(Exception):
    """The backend refused or failed a call a page needed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_of(request: web.Request, answer: BackendAnswer) -> object:
    """The answer's JSON (UpstreamUnavailableError if it is none)."""
    try:
        return answer.json()
    except ValueError as err:
        tenant = request[keys.TENANT].subdomain
        raise UpstreamUnavailableError(
            f"The backend of tenant '{tenant}' gave an unreadable answer."
        ) from err


async def listing(
    request: web.Request, user: PageUser, path: str, query: dict[str, str]
) -> tuple[list[object], bool]:
    """Every item of a paginated listing (up to MAX_LISTED); whether it was cut."""
    items: list[object] = []
    page = 1
    while True:
        params = urlencode({**query, "page": page, "per_page": PAGE_SIZE})
        answer = await fetch_as(request, user, f"{API}/{path}?{params}")
        body = json_of(request, answer)
        if answer.status != 200:
            raise BackendAnswerError(answer.status, message_of(body))
        data = body.get("data") if isinstance(body, dict) else None
        total = body.get("num-records") if isinstance(body, dict) else None
        if not isinstance(data, list) or int_of(total) is None:
            raise UpstreamUnavailableError(
                f"The backend of tenant '{request[keys.TENANT].subdomain}' gave an "
                "unreadable listing."
            )
        items.extend(data)
        if not data or len(items) >= (int_of(total) or 0):
            return items, False
        if len(items) >= MAX_LISTED:
            return items[:MAX_LISTED], True
        page += 1


async def data_count(
    request: web.Request, user: PageUser, sensor_id: int
) -> int | None:
    """How many values the sensor has (its stats; None if they are not readable)."""
    answer = await fetch_as(request, user, f"{API}/sensors/{sensor_id}/stats")
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status != 200 or not isinstance(body, dict):
        return None
    total = 0
    for entry in body.values():
        if isinstance(entry, dict):
            total += int_of(entry.get("Number of values")) or 0
    return total


def relay(request: web.Request, answer: BackendAnswer) -> web.Response:
    """The backend's JSON answer as it is (its 4xx included), never cached."""
    if answer.content_type != "application/json":
        raise UpstreamUnavailableError(
            f"The backend of tenant '{request[keys.TENANT].subdomain}' gave an "
            "unreadable answer."
        )
    return web.Response(
        status=answer.status,
        body=answer.body,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def titled_error_page(
    request: web.Request, user: PageUser, status: int, title: str, message: str
) -> web.Response:
    """A page error as dashboard_error.html: a title and a message."""
    if status >= 500:
        logger.warning("%s %s: %s", request.method, request.path, message)
    return render(
        request,
        "dashboard_error.html",
        {"user": user, "title": title, "message": message},
        status=status,
    )
