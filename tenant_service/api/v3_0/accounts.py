"""Accounts API (FlexMeasures /api/v3_0/accounts)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from tenant_service import keys
from tenant_service.api import (
    MISSING,
    NOT_INTEGER,
    NOT_NULL,
    NOT_STRING,
    UNKNOWN_FIELD,
    FieldError,
    parse_page,
    parse_path_id,
)
from tenant_service.api.v3_0 import (
    PREFIX,
    actor,
    principal,
    read_json_object,
    respond,
    writing,
)
from tenant_service.errors import (
    ForbiddenError,
    InternalError,
    NotFoundError,
    ValidationError,
)
from tenant_service.identity import ACCOUNT_ADMIN, CONSULTANT, Principal
from tenant_service.schemas.fields import json_text
from tenant_service.store import accounts as account_store
from tenant_service.store.accounts import AccountRecord
from tenant_service.store.tables import CONSULTANCY

routes = web.RouteTableDef()

COLOR_RE: Final = re.compile(r"#?([A-Fa-f0-9]{6}|[A-Fa-f0-9]{3})")
URL_RE: Final = re.compile(
    r"(https?|ftp)://"
    r"((([A-Za-z0-9-]+\.)+[A-Za-z]{2,6})|(\d{1,3}\.){3}\d{1,3})"
    r"(:\d+)?"
    r"(/([A-Za-z0-9$_.+!*'(),;?&=-]|%[0-9A-Fa-f]{2})*)*"
    r"(\?([A-Za-z0-9$_.+!*'(),;?&=-]|%[0-9A-Fa-f]{2})*)?"
)
# FlexMeasures' AccountPatchSchema (AccountCreateSchema takes name and
# consultancy_account_id; we accept the rest on creation too).
FIELDS: Final = (
    "name",
    "primary_color",
    "secondary_color",
    "logo_url",
    "consultancy_account_id",
    "plan_id",
    "attributes",
    "account_roles",
)


def dump_account(account: AccountRecord) -> dict[str, Any]:
    """FlexMeasures' AccountSchema dump (attributes as a JSON string, as FM does).

    There are no plans on this server: `plan_id` is always null.
    """
    return {
        "id": account.id,
        "name": account.name,
        "primary_color": account.primary_color,
        "secondary_color": account.secondary_color,
        "logo_url": account.logo_url,
        "attributes": account.attributes,
        "account_roles": [{"id": i, "name": n} for i, n in account.account_roles],
        "consultancy_account_id": account.consultancy_account_id,
        "plan_id": None,
    }


@routes.get(PREFIX + "/accounts")
async def get_accounts(request: web.Request) -> web.Response:
    """List all accounts accessible to the current user."""
    who = principal(request)
    page = parse_page(request.query)
    visible = None if who.reads_all else (who.account_id, CONSULTANT in who.roles)
    conn = request[keys.CONN]
    records, total = await account_store.list_accounts(
        conn, visible_to=visible, offset=page.offset, limit=page.limit
    )
    if page.number is None:
        return respond([dump_account(account) for account in records])
    data = []
    for account in records:
        user_count, asset_count = await account_store.count_members(conn, account.id)
        data.append(
            {
                **dump_account(account),
                "user_count": user_count,
                "asset_count": asset_count,
            }
        )
    return respond({"data": data, "num-records": total, "filtered-records": total})


async def load_account(request: web.Request) -> AccountRecord:
    account_id = parse_path_id(request.match_info["id"])
    account = await account_store.get_account(request[keys.CONN], account_id)
    if account is None:
        raise NotFoundError(f"Account {account_id} not found")
    return account


@routes.get(PREFIX + "/accounts/{id}")
async def get_account(request: web.Request) -> web.Response:
    """Fetch a given account."""
    account = await load_account(request)
    if not principal(request).may_read_account(
        account.id, account.consultancy_account_id
    ):
        raise ForbiddenError()
    return respond(dump_account(account))


@dataclass(slots=True)
class AccountInput:
    """Validated fields of an account body; only the given ones are set."""

    values: dict[str, Any] = field(default_factory=dict)
    role_ids: list[int] | None = None
    plan_given: bool = False


def _optional_string(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(NOT_STRING)
    return value


def _color(value: object) -> str | None:
    text = _optional_string(value)
    if text is not None and not COLOR_RE.fullmatch(text):
        shown = text if text.startswith("#") else f"#{text}"
        raise FieldError(f"{shown} is not a valid hex color code.")
    return text


def _url(value: object) -> str | None:
    text = _optional_string(value)
    if text is None:
        return None
    if not URL_RE.match(text):
        raise FieldError(f"'{text}' is not a valid URL.")
    if len(text) > 255:
        raise FieldError(
            "provided logo-url is too long. Maximum length is 255 characters."
        )
    return text


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(NOT_INTEGER)
    if not 0 <= value <= 2**31 - 1:
        raise FieldError("Must be a valid account id.")
    return value


def _role_ids(value: object, errors: dict[str, Any]) -> list[int]:
    """A list of integer ids; marshmallow's per-index errors otherwise."""
    if not isinstance(value, list):
        raise FieldError("Not a valid list.")
    bad = {
        str(i): [NOT_INTEGER]
        for i, item in enumerate(value)
        if isinstance(item, bool) or not isinstance(item, int)
    }
    if bad:
        errors["account_roles"] = bad
    return [item for item in value if isinstance(item, int)]


def parse_account_body(data: dict[str, Any], *, creating: bool) -> AccountInput:
    """Validate an account body; one 422 naming each bad field."""
    errors: dict[str, list[str]] = {}
    parsed = AccountInput()
    values = parsed.values
    for key, value in data.items():
        try:
            if key not in FIELDS:
                raise FieldError(UNKNOWN_FIELD)
            if key == "name":
                if value is None:
                    raise FieldError(NOT_NULL)
                if not isinstance(value, str):
                    raise FieldError(NOT_STRING)
                if not value.strip():
                    raise FieldError("Account name cannot be empty.")
                if len(value) > 100:
                    raise FieldError("Longer than maximum length 100.")
                values["name"] = value
            elif key in ("primary_color", "secondary_color"):
                values[key] = _color(value)
            elif key == "logo_url":
                values[key] = _url(value)
            elif key == "consultancy_account_id":
                values[key] = _optional_int(value)
            elif key == "plan_id":
                if _optional_int(value) is not None:
                    raise FieldError(f"No plan found with id {value}.")
                parsed.plan_given = True
            elif key == "attributes":
                # an object (FlexMeasures takes any JSON value; attributes are
                # key-value pairs everywhere else), or its JSON text
                values[key] = json_text(value, kind=dict)
            else:
                parsed.role_ids = _role_ids(value, errors)
        except FieldError as err:
            errors[key] = [str(err)]
    if creating and "name" not in data:
        errors["name"] = [MISSING]
    if errors:
        raise ValidationError("json", errors)
    return parsed


async def _check_consultancy(
    request: web.Request, who: Principal, value: int | None
) -> None:
    """FlexMeasures' rules for setting consultancy_account_id (403 or 422)."""
    conn = request[keys.CONN]
    if not who.is_admin:
        own = await account_store.get_account(conn, who.account_id)
        if own is None or CONSULTANCY not in {n for _, n in own.account_roles}:
            raise ForbiddenError(
                f"Your account must have the '{CONSULTANCY}' role to be set as a "
                "consultancy account."
            )
        if not who.roles & {CONSULTANT, ACCOUNT_ADMIN}:
            raise ForbiddenError(
                f"You must have the '{CONSULTANT}' or '{ACCOUNT_ADMIN}' role to set "
                "a consultancy account."
            )
    if value is None:
        return
    if await account_store.get_account(conn, value) is None:
        raise ValidationError(
            "json", {"consultancy_account_id": [f"No account found with id {value}."]}
        )
    if not who.is_admin and value != who.account_id:
        raise ForbiddenError(
            "You can only set consultancy_account_id to your own account."
        )


async def _check_roles(request: web.Request, who: Principal, ids: list[int]) -> None:
    """Account roles are changed by admins only; unknown ids are a 422."""
    if not who.is_admin:
        # FlexMeasures lets any member change them; that would let any user give
        # their account the Consultancy role (see openapi.yaml).
        raise ForbiddenError("Only admins may change the roles of an account.")
    found = await account_store.account_roles_by_id(request[keys.CONN], ids)
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise ValidationError(
            "json", {"_schema": [f"Invalid account role ID(s): {unknown}."]}
        )


def _may_create_accounts(who: Principal, own: AccountRecord | None) -> bool:
    """Admins, and consultants of an account with the Consultancy role."""
    if who.is_admin:
        return True
    return (
        CONSULTANT in who.roles
        and own is not None
        and CONSULTANCY in {n for _, n in own.account_roles}
    )


def _duplicate(name: str) -> ValidationError:
    return ValidationError(
        "json", {"name": [f"An account with name '{name}' already exists."]}
    )


@routes.post(PREFIX + "/accounts")
async def post_account(request: web.Request) -> web.Response:
    """Create an account."""
    who = principal(request)
    # Who may create accounts at all is known before the body: checked first, so
    # a body is never read for a caller who may not act (#10). FlexMeasures
    # validates the body first (a 422 before the 403).
    own = await account_store.get_account(request[keys.CONN], who.account_id)
    if not _may_create_accounts(who, own):
        raise ForbiddenError()
    parsed = parse_account_body(await read_json_object(request), creating=True)
    conn = await writing(request)
    values = parsed.values
    name = values["name"]
    if await account_store.find_account_by_name(conn, name) is not None:
        raise _duplicate(name)
    if "consultancy_account_id" in values:
        await _check_consultancy(request, who, values["consultancy_account_id"])
    if parsed.plan_given and not who.is_admin:
        raise ForbiddenError(
            "Only platform administrators may change the plan an organisation is on."
        )
    if values.get("consultancy_account_id") is None and not who.is_admin:
        values["consultancy_account_id"] = who.account_id  # FlexMeasures' default
    if parsed.role_ids is not None:
        await _check_roles(request, who, parsed.role_ids)
    try:
        account_id = await account_store.create_account(
            conn,
            name=name,
            consultancy_account_id=values.get("consultancy_account_id"),
            actor=actor(request),
        )
    except IntegrityError as err:
        raise _duplicate(name) from err
    rest = {k: v for k, v in values.items() if k != "name"}
    created = await account_store.get_account(conn, account_id)
    if created is not None and (rest or parsed.role_ids):
        await account_store.update_account(
            conn, created, rest, role_ids=parsed.role_ids, actor=actor(request)
        )
        created = await account_store.get_account(conn, account_id)
    if created is None:  # inserted just above, in this transaction
        raise InternalError()
    await conn.commit()
    return respond(dump_account(created), status=201)


def _may_update_account(who: Principal, account: AccountRecord) -> bool:
    """Members, consultants of its consultancy and admins (FlexMeasures' ACL)."""
    return (
        who.is_admin
        or account.id == who.account_id
        or who.consults(account.consultancy_account_id)
    )


@routes.patch(PREFIX + "/accounts/{id}")
async def patch_account(request: web.Request) -> web.Response:
    """Update an account."""
    who = principal(request)
    account = await load_account(request)
    if not _may_update_account(who, account):
        raise ForbiddenError()
    parsed = parse_account_body(await read_json_object(request), creating=False)
    conn = await writing(request)  # (the body read may have swapped it)
    values = parsed.values
    if "consultancy_account_id" in values:
        await _check_consultancy(request, who, values["consultancy_account_id"])
    if parsed.plan_given and not who.is_admin:
        raise ForbiddenError(
            "Only platform administrators may change the plan an organisation is on."
        )
    if parsed.role_ids is not None:
        await _check_roles(request, who, parsed.role_ids)
    name = values.get("name")
    if (
        name is not None
        and name != account.name
        and await account_store.find_account_by_name(conn, name) is not None
    ):
        raise _duplicate(name)
    try:
        await account_store.update_account(
            conn, account, values, role_ids=parsed.role_ids, actor=actor(request)
        )
    except IntegrityError as err:
        raise _duplicate(str(name)) from err
    updated = await account_store.get_account(conn, account.id)
    await conn.commit()
    return respond(dump_account(updated or account))
