"""Accounts and users pages: lists, details, audit logs; create, (de)activate,
password reset and roles of users.

Every page and action is a call to the tenant's v3_0 API as the signed-in user
(gateway/web/calls.py), so the API decides who may do what: its 403 becomes a clear
"not allowed", its 422 messages stand next to the form's fields. Forms carry the
session's CSRF secret; actions that lock someone out (deactivation, password reset)
ask for a confirmation first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from gateway import keys
from gateway.errors import ApiError
from gateway.reset_mail import mail_password_link, mail_reset_link
from gateway.web import render
from gateway.web.calls import (
    MAX_PAGE,
    Answer,
    PageError,
    audit_log,
    call,
    checked_form,
    error_page,
    int_param,
    page_user,
    redirect,
    refusal,
    text_field,
    unavailable,
)
from gateway.web.sessions import PageUser
from gateway.web.values import Pages, int_of, link, text_of, when

routes = web.RouteTableDef()

PER_PAGE: Final = 25
SEARCH_MAX: Final = 200  # characters of a users search
ID: Final = r"{id:\d{1,9}}"
# Roles a page offers (FlexMeasures' own); the API decides who may grant which.
ROLES: Final = {
    "account-admin": "manages the users and assets of their account",
    "consultant": "reads and helps the accounts their account consults",
    "admin-reader": "reads everything on this service",
    "admin": "may do everything on this service",
}
ADMIN_ROLES: Final = frozenset({"admin", "admin-reader"})
MANAGERS: Final = frozenset({"admin", "admin-reader", "account-admin", "consultant"})
NOTICES: Final = {
    "created": "The user has been created. They have no password yet: the user "
    "sets one through “Forgot your password?” on the login page, or an "
    "administrator sets one with `flexhost admin set-password`.",
    "invited": "The user has been created and mailed a link to set their password "
    "(it works once, for a few days; “Send a new invitation” mails another).",
    "deactivated": "The user has been deactivated and logged out everywhere; "
    "their API tokens no longer work.",
    "reactivated": "The user has been reactivated.",
    "password-reset": "The user's password has been reset: their old password, "
    "API tokens and sessions no longer work. The user sets a new password through "
    "“Forgot your password?” on the login page, or an administrator sets one with "
    "`flexhost admin set-password`.",
    "password-reset-mailed": "The user's password has been reset: their old "
    "password, API tokens and sessions no longer work. They have been mailed a link "
    "to set a new one (it works once, for a short while).",
    "roles": "The user's roles have been saved.",
    "details": "The user's details have been saved.",
}
ACTIONS: Final = {
    "deactivate": (
        "Deactivate",
        "The user can no longer log in; their API tokens and sessions stop working "
        "at once. You can reactivate them later.",
    ),
    "reactivate": ("Reactivate", "The user can log in again with their password."),
    "reset-password": (
        "Reset the password of",
        "Their current password stops working, and so do all their API tokens and "
        "sessions. Where mail is set up they are mailed a link to set a new one; "
        "else they use “Forgot your password?” on the login page (or an "
        "administrator sets one).",
    ),
}
DETAIL_FIELDS: Final = ("email", "username", "timezone")
NEW_USER_FIELDS: Final = ("email", "username")  # shown next to their inputs


# --- reading the API's JSON ---------------------------------------------------


def role_names(raw: object) -> list[str]:
    """Role names of a user or account (names, or `{"name": ...}` objects)."""
    names: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])
    return names


def _listing(answer: Answer, what: str) -> tuple[list[dict[str, Any]], int]:
    """The items and total of a paged API answer (PageError if refused)."""
    if answer.status != 200:
        raise refusal(answer, what)
    body = answer.body if isinstance(answer.body, dict) else {}
    data = body.get("data")
    total = int_of(body.get("num-records"))
    if not isinstance(data, list) or total is None:
        raise PageError(502, f"The backend gave an unreadable list of {what}.")
    return [item for item in data if isinstance(item, dict)], total


def _record(answer: Answer, what: str) -> dict[str, Any]:
    if answer.status != 200 or not isinstance(answer.body, dict):
        raise refusal(answer, what)
    return answer.body


def _members_of(account_id: int) -> str:
    """The API path listing every user of an account, deactivated ones too."""
    return "/users?" + urlencode({"account_id": account_id, "include_inactive": "true"})


# --- accounts -------------------------------------------------------------------


async def _accounts(
    request: web.Request, user: PageUser, number: int, per_page: int
) -> tuple[list[dict[str, Any]], Pages]:
    answer = await call(
        request, user, f"/accounts?{urlencode({'page': number, 'per_page': per_page})}"
    )
    items, total = _listing(answer, "accounts")
    return items, Pages(number, per_page, total)


@routes.get("/accounts")
async def get_accounts(request: web.Request) -> web.Response:
    """The accounts the user may see (admins: all; others: their own)."""
    user = await page_user(request)
    number = int_param(request, "page", 1, most=MAX_PAGE)
    try:
        items, pages = await _accounts(request, user, number, PER_PAGE)
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    rows = [
        {
            "id": int_of(item.get("id")),
            "name": text_of(item.get("name")),
            "roles": role_names(item.get("account_roles")),
            "users": int_of(item.get("user_count")),
            "assets": int_of(item.get("asset_count")),
            "consultancy": int_of(item.get("consultancy_account_id")),
        }
        for item in items
    ]
    return render(
        request,
        "accounts.html",
        {"user": user, "rows": rows, "pages": pages, "link": link},
    )


ACCOUNT_FIELDS: Final = (
    "name",
    "primary_color",
    "secondary_color",
    "logo_url",
    "consultancy_account_id",
)


@dataclass(frozen=True, slots=True)
class AccountForm:
    """An account's editable fields as entered, and the API's messages by field."""

    values: tuple[tuple[str, str], ...] = ()
    errors: tuple[tuple[str, str], ...] = ()

    def __getitem__(self, field: str) -> str:
        return dict(self.values).get(field, "")

    def error(self, field: str) -> str:
        """The message for a field ("" if none)."""
        return dict(self.errors).get(field, "")


def _account_form(account: dict[str, Any]) -> AccountForm:
    """The form filled with an account as the API shows it."""
    return AccountForm(
        tuple(
            (name, "" if account.get(name) is None else str(account.get(name)))
            for name in ACCOUNT_FIELDS
        )
    )


def _edits_account(user: PageUser, account_id: int, consultancy: int | None) -> bool:
    """Whether the page offers editing an account: as `PATCH /accounts/<id>` allows
    (admins, its members, consultants of its consultancy; the API decides)."""
    roles = set(user.record.roles)
    own = user.record.account_id
    return (
        "admin" in roles
        or account_id == own
        or ("consultant" in roles and consultancy == own)
    )


@routes.get("/accounts/" + ID)
async def get_account(request: web.Request) -> web.Response:
    """An account: its properties, users, number of assets and audit log."""
    user = await page_user(request)
    return await _account_page(request, user, int(request.match_info["id"]))


async def _account_page(
    request: web.Request,
    user: PageUser,
    account_id: int,
    *,
    form: AccountForm | None = None,
    problem: str = "",
    status: int = 200,
) -> web.Response:
    log_page = int_param(request, "log_page", 1, most=MAX_PAGE)
    try:
        account = _record(
            await call(request, user, f"/accounts/{account_id}"),
            f"account with ID {account_id}",
        )
        users_answer = await call(
            request,
            user,
            _members_of(account_id),
        )
        members = users_answer.body if users_answer.status == 200 else None
        assets = await call(
            request,
            user,
            "/assets?"
            + urlencode({"account_id": account_id, "page": 1, "per_page": 1}),
        )
        asset_count = (
            int_of(assets.body.get("num-records"))
            if assets.status == 200 and isinstance(assets.body, dict)
            else None
        )
        log = await audit_log(
            request, user, f"/accounts/{account_id}/auditlog", log_page
        )
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    users = [
        _user_row(item)
        for item in (members if isinstance(members, list) else [])
        if isinstance(item, dict)
    ]
    names = {row["id"]: row["username"] for row in users}
    for row in log.get("rows", []):  # the account log names no one: its users do
        row["actor"] = row["actor"] or names.get(row["actor_id"], "")
    consultancy = int_of(account.get("consultancy_account_id"))
    return render(
        request,
        "account.html",
        {
            "user": user,
            "account": {
                "id": account_id,
                "name": text_of(account.get("name")),
                "roles": role_names(account.get("account_roles")),
                "consultancy": consultancy,
                "primary_color": text_of(account.get("primary_color")),
                "secondary_color": text_of(account.get("secondary_color")),
                "logo_url": text_of(account.get("logo_url")),
            },
            "users": users,
            "users_refused": members is None,
            "asset_count": asset_count,
            "log": log,
            "link": link,
            "may_create": _manages(user, account_id),
            "may_edit": _edits_account(user, account_id, consultancy),
            "form": form or _account_form(account),
            "notice": ACCOUNT_NOTICES.get(request.query.get("notice", ""), ""),
            "problem": problem,
        },
        status=status,
    )


ACCOUNT_NOTICES: Final = {
    "saved": "The account has been saved.",
    "created": "The account has been created.",
}


def _account_changes(entered: AccountForm, before: AccountForm) -> dict[str, object]:
    """What the form changes, as `PATCH /accounts/<id>` takes it.

    Only changed fields are sent (a member who renames the account does not
    "set" its consultancy, which needs more rights); an emptied field is null,
    an emptied name is sent as it is (the API names the problem), and so is an
    account ID that is not a number.
    """
    changes: dict[str, object] = {}
    for name in ACCOUNT_FIELDS:
        value = entered[name]
        if value == before[name]:
            continue
        if name == "name":
            changes[name] = value
        elif not value:
            changes[name] = None
        elif name == "consultancy_account_id" and value.isascii() and value.isdigit():
            changes[name] = int(value)
        else:
            changes[name] = value
    return changes


@routes.post("/accounts/" + ID)
async def post_account(request: web.Request) -> web.Response:
    """Edit an account (`PATCH /accounts/<id>`); the API's messages by field."""
    user = await page_user(request)
    form = await checked_form(request, user)
    account_id = int(request.match_info["id"])
    entered = AccountForm(
        tuple((name, text_field(form, name, 300).strip()) for name in ACCOUNT_FIELDS)
    )
    try:
        current = _record(
            await call(request, user, f"/accounts/{account_id}"),
            f"account with ID {account_id}",
        )
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    changes = _account_changes(entered, _account_form(current))
    if not changes:
        return redirect(f"/accounts/{account_id}?notice=saved")
    try:
        answer = await call(
            request, user, f"/accounts/{account_id}", method="PATCH", body=changes
        )
    except ApiError as err:
        return await _account_page(
            request,
            user,
            account_id,
            form=entered,
            problem=err.message,
            status=err.status,
        )
    if answer.ok:
        return redirect(f"/accounts/{account_id}?notice=saved")
    fields = answer.field_errors()
    shown = tuple((k, v) for k, v in fields.items() if k in ACCOUNT_FIELDS)
    if answer.status == 403:
        problem = " ".join(
            filter(
                None,
                (
                    "You may not make this change: the API refused (403).",
                    answer.message(),
                ),
            )
        )
    else:
        problem = "" if shown else answer.message()
    return await _account_page(
        request,
        user,
        account_id,
        form=AccountForm(entered.values, shown),
        problem=problem,
        status=answer.status,
    )


# --- users ------------------------------------------------------------------------


def _user_row(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": int_of(item.get("id")),
        "email": text_of(item.get("email")),
        "username": text_of(item.get("username")),
        "active": item.get("active") is True,
        "timezone": text_of(item.get("timezone")),
        "roles": role_names(item.get("flexmeasures_roles")),
        "last_login": when(item.get("last_login_at")),
        "last_seen": when(item.get("last_seen_at")),
    }


def _manages(user: PageUser, account_id: int) -> bool:
    """Whether the page offers user management in an account (the API decides)."""
    roles = set(user.record.roles)
    return "admin" in roles or (
        account_id == user.record.account_id
        and bool(roles & {"account-admin", "consultant"})
    )


@routes.get("/users")
async def get_users(request: web.Request) -> web.Response:
    """The users of an account (the user's own; admins may choose another)."""
    user = await page_user(request)
    account_id = int_param(request, "account_id", user.record.account_id, most=10**9)
    include_inactive = request.query.get("include_inactive") == "on"
    search = request.query.get("q", "").strip()[:SEARCH_MAX]
    number = int_param(request, "page", 1, most=MAX_PAGE)
    query: dict[str, object] = {
        "account_id": account_id,
        "page": number,
        "per_page": PER_PAGE,
    }
    if include_inactive:
        query["include_inactive"] = "true"
    if search:
        query["filter"] = search  # the API's search in names and emails
    try:
        answer = await call(request, user, f"/users?{urlencode(query)}")
        items, total = _listing(answer, f"users of account {account_id}")
        found = (
            int_of(answer.body.get("filtered-records"))
            if search and isinstance(answer.body, dict)
            else None
        )
        accounts: list[dict[str, Any]] = []
        if set(user.record.roles) & MANAGERS - {"account-admin"}:
            accounts, _ = await _accounts(request, user, 1, 1000)
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    account_name = next(
        (
            text_of(item["account"].get("name"))
            for item in items
            if isinstance(item.get("account"), dict)
        ),
        "",
    )
    choices = [(int_of(a.get("id")), text_of(a.get("name"))) for a in accounts]
    if not account_name:
        account_name = next((n for i, n in choices if i == account_id), "")
    return render(
        request,
        "users.html",
        {
            "user": user,
            "rows": [_user_row(item) for item in items],
            "pages": Pages(number, PER_PAGE, total if found is None else found),
            "total": total,
            "search": search,
            "account_id": account_id,
            "account_name": account_name,
            "accounts": choices if len(choices) > 1 else [],
            "include_inactive": include_inactive,
            "link": link,
            "may_create": _manages(user, account_id),
        },
    )


@dataclass(frozen=True, slots=True)
class NewUserForm:
    """What was entered in the new-user form, and the API's messages by field."""

    email: str = ""
    username: str = ""
    roles: tuple[str, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()

    def error(self, field: str) -> str:
        """The message for a field ("" if none)."""
        return dict(self.errors).get(field, "")


def grantable(user: PageUser) -> list[str]:
    """The roles a page offers this user to give (the API decides in the end)."""
    held = set(user.record.roles)
    if "admin" in held:
        return list(ROLES)
    return [role for role in ROLES if role in held and role not in ADMIN_ROLES]


def _new_user_page(
    request: web.Request,
    user: PageUser,
    account_id: int,
    form: NewUserForm,
    *,
    problem: str = "",
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "user_new.html",
        {
            "user": user,
            "account_id": account_id,
            "form": form,
            "problem": problem,
            "roles": {role: ROLES[role] for role in grantable(user)},
        },
        status=status,
    )


async def welcome(request: web.Request, user_id: int, email: str) -> str:
    """What follows the creation of a user; the key of the notice then shown.

    The new user has no usable password: where mail is set up they are mailed a
    one-time link to set one (the invitation), else the notice tells how they get
    one.
    """
    if email and mail_password_link(
        request, request[keys.TENANT], user_id=user_id, email=email
    ):
        return "invited"
    return "created"


@routes.get("/users/new")
async def get_new_user(request: web.Request) -> web.Response:
    """The form for a new user of an account (default: the user's own)."""
    user = await page_user(request)
    account_id = int_param(request, "account_id", user.record.account_id, most=10**9)
    return _new_user_page(request, user, account_id, NewUserForm())


@routes.post("/users/new")
async def post_new_user(request: web.Request) -> web.Response:
    """Create the user with the API (`POST /users`); its messages by field."""
    user = await page_user(request)
    form = await checked_form(request, user)
    raw_account = text_field(form, "account_id", 12)
    account_id = (
        int(raw_account)
        if raw_account.isascii() and raw_account.isdigit()
        else user.record.account_id
    )
    entered = NewUserForm(
        email=text_field(form, "email", 300).strip(),
        username=text_field(form, "username", 300).strip(),
        roles=tuple(
            role
            for role in form.getall("roles", [])
            if isinstance(role, str) and role in ROLES
        ),
    )
    errors = []
    if not entered.email:
        errors.append(("email", "Please enter the user's email address."))
    if not entered.username:
        errors.append(("username", "Please enter a name for the user."))
    if errors:
        return _new_user_page(
            request,
            user,
            account_id,
            NewUserForm(entered.email, entered.username, entered.roles, tuple(errors)),
            status=422,
        )
    body: dict[str, Any] = {
        "email": entered.email,
        "username": entered.username,
        "account_id": account_id,
    }
    if entered.roles:
        body["flexmeasures_roles"] = list(entered.roles)
    try:
        answer = await call(request, user, "/users", method="POST", body=body)
    except ApiError as err:
        return _new_user_page(
            request, user, account_id, entered, problem=err.message, status=err.status
        )
    created = answer.body if isinstance(answer.body, dict) else {}
    new_id = int_of(created.get("id"))
    if answer.status == 201 and new_id is not None:
        notice = await welcome(request, new_id, text_of(created.get("email")))
        return redirect(f"/users/{new_id}?notice={notice}")
    if answer.status == 422:
        fields = answer.field_errors()
        shown = tuple(
            (name, text)
            for name, text in fields.items()
            if name in ("email", "username")
        )
        rest = " ".join(
            f"{name}: {text}"
            for name, text in fields.items()
            if name not in dict(shown)
        )
        return _new_user_page(
            request,
            user,
            account_id,
            NewUserForm(entered.email, entered.username, entered.roles, shown),
            problem=rest or ("" if shown else answer.message()),
            status=422,
        )
    if answer.status == 403:
        problem = (
            "You are not allowed to create this user: the API refused (403). "
            "Account-admins create users in their own account, and nobody gives a "
            "role they do not hold."
        )
    elif answer.status == 404:
        problem = f"There is no account with ID {account_id}."
    else:
        problem = answer.message() or "The user could not be created."
    return _new_user_page(
        request, user, account_id, entered, problem=problem, status=answer.status
    )


async def _user_details(
    request: web.Request, user: PageUser, user_id: int
) -> dict[str, Any]:
    """The user as the API shows them, with role names (from their account's list)."""
    found = _record(
        await call(request, user, f"/users/{user_id}"), f"user with ID {user_id}"
    )
    row = _user_row(found)
    account_id = int_of(found.get("account_id"))
    row["account_id"] = account_id
    row["account_name"] = ""
    role_ids = found.get("flexmeasures_roles")
    row["roles"] = []
    if account_id is not None:
        listing = await call(
            request,
            user,
            _members_of(account_id),
        )
        for item in listing.body if isinstance(listing.body, list) else []:
            if isinstance(item, dict) and item.get("id") == user_id:
                row["roles"] = role_names(item.get("flexmeasures_roles"))
                account = item.get("account")
                if isinstance(account, dict):
                    row["account_name"] = text_of(account.get("name"))
    if not row["roles"] and isinstance(role_ids, list) and role_ids:
        row["roles"] = [f"role {r}" for r in role_ids]
    return row


async def _user_page(
    request: web.Request,
    user: PageUser,
    user_id: int,
    *,
    problem: str = "",
    status: int = 200,
    details: DetailsForm | None = None,
) -> web.Response:
    log_page = int_param(request, "log_page", 1, most=MAX_PAGE)
    try:
        shown = await _user_details(request, user, user_id)
        log = await audit_log(request, user, f"/users/{user_id}/auditlog", log_page)
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    account_id = shown["account_id"]
    manages = account_id is not None and _manages(user, account_id)
    offered = grantable(user)
    return render(
        request,
        "user.html",
        {
            "user": user,
            "shown": shown,
            "log": log,
            "link": link,
            "notice": NOTICES.get(request.query.get("notice", ""), ""),
            "problem": problem,
            "itself": user_id == user.user_id,
            "manages": manages,
            "mail": request.app[keys.SETTINGS].mail_configured,
            "roles": {role: ROLES[role] for role in offered},
            "kept_roles": [r for r in shown["roles"] if r not in offered],
            "details": details
            or DetailsForm(shown["email"], shown["username"], shown["timezone"]),
        },
        status=status,
    )


@dataclass(frozen=True, slots=True)
class DetailsForm:
    """A user's email, name and time zone as entered, and the API's messages."""

    email: str = ""
    username: str = ""
    timezone: str = ""
    errors: tuple[tuple[str, str], ...] = ()

    def error(self, field: str) -> str:
        """The message for a field ("" if none)."""
        return dict(self.errors).get(field, "")


@routes.post("/users/" + ID + "/details")
async def post_user_details(request: web.Request) -> web.Response:
    """Change a user's email, name or time zone (`PATCH /users/<id>`)."""
    user = await page_user(request)
    form = await checked_form(request, user)
    user_id = int(request.match_info["id"])
    email, username, timezone = (
        text_field(form, name, 300).strip() for name in DETAIL_FIELDS
    )
    entered = DetailsForm(email, username, timezone)
    given = {"email": email, "username": username, "timezone": timezone}
    body = {name: value for name, value in given.items() if value}
    try:
        answer = await call(
            request, user, f"/users/{user_id}", method="PATCH", body=body
        )
    except ApiError as err:
        return await _user_page(
            request,
            user,
            user_id,
            problem=err.message,
            status=err.status,
            details=entered,
        )
    if answer.ok:
        return redirect(f"/users/{user_id}?notice=details")
    fields = answer.field_errors()
    if answer.status == 400 and not fields:  # FlexMeasures' 400: a taken email
        fields = {"email": answer.message()}
    shown = tuple((k, v) for k, v in fields.items() if k in DETAIL_FIELDS)
    if answer.status == 403:
        problem = "You are not allowed to edit this user: the API refused (403)."
    else:
        problem = "" if shown else answer.message()
    return await _user_page(
        request,
        user,
        user_id,
        problem=problem,
        status=answer.status,
        details=DetailsForm(entered.email, entered.username, entered.timezone, shown),
    )


@routes.get("/users/" + ID)
async def get_user(request: web.Request) -> web.Response:
    """A user: properties, roles, active flag, actions and audit log."""
    user = await page_user(request)
    return await _user_page(request, user, int(request.match_info["id"]))


@routes.get("/users/" + ID + "/{action:deactivate|reactivate|reset-password}")
async def get_user_action(request: web.Request) -> web.Response:
    """Confirm an action on a user before it is done."""
    user = await page_user(request)
    user_id = int(request.match_info["id"])
    action = request.match_info["action"]
    try:
        shown = await _user_details(request, user, user_id)
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    verb, consequence = ACTIONS[action]
    return render(
        request,
        "user_confirm.html",
        {
            "user": user,
            "shown": shown,
            "action": action,
            "verb": verb,
            "consequence": consequence,
        },
    )


def _action_problem(answer: Answer, verb: str) -> str:
    if answer.status == 403:
        return (
            f"You are not allowed to {verb.lower()} this user: the API refused (403)."
            " Nobody changes their own active flag or roles, nor a user holding a "
            "role they do not hold themselves."
        )
    return answer.message() or f"The API answered {answer.status}."


@routes.post("/users/" + ID + "/{action:deactivate|reactivate|reset-password}")
async def post_user_action(request: web.Request) -> web.Response:
    """Deactivate, reactivate or reset the password of a user (confirmed)."""
    user = await page_user(request)
    await checked_form(request, user)
    user_id = int(request.match_info["id"])
    action = request.match_info["action"]
    if action == "reset-password":
        target, body, notice = (
            f"/users/{user_id}/password-reset",
            None,
            "password-reset",
        )
    else:
        active = action == "reactivate"
        target, body = f"/users/{user_id}", {"active": active}
        notice = "reactivated" if active else "deactivated"
    try:
        answer = await call(request, user, target, method="PATCH", body=body)
    except ApiError as err:
        return await _user_page(
            request, user, user_id, problem=err.message, status=err.status
        )
    if answer.ok:
        if action == "reset-password" and mail_reset_link(
            request, request[keys.TENANT], user_id
        ):
            notice = "password-reset-mailed"  # as the API's reset does
        return redirect(f"/users/{user_id}?notice={notice}")
    return await _user_page(
        request,
        user,
        user_id,
        problem=_action_problem(answer, ACTIONS[action][0]),
        status=answer.status,
    )


@routes.post("/users/" + ID + "/roles")
async def post_user_roles(request: web.Request) -> web.Response:
    """Set a user's roles (`PATCH /users/<id>` with `flexmeasures_roles`)."""
    user = await page_user(request)
    form = await checked_form(request, user)
    user_id = int(request.match_info["id"])
    wanted = sorted(
        {
            role[:100]
            for role in form.getall("roles", [])
            if isinstance(role, str) and role.strip()
        }
    )
    try:
        answer = await call(
            request,
            user,
            f"/users/{user_id}",
            method="PATCH",
            body={"flexmeasures_roles": wanted},
        )
    except ApiError as err:
        return await _user_page(
            request, user, user_id, problem=err.message, status=err.status
        )
    if answer.ok:
        return redirect(f"/users/{user_id}?notice=roles")
    if answer.status == 403:
        problem = (
            "You are not allowed to give these roles: the API refused (403). "
            "Admins and the account-admins of the user's account edit roles; nobody "
            "gives a role they do not hold, nor changes their own roles."
        )
    else:
        problem = answer.message() or f"The API answered {answer.status}."
    return await _user_page(
        request, user, user_id, problem=problem, status=answer.status
    )
