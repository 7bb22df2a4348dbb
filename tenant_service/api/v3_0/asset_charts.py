"""Asset charts (FlexMeasures 1.0.1): GET /assets/<id>/chart (a Vega-Lite spec),
/chart_data, /chart_annotations and /kpis.

Query parameters as FlexMeasures: `start`, `end`, `duration`, `prior`,
`beliefs-after` and their legacy names `event_starts_after`, `event_ends_before`,
`beliefs_before`, `beliefs_after`; the chart's `include-data`, `combine-legend`,
`dataset-name`, `width`, `height` (and underscore spellings).

Decisions: the chart draws the asset's `sensors_to_show` that the caller may read
(none when it is empty, as FlexMeasures 1.0.1 answers); the spec equals
FlexMeasures' (compared side by side: single sensors, groups of sensors with shared
units, combine-legend, annotation layers); `chart-type` is ignored.
chart_annotations are the asset's and its account's annotations, as FlexMeasures'
(not its sensors'). GET /sensors/<id>/chart_annotations (ours; FlexMeasures has it
as /api/dev/sensor/<id>/chart_annotations) answers a sensor's in the same records.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from contract.sensors_to_show import parse_plots
from tenant_service import acl, keys
from tenant_service import units as units_module
from tenant_service.api import NOT_BOOLEAN, FieldError, parse_bool, parse_path_id
from tenant_service.api.v3_0 import PREFIX, load_asset, principal
from tenant_service.api.v3_0.annotation_layers import add_annotation_layers
from tenant_service.errors import ForbiddenError, NotFoundError, ValidationError
from tenant_service.store import annotations as annotation_store
from tenant_service.store import beliefs as belief_store
from tenant_service.store import charts as chart_store
from tenant_service.store import sensors as sensor_store
from tenant_service.store import sources as source_store
from tenant_service.store.assets import AssetRecord
from tenant_service.store.sensors import SensorRecord
from tenant_service.timing import (
    TimingError,
    parse_datetime,
    parse_duration,
    to_epoch_ms,
)

routes = web.RouteTableDef()

# canonical name -> legacy alias
WINDOW: Final = {
    "start": "event_starts_after",
    "end": "event_ends_before",
    "prior": "beliefs_before",
    "beliefs-after": "beliefs_after",
}
CHART_FLAGS: Final = {
    "include-data": "include_data",
    "combine-legend": "combine_legend",
    "include-asset-annotations": "include_asset_annotations",
    "include-account-annotations": "include_account_annotations",
}
DATA_FLAGS: Final = {
    "most-recent-beliefs-only": "most_recent_beliefs_only",
    "use-latest-version-per-event": "use_latest_version_per_event",
    "compress-json": "compress_json",
}
NOT_A_DATETIME: Final = "Not a valid datetime."


def _pick(query: Mapping[str, str], name: str, alias: str) -> str | None:
    if name in query:
        return query[name]
    return query.get(alias)


def parse_window(
    query: Mapping[str, str], errors: dict[str, list[str]]
) -> dict[str, int | None]:
    """start, end, prior, beliefs-after in ms (None if not given); `duration`
    with one of start/end derives the other."""
    window: dict[str, int | None] = {}
    for name, alias in WINDOW.items():
        raw = _pick(query, name, alias)
        window[name] = None
        if raw is not None:
            try:
                window[name] = to_epoch_ms(parse_datetime(raw))
            except TimingError as err:
                errors[name] = [str(err)]
    if "duration" in query:
        try:
            duration = parse_duration(query["duration"], allow_negative=False)
        except TimingError as err:
            errors["duration"] = [str(err)]
        else:
            start, end = window["start"], window["end"]
            if start is not None and end is None:
                window["end"] = start + duration
            elif end is not None and start is None:
                window["start"] = end - duration
    return window


def parse_flags(
    query: Mapping[str, str],
    flags: Mapping[str, str],
    defaults: Mapping[str, bool],
    errors: dict[str, list[str]],
) -> dict[str, bool]:
    """Boolean query flags by canonical name (either spelling accepted)."""
    out: dict[str, bool] = {}
    for name, alias in flags.items():
        raw = _pick(query, name, alias)
        out[name] = defaults.get(name, False)
        if raw is not None:
            try:
                out[name] = parse_bool(raw)
            except FieldError:
                errors[name] = [NOT_BOOLEAN]
    return out


async def _readable_asset(request: web.Request) -> AssetRecord:
    asset = await load_asset(
        request[keys.CONN], parse_path_id(request.match_info["id"])
    )
    if not acl.may_read(principal(request), asset.owner):
        raise ForbiddenError()
    return asset


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


async def _chart_sensors(
    request: web.Request, asset: AssetRecord
) -> tuple[list[dict[str, Any]], dict[int, SensorRecord], dict[int, str]]:
    """The plots, their readable sensors, and the names of those sensors' assets."""
    conn = request[keys.CONN]
    who = principal(request)
    plots = parse_plots(asset.sensors_to_show)
    found: dict[int, SensorRecord] = {}
    for sensor_id in chart_store.flatten_ids(plots):
        sensor = await sensor_store.get_sensor(conn, sensor_id)
        if sensor is not None and acl.may_read(who, sensor.owner):
            found[sensor_id] = sensor
    asset_names = {asset.id: asset.name}
    for sensor in found.values():
        if sensor.generic_asset_id not in asset_names:
            owner_asset = await load_asset(conn, sensor.generic_asset_id)
            asset_names[owner_asset.id] = owner_asset.name
    plots = [
        {**plot, "sensors": [s for s in plot["sensors"] if s in found]}
        for plot in plots
    ]
    return [p for p in plots if p["sensors"]], found, asset_names


def _source_dict(source: source_store.SourceRecord) -> dict[str, Any]:
    """FlexMeasures' DataSource.as_dict."""
    raw = source.type or ""
    if "forecast" in raw.lower():
        kind = "forecaster"
    elif "schedul" in raw.lower():
        kind = "scheduler"
    else:
        kind = "other"
    description = source.name
    if source.model:
        description += f"'s {source.model} "
        description += raw if raw.lower() not in source.model.lower() else "model"
        if source.version:
            description += f" v{source.version}"
    return {
        "id": source.id,
        "name": source.name,
        "model": source.model or "",
        "version": source.version or "",
        "type": kind,
        "raw_type": raw,
        "display_type": kind if kind != "other" else raw or "other",
        "description": description,
    }


def _sensor_dict(sensor: SensorRecord, asset_name: str) -> dict[str, Any]:
    return {
        "asset_id": sensor.generic_asset_id,
        "id": sensor.id,
        "name": sensor.name,
        "sensor_unit": sensor.unit,
        "event_resolution": sensor.event_resolution_ms / 1000,
        "description": f"{sensor.name} ({asset_name})",
        "asset_description": asset_name,
    }


async def _records(
    request: web.Request,
    found: dict[int, SensorRecord],
    asset_names: dict[int, str],
    window: dict[str, int | None],
    most_recent_only: bool,
) -> list[dict[str, Any]]:
    """FlexMeasures' chart data records."""
    conn = request[keys.CONN]
    rows = await chart_store.chart_beliefs(
        conn,
        {sensor_id: s.event_resolution_ms for sensor_id, s in found.items()},
        start=window["start"],
        end=window["end"],
        beliefs_after=window["beliefs-after"],
        beliefs_before=window["prior"],
        most_recent_only=most_recent_only,
    )
    # As FlexMeasures: coarser sensors are resampled to the finest resolution shown
    # (each value repeated, its horizon following each sub-event's end), and the
    # unit factors are those of all shown sensors' smallest common unit.
    resolutions = [
        s.event_resolution_ms for s in found.values() if s.event_resolution_ms
    ]
    finest = min(resolutions) if resolutions else 0
    _, factors = shared_unit([s.unit for s in found.values()])
    source_dicts: dict[int, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    per_sensor: dict[int, int] = {}
    for row in rows:
        if row.source_id not in source_dicts:
            source = await source_store.get_source(conn, row.source_id)
            if source is None:  # pragma: no cover - a foreign key guarantees it
                continue
            source_dicts[row.source_id] = _source_dict(source)
        sensor = found[row.sensor_id]
        sensor_dict = _sensor_dict(sensor, asset_names[sensor.generic_asset_id])
        for start, horizon in _resampled(
            row.event_start, row.belief_horizon, sensor.event_resolution_ms, finest
        ):
            if (window["start"] is not None and start + finest <= window["start"]) or (
                window["end"] is not None and start >= window["end"]
            ):
                continue
            index = per_sensor.get(sensor.id, 0)
            per_sensor[sensor.id] = index + 1
            records.append(
                {
                    "index": index,
                    "event_start": start,
                    "event_value": row.value,
                    "belief_horizon": horizon,
                    "source": source_dicts[row.source_id],
                    "sensor": sensor_dict,
                    "sensor_unit": sensor.unit,
                    "scale_factor": factors.get(sensor.unit, 1.0),
                }
            )
    return records


def _resampled(
    start: int, horizon: int, resolution: int, finest: int
) -> list[tuple[int, int]]:
    """(start, horizon) of an event split into events of the finest resolution."""
    if not finest or resolution <= finest or resolution % finest:
        return [(start, horizon)]
    return [
        (start + k * finest, horizon - resolution + (k + 1) * finest)
        for k in range(resolution // finest)
    ]


@routes.get(PREFIX + r"/assets/{id:\d+}/chart_data")
async def get_asset_chart_data(request: web.Request) -> web.Response:
    """Download time series for use in charts"""
    asset = await _readable_asset(request)
    errors: dict[str, list[str]] = {}
    window = parse_window(request.query, errors)
    flags = parse_flags(
        request.query, DATA_FLAGS, {"most-recent-beliefs-only": True}, errors
    )
    if errors:
        raise ValidationError("query", errors)
    _, found, asset_names = await _chart_sensors(request, asset)
    records = await _records(
        request, found, asset_names, window, flags["most-recent-beliefs-only"]
    )
    return web.json_response(records)


# --- the Vega-Lite spec ------------------------------------------------------------

_LABEL_EXPR: Final = (
    "(hours(datum.value) == 0 & minutes(datum.value) == 0) | seconds(datum.value) "
    "!= 0 ? timeFormat(datum.value) : timeFormat(datum.value, '%H:%M')"
)
_LEGEND: Final[dict[str, Any]] = {
    "titleFontSize": 16,
    "labelFontSize": 16,
    "labelLimit": None,
    "orient": "bottom",
    "columns": 1,
    "direction": "vertical",
    "symbolSize": 100,
    "symbolStrokeWidth": 2,
    "labelOffset": 4,
}
_CONFIG: Final[dict[str, Any]] = {
    "view": {"continuousWidth": 800, "continuousHeight": 150},
    "legend": _LEGEND,
    "autosize": {"type": "fit-x", "contains": "padding"},
    "axisY": {"titleAngle": 0, "titleAlign": "left", "titleY": -15, "titleX": -40},
    "title": {"fontSize": 20.0},
    "axis": {"titleFontSize": 16, "labelFontSize": 16},
}
_HOVER: Final[dict[str, Any]] = {
    "name": "hover_x_brush",
    "select": {
        "type": "point",
        "encodings": ["x"],
        "on": "mouseover[!event.item || !event.item.mark || "
        "indexof(event.item.mark.name, 'annotation_') < 0]",
        "nearest": False,
        "clear": "mouseout",
    },
}


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def shared_unit(units: list[str]) -> tuple[str, dict[str, float]]:
    """FlexMeasures' find_smallest_common_unit: the smallest of compatible units
    and each unit's factor to it; "a.u." for none or incompatible ones."""
    distinct = sorted({unit for unit in units if unit})
    if not distinct:
        return "a.u.", {}
    if len(distinct) == 1:
        return distinct[0], {distinct[0]: 1.0}
    try:
        ureg = units_module.registry()
        quantities = [ureg.Quantity(1.0, ureg.parse_units(u)) for u in distinct]
        if any(q.dimensionality != quantities[0].dimensionality for q in quantities):
            return "a.u.", dict.fromkeys(distinct, 1.0)
        sizes = [q.to_base_units().magnitude for q in quantities]
    except Exception:  # pint raises many types: then there is no common unit
        return "a.u.", dict.fromkeys(distinct, 1.0)
    smallest = distinct[sizes.index(min(sizes))]
    return smallest, {u: units_module.conversion(u, smallest, 0)[0] for u in distinct}


def unit_dimension(unit: str) -> str:
    """FlexMeasures' get_unit_dimension, for the usual units ("value" otherwise)."""
    if unit == "%":
        return "percentage"
    for probe, name in (
        ("W", "power"),
        ("Wh", "energy"),
        ("EUR/MWh", "energy price"),
        ("degC", "temperature"),
    ):
        if unit not in ("", "a.u.") and units_module.is_convertible(unit, probe):
            return name
    return "value"


def _sensor_type(sensor: SensorRecord) -> str:
    attributes = _json_object(sensor.attributes)
    found = attributes.get("sensor_type")
    return found if isinstance(found, str) else sensor.name


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _row(
    plot: dict[str, Any],
    found: dict[int, SensorRecord],
    asset_names: dict[int, str],
    window: dict[str, int | None],
    step_s: float,
    combine_legend: bool,
) -> dict[str, Any]:
    """One row of the chart: FlexMeasures' layers for a plot of sensors."""
    row_sensors = [found[s] for s in plot["sensors"]]
    unit, _ = shared_unit([s.unit for s in row_sensors])
    types = {_sensor_type(s) for s in row_sensors}
    name = _capitalized(types.pop() if len(types) == 1 else unit_dimension(unit))
    scaled_values = len(row_sensors) > 1 and unit != "a.u."
    interpolate = (
        "linear"
        if any(s.event_resolution_ms == 0 for s in row_sensors)
        else "step-after"
    )
    x: dict[str, Any] = {
        "field": "event_start",
        "type": "temporal",
        "title": None,
        "axis": {"labelExpr": _LABEL_EXPR, "labelOverlap": True, "labelSeparation": 1},
        "timeUnit": {"unit": "yearmonthdatehoursminutesseconds", "step": step_s},
    }
    if window["start"] is not None and window["end"] is not None:
        x["scale"] = {"domain": [float(window["start"]), float(window["end"])]}
    y_scale: dict[str, Any] | None = None
    y_axis = plot.get("y-axis")
    if y_axis == "data":
        y_scale = {"zero": False}
    elif isinstance(y_axis, dict) and {"min", "max"} <= set(y_axis):
        y_scale = {
            "domain": [y_axis["min"], y_axis["max"]],
            "clamp": True,
            "nice": False,
        }
    elif isinstance(y_axis, list):
        y_scale = {"domain": {"unionWith": y_axis}}
    elif unit == "%":
        y_scale = {"domain": {"unionWith": [0, 105]}, "nice": False}

    def quantity(field: str, title: str) -> dict[str, Any]:
        found_quantity: dict[str, Any] = {
            "title": title,
            "format": [".3~r", unit],
            "formatType": "quantityWithUnitFormat",
            "stack": None,
            "field": field,
            "type": "quantitative",
        }
        if y_scale is not None:
            found_quantity["scale"] = y_scale
        return found_quantity

    y_title = f"{name} ({unit})"
    color = {
        "field": "sensor.description",
        "type": "nominal",
        "title": "Sensor",
        "scale": {
            "domain": [
                f"{s.name} ({asset_names[s.generic_asset_id]})" for s in row_sensors
            ]
        },
    }
    tooltip_rest = [
        {"field": "full_date", "type": "nominal", "title": "Time and date"},
        {
            "field": "belief_horizon",
            "type": "quantitative",
            "title": "Horizon",
            "format": ["d", 4],
            "formatType": "timedeltaFormat",
        },
        quantity("event_value", name),
        {"field": "source_name_and_id", "type": "nominal", "title": "Source"},
        {"field": "source.display_type", "type": "nominal", "title": "Type"},
        {"field": "source.model", "type": "nominal", "title": "Model"},
        {"field": "source.version", "type": "nominal", "title": "Version"},
    ]
    sensor_tip = {"field": "sensor.description", "type": "nominal", "title": "Sensor"}
    scaled = [
        {
            "calculate": "datum.event_value * datum.scale_factor"
            if scaled_values
            else "datum.event_value",
            "as": "scaled_event_value",
        }
    ]
    # Several sensors: an extra brush marks the point whose tooltip is shown.
    several = len(row_sensors) > 1
    brush = "hover_nearest_brush" if several else "hover_x_brush"
    hover_params: list[dict[str, Any]] = [_HOVER]
    if several:
        hover_params.append(
            {
                "name": "hover_nearest_brush",
                "select": {
                    "type": "point",
                    "on": _HOVER["select"]["on"],
                    "nearest": True,
                    "clear": "mouseout",
                },
            }
        )
    line_color = (
        color
        if combine_legend
        else {
            **color,
            "legend": {"orient": "right", "columns": 1, "direction": "vertical"},
        }
    )
    return {
        "title": _capitalized(plot["title"]) if plot["title"] else None,
        "layer": [
            {
                "mark": {
                    "type": "line",
                    "interpolate": interpolate,
                    "clip": True,
                    "strokeWidth": 2,
                },
                "encoding": {
                    "x": x,
                    "y": quantity("scaled_event_value", y_title),
                    "color": line_color,
                    "strokeDash": {
                        "scale": {
                            "domain": ["forecaster", "scheduler", "other"],
                            "range": [[2, 2], [4, 4], [1, 0]],
                        },
                        "field": "source.type",
                        "legend": {"title": "Source", "symbolSize": 100},
                    },
                    "detail": [
                        {"field": "source.id", "type": "nominal", "title": None}
                    ],
                },
                "selection": {
                    "scroll": {"type": "interval", "bind": "scales", "encodings": ["x"]}
                },
                "transform": scaled,
            },
            {
                "mark": {"type": "rule", "color": "#6b7280", "strokeWidth": 1},
                "encoding": {
                    "x": x,
                    "opacity": {
                        "condition": {
                            "test": {"param": "hover_x_brush", "empty": False}
                        },
                        "value": 0,
                    },
                },
            },
            {
                "mark": {"type": "rect", "y2": "height", "opacity": 0},
                "encoding": {
                    "x": x,
                    "y": {
                        "condition": {
                            "test": "isNaN(datum['event_value'])",
                            **quantity("event_value", y_title),
                        },
                        "value": 0,
                    },
                    "tooltip": [
                        sensor_tip,
                        quantity("event_value", name),
                        *tooltip_rest,
                    ],
                },
            },
            {
                "mark": {"type": "circle", "opacity": 1, "clip": True},
                "encoding": {
                    "x": x,
                    "y": quantity("scaled_event_value", y_title),
                    "color": color,
                    "size": {
                        "condition": {
                            "value": "200",
                            "test": {"or": [{"param": brush, "empty": False}]},
                        },
                        "value": "0",
                    },
                    "tooltip": [
                        sensor_tip,
                        quantity("scaled_event_value", name),
                        *tooltip_rest,
                    ],
                },
                "params": hover_params,
                "transform": scaled,
            },
            {
                "data": {"name": "replay"},
                "mark": {"type": "rule"},
                "encoding": {"x": {"field": "belief_time", "type": "temporal"}},
            },
        ],
        "width": "container",
        "transform": [{"filter": {"field": "sensor.id", "oneOf": plot["sensors"]}}],
    }


@routes.get(PREFIX + r"/assets/{id:\d+}/chart")
async def get_asset_chart(request: web.Request) -> web.Response:
    """Download an embeddable chart with time series data"""
    asset = await _readable_asset(request)
    query = request.query
    errors: dict[str, list[str]] = {}
    window = parse_window(query, errors)
    flags = parse_flags(query, CHART_FLAGS, {"combine-legend": True}, errors)
    if errors:
        raise ValidationError("query", errors)
    plots, found, asset_names = await _chart_sensors(request, asset)
    dataset = _pick(query, "dataset-name", "dataset_name") or f"asset_{asset.id}"
    # One x step for all rows: the finest non-zero resolution shown (FlexMeasures).
    resolutions = [
        s.event_resolution_ms for s in found.values() if s.event_resolution_ms
    ]
    step_s = min(resolutions) / 1000 if resolutions else 0.0
    spec: dict[str, Any] = {
        "transform": [
            {
                "calculate": "datum.source.name + ' (ID: ' + datum.source.id + ')'",
                "as": "source_name_and_id",
            },
            {
                "as": "full_date",
                "calculate": "timeFormat(datum.event_start, '%H:%M on %A %b %e, %Y')",
            },
        ],
        "description": "A vertically concatenated chart showing sensor data.",
        "height": 300,
        "vconcat": [
            _row(plot, found, asset_names, window, step_s, flags["combine-legend"])
            for plot in plots
        ],
        "data": {"name": dataset},
        "config": _CONFIG,
        "width": "container",
        "resolve": {"scale": {"x": "shared"}},
    }
    if "height" in query and query["height"].isdecimal():
        spec["height"] = int(query["height"])
    if "width" in query and query["width"].isdecimal():
        spec["width"] = int(query["width"])
    if not flags["combine-legend"]:  # a legend per row, as FlexMeasures
        spec["resolve"] = {"scale": {"x": "shared", "color": "independent"}}
    if flags["include-asset-annotations"] or flags["include-account-annotations"]:
        add_annotation_layers(spec, f"{dataset}_annotations")
    if flags["include-data"]:
        spec["datasets"] = {
            dataset: await _records(request, found, asset_names, window, True)
        }
    return web.json_response(spec)


def _wrapped(content: str) -> list[str]:
    return textwrap.wrap(content, 60) or [""]


async def _chart_annotations(
    request: web.Request, links: list[tuple[Any, int]]
) -> web.Response:
    """FlexMeasures' chart_annotations records of the annotations linked to `links`."""
    errors: dict[str, list[str]] = {}
    window = parse_window(request.query, errors)
    clip = True
    if "clip" in request.query:
        try:
            clip = parse_bool(request.query["clip"])
        except FieldError:
            errors["clip"] = [NOT_BOOLEAN]
    if errors:
        raise ValidationError("query", errors)
    found = await annotation_store.for_chart(
        request[keys.CONN],
        links,
        after=window["start"],
        before=window["end"],
        beliefs_after=window["beliefs-after"],
        beliefs_before=window["prior"],
    )
    rows = []
    for index, item in enumerate(found):
        a = item.annotation
        start, end = a.start, a.end
        if clip and window["start"] is not None:
            start = max(start, window["start"])
        if clip and window["end"] is not None:
            end = min(end, window["end"])
        rows.append((index, start, end, a, item.source_name))
    # FlexMeasures groups by end (ascending); the earliest start (then belief
    # time) leads each group and carries every group member's lines.
    groups: dict[int, list[tuple[int, int, int, Any, str]]] = {}
    for row in rows:
        groups.setdefault(row[2], []).append(row)
    answer = []
    for end in sorted(groups):
        members = sorted(
            groups[end],
            key=lambda r: (
                r[1],
                r[3].belief_time if r[3].belief_time is not None else 2**62,
            ),
        )
        index, start, _, lead, source_name = members[0]
        answer.append(
            {
                "index": index,
                "start": start,
                "end": end,
                "belief_time": lead.belief_time,
                "source": source_name,
                "type": lead.type,
                "content": [line for m in members for line in _wrapped(m[3].content)],
            }
        )
    return web.json_response(answer)


@routes.get(PREFIX + r"/assets/{id:\d+}/chart_annotations")
async def get_asset_chart_annotations(request: web.Request) -> web.Response:
    """Download annotations for use in charts"""
    asset = await _readable_asset(request)
    links: list[tuple[Any, int]] = [(annotation_store.ASSET, asset.id)]
    if asset.account_id is not None:
        links.append((annotation_store.ACCOUNT, asset.account_id))
    return await _chart_annotations(request, links)


@routes.get(PREFIX + r"/sensors/{id:\d+}/chart_annotations")
async def get_sensor_chart_annotations(request: web.Request) -> web.Response:
    """Download a sensor's annotations for use in charts"""
    conn = request[keys.CONN]
    sensor_id = parse_path_id(request.match_info["id"])
    sensor = await sensor_store.get_sensor(conn, sensor_id)
    if sensor is None:
        raise NotFoundError(f"Sensor {sensor_id} not found")
    if not acl.may_read(principal(request), sensor.owner):
        raise ForbiddenError()
    return await _chart_annotations(request, [(annotation_store.SENSOR, sensor.id)])


@routes.get(PREFIX + r"/assets/{id:\d+}/kpis")
async def get_asset_kpis(request: web.Request) -> web.Response:
    """Get daily KPIs for an asset."""
    asset = await _readable_asset(request)
    errors: dict[str, list[str]] = {}
    bounds: dict[str, int] = {}
    for name in ("start", "end"):
        if name not in request.query:
            errors[name] = ["Missing data for required field."]
            continue
        try:
            bounds[name] = to_epoch_ms(parse_datetime(request.query[name]))
        except TimingError as err:
            errors[name] = [str(err)]
    if errors:
        raise ValidationError("query", errors)
    conn = request[keys.CONN]
    who = principal(request)
    kpis = []
    for entry in _json_list(asset.sensors_to_show_as_kpis):
        if not isinstance(entry, dict) or not isinstance(entry.get("sensor"), int):
            continue
        sensor = await sensor_store.get_sensor(conn, entry["sensor"])
        if sensor is None or not acl.may_read(who, sensor.owner):
            continue
        _, values = await belief_store.latest_values(
            conn,
            sensor.id,
            bounds["start"],
            bounds["end"],
            sensor.event_resolution_ms,
            belief_store.ReadFilter(),
        )
        values = [v for v in values if v == v]  # NaN: not a value
        function = entry.get("function") or ("mean" if sensor.unit == "%" else "sum")
        if not values:
            value = 0.0
        elif function == "mean":
            value = sum(values) / len(values)
        elif function == "max":
            value = max(values)
        elif function == "min":
            value = min(values)
        else:
            value = sum(values)
        kpis.append(
            {
                "title": entry.get("title"),
                "unit": sensor.unit,
                "sensor": sensor.id,
                "downsample_value": round(float(value), 2),
                "downsample_function": function,
            }
        )
    return web.json_response({"data": kpis})
