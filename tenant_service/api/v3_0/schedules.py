"""Schedules (FlexMeasures /api/v3_0 triggers, schedule results and job status).

Decisions where FlexMeasures leaves room:
- `start` is floored to the schedule's resolution; `duration` defaults to 2 days
  (FLEXMEASURES_PLANNING_HORIZON) and is capped at 2520 steps.
- The resolution defaults to the coarsest resolution of the devices' power sensors and
  must be a multiple of each; each device's schedule is stored at its sensor's own
  resolution.
- Devices of an asset trigger are optimised together (one linear program sharing the
  site's capacity); `sequential` is accepted and has no other effect.
- Identical triggers return the cached job; only accepted new jobs count against the
  account's trigger limit (FlexMeasures counts cache hits too).
- A pending schedule is answered 400 UNKNOWN_SCHEDULE as FlexMeasures does, or 202
  with the job status where the tenant sets TENANT_PENDING_SCHEDULE_ACCEPTED.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from rq.job import JobStatus

from tenant_service import acl, keys
from tenant_service.api import nested_too_deep, parse_path_id
from tenant_service.api.v3_0 import (
    PREFIX,
    load_asset,
    load_sensor,
    principal,
    read_json_object,
    readable_path_sensor,
    respond,
)
from tenant_service.api.v3_0 import jobs as job_api
from tenant_service.beliefs import reindex_columns
from tenant_service.errors import (
    ForbiddenError,
    UnknownScheduleError,
    UnrecognizedEventError,
    ValidationError,
)
from tenant_service.scheduling import flexmodel
from tenant_service.schemas.fields import Fields
from tenant_service.store import assets as asset_store
from tenant_service.store import beliefs as belief_store
from tenant_service.store.sensors import SensorRecord, get_sensor
from tenant_service.timing import format_duration, from_epoch_ms
from tenant_service.units import UnitError, conversion, validate_unit

routes = web.RouteTableDef()

DEFAULT_PLANNING_MS: Final = 2 * 24 * 3600 * 1000
MAX_STEPS: Final = 2520
DEFAULT_SCHEDULE_MS: Final = 6 * 3600 * 1000
TRIGGER_FIELDS: Final = {
    "start": "start",
    "duration": "duration",
    "resolution": "resolution",
    "prior": "prior",
    "flex-model": "flex-model",
    "flex-context": "flex-context",
    "force-new-job-creation": "force-new-job-creation",
    "force_new_job_creation": "force-new-job-creation",
}
SIGN_CONVENTIONS: Final = ("consumption-positive", "production-positive", "wysiwyg")


@routes.post(PREFIX + r"/sensors/{id:\d+}/schedules/trigger")
async def trigger_sensor_schedule(request: web.Request) -> web.Response:
    """Trigger a schedule for one device (its power sensor)."""
    sensor_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    sensor = await load_sensor(conn, sensor_id)
    who = principal(request)
    if not acl.may_update_asset(who, sensor.owner):
        raise ForbiddenError()
    data = await read_json_object(request)
    conn = request[keys.CONN]  # (the body read may have swapped it)
    asset = await load_asset(conn, sensor.generic_asset_id)
    fields = _trigger_fields(data)
    raw_model = fields.data.get("flex-model", {})
    if raw_model is not None and not isinstance(raw_model, dict):
        fields.fail("flex-model", "Not a valid mapping type.")
        raw_model = {}
    # One object, as sent: its problems are named without a list index.
    devices = {**(raw_model or {}), "sensor": sensor.id}
    return await _trigger(request, fields, devices, asset, f"sensor {sensor.id}")


@routes.post(PREFIX + r"/assets/{id:\d+}/schedules/trigger")
async def trigger_asset_schedule(request: web.Request) -> web.Response:
    """Trigger a schedule for the devices of an asset (a flex-model per device)."""
    asset_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    asset = await load_asset(conn, asset_id)
    if not acl.may_update_asset(principal(request), asset.owner):
        raise ForbiddenError()
    data = await read_json_object(request)
    data.pop("sequential", None)
    fields = _trigger_fields(data)
    raw_model = fields.data.get("flex-model")
    devices: list[Any] = []
    if raw_model is None:
        fields.fail("flex-model", "Missing data for required field.")
    elif isinstance(raw_model, dict):
        devices = [raw_model]
    elif isinstance(raw_model, list) and raw_model:
        devices = raw_model
    else:
        fields.fail("flex-model", "Not a valid list of device flex-models.")
    return await _trigger(request, fields, devices, asset, f"asset {asset.id}")


def _trigger_fields(data: dict[str, Any]) -> Fields:
    if "force_new_job_creation" in data and "force-new-job-creation" in data:
        data.pop("force_new_job_creation")
    return Fields(data, TRIGGER_FIELDS)


async def _trigger(
    request: web.Request,
    fields: Fields,
    devices: list[Any] | dict[str, Any],
    asset: Any,
    target: str,
) -> web.Response:
    settings = request[keys.TENANT].settings
    conn = request[keys.CONN]
    who = principal(request)
    start_ms, _ = fields.datetime_ms("start", required=True)
    prior_ms, prior_text = fields.datetime_ms("prior")
    duration_ms = fields.duration_ms("duration", positive=True) or DEFAULT_PLANNING_MS
    resolution_ms = fields.duration_ms("resolution", positive=True)
    force = fields.data.get("force-new-job-creation", False)
    if not isinstance(force, bool):
        fields.fail("force-new-job-creation", "Not a valid boolean.")
    raw_context = fields.data.get("flex-context", {})
    if raw_context is None:
        raw_context = {}
    if not isinstance(raw_context, dict):
        fields.fail("flex-context", "Not a valid mapping type.")
        raw_context = {}
    if fields.errors:
        raise ValidationError("json", fields.errors)
    stored_model = _json_object(asset.flex_model)
    stored_context = _json_object(asset.flex_context)
    merged_devices = flexmodel.merge(devices, stored_model)
    merged_context = flexmodel.merge(raw_context, stored_context)
    try:
        models = flexmodel.parse_flex_model(merged_devices)
        context = flexmodel.parse_flex_context(merged_context)
    except flexmodel.FlexModelError as err:
        raise ValidationError("json", err.messages) from err
    power: list[SensorRecord] = []
    below = set((await conn.execute(asset_store.subtree(asset.id))).scalars().all())
    for index, model in enumerate(models):
        if model.sensor is None:
            raise ValidationError(
                "json",
                {
                    "flex-model": {
                        str(index): {"sensor": ["Missing data for required field."]}
                    }
                },
            )
        record = await _referenced(request, model.sensor)
        if record.generic_asset_id not in below:
            raise ValidationError(
                "json",
                {
                    "flex-model": [
                        f"Sensor {record.id} does not belong to asset {asset.id} "
                        "(or to one of its offspring)"
                    ]
                },
            )
        if any(p.id == record.id for p in power):
            raise ValidationError(
                "json",
                {
                    "flex-model": [
                        f"Sensor {record.id} should not occur more than once in the "
                        "flex-model"
                    ]
                },
            )
        power.append(record)
    for sensor_id in sorted(flexmodel.sensor_ids(models, context)):
        await _referenced(request, sensor_id)
    step_ms = _step(power, resolution_ms)
    start_ms -= start_ms % step_ms
    # As FlexMeasures: the window is extended to cover the SoC targets.
    targets_end = flexmodel.soc_targets_end_ms(models)
    if targets_end is not None:
        duration_ms = max(duration_ms, targets_end - start_ms)
    steps = max(1, min(MAX_STEPS, -(-duration_ms // step_ms)))
    belief_ms = prior_ms if prior_text else int(time.time() * 1000)
    job_request = {
        "sensors": [p.id for p in power],
        "start_ms": start_ms,
        "step_ms": step_ms,
        "steps": steps,
        "belief_time_ms": belief_ms,
        "flex_model": merged_devices,
        "flex_context": merged_context,
        "time_limit": max(1, settings.job_timeout - 5),
    }
    cache_request = {
        **job_request,
        "target": target,
        "belief_time_ms": prior_ms if prior_text else None,
    }
    meta = {
        "origin": job_api.SCHEDULING,
        "target": target,
        "asset_id": asset.id,
        "sensors": [p.id for p in power],
        "account_id": who.account_id,
        "user_id": who.user_id,
    }
    accepted = await job_api.accept(
        request,
        cache_request=cache_request,
        job_kwargs=job_request,
        meta=meta,
        account_id=who.account_id,
        force_new=bool(force),
    )
    job_id = accepted.job_id
    return respond(
        {
            "status": "ACCEPTED",
            "job": job_id,
            "schedule": job_id,
            "job-url": f"{PREFIX}/jobs/{job_id}",
            "results-url": f"{PREFIX}/sensors/{power[0].id}/schedules/{job_id}",
            "message": "Request has been accepted for processing.",
        },
        status=202,
    )


def _json_object(text: str) -> dict[str, Any]:
    """A stored JSON object; {} if it is none (or nests deeper than a body may)."""
    try:
        value = json.loads(text or "{}")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(value, dict) or nested_too_deep(value):
        return {}
    return value


async def _referenced(request: web.Request, sensor_id: int) -> SensorRecord:
    """A sensor the trigger names: it must exist and be readable."""
    record = await get_sensor(request[keys.CONN], sensor_id)
    if record is None:
        raise ValidationError(
            "json", {"sensor": [f"No sensor found with ID {sensor_id}."]}
        )
    if not acl.may_read(principal(request), record.owner):
        raise ForbiddenError()
    return record


def _step(power: list[SensorRecord], resolution_ms: int | None) -> int:
    resolutions = [p.event_resolution_ms for p in power if p.event_resolution_ms > 0]
    coarsest = max(resolutions, default=15 * 60 * 1000)
    if resolution_ms is None:
        if any(coarsest % r for r in resolutions):
            raise ValidationError(
                "json",
                {
                    "resolution": [
                        "The devices' sensor resolutions do not share a grid."
                    ]
                },
            )
        return coarsest
    if any(resolution_ms % r for r in resolutions):
        raise ValidationError(
            "json",
            {
                "resolution": [
                    "Resolution must be a multiple of the sensor resolution "
                    f"({format_duration(coarsest)})."
                ]
            },
        )
    return resolution_ms


@routes.get(PREFIX + r"/sensors/{id:\d+}/schedules/{uuid}")
async def get_schedule(request: web.Request) -> web.Response:
    """Get a schedule computed by a scheduling job."""
    sensor = await readable_path_sensor(request)
    job_id = request.match_info["uuid"]
    conn = request[keys.CONN]
    fields = Fields(
        dict(request.query),
        {"duration": "duration", "unit": "unit", "sign-convention": "sign-convention"},
    )
    duration_ms = fields.duration_ms("duration", positive=True) or DEFAULT_SCHEDULE_MS
    unit = fields.string("unit") or sensor.unit
    convention = fields.string("sign-convention") or SIGN_CONVENTIONS[0]
    if convention not in SIGN_CONVENTIONS:
        fields.fail(
            "sign-convention", f"Must be one of: {', '.join(SIGN_CONVENTIONS)}."
        )
    resolution = sensor.event_resolution_ms
    factor, offset = 1.0, 0.0
    try:
        validate_unit(unit)
        factor, offset = conversion(sensor.unit, unit, resolution)
    except UnitError:
        fields.fail(
            "unit", f"Incompatible units: {sensor.unit} cannot be converted to {unit}."
        )
    if fields.errors:
        raise ValidationError("query", fields.errors)
    job = await job_api.fetch_job(request, job_id)
    if (
        job is None
        or job_api.origin(job) != job_api.SCHEDULING
        or sensor.id not in job.meta.get("sensors", [])
    ):
        raise UnrecognizedEventError(
            f"The requested UDI event (id = {job_id}, type = job) is not known."
        )
    status = job.get_status(refresh=False)
    if status == JobStatus.FAILED:
        raise UnknownScheduleError(job_api.failure_message(job))
    if status != JobStatus.FINISHED:
        message = job_api.pending_message(job, status)
        if request[keys.TENANT].settings.pending_schedule_accepted:
            return respond(
                {"status": str(status.value).upper(), "message": message}, status=202
            )
        raise UnknownScheduleError(message)
    result = job.return_value() or {}
    start_ms = int(result["start_ms"])
    end_ms = min(int(result["end_ms"]), start_ms + duration_ms)
    step = resolution or int(job.kwargs["request"]["step_ms"])
    starts, stored = await belief_store.latest_values(
        conn,
        sensor.id,
        start_ms,
        end_ms,
        resolution,
        belief_store.ReadFilter(
            source_id=int(result["source_id"]),
            prior_ms=int(result["belief_time_ms"]),
        ),
        step_ms=step,
    )
    values = reindex_columns(starts, stored, start_ms, end_ms - start_ms, step)
    attributes = _json_object(sensor.attributes)
    # Stored production-positive unless the sensor says consumption is positive.
    to_consumption = 1.0 if attributes.get("consumption_is_positive") else -1.0
    sign = {
        "consumption-positive": to_consumption,
        "production-positive": -to_consumption,
        "wysiwyg": 1.0,
    }[convention]
    # + 0.0: no -0.0 from flipping the sign of a zero (FlexMeasures sends -0.0).
    out = [None if v is None else sign * v * factor + offset + 0.0 for v in values]
    info: dict[str, Any] = {"scheduler": "StorageScheduler"}
    if "commitment_costs" in result:  # jobs of before 1.0.1 parity have none
        info["commitment_costs"] = result["commitment_costs"]
    return respond(
        {
            "values": out,
            # As FlexMeasures: in the sensor's time zone, whatever the trigger's offset.
            "start": _in_zone(start_ms, sensor.timezone),
            "duration": format_duration(end_ms - start_ms, days=False),
            "unit": unit,
            "scheduler_info": info,
            "message": "Request has been processed. StorageScheduler was used.",
            "status": "PROCESSED",
        }
    )


def _in_zone(epoch_ms: int, zone: str) -> str:
    """The moment in a time zone (UTC when unknown), ISO 8601 with its offset."""
    try:
        tz: dt.tzinfo = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return from_epoch_ms(epoch_ms).astimezone(tz).isoformat()
