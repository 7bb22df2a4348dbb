"""The data dashboard: the account's assets and a chart of a sensor's data.

Everything is read from the tenant's backend through its v3_0 API as the signed-in
user (the same signed identity an API token would give), so the backend's access
rules apply unchanged. The chart's data comes from a session-authenticated JSON
endpoint under /dashboard/api that relays `GET /api/v3_0/sensors/<id>/data`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

from aiohttp import web

from contract.identity import Caller
from gateway import keys
from gateway.errors import (
    ApiError,
    MethodNotAllowedError,
    UnauthorizedError,
    UpstreamUnavailableError,
    error_response,
)
from gateway.proxy import BackendAnswer, fetch
from gateway.signing import identity_for
from gateway.web import render
from gateway.web.sessions import PageUser, current_user

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

API: Final = "/api/v3_0"
# Listings are read in pages of PAGE_SIZE, up to MAX_LISTED items (a page with
# more would be of no use to anyone; the API has them all).
PAGE_SIZE: Final = 1000
MAX_LISTED: Final = 5000
ASSET_FIELDS: Final = "id,name,parent_asset_id,generic_asset_type"
# Assets nested deeper than this are shown as roots of their own (a page, not a
# recursion limit, decides how deep a tree may be).
MAX_DEPTH: Final = 32
# Query parameters the chart's data endpoint passes on to the backend.
DATA_PARAMS: Final = ("start", "duration", "unit", "resolution", "source")
PRESETS: Final = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
DEFAULT_PRESET: Final = "24h"
LOCAL_DATETIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
DURATION_RE: Final = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)
# Largest first: a resolution is named in the largest unit that divides it.
UNITS: Final = (
    (86_400_000, "day", "days"),
    (3_600_000, "hour", "hours"),
    (60_000, "minute", "minutes"),
    (1000, "second", "seconds"),
    (1, "millisecond", "milliseconds"),
)


@dataclass(frozen=True, slots=True)
class SensorRow:
    """A sensor as the dashboard lists it."""

    id: int
    name: str
    unit: str
    resolution: str  # ISO 8601, as the API gives it
    resolution_text: str  # for people: "15 minutes", "instantaneous"
    asset_id: int | None


@dataclass(frozen=True, slots=True)
class AssetNode:
    """An asset with its sensors and child assets."""

    id: int
    name: str
    type_name: str
    sensors: tuple[SensorRow, ...]
    children: tuple[AssetNode, ...]


@dataclass(frozen=True, slots=True)
class Tree:
    """The account's assets as trees, and sensors of no listed asset."""

    roots: tuple[AssetNode, ...]
    loose_sensors: tuple[SensorRow, ...]
    asset_count: int
    sensor_count: int


# --- parsing the backend's JSON ---------------------------------------------------


def duration_ms(text: str) -> int | None:
    """Milliseconds of an ISO 8601 duration in days, hours, minutes, seconds."""
    match = DURATION_RE.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        return None
    days, hours, minutes = (int(match[name] or 0) for name in ("d", "h", "m"))
    seconds = float(match["s"] or 0)
    total = ((days * 24 + hours) * 60 + minutes) * 60_000 + round(seconds * 1000)
    return total


def resolution_text(iso: str) -> str:
    """A resolution for people: "15 minutes", "1 hour", "instantaneous"."""
    ms = duration_ms(iso)
    if ms is None:
        return iso
    if ms == 0:
        return "instantaneous"
    for size, one, many in UNITS:
        if ms % size == 0:
            count = ms // size
            return f"{count} {one if count == 1 else many}"
    return iso  # unreachable: every count of ms is a count of milliseconds


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def sensor_row(raw: object) -> SensorRow | None:
    """A sensor of the API's listing (None if it lacks an id)."""
    if not isinstance(raw, dict) or (sensor_id := _int(raw.get("id"))) is None:
        return None
    resolution = _text(raw.get("event_resolution"))
    return SensorRow(
        id=sensor_id,
        name=_text(raw.get("name")) or f"Sensor {sensor_id}",
        unit=_text(raw.get("unit")),
        resolution=resolution,
        resolution_text=resolution_text(resolution),
        asset_id=_int(raw.get("generic_asset_id")),
    )


def build_tree(assets: Sequence[object], sensors: Sequence[object]) -> Tree:
    """Assets nested by `parent_asset_id` (by name), each with its sensors."""
    rows = [row for row in map(sensor_row, sensors) if row is not None]
    by_asset: dict[int, list[SensorRow]] = {}
    for row in rows:
        if row.asset_id is not None:
            by_asset.setdefault(row.asset_id, []).append(row)
    records: dict[int, dict[str, Any]] = {}
    for raw in assets:
        if isinstance(raw, dict) and (asset_id := _int(raw.get("id"))) is not None:
            records[asset_id] = raw
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for asset_id, raw in records.items():
        parent = _int(raw.get("parent_asset_id"))
        if parent is None or parent not in records or parent == asset_id:
            roots.append(asset_id)
        else:
            children.setdefault(parent, []).append(asset_id)

    def name_of(asset_id: int) -> tuple[str, int]:
        return _text(records[asset_id].get("name")).casefold(), asset_id

    placed: set[int] = set()

    def node(asset_id: int, depth: int) -> AssetNode:
        placed.add(asset_id)
        raw = records[asset_id]
        kind = raw.get("generic_asset_type")
        kids: list[AssetNode] = []
        if depth < MAX_DEPTH:
            kids = [
                node(child, depth + 1)
                for child in sorted(children.get(asset_id, ()), key=name_of)
                if child not in placed
            ]
        return AssetNode(
            id=asset_id,
            name=_text(raw.get("name")) or f"Asset {asset_id}",
            type_name=_text(kind.get("name")) if isinstance(kind, dict) else "",
            sensors=tuple(sorted(by_asset.get(asset_id, ()), key=_sensor_order)),
            children=tuple(kids),
        )

    trees = [node(asset_id, 0) for asset_id in sorted(roots, key=name_of)]
    # Whatever no root reached (too deep, or a parent cycle) becomes a root too.
    while len(placed) < len(records):
        rest = min((a for a in records if a not in placed), key=name_of)
        trees.append(node(rest, 0))
    loose = tuple(
        sorted((row for row in rows if row.asset_id not in records), key=_sensor_order)
    )
    return Tree(tuple(trees), loose, len(records), len(rows))


def _sensor_order(row: SensorRow) -> tuple[str, int]:
    return row.name.casefold(), row.id


# --- calling the backend as the user ----------------------------------------------


def _caller(user: PageUser) -> Caller:
    record = user.record
    return Caller(
        user_id=record.user_id,
        account_id=record.account_id,
        roles=record.roles,
        auth_time_ms=record.issued_at_ms,
    )


async def _get(request: web.Request, user: PageUser, target: str) -> BackendAnswer:
    """GET `target` from the tenant's backend as the session's user."""
    tenant = request[keys.TENANT]
    identity = identity_for(request, tenant, _caller(user))
    return await fetch(request, tenant, identity, target)


class BackendAnswerError(Exception):
    """The backend refused or failed a call a page needed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_of(request: web.Request, answer: BackendAnswer) -> object:
    try:
        return answer.json()
    except ValueError as err:
        tenant = request[keys.TENANT].subdomain
        raise UpstreamUnavailableError(
            f"The backend of tenant '{tenant}' gave an unreadable answer."
        ) from err


def _message(body: object) -> str:
    """The text of a FlexMeasures error body ({"message": ...} in its shapes)."""
    if isinstance(body, dict):
        message = body.get("message", body.get("errors"))
        if isinstance(message, str):
            return message
        if isinstance(message, list):
            return " ".join(_message({"message": item}) for item in message)
        if isinstance(message, dict):
            return " ".join(
                _message({"message": value}) for value in message.values()
            ).strip()
    return ""


async def _listing(
    request: web.Request, user: PageUser, path: str, query: dict[str, str]
) -> tuple[list[object], bool]:
    """Every item of a paginated listing (up to MAX_LISTED); whether it was cut."""
    items: list[object] = []
    page = 1
    while True:
        params = urlencode({**query, "page": page, "per_page": PAGE_SIZE})
        answer = await _get(request, user, f"{API}/{path}?{params}")
        body = _json_of(request, answer)
        if answer.status != 200:
            raise BackendAnswerError(answer.status, _message(body))
        data = body.get("data") if isinstance(body, dict) else None
        total = body.get("num-records") if isinstance(body, dict) else None
        if not isinstance(data, list) or _int(total) is None:
            raise UpstreamUnavailableError(
                f"The backend of tenant '{request[keys.TENANT].subdomain}' gave an "
                "unreadable listing."
            )
        items.extend(data)
        if not data or len(items) >= (_int(total) or 0):
            return items, False
        if len(items) >= MAX_LISTED:
            return items[:MAX_LISTED], True
        page += 1


# --- pages ----------------------------------------------------------------------------


async def _signed_in(request: web.Request) -> PageUser | None:
    """The session's user, charged one request of the tenant's rate limits.

    The dashboard reads the same data as the API, so it counts as the API does: the
    session has a bucket of the tenant's `per_token` size of its own (as each API
    token has), and shares the tenant's `per_tenant` bucket. Past a limit it is
    FlexMeasures' 429 (JSON under /dashboard/api, a page elsewhere) with
    X-RateLimit-* and Retry-After. No session: nothing is charged.
    """
    user = await current_user(request)
    if user is None:
        return None
    request[keys.USER_ID] = user.user_id
    headers = await request.app[keys.LIMITER].charge(
        request[keys.TENANT], user.session_id
    )
    if headers is not None:  # middlewares.add_standard_headers puts them on the answer
        request[keys.RATE_HEADERS] = headers
    return user


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='/')}")


def _origin(request: web.Request) -> str:
    """This host's origin, for the examples in empty states."""
    return f"{request[keys.SCHEME]}://{request[keys.PUBLIC_HOST]}"


def _error_page(
    request: web.Request, user: PageUser, status: int, title: str, message: str
) -> web.Response:
    if status >= 500:
        logger.warning("%s %s: %s", request.method, request.path, message)
    return render(
        request,
        "dashboard_error.html",
        {"user": user, "title": title, "message": message},
        status=status,
    )


@routes.get("/dashboard")
async def get_dashboard(request: web.Request) -> web.Response:
    """The account's assets as trees, each with its sensors."""
    user = await _signed_in(request)
    if user is None:
        raise _to_login(request)
    try:
        assets, assets_cut = await _listing(
            request, user, "assets", {"fields": ASSET_FIELDS}
        )
        sensors, sensors_cut = await _listing(request, user, "sensors", {})
    except BackendAnswerError as err:
        if err.status == 401:
            raise _to_login(request) from err
        return _error_page(
            request, user, err.status, "The dashboard is unavailable", err.message
        )
    except ApiError as err:
        return _error_page(
            request, user, err.status, "The dashboard is unavailable", err.message
        )
    return render(
        request,
        "dashboard.html",
        {
            "user": user,
            "tree": build_tree(assets, sensors),
            "cut": assets_cut or sensors_cut,
            "max_listed": MAX_LISTED,
            "origin": _origin(request),
        },
    )


@routes.get(r"/dashboard/sensors/{id:\d{1,18}}")
async def get_sensor_page(request: web.Request) -> web.Response:
    """A sensor's data over a chosen window, as a zoomable chart."""
    user = await _signed_in(request)
    if user is None:
        raise _to_login(request)
    sensor_id = int(request.match_info["id"])
    try:
        answer = await _get(request, user, f"{API}/sensors/{sensor_id}")
        body = _json_of(request, answer)
    except ApiError as err:
        return _error_page(
            request, user, err.status, "The sensor is unavailable", err.message
        )
    if answer.status == 401:
        raise _to_login(request)
    if answer.status == 403:
        return _error_page(
            request,
            user,
            403,
            "Not your sensor",
            f"Sensor {sensor_id} belongs to another account.",
        )
    if answer.status in (404, 422):  # FlexMeasures' answer to an unknown id is 422
        return _error_page(
            request,
            user,
            404,
            "No such sensor",
            f"There is no sensor with ID {sensor_id}.",
        )
    sensor = sensor_row(body) if answer.status == 200 else None
    if sensor is None:
        return _error_page(
            request,
            user,
            502,
            "The sensor is unavailable",
            _message(body) or "The backend gave an unreadable answer.",
        )
    asset_name = ""
    if sensor.asset_id is not None:
        try:
            asset = await _get(request, user, f"{API}/assets/{sensor.asset_id}")
            raw = asset.json() if asset.status == 200 else None
        except (ApiError, ValueError):
            raw = None  # the breadcrumb does without the asset's name
        if isinstance(raw, dict):
            asset_name = _text(raw.get("name"))
    timezone = _text(body.get("timezone")) if isinstance(body, dict) else ""
    preset = request.query.get("preset", DEFAULT_PRESET)
    if preset not in (*PRESETS, "custom"):
        preset = DEFAULT_PRESET
    start, end = (request.query.get(name, "") for name in ("start", "end"))
    return render(
        request,
        "dashboard_sensor.html",
        {
            "user": user,
            "sensor": sensor,
            "resolution_ms": duration_ms(sensor.resolution) or 0,
            "sensor_timezone": timezone,
            "asset_name": asset_name,
            "presets": PRESETS,
            "preset": preset,
            "start": start if LOCAL_DATETIME_RE.fullmatch(start) else "",
            "end": end if LOCAL_DATETIME_RE.fullmatch(end) else "",
            "origin": _origin(request),
        },
    )


# --- the chart's data -----------------------------------------------------------------


def _relay(request: web.Request, answer: BackendAnswer) -> web.Response:
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


@routes.route("*", r"/dashboard/api/sensors/{id:\d{1,18}}/data")
async def get_sensor_data(request: web.Request) -> web.Response:
    """`GET /api/v3_0/sensors/<id>/data` as the session's user (unit: the sensor's).

    The session cookie authenticates (401 without one). A browser sends the cookie
    on cross-site GETs only for top-level navigation (SameSite=Lax), and a JSON
    answer is unreadable to pages of other origins, so a GET needs no CSRF token.
    Every answer is JSON, errors included (this is no page, whatever its path).
    """
    try:
        if request.method != "GET":
            raise MethodNotAllowedError(
                f"The method {request.method} is not allowed for {request.path}.",
                headers={"Allow": "GET"},
            )
        return await _sensor_data(request)
    except ApiError as err:
        if err.status >= 500:
            logger.warning("%s %s: %s", request.method, request.path, err.message)
        return error_response(err)


async def _sensor_data(request: web.Request) -> web.Response:
    user = await _signed_in(request)
    if user is None:
        raise UnauthorizedError()
    sensor_id = int(request.match_info["id"])
    query = {name: request.query[name] for name in DATA_PARAMS if name in request.query}
    if "unit" not in query:
        sensor = await _get(request, user, f"{API}/sensors/{sensor_id}")
        row = sensor_row(_json_of(request, sensor)) if sensor.status == 200 else None
        if row is None:
            return _relay(request, sensor)
        query["unit"] = row.unit
    answer = await _get(
        request, user, f"{API}/sensors/{sensor_id}/data?{urlencode(query)}"
    )
    return _relay(request, answer)


@routes.get("/")
async def get_root(request: web.Request) -> web.Response:
    """A tenant's home: the dashboard (which sends strangers on to /login)."""
    raise web.HTTPFound("/dashboard", headers={"Cache-Control": "no-store"})
