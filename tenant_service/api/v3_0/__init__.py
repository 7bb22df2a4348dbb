"""FlexMeasures API v3_0: the helpers its handler modules share (answers, loaders)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service import acl, keys
from tenant_service.api import (
    TOO_DEEP,
    may_nest_too_deep,
    nested_too_deep,
    parse_path_id,
)
from tenant_service.errors import (
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from tenant_service.identity import Principal
from tenant_service.store import assets as asset_store
from tenant_service.store import audit
from tenant_service.store import sensors as sensor_store
from tenant_service.store.assets import AssetRecord
from tenant_service.store.sensors import SensorRecord

PREFIX: Final = "/api/v3_0"
READ_CHUNK: Final = 65_536


def respond(data: Any, status: int = 200) -> web.Response:
    """JSON answer; dicts without `status` get the HTTP code, as Flask-JSON does.

    orjson writes floats as the shortest text that reads back equal (a year of
    15-minute values spent most of its time in `json.dumps`); NaN and infinities
    become null, so the answer is always valid JSON.
    """
    if isinstance(data, dict) and "status" not in data:
        data = {**data, "status": status}
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json"
    )


def naive_utc(moment: dt.datetime | None) -> str | None:
    """A time as FlexMeasures writes its zone-less columns: naive ISO 8601, UTC."""
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat()


def no_content() -> web.Response:
    """204 with a JSON content type: flexmeasures-client decodes it as {}."""
    return web.Response(status=204, content_type="application/json")


async def writing(request: web.Request) -> AsyncConnection:
    """The request's connection, once this request's turn to write has come.

    Call it just before the first write statement: on SQLite the turn is held
    until the request's transaction ends, so nothing slow (reading the body,
    parsing, building rows) may come after it.
    """
    await request[keys.WRITE_TURN].take()
    return request[keys.CONN]


async def without_connection(
    request: web.Request, read: Callable[[], Awaitable[bytes]]
) -> bytes:
    """Run `read` (of the body) holding no database connection while it waits.

    A body still arriving (slowly, or never finishing) must not keep one of the
    pool's connections from other requests: the request's connection, which has
    written nothing yet, goes back to the pool and a fresh one replaces it once
    the body is in. A body that has fully arrived is read at once.
    """
    conn = request.get(keys.CONN)
    turn = request.get(keys.WRITE_TURN)
    if conn is None or request.content.is_eof() or (turn is not None and turn.taken):
        return await read()
    await conn.close()
    body = await read()
    fresh = request[keys.TENANT].engine.connect()
    await fresh.start()
    request[keys.CONN] = fresh  # the identity middleware closes it
    if request.method in ("GET", "HEAD"):
        await fresh.execution_options(isolation_level="AUTOCOMMIT")
    return body


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body as it arrives: 413 once more than `limit` bytes came."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(READ_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def principal(request: web.Request) -> Principal:
    """The authenticated user (set by the identity middleware)."""
    return request[keys.PRINCIPAL]


def actor(request: web.Request) -> audit.Actor:
    """Who the audit log names for a change made by this request."""
    who = request[keys.PRINCIPAL]
    return audit.Actor(who.user_id, who.username)


def parse_json(
    raw: bytes,
    *,
    loads: Callable[[bytes], Any] = json.loads,
    location: str = "json",
) -> Any:
    """JSON text: 400 if malformed, 422 (at `location`) if nested too deep.

    Every JSON body goes through here, so no handler, validator or flex-model
    parser ever walks a body nested deeper than MAX_JSON_DEPTH.
    """
    try:
        data = loads(raw)
    except RecursionError as err:  # json gives up at the interpreter's limit
        raise ValidationError(location, {"_schema": [TOO_DEEP]}) from err
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequestError() from err
    if may_nest_too_deep(raw) and nested_too_deep(data):
        raise ValidationError(location, {"_schema": [TOO_DEEP]})
    return data


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body: 400 if malformed, 422 if not an object.

    Handlers call this only once the caller may act on the object in the path:
    a body is read after the access check, never before.
    """
    raw = await without_connection(request, request.read)
    data = parse_json(raw) if raw.strip() else None
    if not isinstance(data, dict):
        raise ValidationError("json", {"_schema": ["Invalid input type."]})
    return data


async def load_asset(conn: AsyncConnection, asset_id: int) -> AssetRecord:
    """The asset of a path id, or 404."""
    asset = await asset_store.get_asset(conn, asset_id)
    if asset is None:
        raise NotFoundError(f"No asset found with ID {asset_id}.")
    return asset


async def load_sensor(conn: AsyncConnection, sensor_id: int) -> SensorRecord:
    """The sensor of a path id, or FlexMeasures' 422 path error."""
    sensor = await sensor_store.get_sensor(conn, sensor_id)
    if sensor is None:
        raise ValidationError("path", {"id": [f"No sensor found with ID {sensor_id}."]})
    return sensor


async def readable_path_sensor(request: web.Request) -> SensorRecord:
    """The sensor of the path's `id`, if the caller may read it (422, 403)."""
    sensor = await load_sensor(
        request[keys.CONN], parse_path_id(request.match_info["id"])
    )
    if not acl.may_read(principal(request), sensor.owner):
        raise ForbiddenError()
    return sensor
