"""Operations endpoints under /api/ops."""

from __future__ import annotations

from aiohttp import web

from tenant_service.api.v3_0 import respond

routes = web.RouteTableDef()


@routes.get("/api/ops/ping")
async def get_ping(request: web.Request) -> web.Response:
    """Answer that the service is up."""
    return respond({"message": "ok", "status": 200})
