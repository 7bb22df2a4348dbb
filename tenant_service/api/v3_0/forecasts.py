"""Forecasts (FlexMeasures /api/v3_0 forecast trigger and results).

Decisions where FlexMeasures leaves room (see README "Forecasts"):
- Every trigger is one job on the tenant's scheduling queue (also with several
  viewpoints), counted against the account's trigger limit shared with schedules.
- `output-path` and `model-save-dir` (directories on the worker host) are refused
  as unknown fields; FlexMeasures writes files where the client says.
- Re-triggering the same forecast replaces the stored values (FlexMeasures' job
  fails with a unique violation).
- A regressor with no data known at the forecast's belief time fails the job with
  a message saying so (FlexMeasures silently uses zeros).
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web
from rq.job import JobStatus
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service import acl, keys
from tenant_service.api import parse_path_id
from tenant_service.api.v3_0 import (
    PREFIX,
    principal,
    read_json_object,
    readable_path_sensor,
    respond,
)
from tenant_service.api.v3_0 import jobs as job_api
from tenant_service.beliefs import reindex_columns
from tenant_service.errors import (
    SENSOR_DATA_LOCATION,
    ForbiddenError,
    JsonMessageError,
    UnknownForecastError,
    ValidationError,
)
from tenant_service.forecasting import params
from tenant_service.forecasting.model import DEFAULT_TRAIN_PERIOD_MS, MIN_HISTORY_MS
from tenant_service.scheduling import jobs
from tenant_service.store import beliefs as belief_store
from tenant_service.store.sensors import SensorRecord, get_sensor
from tenant_service.timing import format_duration, from_epoch_ms

routes = web.RouteTableDef()


@routes.post(PREFIX + r"/sensors/{id:\d+}/forecasts/trigger")
async def trigger_forecast(request: web.Request) -> web.Response:
    """Trigger forecasting job for one sensor"""
    sensor_id = parse_path_id(request.match_info["id"])
    sensor = await get_sensor(request[keys.CONN], sensor_id)
    if sensor is None:  # FlexMeasures names the body's location here
        raise ValidationError(
            SENSOR_DATA_LOCATION,
            {"sensor": [f"No sensor found with ID {sensor_id}."]},
        )
    who = principal(request)
    # FlexMeasures: "create-children" on the sensor (any member, as posting data).
    if not acl.may_post_data(who, sensor.owner):
        raise ForbiddenError()
    data = await read_json_object(request)
    conn = request[keys.CONN]  # (the body read may have swapped it)
    try:
        trigger = params.parse_trigger(
            data,
            resolution_ms=sensor.event_resolution_ms,
            now_ms=int(time.time() * 1000),
        )
    except params.TriggerError as err:
        raise ValidationError(SENSOR_DATA_LOCATION, err.errors) from err
    for regressor_id in trigger.sensor_ids():
        record = await get_sensor(conn, regressor_id)
        if record is None:
            raise ValidationError(
                SENSOR_DATA_LOCATION,
                {"config": params.unknown_sensor(data.get("config"), regressor_id)},
            )
        if not acl.may_read(who, record.owner):
            raise ForbiddenError()
    await _check_history(conn, sensor, trigger)
    accepted = await job_api.accept(
        request,
        cache_request=None,
        job_kwargs=trigger.job_request(sensor.id),
        meta={
            "origin": job_api.FORECASTING,
            "sensor_id": sensor.id,
            "sensors": [sensor.id],
            "start": from_epoch_ms(trigger.start_ms).isoformat(),
            "end": from_epoch_ms(trigger.end_ms).isoformat(),
            "account_id": who.account_id,
            "user_id": who.user_id,
        },
        account_id=who.account_id,
        force_new=True,
        function=jobs.FORECAST_FUNCTION,
        description=f"forecast for sensor {sensor.id}",
    )
    job_id = accepted.job_id
    return respond(
        {
            "status": "ACCEPTED",
            "message": "Request has been accepted for processing.",
            "job": job_id,
            "forecast": job_id,
            "job-url": f"{PREFIX}/jobs/{job_id}",
            "results-url": f"{PREFIX}/sensors/{sensor.id}/forecasts/{job_id}",
        },
        status=202,
    )


async def _check_history(
    conn: AsyncConnection, sensor: SensorRecord, trigger: params.Trigger
) -> None:
    """422 up front when the sensor has too little history known at the belief time.

    As the model counts it: values in the train period before the first forecast
    (the job says the same should the data go away meanwhile).
    """
    step = sensor.event_resolution_ms
    period = trigger.train_period_ms or DEFAULT_TRAIN_PERIOD_MS
    first = trigger.start_ms - period
    if trigger.train_start_ms is not None:
        first = max(first, trigger.train_start_ms)
    known = await belief_store.count_known_events(
        conn, sensor.id, first, trigger.start_ms, step, trigger.belief_time_ms
    )
    if known * step < MIN_HISTORY_MS:
        raise ValidationError(
            SENSOR_DATA_LOCATION,
            {
                "start": [
                    "Too little history to forecast: "
                    f"{format_duration(known * step)} of data known at "
                    f"{from_epoch_ms(trigger.belief_time_ms).isoformat()} in the "
                    f"{format_duration(trigger.start_ms - first)} before the start, at "
                    f"least {format_duration(MIN_HISTORY_MS)} are needed."
                ]
            },
        )


@routes.get(PREFIX + r"/sensors/{id:\d+}/forecasts/{uuid}")
async def get_forecast(request: web.Request) -> web.Response:
    """Get forecast for one sensor"""
    sensor = await readable_path_sensor(request)
    job_id = request.match_info["uuid"]
    conn = request[keys.CONN]
    job = await job_api.fetch_job(request, job_id)
    if job is None or job_api.origin(job) != job_api.FORECASTING:
        raise JsonMessageError(f"Job {job_id} not found.")
    job_sensor = job.meta.get("sensor_id")
    if job_sensor != sensor.id:
        raise JsonMessageError(
            f"Sensor ID mismatch: job {job_id} is for sensor {job_sensor}, "
            f"not sensor {sensor.id}."
        )
    status = job.get_status(refresh=False)
    if status == JobStatus.FAILED:
        return respond(
            {"status": "FAILED", "message": job_api.failure_message(job)}, status=422
        )
    if status != JobStatus.FINISHED:
        return respond(
            {
                "status": str(status.value).upper(),
                "message": job_api.pending_message(job, status),
            },
            status=202,
        )
    result = job.return_value() or {}
    start_ms, end_ms = int(result["start_ms"]), int(result["end_ms"])
    step = sensor.event_resolution_ms or (end_ms - start_ms)
    starts, values = await belief_store.latest_values(
        conn,
        sensor.id,
        start_ms,
        end_ms,
        sensor.event_resolution_ms,
        belief_store.ReadFilter(
            source_id=int(result["source_id"]),
            prior_ms=int(result["belief_time_ms"]),
        ),
        step_ms=step,
    )
    if not len(starts):  # e.g. deleted with DELETE /sensors/<id>/data
        raise UnknownForecastError(
            "A forecasting job has been processed with your job ID, but the forecast "
            "was not found in the database."
        )
    body = {
        "start": from_epoch_ms(start_ms).isoformat(),
        "duration": format_duration(end_ms - start_ms),
        "unit": sensor.unit,
        "values": reindex_columns(starts, values, start_ms, end_ms - start_ms, step),
    }
    # FlexMeasures answers these four keys only (no status).
    return web.Response(body=orjson.dumps(body), content_type="application/json")
