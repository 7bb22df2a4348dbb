"""What the backend serves and what openapi.yaml documents, as (METHOD, path) sets."""

from __future__ import annotations

import re
from typing import Any, Final

from contract.config import Secret
from tenant_service.app import create_app
from tenant_service.config import Settings

METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PATH_VARIABLE_RE: Final = re.compile(r"\{(\w+)\}")


def app_routes() -> set[tuple[str, str]]:
    """(METHOD, path template) of every /api route of the tenant app (HEAD = GET)."""
    app = create_app(
        Settings(
            name="acme",
            database_url="sqlite+aiosqlite:///unused.sqlite3",
            secret=Secret("x" * 32),
        )
    )
    found = set()
    for route in app.router.routes():
        if route.resource is None or route.method == "HEAD":
            continue
        path = route.resource.canonical
        if path == "/api" or path.startswith("/api/"):
            found.add((route.method, path))
    return found


def documented(spec: dict[str, Any], *, gateway: bool) -> set[tuple[str, str]]:
    """(METHOD, path) of the documented operations served by the backend/gateway."""
    found = set()
    for path, item in spec["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            if (operation.get("x-served-by") == "gateway") == gateway:
                found.add((method.upper(), path))
    return found
