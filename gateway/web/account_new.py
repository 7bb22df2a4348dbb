"""Create an account (FlexMeasures' /accounts/new): a name, and optionally the
consultancy account that will consult it (FlexMeasures' "Add client account").

The form is offered to administrators and consultants (tenant_service's rule for
POST /api/v3_0/accounts: admins, and consultants of a consultancy account); the API
decides, and its 403 and 422 messages are shown on the form, with what was typed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from gateway.errors import ApiError
from gateway.web import render
from gateway.web.calls import (
    PageError,
    call,
    checked_form,
    error_page,
    page_user,
    redirect,
    text_field,
    unavailable,
)
from gateway.web.sessions import PageUser
from gateway.web.values import int_of, text_of

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

CREATORS: Final = frozenset({"admin", "consultant"})
# The consultancy choices list at most this many accounts (one API page).
MAX_CHOICES: Final = 200
WHO: Final = (
    "Creating accounts needs an administrator, or a consultant of a consultancy "
    "account (for its client accounts)."
)
NOT_ALLOWED: Final = f"You may not create accounts. {WHO}"


@dataclass(slots=True)
class AccountForm:
    """What the form shows: values as typed, the API's messages."""

    name: str = ""
    consultancy: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    problem: str = ""

    def error(self, name: str) -> str:
        """The API's message about a field ("" if none)."""
        return self.errors.get(name, "")


def may_create_accounts(user: PageUser) -> bool:
    """Whether the form is offered (the API decides on the POST)."""
    return bool(CREATORS & set(user.record.roles))


async def _choices(request: web.Request, user: PageUser) -> list[dict[str, Any]]:
    """Accounts that may consult the new one (those the user may see)."""
    query = urlencode({"page": 1, "per_page": MAX_CHOICES})
    answer = await call(request, user, f"/accounts?{query}")
    body = answer.body if isinstance(answer.body, dict) else {}
    data = body.get("data") if answer.status == 200 else None
    return [
        {"id": int_of(item.get("id")), "name": text_of(item.get("name"))}
        for item in (data if isinstance(data, list) else [])
        if isinstance(item, dict) and int_of(item.get("id")) is not None
    ]


async def _form_page(
    request: web.Request, user: PageUser, form: AccountForm, status: int = 200
) -> web.Response:
    try:
        choices = await _choices(request, user)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    return render(
        request,
        "account_new.html",
        {"user": user, "form": form, "choices": choices},
        status=status,
    )


@routes.get("/accounts/new")
async def get_new_account(request: web.Request) -> web.Response:
    """The form (?consultancy=<id>: a client account of that consultancy)."""
    user = await page_user(request)
    if not may_create_accounts(user):
        return error_page(request, user, PageError(403, NOT_ALLOWED))
    consultancy = request.query.get("consultancy", "")
    form = AccountForm(consultancy=consultancy if consultancy.isdecimal() else "")
    return await _form_page(request, user, form)


@routes.post("/accounts/new")
async def post_new_account(request: web.Request) -> web.Response:
    """Create the account with the API; back to the form with its messages."""
    user = await page_user(request)
    data = await checked_form(request, user)
    form = AccountForm(
        name=text_field(data, "name", 200),
        consultancy=text_field(data, "consultancy_account_id", 30).strip(),
    )
    body: dict[str, Any] = {"name": form.name}
    if form.consultancy:
        body["consultancy_account_id"] = (
            int(form.consultancy) if form.consultancy.isdecimal() else form.consultancy
        )
    try:
        answer = await call(request, user, "/accounts", method="POST", body=body)
    except ApiError as err:
        form.problem = err.message
        return await _form_page(request, user, form, err.status)
    created = answer.body if isinstance(answer.body, dict) else {}
    account_id = int_of(created.get("id"))
    if answer.status == 201 and account_id is not None:
        logger.info(
            "account %d created on a page", account_id, extra={"user_id": user.user_id}
        )
        return redirect(f"/accounts/{account_id}?notice=created")
    if answer.status == 422:
        form.errors = answer.field_errors()
        shown = {"name", "consultancy_account_id"}
        others = " ".join(
            f"{name}: {text}" for name, text in form.errors.items() if name not in shown
        )
        form.problem = (
            "Please correct the fields marked below. " + others
            if form.errors
            else answer.message() or "The API refused these values."
        ).strip()
        return await _form_page(request, user, form, 422)
    if answer.status == 403:
        form.problem = (
            "You may not create this account: "
            f"{answer.message() or 'the API refused'} (403 Forbidden). {WHO}"
        )
        return await _form_page(request, user, form, 403)
    form.problem = answer.message() or f"The API answered {answer.status}."
    return await _form_page(request, user, form, 502)
