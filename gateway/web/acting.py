"""Acting from an asset's charts: upload a CSV, trigger a schedule (for a sensor
or the whole asset) or a forecast, and watch the job.

Each form on the page is a plain form that works without JavaScript: it posts to
a page route under /assets/<id>/ (CSRF secret in the form, from this origin) that
answers with a page saying what was stored or refused and why, or sends the user
to the job's status page (/jobs/<uuid>, which reloads itself until the job ends).
With JavaScript, asset_acting.js intercepts the submits and does the same in the
page: the upload and the sensor trigger through session-authenticated JSON relays
under /dashboard/api (CSRF secret in the `X-CSRF-Token` header, which a cross-site
form cannot set), the asset-wide trigger by posting its form with
`Accept: application/json`. Everything goes to the tenant's v3_0 API as the
signed-in user, so the backend's rules and messages apply as they are.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import BodyPartReader, MultipartWriter, web
from multidict import MultiDict, MultiDictProxy

from gateway import keys
from gateway.errors import (
    ApiError,
    FormRejectedError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnprocessableError,
    error_response,
)
from gateway.proxy import BackendAnswer, fetch
from gateway.signing import identity_for
from gateway.web import render
from gateway.web.calls import (
    API,
    FORM_REJECTED,
    caller_of,
    fetch_as,
    message_of,
    page_user,
    relay,
    signed_in,
)
from gateway.web.charts import ID, quarter_now
from gateway.web.sessions import PageUser, csrf_valid

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

CSRF_HEADER: Final = "X-CSRF-Token"
JSON_LIMIT: Final = 64 * 1024
# Job ids as RQ makes them (UUIDs); nothing else is passed on in a path.
JOB_ID: Final = r"{uuid:[0-9A-Za-z-]{1,64}}"
FILES: Final = "uploaded-files"
# A file's name as passed on to the backend (and shown back): nothing else.
UNSAFE_NAME_RE: Final = re.compile(r"[^\w. ()+-]")


async def _acting_user(request: web.Request) -> PageUser:
    """The session's user of a POST with a valid CSRF token (401, 403)."""
    user = await signed_in(request)
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
    identity = identity_for(request, tenant, caller_of(user))
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
    return relay(request, answer)


async def _json_post(request: web.Request, target: str) -> web.Response:
    user = await _acting_user(request)
    body = await _body(request, JSON_LIMIT)
    answer = await _post(request, user, target, body or b"{}", "application/json")
    return relay(request, answer)


async def _forecast(request: web.Request) -> web.Response:
    sensor_id = int(request.match_info["id"])
    return await _json_post(request, f"{API}/sensors/{sensor_id}/forecasts/trigger")


async def _schedule(request: web.Request) -> web.Response:
    sensor_id = int(request.match_info["id"])
    return await _json_post(request, f"{API}/sensors/{sensor_id}/schedules/trigger")


async def _job(request: web.Request) -> web.Response:
    user = await signed_in(request)
    if user is None:
        raise UnauthorizedError()
    answer = await fetch_as(request, user, f"{API}/jobs/{request.match_info['uuid']}")
    return relay(request, answer)


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


# --- the same forms without JavaScript: pages -------------------------------------


Form = MultiDictProxy[Any] | MultiDict[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a page form did, as its answer page says it."""

    status: int
    title: str
    message: str
    reasons: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return self.status >= 400


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file of the upload form."""

    filename: str
    content_type: str
    content: bytes


# Keys that name no field: the whole object, the upload's files (named anyway).
UNNAMED: Final = frozenset({"_schema", FILES})


def reasons(body: object) -> tuple[str, ...]:
    """Every message of a FlexMeasures error body, each with the field it is about.

    A 422's message is {location: {field: [texts]}}; nested fields are named by
    their innermost name (list indexes are no names).
    """
    found: list[str] = []

    def walk(value: object, name: str, depth: int) -> None:
        if isinstance(value, str):
            found.append(f"{name}: {value}" if name else value)
        elif isinstance(value, list):
            for item in value:
                walk(item, name, depth)
        elif isinstance(value, dict):
            for key, item in value.items():
                key = str(key)
                named = depth > 0 and key not in UNNAMED and not key.isdecimal()
                walk(item, key if named else name, depth + 1)

    if isinstance(body, dict):
        walk(body.get("message", body.get("errors")), "", 0)
    return tuple(found)


def _json(answer: BackendAnswer) -> object:
    try:
        return answer.json()
    except ValueError:
        return None


def _result_page(
    request: web.Request, user: PageUser, asset_id: int, outcome: Outcome
) -> web.Response:
    return render(
        request,
        "acting_result.html",
        {"user": user, "asset_id": asset_id, "outcome": outcome},
        status=outcome.status,
    )


def _check_csrf(request: web.Request, user: PageUser, form: Form) -> None:
    token = form.get("csrf_token")
    if not csrf_valid(request, user, token if isinstance(token, str) else None):
        logger.warning(
            "form refused: CSRF check failed", extra={"user_id": user.user_id}
        )
        raise FormRejectedError(FORM_REJECTED)


def _text(form: Form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _id(text: str) -> int | None:
    return (
        int(text) if text.isascii() and text.isdecimal() and len(text) <= 18 else None
    )


async def _upload_form(
    request: web.Request, limit: int
) -> tuple[Form, list[UploadedFile]]:
    """The upload form's fields and files (the body refused beyond `limit` bytes)."""
    if not request.content_type.startswith("multipart/"):
        return await request.post(), []  # no file in it
    length = request.content_length
    too_large = PayloadTooLargeError(
        f"Request body exceeds the configured limit of {limit} bytes."
    )
    if length is not None and length > limit:
        raise too_large
    fields: MultiDict[str] = MultiDict()
    files: list[UploadedFile] = []
    seen = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # a nested multipart: no form sends one
        chunks: list[bytes] = []
        while chunk := await part.read_chunk():
            seen += len(chunk)
            if seen > limit:
                raise too_large
            chunks.append(chunk)
        content = b"".join(chunks)
        if part.filename is None:
            fields.add(part.name or "", content.decode("utf-8", "replace"))
        elif part.name == FILES and part.filename:
            files.append(
                UploadedFile(
                    UNSAFE_NAME_RE.sub("_", part.filename)[:200],
                    part.headers.get("Content-Type", "text/csv"),
                    content,
                )
            )
    return fields, files


async def _multipart(files: list[UploadedFile]) -> tuple[bytes, str]:
    """The files as the API's upload wants them: (body, content type)."""
    writer = MultipartWriter("form-data")
    for file in files:
        part = writer.append(file.content, {"Content-Type": file.content_type})
        part.set_content_disposition(
            "form-data", quote_fields=False, name=FILES, filename=file.filename
        )
    return await writer.as_bytes(), writer.content_type


def _rows(content: bytes) -> int:
    """Data rows of a CSV file (its non-empty lines but the header)."""
    lines = [line for line in content.splitlines() if line.strip()]
    return max(0, len(lines) - 1)


async def upload_outcome(
    request: web.Request, user: PageUser, form: Form, files: list[UploadedFile]
) -> Outcome:
    """Send the upload form's files to the API; what was stored or refused."""
    sensor_id = _id(_text(form, "sensor"))
    if sensor_id is None:
        return Outcome(422, "Nothing was stored", "Choose a sensor.")
    if not files:
        return Outcome(422, "Nothing was stored", "Choose a CSV file first.")
    names = ", ".join(file.filename for file in files)
    body, content_type = await _multipart(files)
    target = f"{API}/sensors/{sensor_id}/data/upload"
    try:
        answer = await _post(request, user, target, body, content_type)
    except ApiError as err:
        return Outcome(err.status, "The upload failed", err.message)
    said = _json(answer)
    if answer.status == 200:
        rows = sum(_rows(file.content) for file in files)
        return Outcome(
            200,
            "Data stored",
            f"Stored {names} ({rows} rows) for sensor {sensor_id}: " + message_of(said),
        )
    if answer.status == 422:
        return Outcome(
            422,
            "Nothing was stored",
            f"Nothing was stored; {names} was refused:",
            reasons(said),
        )
    return Outcome(
        answer.status if answer.status >= 400 else 502,
        "The upload failed",
        message_of(said) or f"The API answered {answer.status}.",
    )


@routes.post(rf"/assets/{ID}/upload")
async def post_upload_page(request: web.Request) -> web.Response:
    """The upload form without JavaScript: a page of what was stored or refused."""
    asset_id = int(request.match_info["id"])
    user = await page_user(request)
    form, files = await _upload_form(request, request[keys.TENANT].max_body_bytes)
    _check_csrf(request, user, form)
    outcome = await upload_outcome(request, user, form, files)
    if not outcome.refused:
        logger.info("data uploaded on a page", extra={"user_id": user.user_id})
    return _result_page(request, user, asset_id, outcome)


def _json_field(form: Form, name: str, errors: dict[str, list[str]]) -> object:
    """A form's JSON text: None if empty; its problem in `errors`."""
    text = _text(form, name)
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        errors[name.replace("_", "-")] = [f"Not valid JSON: {err}."]
        return None


def asset_schedule_body(form: Form) -> dict[str, Any]:
    """The API body of the asset-wide schedule form (422 if its JSON is bad).

    A flex-model per chosen device (its power sensor): what the form's flex-model
    object says for every device, the rest from the asset's stored flex-model (the
    API fills it in); a list there is a flex-model per device as it is. No
    flex-context: the asset's stored one.
    """
    errors: dict[str, list[str]] = {}
    model = _json_field(form, "flex_model", errors)
    context = _json_field(form, "flex_context", errors)
    if errors:
        raise UnprocessableError(errors)
    devices = [d for d in map(_id, form.getall("device", [])) if d is not None]
    body: dict[str, Any] = {"start": _text(form, "start")}
    if duration := _text(form, "duration"):
        body["duration"] = duration
    if isinstance(model, list):
        body["flex-model"] = model
    elif model is None or isinstance(model, dict):
        body["flex-model"] = [{**(model or {}), "sensor": d} for d in devices]
    else:
        body["flex-model"] = model  # the API names what is wrong with it
    if context is not None:
        body["flex-context"] = context
    return body


async def _trigger(
    request: web.Request,
    user: PageUser,
    asset_id: int,
    kind: str,
    target: str,
    body: dict[str, Any],
) -> web.Response:
    """POST the trigger; to the job's page, or a page of why it was refused."""
    title = f"The {kind} was not started"
    try:
        answer = await _post(
            request, user, target, json.dumps(body).encode(), "application/json"
        )
    except ApiError as err:
        return _result_page(
            request, user, asset_id, Outcome(err.status, title, err.message)
        )
    said = _json(answer)
    job = said.get("job") if isinstance(said, dict) else None
    if answer.status == 202 and isinstance(job, str) and job:
        logger.info("%s triggered on a page", kind, extra={"user_id": user.user_id})
        return web.Response(
            status=303,
            headers={
                "Location": f"/jobs/{job}?asset={asset_id}",
                "Cache-Control": "no-store",
            },
        )
    status = answer.status if answer.status >= 400 else 502
    outcome = Outcome(status, title, f"The API refused the {kind}:", reasons(said))
    if not outcome.reasons:
        outcome = Outcome(
            status, title, message_of(said) or f"The API answered {answer.status}."
        )
    return _result_page(request, user, asset_id, outcome)


@routes.post(rf"/assets/{ID}/trigger")
async def post_trigger_page(request: web.Request) -> web.Response:
    """The sensor's forecast or schedule form without JavaScript."""
    asset_id = int(request.match_info["id"])
    user = await page_user(request)
    form = await request.post()
    _check_csrf(request, user, form)
    sensor_id = _id(_text(form, "sensor"))
    kind = _text(form, "kind")
    duration = _text(form, "duration")
    if sensor_id is None or kind not in ("forecast", "schedule"):
        outcome = Outcome(422, "Nothing was started", "Choose a sensor and what to do.")
        return _result_page(request, user, asset_id, outcome)
    if kind == "schedule":
        body: dict[str, Any] = {
            "start": quarter_now(),
            "duration": duration,
            "flex-model": {},
        }
    else:
        body = {"duration": duration}  # from now, with what is known now
    target = f"{API}/sensors/{sensor_id}/{kind}s/trigger"
    return await _trigger(request, user, asset_id, kind, target, body)


@routes.post(rf"/assets/{ID}/schedules/trigger")
async def post_asset_schedule(request: web.Request) -> web.Response:
    """The asset-wide schedule form: a flex-model per chosen device sensor.

    Without JavaScript: to the job's page (or a page of why it was refused). The
    page's script posts the same form with `Accept: application/json` and gets
    the API's answer as it is (errors in FlexMeasures' JSON envelope).
    """
    asset_id = int(request.match_info["id"])
    target = f"{API}/assets/{asset_id}/schedules/trigger"
    if "application/json" not in request.headers.get("Accept", ""):
        user = await page_user(request)
        form = await request.post()
        _check_csrf(request, user, form)
        try:
            body = asset_schedule_body(form)
        except UnprocessableError as err:
            outcome = Outcome(
                422,
                "The schedule was not started",
                "Nothing was sent to the API:",
                reasons(err.body()),
            )
            return _result_page(request, user, asset_id, outcome)
        return await _trigger(request, user, asset_id, "schedule", target, body)
    try:
        session_user = await signed_in(request)
        if session_user is None:
            raise UnauthorizedError()
        form = await request.post()
        _check_csrf(request, session_user, form)
        body = asset_schedule_body(form)
        answer = await _post(
            request, session_user, target, json.dumps(body).encode(), "application/json"
        )
        return relay(request, answer)
    except ApiError as err:
        return error_response(err)
