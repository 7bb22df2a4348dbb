"""Password reset by mail: "Forgot your password?" and the one-time link's page.

- `/forgot-password` asks for an email address and always answers the same page
  ("if the address is known, a mail is on its way") at once: the backend lookup
  and the mail run in a task after the answer, so neither the words nor the time
  tell whether an account exists. Requests are throttled like logins (per email
  and per client address of a tenant, atomic counters in Redis).
- The mail holds a link `/reset-password?token=...` on the host and scheme the
  request came by, living GATEWAY_RESET_LINK_TTL seconds (gateway/reset.py). Its
  GET shows the form without using the link (mail scanners follow links); the POST
  uses it once, sets the password in the tenant's backend (its rules and
  messages) and revokes every token and session of the user.
- Without SMTP settings there is no reset by mail: the login page shows no link
  and these pages say so (an admin sets a password with `flexhost admin
  set-password`). Reset links are never logged.

- `POST /users/<id>/invite` (a signed-in admin, CSRF-checked): the backend
  resets the user's password as that admin allows (FlexMeasures' password
  reset), then the user gets a link of the same kind, living
  GATEWAY_INVITE_LINK_TTL seconds.

The mails themselves (for these pages, the users pages and the API) are made and
sent by gateway/reset_mail.py.

The reset forms are checked by their origin (there is no session); the reset
form also carries the link's token, a secret no other site knows.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from contract.identity import Caller
from contract.tenants_file import TenantConfig
from gateway import keys
from gateway.errors import (
    FormRejectedError,
    TokenStoreUnavailableError,
    TooManyRequestsError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from gateway.reset import ResetLinks, call_backend, set_password
from gateway.reset_mail import mail_link_if_known, mail_password_link
from gateway.signing import identity_for
from gateway.throttle import LoginThrottle
from gateway.words import lifetime_words, wait_words

from . import error_page, render, sessions
from .calls import FORM_REJECTED
from .views import EMAIL_MAX, PASSWORD_MAX

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

UNAVAILABLE: Final = (
    "The password cannot be reset right now; please try again in a minute. "
    "Your link still works until it expires."
)


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _off(request: web.Request) -> web.Response:
    """The page telling that reset by mail is not set up here."""
    return render(request, "reset_off.html", {}, status=404)


def _forgot_page(
    request: web.Request,
    *,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    response = render(
        request,
        "forgot.html",
        {"email": email, "error": error, "email_max": EMAIL_MAX},
        status=status,
    )
    response.headers.update(headers or {})
    return response


@routes.get("/forgot-password")
async def get_forgot_password(request: web.Request) -> web.Response:
    """The form asking for the account's email address."""
    if not request.app[keys.SETTINGS].mail_configured:
        return _off(request)
    return _forgot_page(request)


def _email_problem(email: str) -> str | None:
    if not email:
        return "Please enter your email address."
    if len(email) > EMAIL_MAX:
        return (
            f"That email address is too long: email addresses have at most "
            f"{EMAIL_MAX} characters."
        )
    if "@" not in email or any(not char.isprintable() for char in email):
        return "Please enter a valid email address."
    return None


async def _throttle(request: web.Request, tenant: TenantConfig, email: str) -> None:
    """A slot per email and per client address, as failed logins count them.

    TooManyRequestsError (429) when either is used up; unknown addresses count
    like known ones, so a 429 tells nothing about which accounts exist.
    """
    throttle = LoginThrottle.of(request.app[keys.REDIS], request.app[keys.SETTINGS])
    for counter in throttle.reset_counters(
        tenant.subdomain, email, request[keys.CLIENT_IP]
    ):
        full = await throttle.take(counter)
        if full is not None:
            logger.warning(
                "password reset refused: too many requests",
                extra={"retry_after": full.seconds},
            )
            raise TooManyRequestsError(
                "Too many password reset requests; please try again in "
                f"{wait_words(full.seconds)}.",
                full.seconds,
            )


@routes.post("/forgot-password")
async def post_forgot_password(request: web.Request) -> web.Response:
    """Always the same answer; the mail (if any) goes out after it."""
    settings = request.app[keys.SETTINGS]
    if not settings.mail_configured:
        return _off(request)
    if not sessions.same_origin(request):
        logger.warning("reset request form refused: foreign or missing origin")
        raise FormRejectedError(FORM_REJECTED)
    tenant: TenantConfig = request[keys.TENANT]
    form = await request.post()
    email = _field(form, "email").strip()
    problem = _email_problem(email)
    if problem is not None:
        return _forgot_page(request, email=email[:EMAIL_MAX], error=problem, status=422)
    try:
        await _throttle(request, tenant, email)
    except TooManyRequestsError as err:
        return _forgot_page(
            request,
            email=email,
            error=err.message,
            status=err.status,
            headers=err.headers,
        )
    mail_link_if_known(request, tenant, email)
    return render(
        request,
        "forgot_sent.html",
        {"email": email, "life": lifetime_words(settings.reset_link_ttl)},
    )


def _reset_page(
    request: web.Request,
    token: str,
    *,
    kind: str = "reset",
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "reset.html",
        {
            "token": token,
            "invitation": kind == "invite",
            "errors": errors or {},
            "error": error,
            "password_max": PASSWORD_MAX,
        },
        status=status,
    )


def _invalid(request: web.Request) -> web.Response:
    return render(request, "reset_invalid.html", {}, status=410)


@routes.get("/reset-password")
async def get_reset_password(request: web.Request) -> web.Response:
    """The form for a new password, if the link is live (it is not used yet)."""
    if not request.app[keys.SETTINGS].mail_configured:
        return _off(request)
    tenant: TenantConfig = request[keys.TENANT]
    token = request.query.get("token", "")
    link = await ResetLinks.of(request.app).peek(token, tenant.subdomain)
    if link is None:
        return _invalid(request)
    return _reset_page(request, token, kind=link.kind)


def _password_problems(password: str, repeat: str) -> dict[str, str]:
    if not password:
        return {"password": "Please enter a new password."}
    if len(password) > PASSWORD_MAX:
        return {"password": f"Longer than maximum length {PASSWORD_MAX}."}
    if password != repeat:
        return {"repeat": "The two passwords differ; please type the same one twice."}
    return {}


@routes.post("/reset-password")
async def post_reset_password(request: web.Request) -> web.Response:
    """Use the link: set the password, revoke every token and session."""
    if not request.app[keys.SETTINGS].mail_configured:
        return _off(request)
    if not sessions.same_origin(request):
        logger.warning("reset form refused: foreign or missing origin")
        raise FormRejectedError(FORM_REJECTED)
    tenant: TenantConfig = request[keys.TENANT]
    form = await request.post()
    token = _field(form, "token")
    links = ResetLinks.of(request.app)
    problems = _password_problems(_field(form, "password"), _field(form, "repeat"))
    if problems:
        live = await links.peek(token, tenant.subdomain)
        if live is None:
            return _invalid(request)
        return _reset_page(request, token, kind=live.kind, errors=problems, status=422)
    link = await links.use(token, tenant.subdomain)
    if link is None:
        return _invalid(request)
    try:
        refused = await set_password(
            request, tenant, link.user_id, _field(form, "password")
        )
    except (UpstreamUnavailableError, UpstreamTimeoutError) as err:
        await links.put_back(token, link)
        logger.warning("password reset: %s", err.message)
        return _reset_page(
            request, token, kind=link.kind, error=UNAVAILABLE, status=err.status
        )
    except BaseException:
        await links.put_back(token, link)
        raise
    if refused:
        await links.put_back(token, link)
        return _reset_page(
            request,
            token,
            kind=link.kind,
            errors={"password": " ".join(refused)},
            status=422,
        )
    request[keys.USER_ID] = link.user_id
    await links.forget_user(tenant.subdomain, link.user_id)
    try:
        count = await request.app[keys.TOKENS].revoke_user(
            tenant.subdomain, link.user_id
        )
    except TokenStoreUnavailableError:
        # The backend refuses identities issued before the reset anyway.
        logger.warning("password reset: tokens not revoked (Redis unavailable)")
        count = 0
    logger.info(
        "password reset by mail link; %d token(s) revoked",
        count,
        extra={"user_id": link.user_id},
    )
    response = render(request, "reset_done.html", {})
    sessions.clear_cookie(response)
    return response


@routes.post(r"/users/{id:\d{1,18}}/invite")
async def post_invite(request: web.Request) -> web.Response:
    """Reset a user's password as the signed-in admin and mail them a link.

    The backend decides who may (PATCH /api/v3_0/users/<id>/password-reset as the
    signed-in user: audited there, the user's old password and tokens end), as
    FlexMeasures' password reset does, which mails instructions too. For a user
    just created (no password yet) this is their invitation.
    """
    user_id = int(request.match_info["id"])
    page = f"/users/{user_id}"
    user = await sessions.current_user(request)
    if user is None:
        raise web.HTTPSeeOther(
            f"/login?next={quote(page)}", headers={"Cache-Control": "no-store"}
        )
    request[keys.USER_ID] = user.user_id
    form = await request.post()
    if not sessions.csrf_valid(request, user, _field(form, "csrf_token")):
        logger.warning("invite form refused: CSRF check failed")
        raise FormRejectedError(FORM_REJECTED)
    if not request.app[keys.SETTINGS].mail_configured:
        return _off(request)
    tenant: TenantConfig = request[keys.TENANT]
    identity = identity_for(
        request,
        tenant,
        Caller(
            user_id=user.user_id,
            account_id=user.record.account_id,
            roles=user.record.roles,
            auth_time_ms=user.login_ms,
        ),
    )
    try:
        status, found = await call_backend(
            request,
            tenant,
            f"/api/v3_0/users/{user_id}",
            None,
            method="GET",
            identity=identity,
        )
        email = found.get("email")
        if status == 200 and isinstance(email, str):
            status, _ = await call_backend(
                request,
                tenant,
                f"/api/v3_0/users/{user_id}/password-reset",
                None,
                method="PATCH",
                identity=identity,
            )
    except (UpstreamUnavailableError, UpstreamTimeoutError) as err:
        return error_page(request, err.status, err.message)
    if status == 401:
        await sessions.end_session(request, user)
        raise web.HTTPSeeOther(
            f"/login?notice=expired&next={quote(page)}",
            headers={"Cache-Control": "no-store"},
        )
    if status in (403, 404):
        message = (
            "You may not reset the password of this user."
            if status == 403
            else "There is no such user."
        )
        return error_page(request, status, message)
    if status != 200 or not isinstance(email, str):
        return error_page(request, 502, "The user's password could not be reset.")
    await request.app[keys.TOKENS].revoke_user(tenant.subdomain, user_id)
    mail_password_link(request, tenant, user_id=user_id, email=email)
    logger.info("invitation to set a password", extra={"user_id": user.user_id})
    return render(
        request,
        "invite_sent.html",
        {
            "user": user,
            "email": email,
            "page": page,
            "life": lifetime_words(request.app[keys.SETTINGS].invite_link_ttl),
        },
    )
