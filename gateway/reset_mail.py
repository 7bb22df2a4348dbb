"""Mails of one-time password links: "Forgot your password?", a password reset
through the API or a page, an admin's invitation to set a password.

The API (`PATCH /api/v3_0/users/<id>/password-reset`) and the pages
(gateway/web/reset.py, gateway/web/users.py) send the same mails from here. A mail
goes out in a task after the answer, kept until it ends (`mail_ctx` lets those
under way finish at shutdown); a failure is logged, never the link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import quote

from aiohttp import web

from contract.tenants_file import TenantConfig

from . import keys
from .errors import ApiError
from .mail import MailError, build_message, send_mail
from .reset import Account, ResetLinks, find_user, user_by_id
from .words import lifetime_words

logger = logging.getLogger(__name__)


async def mail_ctx(app: web.Application) -> AsyncIterator[None]:
    """At shutdown, let reset mails under way finish (before HTTP and Redis close)."""
    yield
    tasks = app[keys.SETTLING]
    if tasks:
        pending = set(tasks)
        await asyncio.wait(pending, timeout=app[keys.SETTINGS].smtp_timeout)


def _keep(app: web.Application, work: asyncio.Task[None]) -> None:
    """Keep a mail task until it ends (awaited at shutdown, before Redis closes)."""
    tasks = app[keys.SETTLING]
    tasks.add(work)
    work.add_done_callback(tasks.discard)


def _mail_text(tenant: TenantConfig, link: str, ttl: int, kind: str) -> str:
    if kind == "invite":
        opening = (
            f"an administrator of {tenant.name} invites you to set the password of "
            f"your account there."
        )
    else:
        opening = (
            f"someone (hopefully you) asked to reset the password of your account "
            f"at {tenant.name}."
        )
    return (
        f"Hello,\n\n{opening}\n\n"
        f"To choose a password, open this link within {lifetime_words(ttl)}:\n\n"
        f"{link}\n\n"
        f"The link works once. Setting a password ends all your sessions and "
        f"revokes your API tokens.\n\n"
        f"If you did not expect this, ignore this mail.\n"
    )


async def _deliver(
    request: web.Request,
    tenant: TenantConfig,
    *,
    user_id: int,
    email: str,
    origin: str,
    kind: str,
) -> None:
    """Make a link and mail it (ApiError, MailError if that fails)."""
    settings = request.app[keys.SETTINGS]
    ttl = settings.invite_link_ttl if kind == "invite" else settings.reset_link_ttl
    token = await ResetLinks.of(request.app).create(
        tenant.subdomain, user_id, ttl, kind
    )
    link = f"{origin}/reset-password?token={quote(token)}"
    subject = (
        f"Set your password at {tenant.name}"
        if kind == "invite"
        else f"Reset your password at {tenant.name}"
    )
    message = build_message(
        sender=tenant.mail_from or settings.mail_from,
        recipient=email,
        subject=subject,
        text=_mail_text(tenant, link, ttl, kind),
    )
    await send_mail(settings, message)
    logger.info("password %s mail sent", kind, extra={"user_id": user_id})


async def _guarded(work: Coroutine[Any, Any, None], kind: str) -> None:
    """Run a mail task; failures are logged (never the link)."""
    try:
        await work
    except (ApiError, MailError) as err:
        logger.warning("password %s mail not sent: %s", kind, err)
    except Exception:  # a detached task: nobody else would see it
        logger.exception("password %s mail failed", kind)


async def _send_link(
    request: web.Request, tenant: TenantConfig, email: str, origin: str
) -> None:
    """Look the address up and mail a link if it is an active user's."""
    account = await find_user(request, tenant, email)
    if account is None or not account.active:
        logger.info("password reset asked for an unknown or inactive address")
        return
    await _deliver_reset(request, tenant, account, origin)


async def _deliver_reset(
    request: web.Request, tenant: TenantConfig, account: Account, origin: str
) -> None:
    """Mail a found user the reset link (to the address the backend has)."""
    await _deliver(
        request,
        tenant,
        user_id=account.user_id,
        email=account.email,
        origin=origin,
        kind="reset",
    )


def _origin(request: web.Request) -> str:
    return f"{request[keys.SCHEME]}://{request[keys.PUBLIC_AUTHORITY]}"


def mail_password_link(
    request: web.Request, tenant: TenantConfig, *, user_id: int, email: str
) -> bool:
    """Mail a user an invitation to set their password (after the answer).

    For pages where an admin creates a user or resets a password, once the
    backend allowed it. False if mail is not set up (nothing is sent).
    """
    if not request.app[keys.SETTINGS].mail_configured:
        return False
    work = _deliver(
        request,
        tenant,
        user_id=user_id,
        email=email,
        origin=_origin(request),
        kind="invite",
    )
    _keep(request.app, asyncio.create_task(_guarded(work, "invite")))
    return True


async def _send_reset_of(
    request: web.Request, tenant: TenantConfig, user_id: int, origin: str
) -> None:
    """Look the user up by id and mail them a reset link if they are active."""
    account = await user_by_id(request, tenant, user_id)
    if account is None or not account.active:
        logger.info(
            "password reset mail not sent: unknown or inactive user",
            extra={"user_id": user_id},
        )
        return
    await _deliver_reset(request, tenant, account, origin)


def mail_reset_link(request: web.Request, tenant: TenantConfig, user_id: int) -> bool:
    """Mail a user whose password was just reset a reset link (after the answer).

    For `PATCH /api/v3_0/users/<id>/password-reset` answered 200 (the backend
    decided who may): the address is the backend's (`GET /internal/users/<id>`),
    never the client's; the mail is the one "Forgot your password?" sends. False
    if mail is not set up (nothing is sent). A failure is logged, never raised.
    """
    if not request.app[keys.SETTINGS].mail_configured:
        return False
    work = _send_reset_of(request, tenant, user_id, _origin(request))
    _keep(request.app, asyncio.create_task(_guarded(work, "reset")))
    return True


def mail_link_if_known(request: web.Request, tenant: TenantConfig, email: str) -> bool:
    """Mail a reset link to `email` if it is an active user's (after the answer).

    For "Forgot your password?": the lookup and the mail run after the answer, so
    neither its words nor its time tell whether the address is known. False if
    mail is not set up (nothing is sent).
    """
    if not request.app[keys.SETTINGS].mail_configured:
        return False
    work = _send_link(request, tenant, email, _origin(request))
    _keep(request.app, asyncio.create_task(_guarded(work, "reset")))
    return True
