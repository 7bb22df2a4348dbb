"""An asset's charts: its sensors stacked on one shared, zoomable time axis.

The page (`/assets/<id>/charts`, or the `asset_charts.html` include of another
page) lists the asset's sensors (and those of its `sensors_to_show`); the browser
then asks `/dashboard/api/sensors/<id>/series` for each sensor in parallel, at a
resolution that fits the chart's width. That endpoint reads the backend's API as
the session's user: which sources have data in the window
(`/sensors/<id>/sources`, an index probe per source), then each source's values
(`GET /sensors/<id>/data?source=...&resolution=...`, downsampled by the backend),
so measurements, forecasts and schedules are distinct series. Annotations come
from `/assets/<id>/chart_annotations` (the asset's and its account's, shaded on
every chart) and `/sensors/<id>/chart_annotations` (each sensor's own, marked on
its chart only).

`sensors_to_show` decides the charts: each entry is one chart (a list of ids or a
{"title", "sensors"} object: those sensors as distinct series with a legend);
sensors the user may not read, or that do not exist, are left out; without it (or
none left), one chart per sensor of the asset.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from contract.sensors_to_show import parse_plots
from gateway.errors import (
    ApiError,
    UnauthorizedError,
    UnprocessableError,
    error_response,
)
from gateway.web import render
from gateway.web.calls import (
    API,
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
from gateway.web.dashboard import SensorRow, duration_ms, sensor_row
from gateway.web.sessions import PageUser

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

ID: Final = r"{id:\d{1,18}}"
# At most this many sensors are charted on one page (each chart is one request).
MAX_CHARTS: Final = 50
# Sources are drawn in this order: measurements first, then forecasts, schedules.
TYPE_ORDER: Final = {"forecaster": 1, "scheduler": 2}
RANGES: Final = {
    "day": "Last day",
    "week": "Last week",
    "month": "Last month",
    "year": "Last year",
}
DEFAULT_RANGE: Final = "week"
LOCAL_DATETIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
# Units of a device's power sensor: the asset-wide schedule form ticks these.
POWER_UNITS: Final = frozenset({"W", "kW", "MW", "GW"})


def quarter_now() -> str:
    """Now, floored to the quarter hour, in UTC (a schedule's default start)."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    return (now - dt.timedelta(minutes=now.minute % 15)).isoformat()


def source_kind(raw_type: str) -> str:
    """FlexMeasures' chart type of a source: forecaster, scheduler or its own type."""
    lowered = raw_type.lower()
    if "forecast" in lowered:
        return "forecaster"
    if "schedul" in lowered:
        return "scheduler"
    return raw_type or "other"


def sensors_to_show_groups(raw: object) -> list[dict[str, Any]]:
    """An asset's `sensors_to_show` as charts: [{"title", "sensors": [ids]}], each
    chart's ids once (see contract.sensors_to_show)."""
    return [
        {"title": plot["title"], "sensors": list(dict.fromkeys(plot["sensors"]))}
        for plot in parse_plots(raw)
    ]


def sensors_to_show_ids(raw: object) -> list[int]:
    """Sensor ids named by an asset's `sensors_to_show` (any of its shapes)."""
    ids = [i for group in sensors_to_show_groups(raw) for i in group["sensors"]]
    return list(dict.fromkeys(ids))


def _sensor_json(row: SensorRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "unit": row.unit,
        "resolution_ms": duration_ms(row.resolution) or 0,
        "resolution_text": row.resolution_text,
    }


# --- the page ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart of the page: its sensors drawn together."""

    key: str
    title: str
    sensors: list[SensorRow]

    @property
    def units(self) -> str:
        """The distinct units of its sensors, in order, as text."""
        units = dict.fromkeys(row.unit or "no unit" for row in self.sensors)
        return ", ".join(units)


def _charts(rows: list[SensorRow], groups: list[dict[str, Any]]) -> list[Chart]:
    """The page's charts: the groups of `sensors_to_show` (sensors the user may not
    read, or that do not exist, left out), or without any, one per sensor."""
    by_id = {row.id: row for row in rows}
    charts: list[Chart] = []
    seen: set[tuple[int, ...]] = set()
    for group in groups:
        members = [by_id[i] for i in group["sensors"] if i in by_id]
        ids = tuple(row.id for row in members)
        if not members or ids in seen:
            continue
        seen.add(ids)
        title = group["title"] or " and ".join(row.name for row in members)
        key = f"sensor-chart-{ids[0]}" if len(ids) == 1 else f"chart-{len(charts)}"
        charts.append(Chart(key, title, members))
    if not charts:
        charts = [Chart(f"sensor-chart-{row.id}", row.name, [row]) for row in rows]
    return charts


async def chart_context(
    request: web.Request, user: PageUser, asset: dict[str, Any]
) -> dict[str, Any]:
    """What `asset_charts.html` needs for `asset` (its JSON from the API)."""
    asset_id = int(asset["id"])
    sensors, _cut = await listing(request, user, f"assets/{asset_id}/sensors", {})
    rows = [row for row in map(sensor_row, sensors) if row is not None]
    known = {row.id for row in rows}
    for sensor_id in sensors_to_show_ids(asset.get("sensors_to_show")):
        if sensor_id in known:
            continue
        try:
            answer = await fetch_as(request, user, f"{API}/sensors/{sensor_id}")
            row = sensor_row(answer.json()) if answer.status == 200 else None
        except (ApiError, ValueError):
            row = None  # a sensor the user may not read is left out
        if row is not None:
            rows.append(row)
            known.add(row.id)
    rows = rows[:MAX_CHARTS]
    charts = _charts(rows, sensors_to_show_groups(asset.get("sensors_to_show")))
    preset = request.query.get("range", DEFAULT_RANGE)
    if preset not in (*RANGES, "custom"):
        preset = DEFAULT_RANGE
    start, end = (request.query.get(name, "") for name in ("start", "end"))
    return {
        "asset_id": asset_id,
        "asset_name": str(asset.get("name") or f"Asset {asset_id}"),
        "sensors": rows,
        "charts": charts,
        "config": {
            "asset": asset_id,
            "sensors": [_sensor_json(row) for row in rows],
            "charts": [
                {"key": c.key, "sensors": [row.id for row in c.sensors]} for c in charts
            ],
            "seriesUrl": "/dashboard/api/sensors/{id}/series",
            "annotationsUrl": f"/dashboard/api/assets/{asset_id}/annotations",
            "sensorAnnotationsUrl": "/dashboard/api/sensors/{id}/annotations",
        },
        "ranges": RANGES,
        "range": preset,
        "start": start if LOCAL_DATETIME_RE.fullmatch(start) else "",
        "end": end if LOCAL_DATETIME_RE.fullmatch(end) else "",
        "power_units": POWER_UNITS,
        "schedule_start": quarter_now(),
    }


@routes.get(rf"/assets/{ID}/charts")
async def get_asset_charts(request: web.Request) -> web.Response:
    """The asset's sensors as stacked charts sharing one time axis."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    title = "The asset is unavailable"
    try:
        answer = await fetch_as(request, user, f"{API}/assets/{asset_id}")
        body = json_of(request, answer)
        if answer.status == 401:
            raise to_login(request)
        if answer.status == 403:
            return titled_error_page(
                request,
                user,
                403,
                "Not your asset",
                f"Asset {asset_id} belongs to another account.",
            )
        if answer.status in (404, 422) or not isinstance(body, dict):
            return titled_error_page(
                request,
                user,
                404,
                "No such asset",
                f"There is no asset with ID {asset_id}.",
            )
        if answer.status != 200:
            return titled_error_page(request, user, 502, title, message_of(body))
        charts = await chart_context(request, user, body)
    except BackendAnswerError as err:
        return titled_error_page(request, user, err.status, title, err.message)
    except ApiError as err:
        return titled_error_page(request, user, err.status, title, err.message)
    return render(request, "asset_charts_page.html", {"user": user, "charts": charts})


# --- the charts' data ---------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _json_endpoint(handler: Handler) -> Handler:
    """GET only; every answer JSON (errors included), never cached."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ApiError as err:
            if err.status >= 500:
                logger.warning("%s %s: %s", request.method, request.path, err.message)
            return error_response(err)

    wrapped.__doc__ = handler.__doc__
    return wrapped


def _window(request: web.Request) -> tuple[str, str, int, int]:
    """start (as sent), duration (as sent), start and end in epoch ms; else 422."""
    errors: dict[str, list[str]] = {}
    start = request.query.get("start", "")
    duration = request.query.get("duration", "")
    start_ms = end_ms = 0
    try:
        moment = dt.datetime.fromisoformat(start)
        if moment.tzinfo is None:
            raise ValueError(start)
        start_ms = int(moment.timestamp() * 1000)
    except ValueError:
        errors["start"] = ["Not a valid aware datetime."]
    length = duration_ms(duration)
    if not length:
        errors["duration"] = ["Not a valid positive ISO 8601 duration."]
    else:
        end_ms = start_ms + length
    if errors:
        raise UnprocessableError(errors, "query")
    return start, duration, start_ms, end_ms


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


@routes.get(rf"/dashboard/api/sensors/{ID}/series")
@_json_endpoint
async def get_sensor_series(request: web.Request) -> web.Response:
    """A sensor's data over a window, one series per data source, downsampled.

    Query: `start` (aware ISO 8601), `duration`, optional `resolution` (a
    multiple of the sensor's; without it, the sensor's own) and `unit` (without
    it, the sensor's). The backend averages the values of each step.
    """
    user = await signed_in(request)
    if user is None:
        raise UnauthorizedError()
    sensor_id = int(request.match_info["id"])
    start, duration, start_ms, end_ms = _window(request)
    resolution = request.query.get("resolution", "")
    sources_query = urlencode({"start": _iso(start_ms), "end": _iso(end_ms)})
    answer = await fetch_as(
        request, user, f"{API}/sensors/{sensor_id}/sources?{sources_query}"
    )
    if answer.status != 200:
        return relay(request, answer)
    body = json_of(request, answer)
    described: dict[int, dict[str, Any]] = {}
    listed = body.get("sources") if isinstance(body, dict) else None
    for raw in listed if isinstance(listed, list) else []:
        if isinstance(raw, dict) and isinstance(raw.get("id"), int):
            raw_type = str(raw.get("type") or "")
            described[raw["id"]] = {
                "id": raw["id"],
                "name": str(raw.get("name") or ""),
                "type": source_kind(raw_type),
                "description": str(raw.get("description") or raw.get("name")),
            }
    source_ids = list(described)
    source_ids.sort(key=lambda s: (TYPE_ORDER.get(described[s]["type"], 0), s))
    # The page knows the sensor's unit; without it, the sensor is read for it.
    unit = request.query.get("unit")
    if unit is None:
        sensor_answer = await fetch_as(request, user, f"{API}/sensors/{sensor_id}")
        row = sensor_row(json_of(request, sensor_answer))
        if sensor_answer.status != 200 or row is None:
            return relay(request, sensor_answer)
        unit = row.unit
    query = {"start": start, "duration": duration, "unit": unit}
    if resolution:
        query["resolution"] = resolution
    answers = await asyncio.gather(
        *(
            fetch_as(
                request,
                user,
                f"{API}/sensors/{sensor_id}/data?"
                + urlencode({**query, "source": source_id}),
            )
            for source_id in source_ids
        )
    )
    series = []
    step = resolution
    for source_id, answer in zip(source_ids, answers, strict=True):
        if answer.status != 200:
            return relay(request, answer)
        body = json_of(request, answer)
        if not isinstance(body, dict):
            continue
        step = str(body.get("resolution") or step)
        series.append({"source": described[source_id], "values": body.get("values")})
    return web.json_response(
        {
            "sensor": sensor_id,
            "unit": unit,
            "start": start,
            "duration": duration,
            "resolution": step,
            "series": series,
        },
        headers={"Cache-Control": "no-store"},
    )


async def _annotations(request: web.Request, kind: str) -> web.Response:
    """`GET /api/v3_0/<kind>/<id>/chart_annotations` (start, end) as the user."""
    user = await signed_in(request)
    if user is None:
        raise UnauthorizedError()
    target = int(request.match_info["id"])
    query = {k: request.query[k] for k in ("start", "end") if k in request.query}
    answer = await fetch_as(
        request,
        user,
        f"{API}/{kind}/{target}/chart_annotations?{urlencode(query)}",
    )
    return relay(request, answer)


@routes.get(rf"/dashboard/api/assets/{ID}/annotations")
@_json_endpoint
async def get_asset_annotations(request: web.Request) -> web.Response:
    """`GET /api/v3_0/assets/<id>/chart_annotations` (start, end) as the user."""
    return await _annotations(request, "assets")


@routes.get(rf"/dashboard/api/sensors/{ID}/annotations")
@_json_endpoint
async def get_sensor_annotations(request: web.Request) -> web.Response:
    """`GET /api/v3_0/sensors/<id>/chart_annotations` (start, end) as the user."""
    return await _annotations(request, "sensors")
