"""The annotation layers FlexMeasures 1.0.1 adds to each row of an asset chart
(`include-asset-annotations` / `include-account-annotations`): a band per annotation
with a duration, a rule and a marker per instant one (behind the data), and the
annotation's text below the row when hovered or pinned (in front). They read the
dataset `<dataset>_annotations`: the records of GET /assets/<id>/chart_annotations.
"""

from __future__ import annotations

from typing import Any, Final

FONT_SIZE: Final = 16
MARGIN: Final = 16
COLOR: Final = {
    "condition": [{"test": "datum.type == 'alert'", "value": "#d9822b"}],
    "value": "var(--gray)",
}
SHARED_TRANSFORMS: Final = ({"calculate": "datum.start", "as": "event_start"},)
START: Final = {"field": "start", "type": "temporal", "title": None}


def _time(param: str) -> str:
    value = f"{param}['event_start']"
    return f"(isArray({value}) ? {value}[0] : {value})"


def _captured(param: str) -> str:
    return f"isValid({param}) && isValid({param}['event_start'])"


def _band_test(param: str) -> str:
    time = _time(param)
    return f"{_captured(param)} && {time} >= datum.start && {time} < datum.end"


def _instant_test(param: str, tolerance_ms: int) -> str:
    return f"{_captured(param)} && abs({_time(param)} - datum.start) <= {tolerance_ms}"


def _any_test(param: str, tolerance_ms: int) -> str:
    return (
        f"(datum.start != datum.end && {_band_test(param)})"
        f" || (datum.start == datum.end && {_instant_test(param, tolerance_ms)})"
    )


def _layer(
    name: str, dataset: str, filter_: str | None, mark: dict[str, Any]
) -> dict[str, Any]:
    transforms: list[dict[str, Any]] = [] if filter_ is None else [{"filter": filter_}]
    return {
        "name": name,
        "data": {"name": dataset},
        "transform": [*transforms, *(dict(t) for t in SHARED_TRANSFORMS)],
        "mark": mark,
    }


def annotation_layers(
    dataset: str, row: int, resolution_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(background layers, foreground layers) of one chart row."""
    hover, pin = f"annotation_hover_time_{row}", f"annotation_pin_time_{row}"
    band = _layer(
        f"annotation_band_{row}",
        dataset,
        "datum.start != datum.end",
        {"type": "rect", "clip": True},
    )
    band["encoding"] = {
        "x": dict(START),
        "x2": {"field": "end", "title": None},
        "color": COLOR,
        "opacity": {
            "condition": [
                {"test": _band_test(pin), "value": 0.65},
                {"test": _band_test(hover), "value": 0.55},
            ],
            "value": 0.2,
        },
    }
    band["params"] = [
        {
            "name": hover,
            "select": {
                "type": "point",
                "fields": ["event_start"],
                "on": "mouseover",
                "clear": "mouseout",
            },
        },
        {"name": pin, "select": {"type": "point", "fields": ["event_start"]}},
    ]
    rule = _layer(
        f"annotation_rule_{row}",
        dataset,
        "datum.start == datum.end",
        {"type": "rule", "clip": True, "strokeWidth": 2},
    )
    rule["encoding"] = {
        "x": dict(START),
        "color": COLOR,
        "opacity": {
            "condition": [
                {"test": _instant_test(pin, resolution_ms), "value": 1},
                {"test": _instant_test(hover, resolution_ms), "value": 0.9},
            ],
            "value": 0.5,
        },
    }
    marker = _layer(
        f"annotation_marker_{row}",
        dataset,
        "datum.start == datum.end",
        {
            "type": "point",
            "shape": "triangle-down",
            "filled": True,
            "size": 200,
            "clip": True,
        },
    )
    marker["encoding"] = {
        "x": dict(START),
        "y": {"value": 7},
        "color": COLOR,
        "opacity": {
            "condition": [
                {"test": _instant_test(pin, resolution_ms), "value": 1},
                {"test": _instant_test(hover, resolution_ms), "value": 1},
            ],
            "value": 0.9,
        },
    }
    text = _layer(
        f"annotation_text_{row}",
        dataset,
        None,
        {
            "type": "text",
            "clip": False,
            "y": "height",
            "dy": FONT_SIZE + MARGIN,
            "baseline": "top",
            "align": "left",
            "fontSize": FONT_SIZE,
            "fontStyle": "italic",
        },
    )
    text["encoding"] = {
        "x": dict(START),
        "text": {"type": "nominal", "field": "content"},
        "color": COLOR,
        "opacity": {
            "condition": [
                {"test": _any_test(pin, resolution_ms), "value": 1},
                {"test": _any_test(hover, resolution_ms), "value": 1},
            ],
            "value": 0,
        },
    }
    return [band, rule, marker], [text]


def add_annotation_layers(spec: dict[str, Any], dataset: str) -> None:
    """Put annotation layers behind and in front of each row's data layers."""
    for row, row_spec in enumerate(spec.get("vconcat", [])):
        step = row_spec["layer"][0]["encoding"]["x"]["timeUnit"]["step"]
        try:
            resolution_ms = int(float(step) * 1000)
        except (TypeError, ValueError):
            resolution_ms = 3_600_000
        background, foreground = annotation_layers(dataset, row, resolution_ms)
        row_spec["layer"] = [*background, *row_spec["layer"], *foreground]
