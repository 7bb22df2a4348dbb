"""FlexMeasures API v3_0 routes, and the JSON response helper all handlers use."""

from __future__ import annotations

import json
from typing import Any, Final

import orjson
from aiohttp import web

from tenant_service import keys
from tenant_service.errors import BadRequestError, ValidationError
from tenant_service.identity import Principal

PREFIX: Final = "/api/v3_0"
REVOKE_HEADER: Final = "X-FlexHost-Revoke-User"


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


def principal(request: web.Request) -> Principal:
    """The authenticated user (set by the identity middleware)."""
    return request[keys.PRINCIPAL]


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body: 400 if malformed, 422 if not an object."""
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else None
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequestError() from err
    if not isinstance(data, dict):
        raise ValidationError("json", {"_schema": ["Invalid input type."]})
    return data
