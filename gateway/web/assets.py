"""Asset and sensor pages: list, tree and search; an asset's and a sensor's page;
create, edit and delete assets; create and edit sensors.

Every read and write goes to the tenant's v3_0 API as the signed-in user (the
backend decides what is allowed: its 403 is shown as a message, its 422 messages
next to the fields, with what the user typed kept). Edit and delete controls are
shown only to users the API's rules would allow (tenant_service/acl.py), read off
the session's roles and account.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from aiohttp import web
from multidict import MultiDictProxy

from gateway import keys
from gateway.errors import ApiError, FormRejectedError
from gateway.proxy import BackendAnswer, fetch
from gateway.signing import identity_for
from gateway.web import render
from gateway.web.calls import (
    API,
    FORM_REJECTED,
    BackendAnswerError,
    caller_of,
    data_count,
    fetch_as,
    json_of,
    listing,
    message_of,
    page_user,
    redirect,
    titled_error_page,
    to_login,
)
from gateway.web.charts import chart_context
from gateway.web.dashboard import build_tree, resolution_text
from gateway.web.sessions import PageUser, csrf_valid
from gateway.web.values import int_of

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

ID: Final = r"{id:\d{1,18}}"
SEARCH_MAX: Final = 200
# The delete page counts the data of at most this many sensors (one call each).
MAX_COUNTED: Final = 50
ASSET_JSON_FIELDS: Final = ("attributes", "flex_model", "flex_context")
ASSET_LIST_FIELDS: Final = ("sensors_to_show",)
SENSOR_FIELDS: Final = ("name", "unit", "event_resolution", "timezone", "attributes")
Form = MultiDictProxy[Any]
Loaded = TypeVar("Loaded")


# --- who may do what (mirrors tenant_service/acl.py; the API decides anyway) -----


def _roles(user: PageUser) -> tuple[str, ...]:
    return tuple(user.record.roles)


def may_edit(user: PageUser, account_id: object) -> bool:
    """Update an asset, add children and sensors: members (consultants: maybe)."""
    roles = _roles(user)
    if "admin" in roles:
        return True
    if account_id is None:
        return False
    return account_id == user.record.account_id or "consultant" in roles


def may_administer(user: PageUser, account_id: object) -> bool:
    """Delete an asset, edit a sensor: account-admins (consultants: maybe)."""
    roles = _roles(user)
    if "admin" in roles:
        return True
    if account_id is None:
        return False
    if account_id == user.record.account_id:
        return "account-admin" in roles
    return "consultant" in roles


def may_create_top_level(user: PageUser) -> bool:
    """A top-level asset in the user's account: account-admins and admins."""
    roles = _roles(user)
    return "admin" in roles or "account-admin" in roles


# --- calling the backend -------------------------------------------------------------


async def _send(
    request: web.Request, user: PageUser, method: str, target: str, body: object
) -> BackendAnswer:
    tenant = request[keys.TENANT]
    identity = identity_for(request, tenant, caller_of(user))
    return await fetch(request, tenant, identity, target, method=method, json_body=body)


def _body(answer: BackendAnswer) -> object:
    try:
        return answer.json()
    except ValueError:
        return None


def field_errors(body: object) -> dict[str, str]:
    """A 422's messages per field (`{"message": {"json": {field: [...]}}}`)."""
    found: dict[str, str] = {}
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict):
        return found
    for place in message.values():
        if not isinstance(place, dict):
            continue
        for name, texts in place.items():
            if isinstance(texts, list):
                found[str(name)] = " ".join(str(text) for text in texts)
            elif isinstance(texts, str | dict):
                found[str(name)] = (
                    texts if isinstance(texts, str) else json.dumps(texts)
                )
    return found


class PageError(Exception):
    """A page cannot be shown: status, title, message."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def _refused(answer: BackendAnswer, what: str, object_id: int) -> PageError:
    body = _body(answer)
    if answer.status == 403:
        return PageError(
            403,
            "Not allowed",
            message_of(body) or f"You may not do this with {what} {object_id}.",
        )
    if answer.status in (404, 422):
        return PageError(
            404, f"No such {what}", f"There is no {what} with ID {object_id}."
        )
    return PageError(
        502 if answer.status < 500 else answer.status,
        f"The {what} is unavailable",
        message_of(body) or "The backend gave an unreadable answer.",
    )


async def _object(
    request: web.Request, user: PageUser, what: str, object_id: int
) -> dict[str, Any]:
    """GET /assets/<id> or /sensors/<id>; PageError unless it is readable."""
    answer = await fetch_as(request, user, f"{API}/{what}s/{object_id}")
    if answer.status == 401:
        raise to_login(request)
    body = _body(answer)
    if answer.status != 200 or not isinstance(body, dict):
        raise _refused(answer, what, object_id)
    return body


async def _or_error_page(
    request: web.Request, user: PageUser, title: str, load: Awaitable[Loaded]
) -> Loaded | web.Response:
    """What `load` reads, or the page that says why it cannot be (`title`)."""
    try:
        return await load
    except PageError as err:
        return _page_error(request, user, err)
    except (BackendAnswerError, ApiError) as err:
        return titled_error_page(request, user, err.status, title, err.message)


async def _asset_or_error_page(
    request: web.Request, user: PageUser, asset_id: int
) -> dict[str, Any] | web.Response:
    """The asset, or the page that says why it cannot be shown."""
    return await _or_error_page(
        request,
        user,
        "The asset is unavailable",
        _object(request, user, "asset", asset_id),
    )


async def _checked_form(request: web.Request, user: PageUser) -> Form:
    form = await request.post()
    token = form.get("csrf_token")
    if not csrf_valid(request, user, token if isinstance(token, str) else None):
        logger.warning(
            "form refused: CSRF check failed", extra={"user_id": user.user_id}
        )
        raise FormRejectedError(FORM_REJECTED)
    return form


def _field(form: Form, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _page_error(request: web.Request, user: PageUser, err: PageError) -> web.Response:
    return titled_error_page(request, user, err.status, err.title, err.message)


def _json_text(value: object, *, default: str) -> str:
    """A JSON-ish field as pretty text for a text area (API gives JSON strings)."""
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            return text
    if value is None:
        return default
    return json.dumps(value, indent=2, ensure_ascii=False)


# --- the list and tree ---------------------------------------------------------------


def name_matches(name: str, query: str) -> bool:
    """Whether every word of `query` is in `name` (case-insensitive)."""
    folded = name.casefold()
    return all(word in folded for word in query.casefold().split())


@routes.get("/assets")
async def get_assets(request: web.Request) -> web.Response:
    """The account's assets as a tree, or those whose name matches `q`."""
    user = await page_user(request)
    query = request.query.get("q", "").strip()[:SEARCH_MAX]
    params = {"fields": "id,name,parent_asset_id,generic_asset_type,account_id"}
    if query:
        params["fields"] += ",latitude,longitude,sensors"
    if query:
        params["filter"] = query
    try:
        assets, cut = await listing(request, user, "assets", params)
        sensors: list[object] = []
        if not query:
            sensors, _ = await listing(request, user, "sensors", {})
    except BackendAnswerError as err:
        if err.status == 401:
            raise to_login(request) from err
        return titled_error_page(
            request, user, err.status, "Assets are unavailable", err.message
        )
    except ApiError as err:
        return titled_error_page(
            request, user, err.status, "Assets are unavailable", err.message
        )
    matches = []
    if query:
        for raw in assets:
            if isinstance(raw, dict) and name_matches(str(raw.get("name", "")), query):
                kind = raw.get("generic_asset_type")
                matches.append(
                    {
                        "id": raw.get("id"),
                        "name": raw.get("name") or f"Asset {raw.get('id')}",
                        "type": kind.get("name") if isinstance(kind, dict) else "",
                        "parent_id": raw.get("parent_asset_id"),
                        "latitude": raw.get("latitude"),
                        "longitude": raw.get("longitude"),
                        "sensors": len(raw.get("sensors") or ()),
                    }
                )
        matches.sort(key=lambda row: (str(row["name"]).casefold(), row["id"]))
    return render(
        request,
        "assets.html",
        {
            "user": user,
            "query": query,
            "matches": matches,
            "tree": None if query else build_tree(assets, sensors),
            "cut": cut,
            "may_create": may_create_top_level(user),
            "notice": NOTICES.get(request.query.get("notice", "")),
        },
    )


# --- an asset's page -----------------------------------------------------------------


async def _asset_page_parts(
    request: web.Request, user: PageUser, asset_id: int
) -> tuple[dict[str, Any], list[object], dict[str, Any] | None, dict[str, Any]]:
    """The asset, its sensors, its parent (if any) and its charts."""
    asset = await _object(request, user, "asset", asset_id)
    sensors, _ = await listing(request, user, f"assets/{asset_id}/sensors", {})
    parent = None
    parent_id = int_of(asset.get("parent_asset_id"))
    if parent_id is not None:
        try:
            parent = await _object(request, user, "asset", parent_id)
        except PageError:
            parent = {"id": parent_id, "name": f"Asset {parent_id}"}
    charts = await chart_context(request, user, asset)
    return asset, sensors, parent, charts


@routes.get("/assets/" + ID)
async def get_asset(request: web.Request) -> web.Response:
    """An asset's properties, its sensors and child assets (and its charts)."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    loaded = await _or_error_page(
        request,
        user,
        "The asset is unavailable",
        _asset_page_parts(request, user, asset_id),
    )
    if isinstance(loaded, web.Response):
        return loaded
    asset, sensors, parent, charts = loaded
    rows = [
        {
            "id": raw.get("id"),
            "name": raw.get("name"),
            "unit": raw.get("unit"),
            "resolution": raw.get("event_resolution"),
            "resolution_text": resolution_text(str(raw.get("event_resolution", ""))),
            "timezone": raw.get("timezone"),
        }
        for raw in sensors
        if isinstance(raw, dict)
    ]
    account = asset.get("owner")
    return render(
        request,
        "asset.html",
        {
            "user": user,
            "asset": asset,
            "account": account if isinstance(account, dict) else None,
            "parent": parent,
            "children": [
                c for c in asset.get("child_assets") or () if isinstance(c, dict)
            ],
            "sensors": rows,
            "charts": charts,
            "attributes": _json_text(asset.get("attributes"), default="{}"),
            "flex_model": _json_text(asset.get("flex_model"), default="{}"),
            "flex_context": _json_text(asset.get("flex_context"), default="{}"),
            "sensors_to_show": _json_text(asset.get("sensors_to_show"), default="[]"),
            "may_edit": may_edit(user, asset.get("account_id")),
            "may_delete": may_administer(user, asset.get("account_id")),
            "notice": NOTICES.get(request.query.get("notice", "")),
        },
    )


NOTICES: Final = {
    "created": "The asset has been created.",
    "saved": "Your changes have been saved.",
    "sensor-created": "The sensor has been created.",
    "sensor-saved": "The sensor's changes have been saved.",
    "deleted": "The asset has been deleted.",
    "sensor-deleted": "The sensor and its data have been deleted.",
    "copied": "This is the copy of the asset (with copies of its children and "
    "sensors, without their data).",
}


# --- create and edit an asset --------------------------------------------------------


@dataclass(slots=True)
class AssetForm:
    """What the asset form shows: values as typed, and the API's messages."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def error(self, name: str) -> str:
        """The API's message about a field ("" if none)."""
        return self.errors.get(name, "")


ASSET_FORM_FIELDS: Final = (
    "name",
    "description",
    "external_id",
    "generic_asset_type_id",
    "parent_asset_id",
    "latitude",
    "longitude",
    *ASSET_JSON_FIELDS,
    *ASSET_LIST_FIELDS,
)


def asset_form_of(asset: dict[str, Any]) -> AssetForm:
    """The edit form's values from the API's asset."""

    def text(value: object) -> str:
        return "" if value is None else str(value)

    return AssetForm(
        {
            "name": text(asset.get("name")),
            "description": text(asset.get("description")),
            "external_id": text(asset.get("external_id")),
            "generic_asset_type_id": text(asset.get("generic_asset_type_id")),
            "parent_asset_id": text(asset.get("parent_asset_id")),
            "latitude": text(asset.get("latitude")),
            "longitude": text(asset.get("longitude")),
            **{
                name: _json_text(asset.get(name), default="{}")
                for name in ASSET_JSON_FIELDS
            },
            "sensors_to_show": _json_text(asset.get("sensors_to_show"), default="[]"),
        }
    )


def number_or_text(text: str) -> object:
    """A form's number as the API wants it: "" is null, a number, else the text
    (so that the API names what is wrong with it)."""
    text = text.strip()
    if not text:
        return None
    try:
        number = int(text) if text.lstrip("-").isdecimal() else float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def asset_body(form: Form) -> tuple[AssetForm, dict[str, Any]]:
    """The form as typed, and the API body it makes."""
    values = {name: _field(form, name) for name in ASSET_FORM_FIELDS}
    body: dict[str, Any] = {"name": values["name"]}
    for name in ("description", "external_id"):
        body[name] = values[name].strip() or None
    for name in ("generic_asset_type_id", "parent_asset_id", "latitude", "longitude"):
        body[name] = number_or_text(values[name])
    for name in ASSET_JSON_FIELDS:
        body[name] = values[name].strip() or "{}"
    body["sensors_to_show"] = values["sensors_to_show"].strip() or "[]"
    return AssetForm(values), body


async def _form_choices(
    request: web.Request, user: PageUser, exclude: int | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Asset types, and assets that may be a parent (never the asset itself)."""
    answer = await fetch_as(request, user, f"{API}/assets/types")
    types = json_of(request, answer)
    if answer.status != 200 or not isinstance(types, list):
        raise BackendAnswerError(answer.status, message_of(types))
    assets, _ = await listing(request, user, "assets", {"fields": "id,name,account_id"})
    parents = sorted(
        (
            {"id": raw["id"], "name": raw.get("name", "")}
            for raw in assets
            if isinstance(raw, dict)
            and int_of(raw.get("id")) is not None
            and raw["id"] != exclude
        ),
        key=lambda row: (str(row["name"]).casefold(), row["id"]),
    )
    return [t for t in types if isinstance(t, dict)], parents


async def _asset_form_page(
    request: web.Request,
    user: PageUser,
    form: AssetForm,
    *,
    asset: dict[str, Any] | None,
    status: int = 200,
) -> web.Response:
    choices = await _or_error_page(
        request,
        user,
        "Assets are unavailable",
        _form_choices(
            request, user, None if asset is None else int_of(asset.get("id"))
        ),
    )
    if isinstance(choices, web.Response):
        return choices
    types, parents = choices
    return render(
        request,
        "asset_form.html",
        {
            "user": user,
            "asset": asset,
            "form": form,
            "types": types,
            "parents": parents,
            "fields": ASSET_FORM_FIELDS,
        },
        status=status,
    )


def _rejected(form: AssetForm | SensorForm, answer: BackendAnswer) -> int:
    """Put the API's refusal on the form; the page's status."""
    body = _body(answer)
    if answer.status == 422:
        form.errors = field_errors(body)
        unknown = [name for name in form.errors if name not in form.values]
        form.message = "Please correct the fields marked below." + (
            " " + " ".join(f"{name}: {form.errors[name]}" for name in unknown)
            if unknown
            else ""
        )
        if not form.errors:
            form.message = message_of(body) or "The API refused these values."
        return 422
    if answer.status == 403:
        form.message = message_of(body) or "You are not allowed to do this."
        if form.message == "Forbidden" or "not allowed" not in form.message:
            form.message = (
                "You are not allowed to do this (the API answered 403 Forbidden)."
            )
        return 403
    form.message = message_of(body) or f"The API answered {answer.status}."
    return answer.status if answer.status >= 400 else 502


@routes.get("/assets/new")
async def get_new_asset(request: web.Request) -> web.Response:
    """A form for a new asset (a parent may be given: ?parent=<id>)."""
    user = await page_user(request)
    parent = request.query.get("parent", "")
    form = AssetForm({name: "" for name in ASSET_FORM_FIELDS})
    form.values.update(
        {
            "parent_asset_id": parent if parent.isdecimal() else "",
            "attributes": "{}",
            "flex_model": "{}",
            "flex_context": "{}",
            "sensors_to_show": "[]",
        }
    )
    return await _asset_form_page(request, user, form, asset=None)


@routes.post("/assets/new")
async def post_new_asset(request: web.Request) -> web.Response:
    """Create the asset with the API; back to the form with its messages."""
    user = await page_user(request)
    form_data = await _checked_form(request, user)
    form, body = asset_body(form_data)
    if body["parent_asset_id"] is None:
        del body["parent_asset_id"]
    try:
        answer = await _send(request, user, "POST", f"{API}/assets", body)
    except ApiError as err:
        form.message = err.message
        return await _asset_form_page(
            request, user, form, asset=None, status=err.status
        )
    created = _body(answer)
    if answer.status == 201 and isinstance(created, dict) and int_of(created.get("id")):
        logger.info("asset created on a page", extra={"user_id": user.user_id})
        return redirect(f"/assets/{created['id']}?notice=created")
    status = _rejected(form, answer)
    return await _asset_form_page(request, user, form, asset=None, status=status)


@routes.get(f"/assets/{ID}/edit")
async def get_edit_asset(request: web.Request) -> web.Response:
    """The asset's edit form."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    asset = await _asset_or_error_page(request, user, asset_id)
    if isinstance(asset, web.Response):
        return asset
    return await _asset_form_page(request, user, asset_form_of(asset), asset=asset)


@routes.post(f"/assets/{ID}/edit")
async def post_edit_asset(request: web.Request) -> web.Response:
    """Save the asset with the API (PATCH); back to the form with its messages."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    form_data = await _checked_form(request, user)
    asset = await _asset_or_error_page(request, user, asset_id)
    if isinstance(asset, web.Response):
        return asset
    form, body = asset_body(form_data)
    if body["parent_asset_id"] == asset.get("parent_asset_id"):
        del body["parent_asset_id"]  # unchanged: no parent checks needed
    try:
        answer = await _send(request, user, "PATCH", f"{API}/assets/{asset_id}", body)
    except ApiError as err:
        form.message = err.message
        return await _asset_form_page(
            request, user, form, asset=asset, status=err.status
        )
    if answer.status == 200:
        logger.info(
            "asset %d edited on a page", asset_id, extra={"user_id": user.user_id}
        )
        return redirect(f"/assets/{asset_id}?notice=saved")
    status = _rejected(form, answer)
    return await _asset_form_page(request, user, form, asset=asset, status=status)


# --- delete an asset -----------------------------------------------------------------


async def _asset_and_below(
    request: web.Request, user: PageUser, asset_id: int
) -> tuple[dict[str, Any], list[object]]:
    """The asset, and the assets of its subtree (itself too) with their sensors."""
    asset = await _object(request, user, "asset", asset_id)
    below, _ = await listing(
        request,
        user,
        "assets",
        {"root": str(asset_id), "fields": "id,name,sensors,parent_asset_id"},
    )
    return asset, below


@routes.get(f"/assets/{ID}/delete")
async def get_delete_asset(request: web.Request) -> web.Response:
    """What deleting the asset deletes (child assets, sensors, data), to confirm."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    loaded = await _or_error_page(
        request,
        user,
        "The asset is unavailable",
        _asset_and_below(request, user, asset_id),
    )
    if isinstance(loaded, web.Response):
        return loaded
    asset, below = loaded
    children = []
    sensors: list[dict[str, Any]] = []
    for raw in below:
        if not isinstance(raw, dict):
            continue
        if raw.get("id") != asset_id:
            children.append({"id": raw.get("id"), "name": raw.get("name")})
        for sensor in raw.get("sensors") or ():
            if isinstance(sensor, dict):
                sensors.append({**sensor, "asset": raw.get("name")})
    counted = 0
    values: int | None = 0
    try:
        for sensor in sensors[:MAX_COUNTED]:
            count = await data_count(request, user, int_of(sensor.get("id")) or 0)
            sensor["values"] = count
            if count is not None and values is not None:
                values += count
                counted += 1
    except ApiError:
        values = None
    return render(
        request,
        "asset_delete.html",
        {
            "user": user,
            "asset": asset,
            "children": children,
            "sensors": sensors,
            "values": values,
            "all_counted": counted == len(sensors),
            "may_delete": may_administer(user, asset.get("account_id")),
        },
    )


@routes.post(f"/assets/{ID}/delete")
async def post_delete_asset(request: web.Request) -> web.Response:
    """Delete the asset (with its children, sensors and data) with the API."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    await _checked_form(request, user)
    try:
        answer = await _send(request, user, "DELETE", f"{API}/assets/{asset_id}", None)
    except ApiError as err:
        return titled_error_page(
            request, user, err.status, "The asset was not deleted", err.message
        )
    if answer.status in (200, 204):
        logger.info(
            "asset %d deleted on a page", asset_id, extra={"user_id": user.user_id}
        )
        return redirect("/assets?notice=deleted")
    refusal = _refused(answer, "asset", asset_id)
    if refusal.status == 403:
        refusal = PageError(
            403,
            "Not allowed",
            f"You may not delete asset {asset_id}: deleting an asset needs an "
            "account-admin of its account (the API answered 403 Forbidden).",
        )
    return _page_error(request, user, refusal)


# --- sensors -------------------------------------------------------------------------


@dataclass(slots=True)
class SensorForm:
    """What the sensor form shows: values as typed, and the API's messages."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def error(self, name: str) -> str:
        """The API's message about a field ("" if none)."""
        return self.errors.get(name, "")


def sensor_body(form: Form) -> tuple[SensorForm, dict[str, Any]]:
    """The sensor form as typed, and the API body it makes."""
    values = {name: _field(form, name) for name in SENSOR_FIELDS}
    body: dict[str, Any] = {name: values[name].strip() for name in SENSOR_FIELDS}
    body["name"] = values["name"]
    body["attributes"] = body["attributes"] or "{}"
    if not body["timezone"]:
        del body["timezone"]
    return SensorForm(values), body


def _sensor_page(
    request: web.Request,
    user: PageUser,
    form: SensorForm,
    *,
    asset: dict[str, Any],
    sensor: dict[str, Any] | None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "sensor_form.html",
        {"user": user, "form": form, "asset": asset, "sensor": sensor},
        status=status,
    )


@routes.get(f"/assets/{ID}/sensors/new")
async def get_new_sensor(request: web.Request) -> web.Response:
    """A form for a new sensor of the asset."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    asset = await _asset_or_error_page(request, user, asset_id)
    if isinstance(asset, web.Response):
        return asset
    form = SensorForm(
        {
            "name": "",
            "unit": "kW",
            "event_resolution": "PT15M",
            "timezone": "UTC",
            "attributes": "{}",
        }
    )
    return _sensor_page(request, user, form, asset=asset, sensor=None)


@routes.post(f"/assets/{ID}/sensors/new")
async def post_new_sensor(request: web.Request) -> web.Response:
    """Create the sensor with the API; back to the form with its messages."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    form_data = await _checked_form(request, user)
    asset = await _asset_or_error_page(request, user, asset_id)
    if isinstance(asset, web.Response):
        return asset
    form, body = sensor_body(form_data)
    body["generic_asset_id"] = asset_id
    try:
        answer = await _send(request, user, "POST", f"{API}/sensors", body)
    except ApiError as err:
        form.message = err.message
        return _sensor_page(
            request, user, form, asset=asset, sensor=None, status=err.status
        )
    created = _body(answer)
    if answer.status == 201 and isinstance(created, dict) and int_of(created.get("id")):
        return redirect(f"/assets/{asset_id}?notice=sensor-created")
    status = _rejected(form, answer)
    return _sensor_page(request, user, form, asset=asset, sensor=None, status=status)


async def _sensor_and_asset(
    request: web.Request, user: PageUser, sensor_id: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    sensor = await _object(request, user, "sensor", sensor_id)
    asset_id = int_of(sensor.get("generic_asset_id"))
    asset = None
    if asset_id is not None:
        try:
            asset = await _object(request, user, "asset", asset_id)
        except PageError:
            asset = None
    return sensor, asset


async def _sensor_or_error_page(
    request: web.Request, user: PageUser, sensor_id: int
) -> tuple[dict[str, Any], dict[str, Any] | None] | web.Response:
    """The sensor and its asset, or the page that says why it cannot be shown."""
    return await _or_error_page(
        request,
        user,
        "The sensor is unavailable",
        _sensor_and_asset(request, user, sensor_id),
    )


@routes.get("/sensors/" + ID)
async def get_sensor(request: web.Request) -> web.Response:
    """A sensor's properties (its chart is on the dashboard's sensor page)."""
    user = await page_user(request)
    sensor_id = int(request.match_info["id"])
    loaded = await _sensor_or_error_page(request, user, sensor_id)
    if isinstance(loaded, web.Response):
        return loaded
    sensor, asset = loaded
    return render(
        request,
        "sensor.html",
        {
            "user": user,
            "sensor": sensor,
            "asset": asset,
            "resolution_text": resolution_text(str(sensor.get("event_resolution", ""))),
            "attributes": _json_text(sensor.get("attributes"), default="{}"),
            "may_edit": asset is not None
            and may_administer(user, asset.get("account_id")),
            "notice": NOTICES.get(request.query.get("notice", "")),
        },
    )


@routes.get(f"/sensors/{ID}/edit")
async def get_edit_sensor(request: web.Request) -> web.Response:
    """The sensor's edit form."""
    user = await page_user(request)
    sensor_id = int(request.match_info["id"])
    loaded = await _sensor_or_error_page(request, user, sensor_id)
    if isinstance(loaded, web.Response):
        return loaded
    sensor, asset = loaded
    form = SensorForm(
        {
            name: str(sensor.get(name) or "")
            for name in ("name", "unit", "event_resolution", "timezone")
        }
    )
    form.values["attributes"] = _json_text(sensor.get("attributes"), default="{}")
    return _sensor_page(request, user, form, asset=asset or {}, sensor=sensor)


@routes.post(f"/sensors/{ID}/edit")
async def post_edit_sensor(request: web.Request) -> web.Response:
    """Save the sensor with the API (PATCH); back to the form with its messages."""
    user = await page_user(request)
    sensor_id = int(request.match_info["id"])
    form_data = await _checked_form(request, user)
    loaded = await _sensor_or_error_page(request, user, sensor_id)
    if isinstance(loaded, web.Response):
        return loaded
    sensor, asset = loaded
    form, body = sensor_body(form_data)
    try:
        answer = await _send(request, user, "PATCH", f"{API}/sensors/{sensor_id}", body)
    except ApiError as err:
        form.message = err.message
        return _sensor_page(
            request, user, form, asset=asset or {}, sensor=sensor, status=err.status
        )
    if answer.status == 200:
        return redirect(f"/sensors/{sensor_id}?notice=sensor-saved")
    status = _rejected(form, answer)
    return _sensor_page(
        request, user, form, asset=asset or {}, sensor=sensor, status=status
    )
