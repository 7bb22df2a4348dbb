"""Deeply nested JSON bodies never get a 500 or a traceback (#10).

Every route of the backend's router (so a new route is covered the day it is
added) gets bodies nested far deeper than any FlexMeasures payload: 10 KB of
brackets, nested objects, and bodies whose fields nest just below and above the
reader's limit, so that validators and flex-model parsers see the deepest bodies
that pass.
"""

from __future__ import annotations

import logging
import re
from typing import Final

import pytest

from contract.config import Secret
from tenant_service.api import MAX_JSON_DEPTH, TOO_DEEP
from tenant_service.app import create_app
from tenant_service.config import Settings
from tests.tenant_service.conftest import (
    Client,
    World,
    identity,
    make_asset,
    make_sensor,
)


def _routes() -> list[tuple[str, str]]:
    app = create_app(
        Settings(name="acme", database_url="sqlite://", secret=Secret("x"))
    )
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if isinstance(path, str) and route.method not in ("HEAD", "OPTIONS"):
            found.add((route.method, path))
    return sorted(found)


ROUTES: Final = _routes()


def deep(depth: int, kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def fields(depth: int) -> str:
    """An object whose every field some route reads nests `depth` deep."""
    inner = deep(depth - 1)
    names = (
        "values",
        "flex-model",
        "flex-context",
        "attributes",
        "flex_model",
        "sensors_to_show",
        "email",
        "flexmeasures_roles",
        "name",
        "start",
        "sensor",
    )
    return "{" + ", ".join(f'"{name}": {inner}' for name in names) + "}"


BODIES: Final = {
    "brackets-10k": deep(5000),
    "objects-10k": deep(1500, "object"),
    "fields-at-limit": fields(MAX_JSON_DEPTH),
    "fields-over-limit": fields(MAX_JSON_DEPTH + 1),
    "json-text-field": '{"attributes": "'
    + deep(3000)
    + '", "flex_model": "'
    + deep(MAX_JSON_DEPTH + 1)
    + '"}',
    "flex-model-list": '{"start": "2026-01-01T00:00:00+00:00", "flex-model": ['
    + ", ".join([deep(60, "object")] * 3)
    + "]}",
}


@pytest.fixture
def database_url(sqlite_database_url: str) -> str:
    """SQLite only: parsing does not depend on the database."""
    return sqlite_database_url


def concrete(path: str, ids: dict[str, int]) -> str:
    """A route's path with the ids of objects the admin may act on."""
    if path.startswith("/api/v3_0/users/"):
        value = ids["user"]
    elif path.startswith("/api/v3_0/assets/"):
        value = ids["asset"]
    else:
        value = ids["sensor"]
    path = re.sub(r"\{id(:[^}]*)?\}", str(value), path)
    return re.sub(r"\{[a-z_]+(:[^}]*)?\}", "abc", path)


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_deep_json_never_fails(
    client: Client,
    world: World,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
) -> None:
    """Each deep body in turn (a DELETE may remove its object: then 404s)."""
    asset = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    sensor = await make_sensor(client, world.admin, asset["id"], "power")
    url = concrete(path, {"user": world.member, "asset": asset["id"], "sensor": sensor})
    service = path.startswith("/internal")
    headers = {
        **identity(None if service else world.admin),
        "Content-Type": "application/json",
    }
    for name, body in BODIES.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            resp = await client.request(method, url, data=body, headers=headers)
            answer = await resp.read()
        assert resp.status < 500 or resp.status == 503, (name, answer[:300])
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert errors == [], (name, [r.getMessage() for r in errors])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v3_0/assets"),
        ("PATCH", "/api/v3_0/assets/{asset}"),
        ("PATCH", "/api/v3_0/users/{user}"),
        ("POST", "/api/v3_0/sensors"),
        ("PATCH", "/api/v3_0/sensors/{sensor}"),
        ("POST", "/api/v3_0/sensors/{sensor}/schedules/trigger"),
        ("POST", "/api/v3_0/assets/{asset}/schedules/trigger"),
        ("POST", "/api/v3_0/sensors/{sensor}/data"),
        ("GET", "/api/v3_0/sensors/{sensor}/data"),
        ("POST", "/internal/credentials"),
    ],
)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
async def test_deep_json_is_a_clear_422(
    client: Client, world: World, method: str, path: str, depth: int
) -> None:
    """Too deep for the reader: 422 naming the limit, in the route's location."""
    asset = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    sensor = await make_sensor(client, world.admin, asset["id"], "power")
    url = path.format(asset=asset["id"], user=world.member, sensor=sensor)
    service = path.startswith("/internal")
    resp = await client.request(
        method,
        url,
        data='{"name": ' + deep(depth - 1) + "}",
        headers={
            **identity(None if service else world.admin),
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 422
    answer = await resp.json()
    location = "combined_sensor_data_description" if "/data" in path else "json"
    assert answer == {
        "message": {location: {"_schema": [TOO_DEEP]}},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }
    assert f"{MAX_JSON_DEPTH} levels" in TOO_DEEP


async def test_nesting_at_the_limit_is_read(client: Client, world: World) -> None:
    """64 levels are fine: the body is read and validated as usual."""
    asset = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    attributes = '{"a": ' + deep(MAX_JSON_DEPTH - 2) + "}"  # inside the body: 64
    resp = await client.patch(
        f"/api/v3_0/assets/{asset['id']}",
        data='{"attributes": ' + attributes + "}",
        headers={**identity(world.admin), "Content-Type": "application/json"},
    )
    assert resp.status == 200, await resp.text()
