"""Operations endpoints: /api/ops/ping, the latest task runs, and the probes
/healthz and /readyz.

The probes sit outside /api and /internal, so they need no gateway identity: the
gateway's replica checks and a process supervisor call them directly.

Task runs as FlexMeasures 1.0.1 (api/common/implementations.py), for cron
monitoring (py-pinger): `GET /api/ops/getLatestTaskRun?name=X` answers to the
tenant's task-check token only (the gateway passes the client's Authorization
header on as X-FlexHost-Task-Token); `POST /api/ops/postLatestTaskRun` (form
fields name, status "True"/other, datetime) needs a user with the `task-runner`
role. Choices: the run is stored (FlexMeasures 1.0.1 answers OK but never commits
it); admins may post too (FlexMeasures' decorator means to let them
through but decides before anyone is logged in, so it refuses them); a datetime
that is not ISO 8601 is 400 in the endpoint's own shape (FlexMeasures: 500).
"""

from __future__ import annotations

import datetime as dt
import hmac
import urllib.parse
from typing import Final

from aiohttp import hdrs, web
from sqlalchemy import select

from contract.routes import TASK_TOKEN_HEADER
from tenant_service import keys
from tenant_service.api.v3_0 import (
    principal,
    read_limited,
    respond,
    without_connection,
    writing,
)
from tenant_service.errors import ForbiddenError
from tenant_service.schemas.sensor_upload import form_parts
from tenant_service.store.db import ping
from tenant_service.store.sources import insert_ignoring
from tenant_service.store.tables import TASK_RUNNER, latest_task_run
from tenant_service.timing import TimingError, parse_datetime_utc

routes = web.RouteTableDef()

# FlexMeasures' MONITOR_FREQUENCY_<NAME> default (minutes).
MONITOR_FREQUENCY: Final = 10
NEVER: Final = dt.datetime(1970, 1, 1)  # naive, as FlexMeasures writes it
MAX_TASK_NAME: Final = 80
MAX_FORM_BYTES: Final = 65_536


def _task_answer(
    request: web.Request, status: str, reason: str, last_run: dt.datetime, code: int
) -> web.Response:
    """FlexMeasures' make_response of get_task_run (keys as Flask sorts them)."""
    return respond(
        {
            "frequency": MONITOR_FREQUENCY,
            "lastrun": last_run.isoformat(),
            "process": "FlexMeasures",
            "reason": reason,
            "server": request[keys.TENANT].settings.mode,
            "status": status,
        },
        status=code,
    )


@routes.get("/api/ops/getLatestTaskRun")
async def get_latest_task_run(request: web.Request) -> web.Response:
    """The latest run of a task, for a monitor holding the task-check token."""
    name = request.query.get("name", "")
    given = request.headers.get(TASK_TOKEN_HEADER)
    if given is None:
        return _task_answer(
            request, "ERROR", "Not authenticated to check task status.", NEVER, 401
        )
    expected = request[keys.TENANT].settings.task_check_auth_token
    if expected is None or not hmac.compare_digest(
        given.encode(), expected.get().encode()
    ):
        return _task_answer(
            request, "ERROR", "Not authorized to check task status.", NEVER, 403
        )
    if not name:
        return _task_answer(request, "ERROR", "No task name given.", NEVER, 400)
    async with request[keys.TENANT].engine.connect() as conn:
        row = (
            await conn.execute(
                select(latest_task_run.c.datetime, latest_task_run.c.status).where(
                    latest_task_run.c.name == name
                )
            )
        ).first()
    if row is None:
        return _task_answer(
            request, "ERROR", f"Task {name} has no last run time.", NEVER, 404
        )
    last_run = row.datetime or NEVER
    return _task_answer(request, "OK" if row.status else "ERROR", "", last_run, 200)


@routes.post("/api/ops/postLatestTaskRun")
async def post_latest_task_run(request: web.Request) -> web.Response:
    """Record that a task ran (form fields name, status, datetime)."""
    who = principal(request)
    if TASK_RUNNER not in who.roles and not who.is_admin:
        raise ForbiddenError()
    fields = await _form(request)  # only once the caller may post here
    name = fields.get("name", "")
    if name == "":
        return respond({"status": "ERROR", "reason": "No task name given."}, 400)
    if len(name) > MAX_TASK_NAME:
        return respond(
            {
                "status": "ERROR",
                "reason": f"Task name longer than {MAX_TASK_NAME} characters.",
            },
            400,
        )
    when = dt.datetime.now(dt.UTC)
    if "datetime" in fields:
        try:
            when = parse_datetime_utc(fields["datetime"])
        except TimingError:
            return respond({"status": "ERROR", "reason": "Not a valid datetime."}, 400)
    status = fields.get("status", "True") == "True"
    conn = await writing(request)
    statement = insert_ignoring(conn, latest_task_run).values(
        name=name, datetime=when, status=status
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["name"],
            set_={"datetime": when, "status": status},
        )
    )
    await conn.commit()
    return respond({"status": "OK"})


async def _form(request: web.Request) -> dict[str, str]:
    """The form fields (urlencoded or multipart; the first of each name)."""
    raw = await without_connection(
        request, lambda: read_limited(request, MAX_FORM_BYTES)
    )
    kind = request.headers.get(hdrs.CONTENT_TYPE, "")
    fields: dict[str, str] = {}
    if kind.startswith("application/x-www-form-urlencoded"):
        text = raw.decode("utf-8", "replace")
        for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
            fields.setdefault(key, value)
    else:
        for key, filename, _, content in form_parts(kind, raw):
            if filename is None:
                fields.setdefault(key, content.decode("utf-8", "replace"))
    return fields


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
    """Readiness: not draining, and the database answers `SELECT 1`.

    A pool backend answers for the process: it opens no tenant's database for a
    probe (its tenants' databases are checked by their own first requests).
    """
    if request.app[keys.DRAIN].started:
        return respond({"status": "DRAINING"}, status=503)
    directory = request.app[keys.TENANTS]
    if request.app[keys.SETTINGS].pooled:
        budget = directory.budget
        return respond(
            {
                "status": "ok",
                "tenants": len(directory),
                "open_engines": directory.open_engines,
                "database_connections": budget.held if budget is not None else 0,
            }
        )
    if not await ping(directory.only().engine):
        return respond(
            {"status": "DATABASE_UNAVAILABLE", "database_sql": False}, status=503
        )
    return respond({"status": "ok", "database_sql": True})
