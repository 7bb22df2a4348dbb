"""Sensor data: POST/GET/DELETE `/sensors/<id>/data`, the deprecated `/sensors/data`,
`/sensors/<id>/stats` and `/sources` (reference sections 4.1, 4.2 and 4.5).

Choices where FlexMeasures is inconsistent or silent:
- An unknown sensor id on the data endpoints is 404 `{"message": "Sensor n not
  found", "status": 404}`, as FlexMeasures answers there (its `GET /sensors/<id>`
  says 422); a non-numeric id is 422 under `combined_sensor_data_description.sensor`.
- Access is checked before the body is read (and so before it is validated): another
  account's user learns nothing about a sensor from validation messages (403
  INVALID_SENDER), and holds nothing of the backend with a body sent slowly.
- A malformed JSON body, or one without a JSON content type, is ignored as
  FlexMeasures does: the answer names the missing fields. NaN, Infinity and numbers
  out of float range are "Not a valid number." (FlexMeasures' JSON parser would
  accept NaN).
- Stock units are converted to flow units through the frequency of the posted data
  (kWh per 15 minutes -> x4 kW), before resampling to the sensor resolution.
- `/sources` lists sources without an account, of the caller's account and of
  accounts they consult; admins and admin-readers see all.

The wire fields are parsed in `tenant_service/schemas/sensor_data.py`; this module
reads requests, checks access, stores and answers.
"""

from __future__ import annotations

import asyncio
import time
import zoneinfo
from typing import Any, Final

from aiohttp import hdrs, web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service import keys
from tenant_service.acl import may_post_data, may_read, may_update_sensor
from tenant_service.api import NOT_BOOLEAN, FieldError, parse_bool
from tenant_service.api.v3_0 import (
    PREFIX,
    actor,
    parse_json,
    principal,
    read_limited,
    respond,
    without_connection,
    writing,
)
from tenant_service.beliefs import (
    BeliefRow,
    SeriesError,
    check_read_resolution,
    check_window,
    default_read_resolution,
    reindex_columns,
    window_length,
)
from tenant_service.errors import (
    BadRequestError,
    DataValidationError,
    ForbiddenError,
    InvalidReplacementError,
    NotFoundError,
    PayloadTooLargeError,
    TooManyBeliefsError,
    ValidationError,
)
from tenant_service.identity import Principal
from tenant_service.schemas.fields import NOT_AN_INTEGER, Fields
from tenant_service.schemas.sensor_data import (
    LOCATION,
    beliefs_to_store,
    loads_strict,
    parse_get,
    parse_post,
    schema_error,
    sensor_id_from_address,
    series_to_rows,
)
from tenant_service.schemas.sensor_upload import upload_error, upload_rows
from tenant_service.store import beliefs as belief_store
from tenant_service.store import sources as source_store
from tenant_service.store.sensors import SensorRecord, get_sensor
from tenant_service.timing import (
    NOT_A_DATETIME,
    TimingError,
    format_duration,
    from_epoch_ms,
    parse_datetime_utc,
    to_epoch_ms,
)
from tenant_service.units import UnitError, conversion, incompatible_unit

routes = web.RouteTableDef()

# Query parameters that belong to other layers (authentication), not the schema.
IGNORED_QUERY: Final = frozenset({"auth_token"})
DEPRECATION: Final = "true"


# --- reading the request -------------------------------------------------------


async def read_body(request: web.Request) -> bytes:
    """The body, refused with 413 above the limit (by Content-Length and as read)."""
    limit = request[keys.TENANT].settings.max_data_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLargeError(limit)
    return await without_connection(request, lambda: read_limited(request, limit))


async def json_fields(request: web.Request) -> dict[str, Any]:
    """The JSON object of the body; {} if absent, malformed or not JSON-typed."""
    raw = await read_body(request)
    if not raw.strip() or "json" not in request.content_type:
        return {}
    try:
        data = parse_json(raw, loads=loads_strict, location=LOCATION)
    except BadRequestError:
        return {}
    return data if isinstance(data, dict) else {}


def sensor_id_of(request: web.Request) -> int:
    """The sensor id in the path: 422 if not an integer."""
    text = request.match_info["id"]
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise DataValidationError({"sensor": [NOT_AN_INTEGER]})
    return int(text)


async def load_data_sensor(conn: AsyncConnection, sensor_id: int) -> SensorRecord:
    """The sensor, or 404 as FlexMeasures answers on the data endpoints."""
    sensor = await get_sensor(conn, sensor_id)
    if sensor is None:
        raise NotFoundError(f"Sensor {sensor_id} not found")
    return sensor


# --- posting ---------------------------------------------------------------------


async def _post_data(
    request: web.Request,
    sensor: SensorRecord,
    data: dict[str, Any],
    extra: frozenset[str],
) -> web.Response:
    """Validate and store a POST to a sensor the caller may post to.

    Rows are built before this request takes its turn at the tenant's writer,
    which it then holds only for the insert.
    """
    settings = request[keys.TENANT].settings
    post = parse_post(data, extra=extra)
    count = beliefs_to_store(post, sensor)
    if count > settings.max_beliefs_per_request:
        raise TooManyBeliefsError(
            count, settings.max_beliefs_per_request, sensor.event_resolution_ms
        )
    rows = series_to_rows(post, sensor, int(time.time() * 1000))
    return await _store_rows(request, sensor, rows)


async def _store_rows(
    request: web.Request,
    sensor: SensorRecord,
    rows: list[BeliefRow],
    *,
    partly_known: bool = False,
) -> web.Response:
    """Store validated rows as the caller's beliefs, all or none.

    FlexMeasures' answer: processed, or "already received" when nothing changed
    (with `partly_known`, also when any row was skipped because the source
    believes that value already: save_to_db's "unchanged beliefs skipped", as
    FlexMeasures 1.0.1 answers an upload).
    """
    who = principal(request)
    settings = request[keys.TENANT].settings
    sources = request[keys.TENANT].sources
    conn = request[keys.CONN]
    allow = settings.allow_data_overwrite
    try:
        # Compared with what is stored before the turn, which is only for writing.
        source_id = await sources.find(conn, who.user_id)
        plan = await belief_store.plan_beliefs(
            conn, sensor.id, source_id, rows, allow_overwrite=allow
        )
        stored = 0
        skipped = len(rows) - len(plan.new) - len(plan.replacements)
        if plan.new or plan.replacements:  # a repeat writes nothing: no turn
            if source_id is None:
                # The user's first data: their source, in a short turn of its own.
                await writing(request)
                source_id = await sources.user_source_id(conn, who.user_id)
                await conn.commit()
                request[keys.WRITE_TURN].give_back()
            # Staging opens the transaction: no read of the database may come
            # between it and the write (SQLite refuses a write after a read in
            # one transaction when another connection committed in between).
            await belief_store.stage_plan(conn, plan)
            await writing(request)
            stored = await belief_store.write_plan(
                conn, sensor.id, source_id, plan, allow_overwrite=allow
            )
    except belief_store.ReplacementError as err:
        raise InvalidReplacementError() from err
    except IntegrityError as err:
        # The sensor was deleted since it was read: as if it had never been.
        raise NotFoundError(f"Sensor {sensor.id} not found") from err
    await conn.commit()
    if stored == 0 or (partly_known and skipped > 0):
        return respond(
            {
                "message": "Some of the data has already been received and "
                "successfully processed.",
                "results": "PROCESSED",
                "status": "ALREADY_RECEIVED_AND_SUCCESSFULLY_PROCESSED",
            }
        )
    return respond({"message": "Request has been processed.", "status": "PROCESSED"})


async def _postable_sensor(request: web.Request, sensor_id: int) -> SensorRecord:
    """The sensor, if the caller may post data to it (404, 403)."""
    sensor = await load_data_sensor(request[keys.CONN], sensor_id)
    if not may_post_data(principal(request), sensor.owner):
        raise ForbiddenError()
    return sensor


@routes.post(PREFIX + "/sensors/{id}/data")
async def post_sensor_data(request: web.Request) -> web.Response:
    """Store a series of beliefs about a sensor's events."""
    sensor = await _postable_sensor(request, sensor_id_of(request))
    data = await json_fields(request)  # only once the caller may post here
    return await _post_data(request, sensor, data, frozenset())


@routes.post(PREFIX + "/sensors/data")
async def post_sensor_data_deprecated(request: web.Request) -> web.Response:
    """Deprecated: the same, with the sensor as an entity address in the body."""
    data = await json_fields(request)
    sensor_id = sensor_id_from_address(data.get("sensor"))
    sensor = await _postable_sensor(request, sensor_id)
    response = await _post_data(request, sensor, data, frozenset({"sensor"}))
    _deprecate(response, sensor_id)
    return response


@routes.post(PREFIX + "/sensors/{id}/data/upload")
async def upload_sensor_data(request: web.Request) -> web.Response:
    """Store the data of CSV files (multipart `uploaded-files`), as the JSON POST."""
    text = request.match_info["id"]
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise upload_error({"id": [NOT_AN_INTEGER]})
    sensor = await get_sensor(request[keys.CONN], int(text))
    if sensor is None:
        raise upload_error({"id": [f"No sensor found with ID {text}."]})
    if not may_post_data(principal(request), sensor.owner):
        raise ForbiddenError()
    body = await read_body(request)  # only once the caller may post here
    # Reading a large file takes a while: not on the event loop.
    rows = await asyncio.to_thread(
        upload_rows,
        request.headers.get(hdrs.CONTENT_TYPE, ""),
        body,
        sensor,
        limit=request[keys.TENANT].settings.max_beliefs_per_request,
        now_ms=int(time.time() * 1000),
    )
    return await _store_rows(request, sensor, rows, partly_known=True)


def _deprecate(response: web.StreamResponse, sensor_id: int) -> None:
    response.headers["Deprecation"] = DEPRECATION
    response.headers["Link"] = (
        f'<{PREFIX}/sensors/{sensor_id}/data>; rel="successor-version"'
    )


# --- reading ---------------------------------------------------------------------


async def _get_fields(request: web.Request) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if request.body_exists:
        data.update(await json_fields(request))
    for key, value in request.query.items():
        if key not in IGNORED_QUERY:
            data[key] = value
    return data


async def _readable_sensor(request: web.Request, sensor_id: int) -> SensorRecord:
    """The sensor, if the caller may read it (404, 403)."""
    sensor = await load_data_sensor(request[keys.CONN], sensor_id)
    if not may_read(principal(request), sensor.owner):
        raise ForbiddenError()
    return sensor


async def _get_data(
    request: web.Request, sensor: SensorRecord, data: dict[str, Any]
) -> web.Response:
    conn = request[keys.CONN]
    query = parse_get(data)
    resolution = sensor.event_resolution_ms
    try:
        if query.resolution_ms is not None:
            check_read_resolution(query.resolution_ms, resolution)
            step = query.resolution_ms
        else:
            step = default_read_resolution(query.duration_ms, resolution)
        check_window(query.duration_ms, step)
    except SeriesError as err:
        raise schema_error(err) from err
    try:
        factor, offset = conversion(sensor.unit, query.unit, step)
    except UnitError as err:
        # Named as FlexMeasures does: the sensor's unit is the required one.
        raise schema_error(incompatible_unit(sensor.unit, query.unit)) from err
    source_id = query.read.source_id
    if source_id is not None and await source_store.get_source(conn, source_id) is None:
        raise DataValidationError(
            {"source": [f"No data source found with id {source_id}."]}
        )
    end_ms = query.start_ms + query.duration_ms
    if step > resolution:
        # Downsampled in the database: a year of quarter-hours leaves it as 730
        # half-day means, not 35,040 rows.
        steps, means = await belief_store.step_means(
            conn, sensor.id, query.start_ms, end_ms, resolution, query.read, step
        )
        values: list[float | None] = [None] * window_length(query.duration_ms, step)
        for index, mean in zip(steps, means, strict=True):
            values[index] = mean
    else:
        starts, stored = await belief_store.latest_values(
            conn,
            sensor.id,
            query.start_ms,
            end_ms,
            resolution,
            query.read,
            step_ms=step,
        )
        values = reindex_columns(
            starts, stored, query.start_ms, query.duration_ms, step
        )
    if factor != 1.0 or offset != 0.0:
        values = [None if v is None else v * factor + offset for v in values]
    return respond(
        {
            "values": values,
            "start": query.start_text,
            "duration": format_duration(query.duration_ms, days=False),
            "unit": query.unit,
            "resolution": format_duration(step),
            "message": "Request has been processed.",
            "status": "PROCESSED",
        }
    )


@routes.get(PREFIX + "/sensors/{id}/data")
async def get_sensor_data(request: web.Request) -> web.Response:
    """The latest belief per event over a window, resampled and converted."""
    sensor = await _readable_sensor(request, sensor_id_of(request))
    return await _get_data(request, sensor, await _get_fields(request))


@routes.get(PREFIX + "/sensors/data")
async def get_sensor_data_deprecated(request: web.Request) -> web.Response:
    """Deprecated: the same, with the sensor as an entity address in the query."""
    sensor = None
    if "sensor" in request.query:  # the query wins over a body: check it first
        address = request.query["sensor"]
        sensor = await _readable_sensor(request, sensor_id_from_address(address))
    data = await _get_fields(request)
    address = data.pop("sensor", None)
    if sensor is None:
        sensor = await _readable_sensor(request, sensor_id_from_address(address))
    response = await _get_data(request, sensor, data)
    _deprecate(response, sensor.id)
    return response


# --- deleting, statistics, sources ---------------------------------------------


@routes.delete(PREFIX + "/sensors/{id}/data")
async def delete_sensor_data(request: web.Request) -> web.Response:
    """Delete a sensor's data (optionally of one source, from start until until)."""
    sensor_id = sensor_id_of(request)
    conn = request[keys.CONN]
    sensor = await load_data_sensor(conn, sensor_id)
    if not may_update_sensor(principal(request), sensor.owner):
        raise ForbiddenError()
    data = await json_fields(request) if request.body_exists else {}
    fields = Fields(data, {"source": "source", "start": "start", "until": "until"})
    source = fields.integer("source")
    start_ms, start_text = fields.datetime_ms("start")
    until_ms, until_text = fields.datetime_ms("until")
    fields.check()
    conn = await writing(request)  # (the body read may have swapped it)
    event = f"Deleted data for sensor '{sensor.name}': {sensor.id}"
    if source is not None:
        event += f", source: {source}"
    if start_text:
        event += f", from: {start_text}"
    if until_text:
        event += f", until: {until_text}"
    await belief_store.delete_beliefs(
        conn,
        sensor.id,
        source_id=source,
        start_ms=start_ms if start_text else None,
        until_ms=until_ms if until_text else None,
        event=event,
        actor=actor(request),
    )
    await conn.commit()
    return web.Response(status=204, content_type="application/json")


STAT_QUERY: Final = ("sort", "event_start_time", "event_end_time", "fresh")


def _stats_query(request: web.Request) -> tuple[bool, int | None, int | None]:
    """`sort` (default true), `event_start_time`, `event_end_time`; `fresh` is
    accepted and ignored (nothing is cached). 422 under `query`."""
    query = request.query
    errors: dict[str, list[str]] = {}
    flags = {"sort": True, "fresh": False}
    for name in flags:
        if name in query:
            try:
                flags[name] = parse_bool(query[name])
            except FieldError:
                errors[name] = [NOT_BOOLEAN]
    times: dict[str, int | None] = {}
    for name in ("event_start_time", "event_end_time"):
        times[name] = None
        if query.get(name):
            try:
                times[name] = to_epoch_ms(parse_datetime_utc(query[name]))
            except TimingError:
                errors[name] = [NOT_A_DATETIME]
    if errors:
        raise ValidationError("query", errors)
    return flags["sort"], times["event_start_time"], times["event_end_time"]


@routes.get(PREFIX + "/sensors/{id}/stats")
async def get_sensor_stats(request: web.Request) -> web.Response:
    """Per source, as FlexMeasures: first event start, last event end, last
    recorded, min, max, mean, sum and number of values (in the sensor's zone)."""
    sensor_id = sensor_id_of(request)
    conn = request[keys.CONN]
    sensor = await load_data_sensor(conn, sensor_id)
    if not may_read(principal(request), sensor.owner):
        raise ForbiddenError()
    sort, start_ms, end_ms = _stats_query(request)
    stats = await belief_store.sensor_stats(
        conn, sensor.id, sensor.event_resolution_ms, start_ms=start_ms, end_ms=end_ms
    )
    zone = zoneinfo.ZoneInfo(sensor.timezone)

    def local(ms: int) -> str:
        return from_epoch_ms(ms, zone).isoformat()

    answer: dict[str, Any] = {}
    for s in stats:
        # Keys in sorted order, as Flask writes them.
        entry = {
            "First event start": local(s.min_event_start),
            "Last event end": local(s.max_event_start + sensor.event_resolution_ms),
            "Last recorded": local(s.max_belief_time),
            "Max value": s.max_value,
            "Mean value": s.mean_value,
            "Min value": s.min_value,
            "Number of values": s.count_values,
            "Sum over values": s.sum_values,
        }
        key = f"{source_store.describe(s.source)} (ID: {s.source.id})"
        # sort=false: FlexMeasures answers the pairs in the order it computes them.
        answer[key] = entry if sort else [[k, entry[k]] for k in STAT_ORDER]
    return respond(dict(sorted(answer.items())))


STAT_ORDER: Final = (
    "First event start",
    "Last event end",
    "Last recorded",
    "Min value",
    "Max value",
    "Mean value",
    "Sum over values",
    "Number of values",
)


def _may_see_source(who: Principal, source: source_store.SourceRecord) -> bool:
    if who.reads_all or source.account_id is None:
        return True
    return source.account_id == who.account_id


@routes.get(PREFIX + "/sources")
async def get_sources(request: web.Request) -> web.Response:
    """Data sources: `{"types": [...], "sources": [...]}`."""
    only_latest = request.query.get("only_latest", "").lower() in ("1", "true", "yes")
    who = principal(request)
    records = await source_store.list_sources(
        request[keys.CONN], only_latest=only_latest
    )
    visible = [r for r in records if _may_see_source(who, r)]
    return respond(
        {
            "types": sorted({r.type for r in visible}),
            "sources": [_source_json(r) for r in visible],
        }
    )


def _source_json(r: source_store.SourceRecord) -> dict[str, Any]:
    """A source as GET /sources lists it."""
    return {
        "id": r.id,
        "name": r.name,
        "type": r.type,
        "description": r.description or (f"{r.name} ({r.type})" if r.type else r.name),
        "model": r.model,
        "version": r.version,
        "user_id": r.user_id,
        "account_id": r.account_id,
    }


@routes.get(PREFIX + "/sensors/{id}/sources")
async def get_sensor_sources(request: web.Request) -> web.Response:
    """The sources with data for a sensor (optionally: events overlapping
    [start, end)); a source of another account shows only its id and type."""
    sensor_id = sensor_id_of(request)
    conn = request[keys.CONN]
    sensor = await load_data_sensor(conn, sensor_id)
    who = principal(request)
    if not may_read(who, sensor.owner):
        raise ForbiddenError()
    errors: dict[str, list[str]] = {}
    bounds: dict[str, int | None] = {}
    for name in ("start", "end"):
        bounds[name] = None
        if request.query.get(name):
            try:
                bounds[name] = to_epoch_ms(parse_datetime_utc(request.query[name]))
            except TimingError:
                errors[name] = [NOT_A_DATETIME]
    if errors:
        raise ValidationError("query", errors)
    records = await belief_store.sources_with_data(
        conn,
        sensor.id,
        sensor.event_resolution_ms,
        start_ms=bounds["start"],
        end_ms=bounds["end"],
    )
    sources = []
    for r in records:
        if _may_see_source(who, r):
            sources.append(_source_json(r))
        else:
            name = f"Source {r.id}"
            sources.append(
                {
                    **dict.fromkeys(_source_json(r)),
                    "id": r.id,
                    "name": name,
                    "type": r.type,
                    "description": name,
                }
            )
    return respond({"sources": sources})
