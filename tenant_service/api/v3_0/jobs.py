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

from tenant_service import acl, keys
from tenant_service.api.v3_0 import PREFIX, principal, respond
from tenant_service.config import Settings
from tenant_service.errors import (
    ForbiddenError,
    QueueUnavailableError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnknownJobError,
)
from tenant_service.scheduling import jobs
from tenant_service.store.sensors import get_sensor

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
    settings: Settings = request.app[keys.SETTINGS]
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
    settings: Settings = request.app[keys.SETTINGS]
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
