"""Every route+method of FlexMeasures 1.0.1's OpenAPI document is one of ours too.

The reference is FlexMeasures' own document (tests/data/flexmeasures-1.0.1-openapi.json,
copied from ../shared/reference). Ours is openapi.yaml (backend and gateway routes)
plus the routes the backend app registers. Path variables compare by position only
(`{id}` = `{sensor_id}`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from tenant_service.api.v3_0.docs import load_spec
from tests.helpers.openapi import METHODS, app_routes, documented

REFERENCE: Final = Path(__file__).parent.parent / "data/flexmeasures-1.0.1-openapi.json"
VARIABLE_RE: Final = re.compile(r"\{\w+\}|<(?:\w+:)?\w+>")


def normalise(path: str) -> str:
    """A path template with its variables unnamed."""
    return VARIABLE_RE.sub("{}", path)


def flexmeasures_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every operation in FlexMeasures 1.0.1's OpenAPI document."""
    spec: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return {
        (method.upper(), normalise(path))
        for path, item in spec["paths"].items()
        for method in METHODS
        if method in item
    }


def our_routes() -> set[tuple[str, str]]:
    """(METHOD, path) documented in openapi.yaml or registered by the backend app."""
    spec = load_spec()
    ours = documented(spec, gateway=False) | documented(spec, gateway=True)
    ours |= app_routes()
    return {(method, normalise(path)) for method, path in ours}


def missing() -> list[str]:
    return sorted(
        f"{method} {path}" for method, path in flexmeasures_routes() - our_routes()
    )


def test_flexmeasures_reference_lists_the_v3_0_api() -> None:
    routes = flexmeasures_routes()
    assert len(routes) == 52
    assert ("POST", "/api/v3_0/sensors/{}/schedules/trigger") in routes


def test_we_serve_every_route_of_flexmeasures_openapi() -> None:
    assert missing() == [], f"FlexMeasures routes we lack: {missing()}"
