"""Users API (FlexMeasures /api/v3_0/users)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.identity import REVOKE_HEADER
from tenant_service import keys
from tenant_service.api import (
    INVALID_INPUT,
    MISSING,
    NOT_NULL,
    NOT_STRING,
    UNKNOWN_FIELD,
    FieldError,
    check_email,
    check_timezone,
    first,
    parse_bool,
    parse_int,
    parse_page,
    parse_path_id,
)
from tenant_service.api.v3_0 import (
    PREFIX,
    actor,
    naive_utc,
    principal,
    read_json_object,
    respond,
    writing,
)
from tenant_service.api.v3_0.accounts import dump_account
from tenant_service.errors import (
    DuplicateUserError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from tenant_service.identity import ADMIN_ROLES, Principal
from tenant_service.passwords import random_password_hash
from tenant_service.schemas.fields import search_terms
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.accounts import AccountRecord
from tenant_service.store.users import UserRecord

routes = web.RouteTableDef()

PATCHABLE: Final = ("email", "username", "active", "timezone", "flexmeasures_roles")


def dump_user(user: UserRecord) -> dict[str, Any]:
    """FlexMeasures' UserSchema dump: role ids, naive UTC times, no account."""
    return {
        "id": user.id,
        "email": user.email,
        "username": user.username,
        "account_id": user.account_id,
        "active": user.active,
        "timezone": user.timezone,
        "flexmeasures_roles": list(user.role_ids),
        "last_login_at": naive_utc(user.last_login_at),
        "last_seen_at": naive_utc(user.last_seen_at),
    }


def dump_listed_user(user: UserRecord, account: AccountRecord) -> dict[str, Any]:
    """A user in FlexMeasures' list: role names and the embedded account."""
    return {
        **dump_user(user),
        "flexmeasures_roles": list(user.role_names),
        "account": dump_account(account),
    }


async def _load_user(conn: AsyncConnection, user_id: int) -> UserRecord:
    user = await user_store.get_user(conn, user_id)
    if user is None:
        raise NotFoundError(f"User {user_id} not found")
    return user


def _check_read(who: Principal, user: UserRecord) -> None:
    if not who.may_read_account(user.account_id, user.consultancy_account_id):
        raise ForbiddenError()


def _check_update(who: Principal, user: UserRecord) -> None:
    """May `who` change, deactivate or reset `user`? (403 if not)."""
    if not who.may_update_user(user.id, user.account_id, user.consultancy_account_id):
        raise ForbiddenError()
    if user.id != who.user_id and not who.outranks(user.role_names):
        raise ForbiddenError()


@routes.get(PREFIX + "/users")
async def get_users(request: web.Request) -> web.Response:
    """List all users of an account (default: the caller's)."""
    who = principal(request)
    query = request.query
    errors: dict[str, list[str]] = {}
    account_id = who.account_id
    found = first(query, "account_id", "account")
    if found is not None:
        try:
            account_id = parse_int(found[1], minimum=0)
        except FieldError as err:
            errors[found[0]] = [str(err)]
    include_inactive = False
    if "include_inactive" in query:
        try:
            include_inactive = parse_bool(query["include_inactive"])
        except FieldError as err:
            errors["include_inactive"] = [str(err)]
    if errors:
        raise ValidationError("query", errors)
    page = parse_page(query)
    conn = request[keys.CONN]
    account = await account_store.get_account(conn, account_id)
    if account is None:
        raise NotFoundError(f"Account {account_id} not found")
    if not who.may_read_account(account.id, account.consultancy_account_id):
        raise ForbiddenError()
    terms = search_terms(query["filter"]) if "filter" in query else []
    records, filtered = await user_store.list_users(
        conn,
        [account.id],
        include_inactive=include_inactive,
        offset=page.offset,
        limit=page.limit,
        terms=terms,
    )
    data = [dump_listed_user(user, account) for user in records]
    if page.number is None:
        return respond(data)
    total = filtered
    if terms:
        _, total = await user_store.list_users(
            conn, [account.id], include_inactive=include_inactive, limit=0
        )
    return respond({"data": data, "num-records": total, "filtered-records": filtered})


@routes.get(PREFIX + "/users/{id}")
async def get_user(request: web.Request) -> web.Response:
    """Fetch a given user."""
    user_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    user = await _load_user(conn, user_id)
    _check_read(principal(request), user)
    return respond(dump_user(user))


@dataclass(frozen=True, slots=True)
class UserPatch:
    """Validated fields of a user update; None = not given."""

    email: str | None = None
    username: str | None = None
    active: bool | None = None
    timezone: str | None = None
    role_ids: tuple[int, ...] = ()
    role_names: tuple[str, ...] = ()
    roles_given: bool = False


def _string(value: object) -> str:
    if value is None:
        raise FieldError(NOT_NULL)
    if not isinstance(value, str):
        raise FieldError(NOT_STRING)
    return value


def parse_user_patch(data: dict[str, Any]) -> UserPatch:
    """Validate a PATCH body; raise one 422 json ValidationError naming each field."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for key, value in data.items():
        try:
            if key not in PATCHABLE:
                raise FieldError(UNKNOWN_FIELD)
            if key == "email":
                values["email"] = check_email(_string(value))
            elif key == "username":
                username = _string(value).strip()
                if not username or len(username) > 255:
                    raise FieldError("Length must be between 1 and 255.")
                values["username"] = username
            elif key == "active":
                if not isinstance(value, bool):
                    if value is None:
                        raise FieldError(NOT_NULL)
                    raise FieldError("Not a valid boolean.")
                values["active"] = value
            elif key == "timezone":
                values["timezone"] = check_timezone(_string(value))
            else:
                if not isinstance(value, list):
                    raise FieldError("Not a valid list.")
                ids: list[int] = []
                names: list[str] = []
                for item in value:
                    if isinstance(item, bool) or not isinstance(item, int | str):
                        raise FieldError(INVALID_INPUT)
                    (ids if isinstance(item, int) else names).append(item)  # type: ignore[arg-type]  # narrowed by isinstance just above
                values["role_ids"] = tuple(ids)
                values["role_names"] = tuple(names)
                values["roles_given"] = True
        except FieldError as err:
            errors[key] = [str(err)]
    if errors:
        raise ValidationError("json", errors)
    return UserPatch(**values)


@routes.patch(PREFIX + "/users/{id}")
async def patch_user(request: web.Request) -> web.Response:
    """Update a user."""
    user_id = parse_path_id(request.match_info["id"])
    who = principal(request)
    revoked = False
    conn = request[keys.CONN]
    user = await _load_user(conn, user_id)
    _check_update(who, user)
    patch = parse_user_patch(await read_json_object(request))
    conn = await writing(request)  # (the body read may have swapped it)
    security_sensitive = patch.active is not None or patch.roles_given
    if security_sensitive and who.user_id == user.id:
        raise ForbiddenError()
    values: dict[str, Any] = {}
    if patch.email is not None and patch.email != user.email:
        other = await user_store.get_user_by_email(conn, patch.email)
        if other is not None:
            raise DuplicateUserError(
                f"A user with email '{patch.email}' already exists."
            )
        values["email"] = patch.email
    if patch.username is not None and patch.username != user.username:
        values["username"] = patch.username
    if patch.timezone is not None and patch.timezone != user.timezone:
        values["timezone"] = patch.timezone
    if patch.active is not None:
        if not who.may_edit_roles(user.account_id):
            raise ForbiddenError()
        if patch.active != user.active:
            values["active"] = patch.active
        if not patch.active:
            values["tokens_valid_after"] = user_store.revocation_time()
            revoked = True
    if patch.roles_given:
        await _apply_roles(request, who, user, patch)
    try:
        await user_store.update_user(conn, user.id, values, actor=actor(request))
    except IntegrityError as err:
        raise DuplicateUserError(
            f"A user with email '{patch.email}' already exists."
        ) from err
    updated = await _load_user(conn, user.id)
    body = dump_user(updated)
    await conn.commit()
    request[keys.TENANT].principals.evict(user.id)
    response = respond(body)
    if revoked:
        response.headers[REVOKE_HEADER] = str(user.id)
    return response


async def _checked_roles(
    conn: AsyncConnection,
    who: Principal,
    account_id: int,
    old_roles: tuple[str, ...],
    role_ids: tuple[int, ...],
    role_names: tuple[str, ...],
) -> dict[int, str]:
    """The roles a user of `account_id` is to hold, if `who` may give them.

    Admins and account-admins of the account set roles; admin roles only admins;
    nobody grants a role they do not hold themselves (#10).
    """
    if not who.may_edit_roles(account_id):
        raise ForbiddenError()
    found = await user_store.find_roles(conn, role_ids, role_names)
    unknown = [str(i) for i in role_ids if i not in found]
    unknown += [n for n in role_names if n not in found.values()]
    if unknown:
        raise ValidationError(
            "json",
            {"flexmeasures_roles": [f"Unknown role: {name}." for name in unknown]},
        )
    old = set(old_roles)
    new = set(found.values())
    if (old ^ new) & ADMIN_ROLES and not who.is_admin:
        raise ForbiddenError()
    if not who.outranks(new - old):  # nobody grants a role they do not hold
        raise ForbiddenError()
    return found


async def _apply_roles(
    request: web.Request, who: Principal, user: UserRecord, patch: UserPatch
) -> None:
    conn = request[keys.CONN]
    found = await _checked_roles(
        conn, who, user.account_id, user.role_names, patch.role_ids, patch.role_names
    )
    await user_store.set_roles(conn, user.id, found.keys(), actor=actor(request))


@routes.patch(PREFIX + "/users/{id}/password-reset")
async def reset_user_password(request: web.Request) -> web.Response:
    """Password reset

    Makes the user's current password unusable and revokes all their tokens.
    Where the gateway has mail set up (GATEWAY_SMTP_*), it then mails the user
    a one-time link to set a new password (as FlexMeasures mails reset
    instructions); without mail, an operator sets a new password with the
    admin CLI (`flexhost admin set-password --email ...`).
    """
    user_id = parse_path_id(request.match_info["id"])
    who = principal(request)
    conn = request[keys.CONN]
    user = await _load_user(conn, user_id)
    _check_update(who, user)
    new_hash = await asyncio.to_thread(random_password_hash)
    await writing(request)
    await user_store.set_password_hash(
        conn,
        user.id,
        new_hash,
        actor=actor(request),
        event=user_store.PASSWORD_RESET,
    )
    await conn.commit()
    request[keys.TENANT].principals.evict(user.id)
    response = respond({})
    response.headers[REVOKE_HEADER] = str(user.id)
    return response


CREATE_FIELDS: Final = ("email", "username", "account_id", "flexmeasures_roles")


@dataclass(frozen=True, slots=True)
class NewUser:
    """Validated fields of a user creation."""

    email: str
    username: str
    account_id: int
    role_ids: tuple[int, ...] = ()
    role_names: tuple[str, ...] = ()


def parse_new_user(data: dict[str, Any]) -> NewUser:
    """Validate a POST body (FlexMeasures' email, username, account_id; roles too)."""
    errors: dict[str, list[str]] = {}
    for key in data:
        if key not in CREATE_FIELDS:
            errors[key] = [UNKNOWN_FIELD]
    for key in ("email", "username", "account_id"):
        if key not in data:
            errors[key] = [MISSING]
    account_id = data.get("account_id")
    if "account_id" in data and (
        isinstance(account_id, bool)
        or not isinstance(account_id, int)
        or not 0 <= account_id <= 2**31 - 1
    ):
        errors["account_id"] = ["Not a valid integer."]
    roles: dict[str, Any] = {}
    known = {k: v for k, v in data.items() if k in ("email", "username")}
    if "flexmeasures_roles" in data:
        known["flexmeasures_roles"] = data["flexmeasures_roles"]
    try:
        parsed = parse_user_patch(known)
    except ValidationError as err:
        errors.update(err.errors)
        parsed = UserPatch()
    if errors:
        raise ValidationError("json", errors)
    if parsed.roles_given:
        roles = {"role_ids": parsed.role_ids, "role_names": parsed.role_names}
    return NewUser(
        email=parsed.email or "",
        username=parsed.username or "",
        account_id=int(account_id),  # type: ignore[arg-type]  # checked above
        **roles,
    )


@routes.post(PREFIX + "/users")
async def post_user(request: web.Request) -> web.Response:
    """Create new user

    The new user has no usable password: they choose one through a password
    reset, or an operator sets one (`flexhost admin set-password --email ...`).
    """
    who = principal(request)
    new = parse_new_user(await read_json_object(request))
    conn = await writing(request)
    account = await account_store.get_account(conn, new.account_id)
    if account is None:
        raise NotFoundError(f"Account {new.account_id} not found")
    if not who.may_create_user_in(account.id, account.consultancy_account_id):
        raise ForbiddenError()
    found: dict[int, str] = {}
    if new.role_ids or new.role_names:
        found = await _checked_roles(
            conn, who, account.id, (), new.role_ids, new.role_names
        )
    if await user_store.get_user_by_email(conn, new.email) is not None:
        raise ValidationError(
            "json", {"email": [f"User with email {new.email} already exists."]}
        )
    if await user_store.username_taken(conn, new.username):
        raise ValidationError(
            "json", {"username": [f"User with username {new.username} already exists."]}
        )
    password_hash = await asyncio.to_thread(random_password_hash)
    try:
        user_id = await user_store.create_user(
            conn,
            email=new.email,
            username=new.username,
            account_id=account.id,
            password_hash=password_hash,
            actor=actor(request),
        )
        if found:
            await user_store.set_roles(
                conn, user_id, found.keys(), actor=actor(request)
            )
    except IntegrityError as err:
        raise ValidationError(
            "json", {"email": [f"User with email {new.email} already exists."]}
        ) from err
    created = await _load_user(conn, user_id)
    await conn.commit()
    # FlexMeasures answers with the UserSchema dump alone, without a status.
    return web.json_response(dump_user(created), status=201)
