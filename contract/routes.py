"""The routes a backend serves to the gateway's service identity, without a token."""

from __future__ import annotations

import re
from typing import Final

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


def is_public_tail(method: str, tail: str) -> bool:
    """Whether (method, path below /api/<version>/) needs no token."""
    return (method, tail) in PUBLIC or (
        method == "GET" and PUBLIC_FILE_RE.fullmatch(tail) is not None
    )


def is_public_path(method: str, path: str) -> bool:
    """Whether (method, backend path) is served without a user."""
    if path == VERSION_PREFIX:
        return is_public_tail(method, "")
    if path.startswith(VERSION_PREFIX + "/"):
        tail = path[len(VERSION_PREFIX) + 1 :]
        return tail != "" and is_public_tail(method, tail)
    return (method, path) in PUBLIC_OPS
