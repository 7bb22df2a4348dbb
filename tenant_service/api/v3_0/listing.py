"""The service listing of API v3_0, generated from the route table."""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from tenant_service import keys
from tenant_service.api.v3_0 import PREFIX, respond

routes = web.RouteTableDef()

METHOD_ORDER: Final = {"GET": 0, "POST": 1, "PUT": 2, "PATCH": 3, "DELETE": 4}
VARIABLE_RE: Final = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def services(app: web.Application, base_url: str) -> list[dict[str, str]]:
    """One entry per v3_0 route: name, absolute url and the handler's summary."""
    found: list[tuple[str, int, dict[str, str]]] = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if route.method not in METHOD_ORDER or not isinstance(path, str):
            continue
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            continue
        relative = VARIABLE_RE.sub(r"<\1>", path[len(PREFIX) :])
        doc = (route.handler.__doc__ or "").strip().splitlines()
        entry = {
            "description": doc[0].strip() if doc else "",
            "name": f"{route.method} {relative}",
            "url": base_url + PREFIX + relative,
        }
        found.append((relative, METHOD_ORDER[route.method], entry))
    return [entry for _, _, entry in sorted(found, key=lambda item: item[:2])]


@routes.get(PREFIX)
async def get_service_listing(request: web.Request) -> web.Response:
    """Obtain a service listing for this version"""
    identity = request[keys.IDENTITY]
    base_url = f"{identity.scheme}://{identity.host}"
    return respond(
        {
            "message": "Request has been processed.",
            "services": services(request.app, base_url),
            "status": "PROCESSED",
            "version": "3.0",
        }
    )
