"""FlexMeasures API v3_0 routes, and the JSON response helper all handlers use."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from tenant_service import keys
from tenant_service.errors import BadRequestError, ValidationError
from tenant_service.identity import Principal

PREFIX: Final = "/api/v3_0"
REVOKE_HEADER: Final = "X-FlexHost-Revoke-User"


def respond(data: Any, status: int = 200) -> web.Response:
    """JSON answer; dicts without `status` get the HTTP code, as Flask-JSON does."""
    if isinstance(data, dict) and "status" not in data:
        data = {**data, "status": status}
    return web.Response(
        text=json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        status=status,
        content_type="application/json",
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
