"""Assets API (FlexMeasures /api/v3_0/assets).

Decisions where FlexMeasures is inconsistent or silent:
- An unknown asset id in the path is 404 `{"message": "No asset found with ID n.",
  "status": 404}` on every `/assets/<id>...` route (FlexMeasures' `GET /assets/<id>`);
  an unknown id inside a body or query (`parent_asset_id`, `root`, `asset_type`) is
  a 422 naming the field.
- `GET /assets/<id>/sensors` is always paginated (page 1, 10 per page by default), as
  FlexMeasures' handler is.
- Listings give full asset objects, as FlexMeasures 1.0.1 answers (observed); `fields`
  (comma- or pipe-separated) narrows them.
- A top-level asset without `account_id` goes to the caller's account; only admins
  may create public assets, by sending `"account_id": null`.
- `DELETE` answers 204 with `Content-Type: application/json` and no body (what
  flexmeasures-client decodes as `{}`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web
from sqlalchemy import ColumnElement, String, and_, cast, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service import acl, keys
from tenant_service.api import (
    NOT_BOOLEAN,
    NOT_INTEGER,
    NOT_NULL,
    NOT_STRING,
    UNKNOWN_FIELD,
    FieldError,
    first,
    parse_bool,
    parse_int,
    parse_page,
    parse_path_id,
)
from tenant_service.api.v3_0 import (
    PREFIX,
    actor,
    load_asset,
    no_content,
    principal,
    read_json_object,
    respond,
    writing,
)
from tenant_service.errors import ForbiddenError, ValidationError
from tenant_service.identity import Principal
from tenant_service.schemas.fields import json_text, parse_sort, search_terms
from tenant_service.store import accounts as account_store
from tenant_service.store import assets as asset_store
from tenant_service.store.assets import AssetRecord, ChildAsset
from tenant_service.store.tables import accounts, generic_assets

routes = web.RouteTableDef()

NOT_NUMBER: Final = "Not a valid number."
JSON_OBJECT_FIELDS: Final = ("attributes", "flex_context", "flex_model")
JSON_LIST_FIELDS: Final = ("sensors_to_show", "sensors_to_show_as_kpis")
ASSET_FIELDS: Final = (
    "id",
    "name",
    "description",
    "account_id",
    "owner",
    "latitude",
    "longitude",
    "generic_asset_type_id",
    "generic_asset_type",
    "attributes",
    "parent_asset_id",
    "child_assets",
    "sensors",
    "sensors_to_show",
    "flex_context",
    "flex_model",
    "sensors_to_show_as_kpis",
    "external_id",
)
WRITABLE: Final = frozenset(
    {
        "name",
        "description",
        "account_id",
        "latitude",
        "longitude",
        "generic_asset_type_id",
        "parent_asset_id",
        "external_id",
        *JSON_OBJECT_FIELDS,
        *JSON_LIST_FIELDS,
    }
)
ASSET_SORTS: Final = ("id", "name", "owner")


# --- JSON-ish fields -----------------------------------------------------------


# --- field parsers ----------------------------------------------------------------


def _string(value: object, *, max_length: int, allow_none: bool = False) -> str | None:
    if value is None:
        if allow_none:
            return None
        raise FieldError(NOT_NULL)
    if not isinstance(value, str):
        raise FieldError(NOT_STRING)
    if len(value) > max_length:
        raise FieldError(f"Longer than maximum length {max_length}.")
    return value


def _name(value: object, max_length: int) -> str:
    name = _string(value, max_length=max_length)
    if not name or not name.strip():
        raise FieldError("Shorter than minimum length 1.")
    return name


def _id(value: object, *, allow_none: bool = False) -> int | None:
    if value is None:
        if allow_none:
            return None
        raise FieldError(NOT_NULL)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FieldError(NOT_INTEGER)
    if isinstance(value, str):
        return parse_int(value, minimum=0)
    if value < 0 or value > 2**62:
        raise FieldError(NOT_INTEGER)
    return value


def _coordinate(value: object, limit: float, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(NOT_NUMBER)
    number = float(value)
    if not math.isfinite(number):
        raise FieldError(NOT_NUMBER)
    if number < -limit:
        raise FieldError(
            f"{what} {value} exceeds the minimum {what.lower()} of -{limit:g} degrees."
        )
    if number > limit:
        raise FieldError(
            f"{what} {value} exceeds the maximum {what.lower()} of {limit:g} degrees."
        )
    return number


def parse_asset_body(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Column values of an asset from a POST/PATCH body; one 422 naming each field."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for key, value in data.items():
        try:
            if key not in WRITABLE or (key == "account_id" and not creating):
                raise FieldError(UNKNOWN_FIELD)
            if key == "name":
                values[key] = _name(value, 80)
            elif key == "description" or key == "external_id":
                values[key] = _string(value, max_length=255, allow_none=True)
            elif key == "latitude":
                values[key] = _coordinate(value, 90, "Latitude")
            elif key == "longitude":
                values[key] = _coordinate(value, 180, "Longitude")
            elif key in ("account_id", "parent_asset_id"):
                values[key] = _id(value, allow_none=True)
            elif key == "generic_asset_type_id":
                values[key] = _id(value)
            elif key in JSON_OBJECT_FIELDS:
                values[key] = json_text(value, kind=dict)
            else:
                values[key] = json_text(value, kind=list)
        except FieldError as err:
            errors[key] = [str(err)]
    if creating:
        for key in ("name", "generic_asset_type_id"):
            if key not in data:
                errors[key] = ["Missing data for required field."]
    if errors:
        raise ValidationError("json", errors)
    return values


# --- serialisation --------------------------------------------------------------


def _type(type_id: int, name: str) -> dict[str, Any]:
    return {"id": type_id, "name": name}


def _child(child: ChildAsset) -> dict[str, Any]:
    return {
        "id": child.id,
        "name": child.name,
        "account_id": child.account_id,
        "generic_asset_type": _type(child.generic_asset_type_id, child.type_name),
    }


def dump_asset(
    asset: AssetRecord,
    children: Sequence[ChildAsset],
    sensor_names: Sequence[tuple[int, str]],
    fields: Sequence[str] = ASSET_FIELDS,
) -> dict[str, Any]:
    """FlexMeasures' GenericAssetSchema dump (JSON-ish fields as strings)."""
    full: dict[str, Any] = {
        "id": asset.id,
        "name": asset.name,
        "description": asset.description,
        "account_id": asset.account_id,
        "owner": None
        if asset.account_id is None
        else {"id": asset.account_id, "name": asset.owner_name},
        "latitude": asset.latitude,
        "longitude": asset.longitude,
        "generic_asset_type_id": asset.generic_asset_type_id,
        "generic_asset_type": _type(asset.generic_asset_type_id, asset.type_name),
        "attributes": asset.attributes,
        "parent_asset_id": asset.parent_asset_id,
        "child_assets": [_child(child) for child in children],
        "sensors": [{"id": sid, "name": name} for sid, name in sensor_names],
        "sensors_to_show": asset.sensors_to_show,
        "flex_context": asset.flex_context,
        "flex_model": asset.flex_model,
        "sensors_to_show_as_kpis": asset.sensors_to_show_as_kpis,
        "external_id": asset.external_id,
    }
    if fields is ASSET_FIELDS:
        return full
    return {key: full[key] for key in fields}


async def dump_assets(
    conn: AsyncConnection,
    who: Principal,
    records: Sequence[AssetRecord],
    fields: Sequence[str] = ASSET_FIELDS,
) -> list[dict[str, Any]]:
    """Dump a listing; children and sensors come from two queries for all of it.

    `child_assets` names only the children `who` may read: a child may belong to
    another account than its parent.
    """
    if "child_assets" in fields or "sensors" in fields:
        children, names = await asset_store.children_and_sensors(
            conn, [asset.id for asset in records]
        )
    else:
        children, names = {}, {}
    return [
        dump_asset(
            asset,
            [c for c in children.get(asset.id, ()) if acl.may_read(who, c.owner)],
            names.get(asset.id, ()),
            fields,
        )
        for asset in records
    ]


# --- query parsing ----------------------------------------------------------------


def _bool(query: Any, name: str, errors: dict[str, list[str]]) -> bool:
    if name not in query:
        return False
    try:
        return parse_bool(query[name])
    except FieldError:
        errors[name] = [NOT_BOOLEAN]
        return False


def _opt_int(
    query: Any, names: tuple[str, ...], errors: dict[str, list[str]]
) -> int | None:
    found = first(query, *names)
    if found is None:
        return None
    try:
        return parse_int(found[1], minimum=0)
    except FieldError as err:
        errors[found[0]] = [str(err)]
        return None


def parse_fields(text: str) -> list[str]:
    """`fields=a,b` or `a|b`: known asset fields, in the asked order."""
    names = [part.strip() for part in text.replace("|", ",").split(",") if part.strip()]
    unknown = [name for name in names if name not in ASSET_FIELDS]
    if unknown:
        raise FieldError(f"Unknown field(s): {', '.join(unknown)}.")
    return list(dict.fromkeys(names)) or list(ASSET_FIELDS)


def readable_accounts(who: Principal) -> ColumnElement[bool]:
    """Assets of accounts the principal may read (rows of ASSET_QUERY)."""
    if who.reads_all:
        return generic_assets.c.account_id.is_not(None)
    own = generic_assets.c.account_id == who.account_id
    if "consultant" in who.roles:
        return or_(own, accounts.c.consultancy_account_id == who.account_id)
    return own


def _asset_term(term: str) -> ColumnElement[bool]:
    clauses = [
        generic_assets.c.name.icontains(term, autoescape=True),
        accounts.c.name.icontains(term, autoescape=True),
    ]
    if term.isdecimal():
        clauses.append(
            cast(generic_assets.c.id, String).startswith(term, autoescape=True)
        )
    return or_(*clauses)


# --- handlers -----------------------------------------------------------------------


@routes.get(PREFIX + "/assets")
async def get_assets(request: web.Request) -> web.Response:
    """List assets accessible by the user."""
    who = principal(request)
    query = request.query
    errors: dict[str, list[str]] = {}
    account_id = _opt_int(query, ("account", "account_id"), errors)
    all_accessible = _bool(query, "all_accessible", errors)
    include_public = _bool(query, "include_public", errors)
    type_id = _opt_int(query, ("asset_type",), errors)
    root_id = _opt_int(query, ("root",), errors)
    depth = _opt_int(query, ("depth",), errors)
    fields: list[str] = list(ASSET_FIELDS)
    if "fields" in query:
        try:
            fields = parse_fields(query["fields"])
        except FieldError as err:
            errors["fields"] = [str(err)]
    sort_by, sort_dir = parse_sort(query, ASSET_SORTS, errors)
    if errors:
        raise ValidationError("query", errors)
    page = parse_page(query)
    conn = request[keys.CONN]
    root = None
    if root_id is not None:
        root = await asset_store.get_asset(conn, root_id)
        if root is None:
            raise ValidationError(
                "query", {"root": [f"No asset found with ID {root_id}."]}
            )
        if not acl.may_read(who, root.owner):
            raise ForbiddenError()
    if type_id is not None and not await asset_store.type_exists(conn, type_id):
        raise ValidationError(
            "query", {"asset_type": [f"No asset type found with ID {type_id}."]}
        )
    where: ColumnElement[bool]
    if account_id is not None:
        account = await _account_owner(conn, account_id)
        if not who.may_read_account(account_id, account):
            raise ForbiddenError()
        where = generic_assets.c.account_id == account_id
    else:
        use_all = all_accessible or root is not None
        include_public = include_public or use_all
        where = (
            readable_accounts(who)
            if use_all
            else generic_assets.c.account_id == who.account_id
        )
    if include_public:
        where = or_(where, generic_assets.c.account_id.is_(None))
    if type_id is not None:
        where = and_(where, generic_assets.c.generic_asset_type_id == type_id)
    if root is not None:
        where = and_(
            where, generic_assets.c.id.in_(asset_store.subtree(root.id, depth))
        )
    filtered = where
    if "filter" in query:
        terms = search_terms(query["filter"])
        if terms:
            filtered = and_(where, *(_asset_term(term) for term in terms))
    order = _asset_order(sort_by, sort_dir)
    records = await asset_store.list_assets(
        conn, filtered, order_by=order, offset=page.offset, limit=page.limit
    )
    data = await dump_assets(conn, who, records, fields)
    if page.number is None:
        return respond(data)
    return respond(
        {
            "data": data,
            "num-records": await asset_store.count_assets(conn, where),
            "filtered-records": await asset_store.count_assets(conn, filtered),
        }
    )


async def _account_owner(conn: AsyncConnection, account_id: int) -> int | None:
    """The consultancy of an existing account; 422 if there is no such account."""
    account = await account_store.get_account(conn, account_id)
    if account is None:
        raise ValidationError(
            "query", {"account": [f"No account found with ID {account_id}."]}
        )
    return account.consultancy_account_id


def _asset_order(sort_by: str | None, sort_dir: str) -> list[ColumnElement[Any]]:
    column: ColumnElement[Any] = {
        None: generic_assets.c.id,
        "id": generic_assets.c.id,
        "name": generic_assets.c.name,
        "owner": accounts.c.name,
    }[sort_by]
    ordered = column.desc() if sort_dir == "desc" else column.asc()
    tie = (
        generic_assets.c.id.desc() if sort_dir == "desc" else generic_assets.c.id.asc()
    )
    return [ordered, tie]


@routes.get(PREFIX + "/assets/public")
async def get_public_assets(request: web.Request) -> web.Response:
    """Return all public assets."""
    fields: list[str] = list(ASSET_FIELDS)
    if "fields" in request.query:
        try:
            fields = parse_fields(request.query["fields"])
        except FieldError as err:
            raise ValidationError("query", {"fields": [str(err)]}) from err
    conn = request[keys.CONN]
    records = await asset_store.list_assets(
        conn, generic_assets.c.account_id.is_(None), order_by=[generic_assets.c.id]
    )
    return respond(await dump_assets(conn, principal(request), records, fields))


@routes.get(PREFIX + "/assets/types")
async def get_asset_types(request: web.Request) -> web.Response:
    """Get list of available asset types."""
    types = await asset_store.list_types(request[keys.CONN])
    return respond(
        [{"id": t.id, "name": t.name, "description": t.description} for t in types]
    )


@routes.get(PREFIX + r"/assets/{id:\d+}")
async def get_asset(request: web.Request) -> web.Response:
    """Fetch a given asset."""
    asset_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    asset = await load_asset(conn, asset_id)
    who = principal(request)
    if not acl.may_read(who, asset.owner):
        raise ForbiddenError()
    return respond((await dump_assets(conn, who, [asset]))[0])


async def _check_new_values(
    conn: AsyncConnection,
    who: Principal,
    values: dict[str, Any],
    *,
    asset: AssetRecord | None,
) -> None:
    """DB-backed validation of asset values (422s), and the parent's update right."""
    if "generic_asset_type_id" in values and not await asset_store.type_exists(
        conn, values["generic_asset_type_id"]
    ):
        type_id = values["generic_asset_type_id"]
        raise ValidationError(
            "json",
            {
                "generic_asset_type_id": [
                    f"GenericAssetType with id {type_id} doesn't exist."
                ]
            },
        )
    parent_id = values.get(
        "parent_asset_id", None if asset is None else asset.parent_asset_id
    )
    if "parent_asset_id" in values and parent_id is not None:
        parent = await asset_store.get_asset(conn, parent_id)
        if parent is None:
            raise ValidationError(
                "json",
                {
                    "parent_asset_id": [
                        f"Parent GenericAsset with id {parent_id} doesn't exist."
                    ]
                },
            )
        if asset is not None:
            below = (await conn.execute(asset_store.subtree(asset.id))).scalars().all()
            if parent_id in below:
                raise ValidationError(
                    "json",
                    {"parent_asset_id": ["An asset cannot be its own ancestor."]},
                )
        if not acl.may_update_asset(who, parent.owner):
            raise ForbiddenError()
    name = values.get("name", None if asset is None else asset.name)
    if name is not None and ("name" in values or "parent_asset_id" in values):
        account_id = values.get(
            "account_id", None if asset is None else asset.account_id
        )
        if await asset_store.name_taken(
            conn,
            name=name,
            parent_id=parent_id,
            account_id=account_id,
            exclude_id=-1 if asset is None else asset.id,
        ):
            where = (
                f"under parent asset {parent_id}"
                if parent_id is not None
                else "at the top level of this account"
            )
            raise ValidationError(
                "json",
                {"name": [f"An asset with the name '{name}' already exists {where}"]},
            )


@routes.post(PREFIX + "/assets")
async def post_asset(request: web.Request) -> web.Response:
    """Creates a new asset."""
    who = principal(request)
    values = parse_asset_body(await read_json_object(request), creating=True)
    conn = await writing(request)
    parent_id = values.get("parent_asset_id")
    parent = None
    if parent_id is not None:
        parent = await asset_store.get_asset(conn, parent_id)
        if parent is None:
            raise ValidationError(
                "json",
                {
                    "parent_asset_id": [
                        f"Parent GenericAsset with id {parent_id} doesn't exist."
                    ]
                },
            )
    if "account_id" not in values:
        values["account_id"] = (
            parent.account_id if parent is not None else who.account_id
        )
    account_id = values["account_id"]
    if account_id is None:
        if not who.is_admin:
            raise ValidationError(
                "json", {"account_id": ["Account with Id None doesn't exist."]}
            )
    else:
        if not await asset_store.account_exists(conn, account_id):
            raise ValidationError(
                "json", {"account_id": [f"Account with Id {account_id} doesn't exist."]}
            )
        if (
            not who.is_admin
            and account_id != who.account_id
            and (parent is None or account_id != parent.account_id)
        ):
            raise ValidationError(
                "json",
                {
                    "account_id": [
                        "User is not allowed to create assets for this account."
                    ]
                },
            )
    if parent is None and not acl.may_create_top_level_asset(who, account_id):
        raise ForbiddenError()
    await _check_new_values(conn, who, values, asset=None)
    try:
        asset_id = await asset_store.create_asset(conn, values, actor=actor(request))
    except IntegrityError as err:
        raise ValidationError(
            "json", {"name": ["An asset with this name already exists here."]}
        ) from err
    created = await load_asset(conn, asset_id)
    body = (await dump_assets(conn, who, [created]))[0]
    await conn.commit()
    return respond(body, status=201)


@routes.patch(PREFIX + r"/assets/{id:\d+}")
async def patch_asset(request: web.Request) -> web.Response:
    """Update an asset given its identifier."""
    asset_id = parse_path_id(request.match_info["id"])
    who = principal(request)
    conn = request[keys.CONN]
    asset = await load_asset(conn, asset_id)
    if not acl.may_update_asset(who, asset.owner):
        raise ForbiddenError()
    values = parse_asset_body(await read_json_object(request), creating=False)
    conn = await writing(request)  # (the body read may have swapped it)
    if "name" in values and values["name"] == asset.name:
        del values["name"]
    await _check_new_values(conn, who, values, asset=asset)
    try:
        await asset_store.update_asset(conn, asset.id, values, actor=actor(request))
    except IntegrityError as err:
        raise ValidationError(
            "json", {"name": ["An asset with this name already exists here."]}
        ) from err
    updated = await load_asset(conn, asset.id)
    body = (await dump_assets(conn, who, [updated]))[0]
    await conn.commit()
    return respond(body)


@routes.delete(PREFIX + r"/assets/{id:\d+}")
async def delete_asset(request: web.Request) -> web.Response:
    """Delete an asset given its identifier (with its children, sensors and data)."""
    asset_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    who = principal(request)
    asset = await load_asset(conn, asset_id)
    if not acl.may_delete_asset(who, asset.owner):
        raise ForbiddenError()
    await writing(request)
    # The children go with it: each must be one the caller may delete (a child
    # may belong to another account).
    owners = await asset_store.subtree_owners(conn, asset.id)
    if not all(acl.may_delete_asset(who, owner) for owner in owners):
        raise ForbiddenError()
    await asset_store.delete_asset(conn, asset.id, actor=actor(request))
    await conn.commit()
    return no_content()
