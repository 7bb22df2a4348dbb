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
from urllib.parse import urlencode

from aiohttp import web

from gateway import keys
from gateway.errors import (
    ApiError,
    MethodNotAllowedError,
    UnauthorizedError,
    error_response,
)
from gateway.web import render
from gateway.web.calls import (
    API,
    MAX_LISTED,
    BackendAnswerError,
    fetch_as,
    json_of,
    listing,
    message_of,
    page_user,
    relay,
    signed_in,
    titled_error_page,
    to_login,
)
from gateway.web.values import int_of, text_of

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

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


def sensor_row(raw: object) -> SensorRow | None:
    """A sensor of the API's listing (None if it lacks an id)."""
    if not isinstance(raw, dict) or (sensor_id := int_of(raw.get("id"))) is None:
        return None
    resolution = text_of(raw.get("event_resolution"))
    return SensorRow(
        id=sensor_id,
        name=text_of(raw.get("name")) or f"Sensor {sensor_id}",
        unit=text_of(raw.get("unit")),
        resolution=resolution,
        resolution_text=resolution_text(resolution),
        asset_id=int_of(raw.get("generic_asset_id")),
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
        if isinstance(raw, dict) and (asset_id := int_of(raw.get("id"))) is not None:
            records[asset_id] = raw
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for asset_id, raw in records.items():
        parent = int_of(raw.get("parent_asset_id"))
        if parent is None or parent not in records or parent == asset_id:
            roots.append(asset_id)
        else:
            children.setdefault(parent, []).append(asset_id)

    def name_of(asset_id: int) -> tuple[str, int]:
        return text_of(records[asset_id].get("name")).casefold(), asset_id

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
            name=text_of(raw.get("name")) or f"Asset {asset_id}",
            type_name=text_of(kind.get("name")) if isinstance(kind, dict) else "",
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


# --- pages ----------------------------------------------------------------------------


def _origin(request: web.Request) -> str:
    """This host's origin, for the examples in empty states."""
    return f"{request[keys.SCHEME]}://{request[keys.PUBLIC_HOST]}"


@routes.get("/dashboard")
async def get_dashboard(request: web.Request) -> web.Response:
    """The account's assets as trees, each with its sensors."""
    user = await page_user(request)
    try:
        assets, assets_cut = await listing(
            request, user, "assets", {"fields": ASSET_FIELDS}
        )
        sensors, sensors_cut = await listing(request, user, "sensors", {})
    except BackendAnswerError as err:
        if err.status == 401:
            raise to_login(request) from err
        return titled_error_page(
            request, user, err.status, "The dashboard is unavailable", err.message
        )
    except ApiError as err:
        return titled_error_page(
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
    user = await page_user(request)
    sensor_id = int(request.match_info["id"])
    try:
        answer = await fetch_as(request, user, f"{API}/sensors/{sensor_id}")
        body = json_of(request, answer)
    except ApiError as err:
        return titled_error_page(
            request, user, err.status, "The sensor is unavailable", err.message
        )
    if answer.status == 401:
        raise to_login(request)
    if answer.status == 403:
        return titled_error_page(
            request,
            user,
            403,
            "Not your sensor",
            f"Sensor {sensor_id} belongs to another account.",
        )
    if answer.status in (404, 422):  # FlexMeasures' answer to an unknown id is 422
        return titled_error_page(
            request,
            user,
            404,
            "No such sensor",
            f"There is no sensor with ID {sensor_id}.",
        )
    sensor = sensor_row(body) if answer.status == 200 else None
    if sensor is None:
        return titled_error_page(
            request,
            user,
            502,
            "The sensor is unavailable",
            message_of(body) or "The backend gave an unreadable answer.",
        )
    asset_name = ""
    if sensor.asset_id is not None:
        try:
            asset = await fetch_as(request, user, f"{API}/assets/{sensor.asset_id}")
            raw = asset.json() if asset.status == 200 else None
        except (ApiError, ValueError):
            raw = None  # the breadcrumb does without the asset's name
        if isinstance(raw, dict):
            asset_name = text_of(raw.get("name"))
    timezone = text_of(body.get("timezone")) if isinstance(body, dict) else ""
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
    user = await signed_in(request)
    if user is None:
        raise UnauthorizedError()
    sensor_id = int(request.match_info["id"])
    query = {name: request.query[name] for name in DATA_PARAMS if name in request.query}
    if "unit" not in query:
        sensor = await fetch_as(request, user, f"{API}/sensors/{sensor_id}")
        row = sensor_row(json_of(request, sensor)) if sensor.status == 200 else None
        if row is None:
            return relay(request, sensor)
        query["unit"] = row.unit
    answer = await fetch_as(
        request, user, f"{API}/sensors/{sensor_id}/data?{urlencode(query)}"
    )
    return relay(request, answer)


@routes.get("/")
async def get_root(request: web.Request) -> web.Response:
    """A tenant's home: the dashboard (which sends strangers on to /login)."""
    raise web.HTTPFound("/dashboard", headers={"Cache-Control": "no-store"})
