"""An asset's `sensors_to_show`, read the same way by the backend's chart routes
and the gateway's charts page.

FlexMeasures' shapes: a sensor id (a plot of its own), a list of ids (one plot),
{"title", "sensor" | "sensors"} and {"title", "plots": [{"sensor" | "sensors"}]};
as a JSON text (as the API serves it) or already parsed.
"""

from __future__ import annotations

import json
from typing import Any


def _ids(value: object) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def parse_plots(raw: object) -> list[dict[str, Any]]:
    """The plots, in their latest form: [{"title", "sensors"[, "y-axis"]}].

    Entries of other shapes, and plots without sensor ids, are left out; so is
    a text that is not JSON.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw or "[]")
        except ValueError:
            return []
    plots: list[dict[str, Any]] = []
    for entry in raw if isinstance(raw, list) else []:
        if isinstance(entry, dict):
            ids: list[int] = []
            for plot in entry.get("plots") or [entry]:
                if isinstance(plot, dict):
                    ids += _ids(plot.get("sensor")) + _ids(plot.get("sensors"))
            title = entry.get("title")
            plots.append(
                {
                    "title": title if isinstance(title, str) else None,
                    "sensors": ids,
                    "y-axis": entry.get("y-axis"),
                }
            )
        else:
            plots.append({"title": None, "sensors": _ids(entry)})
    return [plot for plot in plots if plot["sensors"]]
