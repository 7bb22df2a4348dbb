"""Sensor data on the wire <-> validated posts and reads (no aiohttp)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from tenant_service.addresses import parse_entity_address
from tenant_service.beliefs import (
    MAX_VALUES,
    BeliefRow,
    SeriesError,
    floor_to_resolution,
    to_rows,
    to_sensor_resolution,
)
from tenant_service.errors import SENSOR_DATA_LOCATION, DataValidationError
from tenant_service.schemas.fields import (
    MISSING,
    NOT_A_NUMBER,
    NOT_A_STRING,
    Fields,
)
from tenant_service.store import beliefs as belief_store
from tenant_service.store.sensors import SensorRecord
from tenant_service.units import UnitError, conversion

LOCATION: Final = SENSOR_DATA_LOCATION
# Wire names -> field names (kebab-case, snake_case aliases).
POST_FIELDS: Final = {
    "values": "values",
    "start": "start",
    "duration": "duration",
    "unit": "unit",
    "prior": "prior",
    "horizon": "horizon",
    "type": "type",
}
GET_FIELDS: Final = {
    "start": "start",
    "duration": "duration",
    "unit": "unit",
    "resolution": "resolution",
    "horizon": "horizon",
    "prior": "prior",
    "source": "source",
    "source-account": "source_account",
    "source_account": "source_account",
    "source-type": "source_type",
    "source_type": "source_type",
    "type": "type",
}


class _BadNumber:
    """Stands for NaN, Infinity or an out-of-range number in parsed JSON."""


BAD_NUMBER: Final = _BadNumber()


def _parse_float(text: str) -> float | _BadNumber:
    value = float(text)
    return value if value not in (float("inf"), float("-inf")) else BAD_NUMBER


def _parse_int(text: str) -> int | _BadNumber:
    try:
        return int(text)
    except ValueError:  # more digits than Python's int-from-string limit
        return BAD_NUMBER


def _parse_constant(_text: str) -> _BadNumber:
    return BAD_NUMBER


def loads_strict(raw: bytes) -> Any:
    """JSON without NaN/Infinity: those (and overflowing numbers) become BAD_NUMBER."""
    return json.loads(
        raw,
        parse_float=_parse_float,
        parse_int=_parse_int,
        parse_constant=_parse_constant,
    )


def sensor_id_from_address(value: object) -> int:
    """The sensor id of the deprecated endpoints' `sensor` entity address."""
    if value is None:
        raise DataValidationError({"sensor": [MISSING]})
    if not isinstance(value, str):
        raise DataValidationError({"sensor": [NOT_A_STRING]})
    try:
        return parse_entity_address(value)
    except ValueError as err:
        raise DataValidationError({"sensor": [str(err)]}) from err


def parse_values(value: object) -> list[float | None] | str:
    """The values (a list of numbers and nulls, or one number) or an error message."""
    items = value if isinstance(value, list) else [value]
    out: list[float | None] = []
    for item in items:
        if item is None:
            out.append(None)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            return NOT_A_NUMBER
        else:
            try:
                out.append(float(item))
            except OverflowError:
                return NOT_A_NUMBER
    return out


def schema_error(err: SeriesError | UnitError) -> DataValidationError:
    """The 422 of a series or unit error, under its field."""
    field = err.field if isinstance(err, SeriesError) else "_schema"
    return DataValidationError({field: [str(err)]})


def _attributes(sensor: SensorRecord) -> dict[str, Any]:
    try:
        parsed = json.loads(sensor.attributes or "{}")
    except (ValueError, RecursionError):  # stored before bodies were depth-bounded
        return {}
    return parsed if isinstance(parsed, dict) else {}


# --- posting ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesPost:
    """A validated sensor-data POST."""

    start_ms: int
    duration_ms: int
    values: list[float | None]
    unit: str
    prior_ms: int | None
    horizon_ms: int | None


def parse_post(
    data: dict[str, Any], *, extra: frozenset[str] = frozenset()
) -> SeriesPost:
    """Validate the fields of a POST body (422 naming each bad field)."""
    fields = Fields({k: v for k, v in data.items() if k not in extra}, POST_FIELDS)
    start_ms, _ = fields.datetime_ms("start", required=True)
    duration = fields.duration_ms("duration", required=True)
    unit = fields.string("unit", required=True)
    prior_ms, prior_text = fields.datetime_ms("prior")
    horizon = fields.duration_ms("horizon")
    kind = fields.legacy_type()
    values: list[float | None] = []
    if "values" not in fields.data:
        fields.fail("values", MISSING)
    else:
        parsed = parse_values(fields.data["values"])
        if isinstance(parsed, str):
            fields.fail("values", parsed)
        elif len(parsed) > MAX_VALUES:
            fields.fail("values", f"Longer than maximum length {MAX_VALUES}.")
        else:
            values = parsed
    if duration is not None and duration < 0:
        fields.fail(
            "duration", f"Duration {fields.data['duration']} may not be negative."
        )
    if horizon is not None and kind == "PostMeterDataRequest" and horizon > 0:
        fields.fail("horizon", "Meter data must have a horizon of zero or less.")
    if horizon is not None and kind == "PostPrognosisRequest" and horizon < 0:
        fields.fail("horizon", "Prognoses must have a horizon of zero or more.")
    fields.check()
    return SeriesPost(
        start_ms=start_ms,
        duration_ms=duration or 0,
        values=values,
        unit=unit or "",
        prior_ms=prior_ms if prior_text else None,
        horizon_ms=horizon,
    )


def series_to_rows(
    post: SeriesPost, sensor: SensorRecord, now_ms: int
) -> list[BeliefRow]:
    """Convert, resample and time-stamp a validated POST for this sensor."""
    resolution = sensor.event_resolution_ms
    count = len(post.values)
    frequency = (
        post.duration_ms // count if count and post.duration_ms % count == 0 else 0
    )
    try:
        factor, offset = conversion(post.unit, sensor.unit, frequency or resolution)
        start = post.start_ms
        if _attributes(sensor).get("floor_datetimes_to_resolution"):
            start = floor_to_resolution(start, resolution)
        events = to_sensor_resolution(start, post.duration_ms, post.values, resolution)
    except (SeriesError, UnitError) as err:
        raise schema_error(err) from err
    if factor != 1.0 or offset != 0.0:
        events = [(s, v * factor + offset) for s, v in events]
        if any(v in (float("inf"), float("-inf")) for _, v in events):
            raise DataValidationError({"values": [NOT_A_NUMBER]})
    return to_rows(
        events,
        resolution,
        prior_ms=post.prior_ms,
        horizon_ms=post.horizon_ms,
        now_ms=now_ms,
    )


def beliefs_to_store(post: SeriesPost, sensor: SensorRecord) -> int:
    """How many beliefs a POST makes: one per sensor resolution step it spans.

    Counted from the duration (an 87-byte body may span a million steps), before
    any row is built; instantaneous sensors store one per value.
    """
    if sensor.event_resolution_ms > 0:
        return post.duration_ms // sensor.event_resolution_ms
    return len(post.values)


# --- reading ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesGet:
    """A validated sensor-data GET."""

    start_ms: int
    start_text: str
    duration_ms: int
    unit: str
    resolution_ms: int | None
    read: belief_store.ReadFilter


def parse_get(data: dict[str, Any]) -> SeriesGet:
    """Validate the fields of a GET (query merged over a JSON body)."""
    fields = Fields(data, GET_FIELDS)
    start_ms, start_text = fields.datetime_ms("start", required=True)
    duration = fields.duration_ms("duration", required=True, positive=True)
    unit = fields.string("unit", required=True)
    resolution = fields.duration_ms("resolution", positive=True)
    horizon = fields.duration_ms("horizon")
    prior_ms, prior_text = fields.datetime_ms("prior")
    source = fields.integer("source")
    source_account = fields.integer("source_account")
    source_type = fields.string("source_type")
    fields.legacy_type()
    fields.check()
    return SeriesGet(
        start_ms=start_ms,
        start_text=start_text,
        duration_ms=duration or 0,
        unit=unit or "",
        resolution_ms=resolution,
        read=belief_store.ReadFilter(
            source_id=source,
            source_type=source_type,
            source_account_id=source_account,
            prior_ms=prior_ms if prior_text else None,
            horizon_ms=horizon,
        ),
    )
