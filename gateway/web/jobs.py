"""The jobs page: the account's scheduling and forecasting jobs; a job's page.

Read from the backend's `GET /api/v3_0/jobs` (a flexhost extension listing the jobs
of the account's assets and sensors) and `GET /api/v3_0/jobs/<uuid>` as the
signed-in user. While a job is pending its page (and the list, while any is)
reloads itself (a meta refresh: no script), until the job ends.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Final

from aiohttp import web

from gateway.errors import ApiError
from gateway.web import render
from gateway.web.calls import (
    API,
    fetch_as,
    json_of,
    message_of,
    page_user,
    titled_error_page,
    to_login,
)
from gateway.web.sessions import PageUser

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

PENDING: Final = frozenset({"queued", "started", "deferred", "scheduled"})
REFRESH_SECONDS: Final = 5
JOB_REFRESH_SECONDS: Final = 2  # a job's own page: a schedule takes seconds
STATUS_TEXT: Final = {
    "queued": "Queued",
    "started": "Running",
    "deferred": "Waiting for another job",
    "scheduled": "Scheduled",
    "finished": "Finished",
    "failed": "Failed",
    "stopped": "Stopped",
    "canceled": "Canceled",
}


def _moment(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def status_text(status: str) -> str:
    """A job's status (RQ's word) for people."""
    return STATUS_TEXT.get(status, status.capitalize() or "Unknown")


def job_row(raw: dict[str, Any]) -> dict[str, Any]:
    """A job of the API's listing as the page shows it."""
    status = str(raw.get("status") or "")
    return {
        "id": str(raw.get("job_id") or ""),
        "kind": "Forecast" if raw.get("queue") == "forecasting" else "Schedule",
        "entity_type": raw.get("asset_or_sensor_type"),
        "entity_id": raw.get("entity_id"),
        "entity_name": raw.get("entity_name") or "",
        "asset_id": raw.get("asset_id"),
        "asset_name": raw.get("asset_name") or "",
        "status": status,
        "status_text": status_text(status),
        "pending": status in PENDING,
        "failed": status == "failed",
        "message": str(raw.get("message") or ""),
        "enqueued": _moment(raw.get("enqueued_at")),
        "started": _moment(raw.get("started_at")),
        "ended": _moment(raw.get("ended_at")),
    }


@routes.get("/jobs")
async def get_jobs(request: web.Request) -> web.Response:
    """The account's jobs, newest first; reloads itself while any is pending."""
    user = await page_user(request)
    try:
        answer = await fetch_as(request, user, f"{API}/jobs")
        body = json_of(request, answer)
    except ApiError as err:
        return titled_error_page(
            request, user, err.status, "Jobs are unavailable", err.message
        )
    if answer.status == 401:
        raise to_login(request)
    listed = body.get("jobs") if isinstance(body, dict) else None
    if answer.status != 200 or not isinstance(listed, list):
        return titled_error_page(
            request,
            user,
            answer.status if answer.status >= 400 else 502,
            "Jobs are unavailable",
            message_of(body) or "The backend gave an unreadable answer.",
        )
    rows = [job_row(raw) for raw in listed if isinstance(raw, dict)]
    problem = body.get("redis_connection_err") if isinstance(body, dict) else None
    return render(
        request,
        "jobs.html",
        {
            "user": user,
            "jobs": rows,
            "problem": problem if isinstance(problem, str) else "",
            "refresh": REFRESH_SECONDS if any(row["pending"] for row in rows) else 0,
        },
    )


def _job_unavailable(
    request: web.Request, user: PageUser, status: int, message: str
) -> web.Response:
    return titled_error_page(request, user, status, "The job is unavailable", message)


@routes.get(r"/jobs/{uuid:[0-9A-Za-z-]{1,64}}")
async def get_job_page(request: web.Request) -> web.Response:
    """A job's status; reloads itself until the job has ended.

    `?asset=<id>` (where the job was started) links back to that asset's page.
    """
    user = await page_user(request)
    job_id = request.match_info["uuid"]
    asset = request.query.get("asset", "")
    asset_id = int(asset) if asset.isdecimal() and len(asset) <= 18 else None
    try:
        answer = await fetch_as(request, user, f"{API}/jobs/{job_id}")
        body = json_of(request, answer)
    except ApiError as err:
        return _job_unavailable(request, user, err.status, err.message)
    if answer.status == 401:
        raise to_login(request)
    # 200 finished, 202 pending, 422 failed (FlexMeasures' answers).
    if answer.status not in (200, 202, 422) or not isinstance(body, dict):
        code = answer.status if answer.status >= 400 else 502
        if answer.status == 404:
            message = f"There is no job {job_id} (or the queue no longer keeps it)."
        else:
            message = message_of(body) or "The backend gave an unreadable answer."
        return _job_unavailable(request, user, code, message)
    status = str(body.get("status") or "").lower()
    pending = answer.status == 202
    return render(
        request,
        "job.html",
        {
            "user": user,
            "job": {
                "id": job_id,
                "kind": "Forecast"
                if body.get("origin") == "forecasting"
                else "Schedule",
                "status": status,
                "status_text": status_text(status),
                "pending": pending,
                "failed": answer.status == 422,
                "message": str(body.get("message") or ""),
                "enqueued": _moment(body.get("enqueued_at")),
                "started": _moment(body.get("started_at")),
                "ended": _moment(body.get("ended_at")),
            },
            "asset_id": asset_id,
            "refresh": JOB_REFRESH_SECONDS if pending else 0,
        },
    )
