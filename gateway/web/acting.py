"""Acting from an asset's charts page: upload a CSV, trigger a schedule or a
forecast, and watch the job.

Session-authenticated JSON endpoints under /dashboard/api that relay the tenant's
v3_0 API as the signed-in user, so the backend's rules and messages apply as they
are. POSTs need the session's CSRF secret in the `X-CSRF-Token` header and must come
from this origin (a page's script sends them; a cross-site form cannot set the
header).
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from gateway import keys
from gateway.errors import (
    ApiError,
    FormRejectedError,
    PayloadTooLargeError,
    UnauthorizedError,
    error_response,
)
from gateway.proxy import BackendAnswer, fetch
from gateway.signing import identity_for
from gateway.web.charts import ID
from gateway.web.dashboard import API, _caller, _get, _relay, _signed_in
from gateway.web.sessions import PageUser, csrf_valid

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

CSRF_HEADER: Final = "X-CSRF-Token"
JSON_LIMIT: Final = 64 * 1024
# Job ids as RQ makes them (UUIDs); nothing else is passed on in a path.
JOB_ID: Final = r"{uuid:[0-9A-Za-z-]{1,64}}"


async def _acting_user(request: web.Request) -> PageUser:
    """The session's user of a POST with a valid CSRF token (401, 403)."""
    user = await _signed_in(request)
    if user is None:
        raise UnauthorizedError()
    if not csrf_valid(request, user, request.headers.get(CSRF_HEADER)):
        raise FormRejectedError(
            "The form has expired or came from another site; reload the page."
        )
    return user


async def _body(request: web.Request, limit: int) -> bytes:
    """The request's body, refused with 413 beyond `limit` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLargeError(
            f"Request body exceeds the configured limit of {limit} bytes."
        )
    chunks: list[bytes] = []
    seen = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLargeError(
                f"Request body exceeds the configured limit of {limit} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _post(
    request: web.Request,
    user: PageUser,
    target: str,
    body: bytes,
    content_type: str,
) -> BackendAnswer:
    """POST `body` to `target` on the tenant's backend as the session's user."""
    tenant = request[keys.TENANT]
    identity = identity_for(request, tenant, _caller(user))
    return await fetch(
        request,
        tenant,
        identity,
        target,
        method="POST",
        body=body,
        content_type=content_type,
    )


async def _json_errors(request: web.Request, handler: str) -> web.Response:
    """Run the named relay; every answer JSON, errors included."""
    try:
        return await RELAYS[handler](request)
    except ApiError as err:
        if err.status >= 500:
            logger.warning("%s %s: %s", request.method, request.path, err.message)
        return error_response(err)


async def _upload(request: web.Request) -> web.Response:
    user = await _acting_user(request)
    sensor_id = int(request.match_info["id"])
    content_type = request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        raise FormRejectedError("Send the file as multipart/form-data.")
    body = await _body(request, request[keys.TENANT].max_body_bytes)
    answer = await _post(
        request, user, f"{API}/sensors/{sensor_id}/data/upload", body, content_type
    )
    return _relay(request, answer)


async def _json_post(request: web.Request, target: str) -> web.Response:
    user = await _acting_user(request)
    body = await _body(request, JSON_LIMIT)
    answer = await _post(request, user, target, body or b"{}", "application/json")
    return _relay(request, answer)


async def _forecast(request: web.Request) -> web.Response:
    sensor_id = int(request.match_info["id"])
    return await _json_post(request, f"{API}/sensors/{sensor_id}/forecasts/trigger")


async def _schedule(request: web.Request) -> web.Response:
    sensor_id = int(request.match_info["id"])
    return await _json_post(request, f"{API}/sensors/{sensor_id}/schedules/trigger")


async def _job(request: web.Request) -> web.Response:
    user = await _signed_in(request)
    if user is None:
        raise UnauthorizedError()
    answer = await _get(request, user, f"{API}/jobs/{request.match_info['uuid']}")
    return _relay(request, answer)


RELAYS: Final = {
    "upload": _upload,
    "forecast": _forecast,
    "schedule": _schedule,
    "job": _job,
}


@routes.post(rf"/dashboard/api/sensors/{ID}/upload")
async def post_sensor_upload(request: web.Request) -> web.Response:
    """`POST /sensors/<id>/data/upload` (multipart CSV files) as the user."""
    return await _json_errors(request, "upload")


@routes.post(rf"/dashboard/api/sensors/{ID}/forecasts/trigger")
async def post_forecast_trigger(request: web.Request) -> web.Response:
    """`POST /sensors/<id>/forecasts/trigger` (JSON) as the user."""
    return await _json_errors(request, "forecast")


@routes.post(rf"/dashboard/api/sensors/{ID}/schedules/trigger")
async def post_schedule_trigger(request: web.Request) -> web.Response:
    """`POST /sensors/<id>/schedules/trigger` (JSON; the asset's flex-model)."""
    return await _json_errors(request, "schedule")


@routes.get(rf"/dashboard/api/jobs/{JOB_ID}")
async def get_job(request: web.Request) -> web.Response:
    """`GET /jobs/<uuid>` as the user: a job's status."""
    return await _json_errors(request, "job")
