"""Background jobs (schedules and forecasts): enqueueing, looking up, their status.

Both kinds run on the tenant's one RQ queue; a job's meta `origin` ("scheduling"
or "forecasting", as FlexMeasures' queue names) says which it is, and the status
answers name it as FlexMeasures does ("Forecasting job in progress.").
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import redis
from aiohttp import web
from rq.job import Job, JobStatus
from sqlalchemy import select

from tenant_service import acl, keys
from tenant_service.api import NOT_INTEGER
from tenant_service.api.v3_0 import PREFIX, principal, respond
from tenant_service.config import Settings
from tenant_service.errors import (
    ForbiddenError,
    NotFoundError,
    QueueUnavailableError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnknownJobError,
    ValidationError,
)
from tenant_service.scheduling import jobs
from tenant_service.store import accounts as account_store
from tenant_service.store.sensors import get_sensor
from tenant_service.store.tables import generic_assets, sensors

routes = web.RouteTableDef()

SCHEDULING: Final = "scheduling"
FORECASTING: Final = "forecasting"
PENDING: Final = {
    JobStatus.QUEUED: "job waiting to be processed.",
    JobStatus.STARTED: "job in progress.",
    JobStatus.DEFERRED: "job waiting for another job to be processed.",
    JobStatus.SCHEDULED: "job waiting to be processed.",
}


@contextmanager
def redis_errors() -> Iterator[None]:
    """Redis down or unreachable: 503 with Retry-After (nothing was enqueued)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as err:
        raise QueueUnavailableError() from err


def connection(request: web.Request) -> redis.Redis:
    """The job queue's Redis client; 503 when none is configured."""
    found = request.app.get(keys.JOB_REDIS)
    if found is None:
        raise ServiceUnavailableError("Scheduling is not configured on this server.")
    return found


async def accept(request: web.Request, **kwargs: Any) -> jobs.Accepted:
    """`jobs.accept_trigger` off the event loop; 429 past the account's limit."""
    settings: Settings = request[keys.TENANT].settings
    client = connection(request)
    with redis_errors():
        try:
            return await asyncio.to_thread(
                jobs.accept_trigger, client, settings, **kwargs
            )
        except jobs.RateLimitedError as err:
            raise TooManyRequestsError(
                "You hit a rate limit. The limit you hit allows "
                f"{err.limit} per {_period_text(err.period)}.",
                limit=err.limit,
                retry_after=err.retry_after,
            ) from err


def _period_text(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    return f"{seconds} seconds"


async def fetch_job(request: web.Request, job_id: str) -> Job | None:
    """This tenant's job with that id, or None."""
    settings: Settings = request[keys.TENANT].settings
    client = connection(request)
    with redis_errors():
        return await asyncio.to_thread(jobs.fetch, client, settings, job_id)


def origin(job: Job) -> str:
    """What the job does: "scheduling" or "forecasting"."""
    return str(job.meta.get("origin", SCHEDULING))


def failure_message(job: Job) -> str:
    """FlexMeasures' "<Kind> job failed with <Type>: <message>"."""
    kind = origin(job).capitalize()
    found = job.meta.get("exception")
    if isinstance(found, dict):
        return f"{kind} job failed with {found.get('type')}: {found.get('message')}"
    return (
        f"{kind} job failed with AbandonedJobError: the job did not finish "
        "(its worker stopped)."
    )


def pending_message(job: Job, status: JobStatus) -> str:
    """FlexMeasures' description of a queued or running job."""
    return f"{origin(job).capitalize()} " + PENDING.get(
        status, "job has an unknown status."
    )


def _time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


@routes.get(PREFIX + "/jobs/{uuid}")
async def get_job_status(request: web.Request) -> web.Response:
    """Get the status of a background job"""
    job_id = request.match_info["uuid"]
    job = await fetch_job(request, job_id)
    if job is None:
        raise UnknownJobError(f"Job {job_id} not found.")
    sensors = job.meta.get("sensors", [])
    if sensors:
        record = await get_sensor(request[keys.CONN], int(sensors[0]))
        if record is not None and not acl.may_read(principal(request), record.owner):
            raise ForbiddenError()
    status = job.get_status(refresh=False)
    result: Any = None
    exc_info: str | None = None
    if status == JobStatus.FINISHED:
        code, message = 200, f"{origin(job).capitalize()} job has finished."
        result = job.return_value()
    elif status == JobStatus.FAILED:
        code, message = 422, failure_message(job)
        exc_info = message
    else:
        code, message = 202, pending_message(job, status)
    body = {
        "status": str(status.value).upper(),
        "message": message,
        "result": result,
        "origin": origin(job),
        "func-name": job.func_name,
        "enqueued-at": _time(job.enqueued_at),
        "started-at": _time(job.started_at),
        "ended-at": _time(job.ended_at),
        "exc-info": exc_info,
    }
    body.update({key.replace("-", "_"): value for key, value in list(body.items())})
    return respond(body, status=code)


def _message_of(job: Job, status: JobStatus) -> str:
    if status == JobStatus.FINISHED:
        return f"{origin(job).capitalize()} job has finished."
    if status == JobStatus.FAILED:
        return failure_message(job)
    return pending_message(job, status)


@routes.get(PREFIX + "/jobs")
async def get_account_jobs(request: web.Request) -> web.Response:
    """The background jobs of an account's assets and sensors (flexhost extension)."""
    who = principal(request)
    account_id = who.account_id
    text = request.query.get("account", request.query.get("account_id"))
    if text is not None:
        text = text.strip()
        if not text.isdecimal() or len(text) > 18:
            raise ValidationError("query", {"account": [NOT_INTEGER]})
        account_id = int(text)
    conn = request[keys.CONN]
    account = await account_store.get_account(conn, account_id)
    if account is None:
        raise NotFoundError(f"Account {account_id} not found")
    if not who.may_read_account(account.id, account.consultancy_account_id):
        raise ForbiddenError()
    found_assets = await conn.execute(
        select(generic_assets.c.id, generic_assets.c.name).where(
            generic_assets.c.account_id == account.id
        )
    )
    assets: dict[int, str] = {row.id: row.name for row in found_assets}
    rows = (
        await conn.execute(
            select(sensors.c.id, sensors.c.name, sensors.c.generic_asset_id).where(
                sensors.c.generic_asset_id.in_(list(assets))
            )
        )
    ).all()
    sensor_rows = {row.id: row for row in rows}
    client = request.app.get(keys.JOB_REDIS)
    if client is None:
        return respond({"jobs": [], "redis_connection_err": "Redis not configured"})
    settings: Settings = request[keys.TENANT].settings
    try:
        found = await asyncio.to_thread(
            jobs.jobs_of, client, settings, set(assets), set(sensor_rows)
        )
    except (redis.ConnectionError, redis.TimeoutError):
        return respond({"jobs": [], "redis_connection_err": "Redis is not reachable."})
    listed = []
    for entry in found:
        job = entry.job
        status = job.get_status(refresh=False)
        if entry.kind == "asset":
            asset_id, name = entry.entity_id, assets.get(entry.entity_id, "")
        else:
            row = sensor_rows[entry.entity_id]
            asset_id, name = row.generic_asset_id, row.name
        listed.append(
            {
                "job_id": job.id,
                "queue": entry.queue,
                "status": str(status.value),
                "asset_or_sensor_type": entry.kind,
                "entity_id": entry.entity_id,
                "entity_name": name,
                "asset_id": asset_id,
                "asset_name": assets.get(asset_id, ""),
                "message": _message_of(job, status),
                "enqueued_at": _time(job.enqueued_at),
                "started_at": _time(job.started_at),
                "ended_at": _time(job.ended_at),
            }
        )
    return respond({"jobs": listed, "redis_connection_err": None})
