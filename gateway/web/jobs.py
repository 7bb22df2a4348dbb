"""The jobs page: the account's scheduling and forecasting jobs.

Read from the backend's `GET /api/v3_0/jobs` (a flexhost extension listing the jobs
of the account's assets and sensors) as the signed-in user. While any job is
pending the page reloads itself (a meta refresh: no script).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Final

from aiohttp import web

from gateway.errors import ApiError
from gateway.web import render
from gateway.web.dashboard import (
    API,
    _error_page,
    _get,
    _json_of,
    _message,
    _signed_in,
    _to_login,
)

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

PENDING: Final = frozenset({"queued", "started", "deferred", "scheduled"})
REFRESH_SECONDS: Final = 5
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
        "status_text": STATUS_TEXT.get(status, status.capitalize() or "Unknown"),
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
    user = await _signed_in(request)
    if user is None:
        raise _to_login(request)
    try:
        answer = await _get(request, user, f"{API}/jobs")
        body = _json_of(request, answer)
    except ApiError as err:
        return _error_page(
            request, user, err.status, "Jobs are unavailable", err.message
        )
    if answer.status == 401:
        raise _to_login(request)
    listed = body.get("jobs") if isinstance(body, dict) else None
    if answer.status != 200 or not isinstance(listed, list):
        return _error_page(
            request,
            user,
            answer.status if answer.status >= 400 else 502,
            "Jobs are unavailable",
            _message(body) or "The backend gave an unreadable answer.",
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
