"""Health check, as FlexMeasures' /health/ready."""

from __future__ import annotations

from aiohttp import web

from tenant_service import keys
from tenant_service.api.v3_0 import PREFIX, respond
from tenant_service.store.db import ping

routes = web.RouteTableDef()


@routes.get(PREFIX + "/health/ready")
async def get_health_ready(request: web.Request) -> web.Response:
    """Get readiness status"""
    ok = await ping(request[keys.TENANT].engine)
    return respond({"database_sql": ok}, status=200 if ok else 503)
