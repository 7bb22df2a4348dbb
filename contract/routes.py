"""The routes a backend serves to the gateway's service identity, without a token."""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

VERSION_PREFIX: Final = "/api/v3_0"
# (method, path below /api/<version>/) that FlexMeasures serves without a token.
PUBLIC: Final = frozenset(
    {("GET", ""), ("GET", "health/ready"), ("GET", "openapi.json"), ("GET", "docs")}
)
# The docs page's static files (Swagger UI): one file name below `docs/`, no deeper.
PUBLIC_FILE_RE: Final = re.compile(r"docs/[a-z0-9-]+(?:\.[a-z0-9]+)+")
# Backend paths outside the API versions that need no user token. FlexMeasures'
# getLatestTaskRun authenticates with its own task-check token instead: the
# gateway passes the client's Authorization header on as TASK_TOKEN_HEADER.
TASK_RUN_PATH: Final = "/api/ops/getLatestTaskRun"
PUBLIC_OPS: Final = frozenset({("GET", "/api/ops/ping"), ("GET", TASK_RUN_PATH)})
TASK_TOKEN_HEADER: Final = "X-FlexHost-Task-Token"
# A CORS preflight carries no token: FlexMeasures answers it (200, `Allow`) for
# every route without authentication. It reaches a backend as the gateway's
# service, never as a user, and its answer has no body.
PREFLIGHT: Final = "OPTIONS"
# The order of methods in the `Allow` of a preflight answer.
ALLOW_ORDER: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allow_header(methods: frozenset[str] | set[str]) -> str:
    """The `Allow` of a preflight: the route's methods (HEAD with GET), OPTIONS."""
    given = {m.upper() for m in methods} | {PREFLIGHT}
    if "GET" in given:
        given.add("HEAD")
    return ", ".join(m for m in ALLOW_ORDER if m in given)


def preflight_response(allowed_methods: frozenset[str] | set[str]) -> web.Response:
    """FlexMeasures' answer to OPTIONS: 200, no body, the route's `Allow`.

    No Access-Control-Allow-* headers: FlexMeasures' CORS_ORIGINS is empty by
    default, so it sends none either.
    """
    return web.Response(
        status=200,
        content_type="text/html",
        charset="utf-8",
        headers={"Allow": allow_header(set(allowed_methods))},
    )


def is_public_tail(method: str, tail: str) -> bool:
    """Whether (method, path below /api/<version>/) needs no token."""
    return (
        method == PREFLIGHT
        or (method, tail) in PUBLIC
        or (method == "GET" and PUBLIC_FILE_RE.fullmatch(tail) is not None)
    )


def is_public_path(method: str, path: str) -> bool:
    """Whether (method, backend path) is served without a user."""
    if path == VERSION_PREFIX:
        return is_public_tail(method, "")
    if path.startswith(VERSION_PREFIX + "/"):
        tail = path[len(VERSION_PREFIX) + 1 :]
        return tail != "" and is_public_tail(method, tail)
    return method == PREFLIGHT or (method, path) in PUBLIC_OPS
