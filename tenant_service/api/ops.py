"""Operations endpoints: /api/ops/ping, and the probes /healthz and /readyz.

The probes sit outside /api and /internal, so they need no gateway identity: the
gateway's replica checks and a process supervisor call them directly.
"""

from __future__ import annotations

from aiohttp import web

from tenant_service import keys
from tenant_service.api.v3_0 import respond
from tenant_service.store.db import ping

routes = web.RouteTableDef()


@routes.get("/api/ops/ping")
async def get_ping(request: web.Request) -> web.Response:
    """Answer that the service is up."""
    return respond({"message": "ok", "status": 200})


@routes.get("/healthz")
async def get_healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers (the database is not touched)."""
    return respond({"status": "ok"})


@routes.get("/readyz")
async def get_readyz(request: web.Request) -> web.Response:
    """Readiness: not draining, and the database answers `SELECT 1`."""
    if request.app[keys.DRAIN].started:
        return respond({"status": "DRAINING"}, status=503)
    if not await ping(request.app[keys.ENGINE]):
        return respond(
            {"status": "DATABASE_UNAVAILABLE", "database_sql": False}, status=503
        )
    return respond({"status": "ok", "database_sql": True})
