"""Sensors API (FlexMeasures /api/v3_0/sensors, and /assets/<id>/sensors).

Decisions where FlexMeasures is inconsistent or silent:
- An unknown sensor id in the path of `/sensors/<id>` (GET, PATCH, DELETE) is 422
  `{"message": {"path": {"id": ["No sensor found with ID n."]}}, ...}`, as FlexMeasures
  answers (observed); `/sensors/<id>/data` answers 404 (the data endpoints' choice).
- A sensor posted without `timezone` gets `DEFAULT_TIMEZONE` ("UTC"): FlexMeasures
  uses its server's FLEXMEASURES_TIMEZONE, which a hosted tenant cannot see.
- `event_resolution` may be zero (`P0D`, instantaneous) but not negative; months and
  years are refused.
- The entity address uses the host the request came to (from the gateway's identity).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import isodate
from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service import acl, keys, staleness
from tenant_service.addresses import entity_address
from tenant_service.api import (
    NOT_BOOLEAN,
    NOT_INTEGER,
    NOT_NULL,
    NOT_STRING,
    UNKNOWN_FIELD,
    FieldError,
    first,
    parse_bool,
    parse_int,
    parse_page,
    parse_path_id,
)
from tenant_service.api.v3_0 import (
    PREFIX,
    actor,
    load_asset,
    load_sensor,
    no_content,
    principal,
    read_json_object,
    respond,
    writing,
)
from tenant_service.errors import ForbiddenError, UnprocessableError, ValidationError
from tenant_service.identity import CONSULTANT, Principal
from tenant_service.schemas.fields import json_text, parse_sort, search_terms
from tenant_service.store import accounts as account_store
from tenant_service.store import assets as asset_store
from tenant_service.store import beliefs as belief_store
from tenant_service.store import sensors as sensor_store
from tenant_service.store.sensors import (
    Scope,
    SensorListing,
    SensorRecord,
    Viewer,
    like_pattern,
)
from tenant_service.timing import (
    TimingError,
    format_duration,
    parse_duration,
    to_epoch_ms,
    valid_timezone,
)
from tenant_service.units import UnitError, validate_unit

routes = web.RouteTableDef()

DEFAULT_TIMEZONE: Final = "UTC"
# Ancestors searched for inflexible devices (asset trees are shallow).
MAX_ASSET_DEPTH: Final = 64
SENSOR_SORTS: Final = tuple(sensor_store.SORTS)
CREATE_FIELDS: Final = frozenset(
    {"name", "unit", "event_resolution", "generic_asset_id", "timezone", "attributes"}
)
PATCH_FIELDS: Final = frozenset(
    {"name", "unit", "event_resolution", "timezone", "attributes"}
)


def dump_sensor(sensor: SensorRecord, host: str, today: dt.date) -> dict[str, Any]:
    """FlexMeasures' SensorSchema dump."""
    return {
        "id": sensor.id,
        "name": sensor.name,
        "unit": sensor.unit,
        "timezone": sensor.timezone,
        "event_resolution": format_duration(sensor.event_resolution_ms),
        "entity_address": entity_address(host, sensor.id, today),
        "attributes": sensor.attributes,
        "generic_asset_id": sensor.generic_asset_id,
    }


def dump_sensors(
    request: web.Request, records: Sequence[SensorRecord]
) -> list[dict[str, Any]]:
    """Dump sensors with entity addresses on the request's host."""
    host = request[keys.IDENTITY].host
    today = dt.datetime.now(dt.UTC).date()
    return [dump_sensor(sensor, host, today) for sensor in records]


def parse_sensor_body(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Column values of a sensor from a POST/PATCH body; one 422 naming each field."""
    allowed = CREATE_FIELDS if creating else PATCH_FIELDS
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for key, value in data.items():
        try:
            if key not in allowed:
                raise FieldError(UNKNOWN_FIELD)
            if key == "attributes":
                values[key] = json_text(value, kind=dict)
                continue
            if key == "generic_asset_id":
                if isinstance(value, bool) or not isinstance(value, int | str):
                    raise FieldError(NOT_NULL if value is None else NOT_INTEGER)
                values[key] = (
                    parse_int(value, minimum=0) if isinstance(value, str) else value
                )
                if not 0 <= values[key] <= 2**62:
                    raise FieldError(NOT_INTEGER)
                continue
            if value is None:
                raise FieldError(NOT_NULL)
            if not isinstance(value, str):
                raise FieldError(NOT_STRING)
            if key == "name":
                if not value.strip() or len(value) > 120:
                    raise FieldError("Length must be between 1 and 120.")
                values[key] = value
            elif key == "unit":
                if len(value) > 80:
                    raise FieldError("Longer than maximum length 80.")
                try:
                    values[key] = validate_unit(value)
                except UnitError as err:
                    raise FieldError(str(err)) from err
            elif key == "event_resolution":
                try:
                    values[key] = parse_duration(value, allow_negative=False)
                except TimingError as err:
                    raise FieldError(str(err)) from err
            elif key == "timezone":
                if not valid_timezone(value):
                    raise FieldError(f"Timezone {value} doesn't exist.")
                values[key] = value
        except FieldError as err:
            errors[key] = [str(err)]
    if creating:
        for key in ("name", "unit", "event_resolution", "generic_asset_id"):
            if key not in data:
                errors[key] = ["Missing data for required field."]
    if errors:
        raise ValidationError("json", errors)
    return values


@routes.get(PREFIX + "/sensors")
async def get_sensors(request: web.Request) -> web.Response:
    """Get list of sensors."""
    who = principal(request)
    query = request.query
    errors: dict[str, list[str]] = {}
    ids: dict[str, int] = {}
    for names in (("account", "account_id"), ("asset", "asset_id")):
        found = first(query, *names)
        if found is not None:
            try:
                ids[names[0]] = parse_int(found[1], minimum=0)
            except FieldError as err:
                errors[found[0]] = [str(err)]
    flags: dict[str, bool] = {}
    for name in ("include_consultancy_clients", "include_public_assets"):
        try:
            flags[name] = parse_bool(query[name]) if name in query else False
        except FieldError:
            errors[name] = [NOT_BOOLEAN]
    sort_by, sort_dir = parse_sort(query, SENSOR_SORTS, errors)
    if errors:
        raise ValidationError("query", errors)
    page = parse_page(query)
    conn = request[keys.CONN]
    asset = None
    if "asset" in ids:
        asset = await asset_store.get_asset(conn, ids["asset"])
        if asset is None:
            raise ValidationError(
                "query", {"asset": [f"No asset found with ID {ids['asset']}."]}
            )
        if not acl.may_read(who, asset.owner):
            raise ForbiddenError()
    account_id = ids.get("account")
    if account_id is not None:
        account = await account_store.get_account(conn, account_id)
        if account is None:
            raise ValidationError(
                "query", {"account": [f"No account found with ID {account_id}."]}
            )
        if not who.may_read_account(account.id, account.consultancy_account_id):
            raise ForbiddenError()
        if asset is not None and asset.account_id != account.id:
            raise UnprocessableError(
                "Please provide either an account or an asset ID, not both"
            )
    params: dict[str, Any] = {}
    scope: Scope
    if asset is not None:
        scope, params["asset_id"] = "subtree", asset.id
    else:
        account_id = who.account_id if account_id is None else account_id
        params["account_id"] = account_id
        scope = "account"
        if flags["include_consultancy_clients"] and (
            who.reads_all
            or (account_id == who.account_id and "consultant" in who.roles)
        ):
            scope = "clients"
    if "unit" in query:
        params["unit"] = query["unit"]
    listing = SensorListing(
        scope,
        viewer=_viewer(who, params),
        public=flags["include_public_assets"],
        unit="unit" in query,
        terms=_terms(query, params),
        sort=sort_by or "id",
        descending=sort_dir == "desc",
        paged=page.number is not None,
    )
    params.update(offset=page.offset, limit=page.limit)
    records = await sensor_store.list_sensors(conn, listing, params)
    data = dump_sensors(request, records)
    if page.number is None:
        return respond(data)
    return await _paged(conn, data, page.number, listing, params)


def _viewer(who: Principal, params: dict[str, Any]) -> Viewer:
    """Whose sensors `who` may read (its parameter goes into `params`)."""
    if who.reads_all:
        return "all"
    params["viewer_account_id"] = who.account_id
    return "consultant" if CONSULTANT in who.roles else "member"


def _terms(query: Mapping[str, str], params: dict[str, Any]) -> tuple[bool, ...]:
    """The `filter` search terms as parameters; per term whether it is all digits."""
    terms = search_terms(query["filter"]) if "filter" in query else []
    for index, term in enumerate(terms):
        params[f"term{index}"] = like_pattern(term)
    return tuple(term.isdecimal() for term in terms)


async def _paged(
    conn: AsyncConnection,
    data: list[dict[str, Any]],
    number: int,
    listing: SensorListing,
    params: dict[str, Any],
) -> web.Response:
    total = await sensor_store.count_sensors(conn, listing, params, filtered=False)
    filtered = total
    if listing.terms:
        filtered = await sensor_store.count_sensors(
            conn, listing, params, filtered=True
        )
    return respond({"data": data, "num-records": total, "filtered-records": filtered})


@routes.get(PREFIX + r"/sensors/{id:\d+}")
async def get_sensor(request: web.Request) -> web.Response:
    """Fetch a given sensor."""
    sensor_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    sensor = await load_sensor(conn, sensor_id)
    if not acl.may_read(principal(request), sensor.owner):
        raise ForbiddenError()
    return respond(dump_sensors(request, [sensor])[0])


@routes.post(PREFIX + "/sensors")
async def post_sensor(request: web.Request) -> web.Response:
    """Create a new sensor."""
    values = parse_sensor_body(await read_json_object(request), creating=True)
    conn = await writing(request)
    asset_id = values["generic_asset_id"]
    asset = await asset_store.get_asset(conn, asset_id)
    if asset is None:
        raise ValidationError(
            "json", {"generic_asset_id": [f"No asset found with ID {asset_id}."]}
        )
    if not acl.may_update_asset(principal(request), asset.owner):
        raise ForbiddenError()
    values.setdefault("timezone", DEFAULT_TIMEZONE)
    if await sensor_store.name_taken(conn, asset_id, values["name"]):
        raise _duplicate(values["name"], asset_id)
    try:
        sensor_id = await sensor_store.create_sensor(conn, values, actor=actor(request))
    except IntegrityError as err:
        raise _duplicate(values["name"], asset_id) from err
    created = await load_sensor(conn, sensor_id)
    await conn.commit()
    return respond(dump_sensors(request, [created])[0], status=201)


def _duplicate(name: str, asset_id: int) -> ValidationError:
    return ValidationError(
        "json",
        {
            "name": [
                f"A sensor with the name '{name}' already exists on asset {asset_id}."
            ]
        },
    )


@routes.patch(PREFIX + r"/sensors/{id:\d+}")
async def patch_sensor(request: web.Request) -> web.Response:
    """Update a sensor given its identifier."""
    sensor_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    sensor = await load_sensor(conn, sensor_id)
    if not acl.may_update_sensor(principal(request), sensor.owner):
        raise ForbiddenError()
    values = parse_sensor_body(await read_json_object(request), creating=False)
    conn = await writing(request)  # (the body read may have swapped it)
    if "name" in values and await sensor_store.name_taken(
        conn, sensor.generic_asset_id, values["name"], exclude_id=sensor.id
    ):
        raise _duplicate(values["name"], sensor.generic_asset_id)
    try:
        await sensor_store.update_sensor(conn, sensor.id, values, actor=actor(request))
    except IntegrityError as err:
        raise _duplicate(values.get("name", ""), sensor.generic_asset_id) from err
    updated = await load_sensor(conn, sensor.id)
    await conn.commit()
    return respond(dump_sensors(request, [updated])[0])


@routes.delete(PREFIX + r"/sensors/{id:\d+}")
async def delete_sensor(request: web.Request) -> web.Response:
    """Delete a sensor given its identifier (with its data)."""
    sensor_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    sensor = await load_sensor(conn, sensor_id)
    if not acl.may_update_sensor(principal(request), sensor.owner):
        raise ForbiddenError()
    await writing(request)
    await sensor_store.delete_sensor(conn, sensor.id, actor=actor(request))
    await conn.commit()
    return no_content()


@routes.get(PREFIX + r"/assets/{id:\d+}/sensors")
async def get_asset_sensors(request: web.Request) -> web.Response:
    """Return all sensors under an asset."""
    asset_id = parse_path_id(request.match_info["id"])
    query = request.query
    errors: dict[str, list[str]] = {}
    sort_by, sort_dir = parse_sort(query, SENSOR_SORTS, errors)
    if errors:
        raise ValidationError("query", errors)
    page = parse_page(query)
    number = page.number or 1
    conn = request[keys.CONN]
    asset = await load_asset(conn, asset_id)
    if not acl.may_read(principal(request), asset.owner):
        raise ForbiddenError()
    params: dict[str, Any] = {
        "asset_id": asset.id,
        "offset": (number - 1) * page.per_page,
        "limit": page.per_page,
    }
    listing = SensorListing(
        "asset",
        viewer=_viewer(principal(request), params),
        terms=_terms(query, params),
        any_term=True,
        sort=sort_by or "id",
        descending=sort_dir == "desc",
        paged=True,
    )
    records = await sensor_store.list_sensors(conn, listing, params)
    return await _paged(conn, dump_sensors(request, records), number, listing, params)


def _json_object(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text or "{}")
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


@routes.get(PREFIX + r"/sensors/{id:\d+}/status")
async def get_sensor_status(request: web.Request) -> web.Response:
    """Staleness of the sensor's data per source type, as FlexMeasures computes it.

    Times are in UTC (FlexMeasures: its server's time zone, which a tenant has not).
    """
    sensor_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    sensor = await load_sensor(conn, sensor_id)
    if not acl.may_read(principal(request), sensor.owner):
        raise ForbiddenError()
    try:
        specs = staleness.specs_of(
            sensor.attributes, sensor.knowledge_horizon_fnc, sensor.event_resolution_ms
        )
    except staleness.SpecsError as err:
        raise UnprocessableError(
            f"Sensor {sensor.id} has invalid status_specs: {err}"
        ) from err
    now = dt.datetime.now(dt.UTC)
    now_ms = to_epoch_ms(now)
    before = specs.search.beliefs_before
    search = dataclasses.replace(
        specs.search, beliefs_before=now_ms if before is None else min(before, now_ms)
    )
    latest = await belief_store.latest_event_per_source_type(
        conn, sensor.id, sensor.event_resolution_ms, search, staleness.SOURCE_TYPES
    )
    asset = await load_asset(conn, sensor.generic_asset_id)
    flex_context = _json_object(asset.flex_context)
    inflexible = staleness.inflexible_device_ids(flex_context)
    parent_id = asset.parent_asset_id
    for _ in range(MAX_ASSET_DEPTH):  # the nearest ancestor that names any
        if inflexible or parent_id is None:
            break
        parent = await asset_store.get_asset(conn, parent_id)
        if parent is None:
            break
        inflexible = staleness.inflexible_device_ids(_json_object(parent.flex_context))
        parent_id = parent.parent_asset_id
    relation = staleness.relation(
        sensor.id, sensor.generic_asset_id, asset.id, flex_context, inflexible
    )
    resolution = isodate.duration_isoformat(
        dt.timedelta(milliseconds=sensor.event_resolution_ms)
    )
    data = [
        # Keys in sorted order, as Flask writes them.
        dict(
            sorted(
                {
                    **status,
                    "asset_name": asset.name,
                    "id": sensor.id,
                    "name": sensor.name,
                    "relation": relation,
                    "resolution": resolution,
                }.items()
            )
        )
        for status in staleness.statuses(latest, sensor.event_resolution_ms, specs, now)
    ]
    return respond({"sensors_data": data})
