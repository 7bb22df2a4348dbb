"""Sensor data files on the wire <-> belief rows (no aiohttp).

`POST /sensors/<id>/data/upload` takes a multipart form as FlexMeasures 1.0.1 does:
files under `uploaded-files` (CSV), and the form fields
`belief-time-measured-instantly` and `unit`. A CSV file has one header row and then
either two columns (event start, value) or three (event start, belief time,
value), whatever the headers say, as timely-beliefs reads them. Naive datetimes
are local times of the sensor's time zone.

Every refused row is named, by file and line, and nothing is stored when any file
has an error (FlexMeasures stops at the first error of each file, and answers 500
where a file cannot be read; see the module docstring of sensor_upload in
api/v3_0/sensor_data.py and openapi.yaml for the differences).
"""

from __future__ import annotations

import csv
import datetime as dt
import email.parser
import email.policy
import io
import itertools
import json
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from tenant_service.beliefs import (
    BeliefRow,
    incompatible_resolution,
    knowledge_time,
    mean,
    timedelta_text,
)
from tenant_service.errors import TooManyBeliefsError, ValidationError
from tenant_service.schemas.fields import MISSING, UNKNOWN_FIELD
from tenant_service.store.sensors import SensorRecord
from tenant_service.timing import MS_PER_HOUR, to_epoch_ms
from tenant_service.units import UnitError, conversion, is_convertible

UPLOAD_LOCATION: Final = "combined_sensor_data_upload"
FILES: Final = "uploaded-files"
INSTANTLY: Final = "belief-time-measured-instantly"
UNIT: Final = "unit"
# marshmallow Boolean(truthy=..., falsy=...) of FlexMeasures' upload schema.
TRUTHY: Final = frozenset({"on", "true", "True", "1"})
FALSY: Final = frozenset({"off", "false", "False", "0"})
CONTENT_TYPES: Final = frozenset(
    {
        "text/csv",
        "text/plain",
        "text/x-csv",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
)
# FlexMeasures' message lists its set of accepted types in Python's repr.
CONTENT_TYPES_TEXT: Final = (
    "{'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', "
    "'text/csv', 'text/x-csv', 'text/plain', 'application/vnd.ms-excel'}"
)
EXTENSIONS: Final = frozenset({"csv", "xlsx", "xls", "xlsm"})
EXCEL: Final = frozenset({"xlsx", "xls", "xlsm"})
# Values pandas reads as missing (NaN): such rows store nothing, as null in JSON.
MISSING_VALUES: Final = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan"}
    | {"1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a"}
    | {"nan", "null"}
)
# Refused rows named per file; the rest are counted.
MAX_ROW_ERRORS: Final = 20
MAX_TEXT: Final = 100


# A part of a multipart form: field name, file name (None: a plain field),
# content type, content.
FormPart = tuple[str, str | None, str, bytes]


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One file part of the form."""

    filename: str | None
    content_type: str | None
    content: bytes


@dataclass(frozen=True, slots=True)
class UploadForm:
    """A validated upload form (files not read yet)."""

    files: list[UploadedFile]
    instantly: bool
    unit: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """One row of a file: event start, belief time (ms) if given, value, line."""

    start: int
    belief_time: int | None
    value: float
    line: int


class FileError(ValueError):
    """A file that cannot be read; its messages name the refused rows."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))


def upload_error(errors: dict[str, Any]) -> ValidationError:
    """A 422 in the upload location."""
    return ValidationError(UPLOAD_LOCATION, errors)


# --- the form ----------------------------------------------------------------------


def parse_form(content_type: str, body: bytes, sensor: SensorRecord) -> UploadForm:
    """The files and fields of a multipart body; 422 naming each bad field."""
    files: list[UploadedFile] = []
    fields: dict[str, str] = {}
    errors: dict[str, Any] = {}
    for name, filename, part_type, content in form_parts(content_type, body):
        if filename is None:
            fields.setdefault(name, content.decode("utf-8", "replace"))
        elif name == FILES:
            files.append(UploadedFile(filename, part_type, content))
        else:
            errors[name] = [UNKNOWN_FIELD]
    instantly = False
    flag = fields.get(INSTANTLY)
    if flag is not None:
        if flag in TRUTHY:
            instantly = True
        elif flag not in FALSY:
            errors[INSTANTLY] = ["Not a valid boolean."]
    if not files:
        errors[FILES] = [MISSING]
    file_errors = {str(i): m for i, f in enumerate(files) if (m := _file_errors(f))}
    if file_errors:
        errors[FILES] = file_errors
    if errors:
        raise upload_error(errors)
    unit = fields.get(UNIT)
    # Stocks convert to flows through the data's frequency, known only once a
    # file is read: any duration makes kWh and kW convertible here.
    if unit is not None and not is_convertible(unit, sensor.unit, MS_PER_HOUR):
        raise upload_error(
            {
                "_schema": [
                    f"Provided unit '{unit[:MAX_TEXT]}' is not convertible to "
                    f"sensor unit '{sensor.unit}'"
                ]
            }
        )
    return UploadForm(files, instantly, unit)


def form_parts(
    content_type: str, body: bytes
) -> list[tuple[str, str | None, str, bytes]]:
    """(field name, file name or None, content type, content) of each part of a
    multipart/form-data body (none if it is not one)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return []
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        header + body
    )
    if not message.is_multipart():
        return []
    out: list[FormPart] = []
    for part in message.get_payload():
        if not isinstance(part, email.message.Message):
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_param("filename", header="content-disposition")
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        part_type = part.get("Content-Type")
        out.append(
            (
                name,
                filename if isinstance(filename, str) else None,
                str(part_type).split(";")[0].strip() if part_type else "",
                content,
            )
        )
    return out


def _file_errors(file: UploadedFile) -> list[str]:
    """FlexMeasures' checks of a file's name and content type."""
    errors: list[str] = []
    if not file.filename:
        errors.append("Filename is missing.")
    elif file.filename.rsplit(".", 1)[-1].lower() not in EXTENSIONS:
        errors.append(
            f"Invalid filename: {file.filename[:MAX_TEXT]}. "
            "Only CSV or Excel files are accepted."
        )
    if file.content_type not in CONTENT_TYPES:
        errors.append(
            f"Invalid content type: {(file.content_type or 'None')[:MAX_TEXT]}. "
            "Only the following content types are accepted: "
            f"{CONTENT_TYPES_TEXT}."
        )
    return errors


# --- the files ----------------------------------------------------------------------


def read_events(file: UploadedFile, timezone: str) -> list[Event]:
    """The rows of a CSV file (FileError naming each refused row)."""
    name = file.filename or ""
    if name.rsplit(".", 1)[-1].lower() in EXCEL:
        raise FileError(["Excel files are not supported here; upload CSV."])
    try:
        text = file.content.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise FileError([f"Not UTF-8 text (byte {err.start + 1})."]) from err
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = [
            (line, row)
            for line, row in enumerate(reader, 1)
            if row and any(cell.strip() for cell in row)
        ]
    except csv.Error as err:
        raise FileError([f"Line {reader.line_num}: {err}."]) from err
    if not rows:
        raise FileError(["No columns to parse from file"])
    header_line, header = rows[0]
    width = len(header)
    if width not in (2, 3):
        raise FileError(
            [
                f"Line {header_line}: {width} columns; expected 2 (event start, "
                "value) or 3 (event start, belief time, value)."
            ]
        )
    zone = zoneinfo.ZoneInfo(timezone)
    events: list[Event] = []
    errors: list[str] = []
    for line, row in rows[1:]:
        try:
            event = _event(row, width, zone, line)
        except ValueError as err:
            errors.append(f"Line {line}: {err}")
            continue
        if event is not None:
            events.append(event)
    if errors:
        raise FileError(_capped(errors))
    return events


def _event(row: list[str], width: int, zone: dt.tzinfo, line: int) -> Event | None:
    if len(row) != width:
        raise ValueError(f"{len(row)} columns where the header has {width}.")
    start = _datetime(row[0], zone)
    belief_time = _datetime(row[1], zone) if width == 3 else None
    cell = row[-1].strip()
    if cell in MISSING_VALUES:
        return None
    try:
        value = float(cell)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"'{cell[:MAX_TEXT]}' is not a number.")
    return Event(start, belief_time, value, line)


def _datetime(cell: str, zone: dt.tzinfo) -> int:
    text = cell.strip()
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or len(text) > MAX_TEXT:
        raise ValueError(f"'{text[:MAX_TEXT]}' is not an ISO 8601 datetime.")
    if value.tzinfo is None:
        local = value.replace(tzinfo=zone)
        # A wall time skipped by a clock change does not survive the round trip.
        back = local.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None)
        if back != value:
            raise ValueError(f"'{text}' does not exist in time zone {zone}.")
        value = local
    return to_epoch_ms(value)


def _capped(errors: list[str]) -> list[str]:
    if len(errors) <= MAX_ROW_ERRORS:
        return errors
    more = len(errors) - MAX_ROW_ERRORS
    return [*errors[:MAX_ROW_ERRORS], f"... and {more} more refused rows."]


# --- events to beliefs -------------------------------------------------------------


def frequency_of(events: list[Event], resolution_ms: int) -> int:
    """The data's frequency, as FlexMeasures infers it (FileError if irregular).

    One event: the sensor's resolution; two: their distance; more: the most
    common distance, of which every other distance must be a multiple.
    """
    starts = sorted({e.start for e in events})
    if len(starts) < 2:
        return resolution_ms
    diffs = [b - a for a, b in itertools.pairwise(starts)]
    if len(starts) == 2:
        return diffs[0]
    counts = Counter(diffs)
    top = max(counts.values())
    mode = min(d for d, c in counts.items() if c == top)
    irregular = [i for i, d in enumerate(diffs) if d % mode]
    if irregular and resolution_ms > 0:
        first = dt.datetime.fromtimestamp(starts[irregular[0] + 1] / 1000, dt.UTC)
        raise FileError(
            [
                "Could not infer a regular event frequency from the data. "
                f"Most common frequency: {timedelta_text(mode)}. Number of "
                f"irregular intervals: {len(irregular)}. First irregular event "
                f"start: {first.isoformat()}."
            ]
        )
    return mode


def file_rows(
    events: list[Event],
    sensor: SensorRecord,
    unit: str | None,
    *,
    instantly: bool,
    now_ms: int,
    limit: int,
) -> list[BeliefRow]:
    """Belief rows at the sensor's resolution, in its unit (FileError if not).

    More than `limit` rows: TooManyBeliefsError, before any is built.
    """
    if not events:
        return []
    if instantly and any(e.belief_time is not None for e in events):
        raise FileError(
            [
                "The file has belief times; belief-time-measured-instantly "
                "cannot be on as well."
            ]
        )
    resolution = sensor.event_resolution_ms
    frequency = frequency_of(events, resolution)
    if resolution > 0 and _floors(sensor):
        events = _floored(events, frequency)
    events = _unique(events)
    repeat = frequency // resolution if resolution > 0 and frequency > 0 else 1
    count = len(events) * max(repeat, 1)
    if count > limit:
        raise TooManyBeliefsError(count, limit, resolution, location=UPLOAD_LOCATION)
    try:
        factor, offset = conversion(unit or sensor.unit, sensor.unit, frequency)
    except UnitError as err:
        raise FileError([str(err)]) from err
    values = [e.value * factor + offset for e in events]
    if any(v in (float("inf"), float("-inf")) for v in values):
        raise FileError(["A value is out of range after unit conversion."])
    believed = [
        (e.start, e.belief_time, v) for e, v in zip(events, values, strict=True)
    ]
    if resolution > 0:
        believed = _resampled(believed, frequency, resolution)
    rows: list[BeliefRow] = []
    for start, belief_time, value in believed:
        if belief_time is not None:
            horizon = knowledge_time(start, resolution) - belief_time
        elif instantly:
            horizon = 0
        else:
            horizon = knowledge_time(start, resolution) - now_ms
        rows.append((start, horizon, value))
    return rows


def _floors(sensor: SensorRecord) -> bool:
    """The sensor's `floor_datetimes_to_resolution` (uploads: default true)."""
    try:
        attributes = json.loads(sensor.attributes or "{}")
    except (ValueError, RecursionError):
        return True
    if not isinstance(attributes, dict):
        return True
    return bool(attributes.get("floor_datetimes_to_resolution", True))


def _floored(events: list[Event], frequency: int) -> list[Event]:
    if frequency <= 0:
        return events
    floored = [
        Event(e.start - e.start % frequency, e.belief_time, e.value, e.line)
        for e in events
    ]
    seen: dict[tuple[int, int | None], Event] = {}
    for before, after in zip(events, floored, strict=True):
        key = (after.start, after.belief_time)
        other = seen.get(key)
        if other is not None and other.start != before.start:
            raise FileError(
                [
                    f"Lines {other.line} and {after.line}: flooring event_start "
                    "would merge multiple beliefs with the same source, "
                    "belief_time and event_start. Please provide data already "
                    "aligned to the event resolution or use distinct belief/source "
                    "metadata."
                ]
            )
        seen.setdefault(key, before)
    return floored


def _unique(events: list[Event]) -> list[Event]:
    """Each event (and belief time) once: a repeated row with another value is
    refused, one with the same value dropped (as pandas' drop_duplicates)."""
    seen: dict[tuple[int, int | None], Event] = {}
    errors: list[str] = []
    for event in events:
        key = (event.start, event.belief_time)
        other = seen.setdefault(key, event)
        if other is not event and other.value != event.value:
            errors.append(
                f"Line {event.line}: another value for the event of line {other.line}."
            )
    if errors:
        raise FileError(_capped(errors))
    return list(seen.values())


def _resampled(
    believed: list[tuple[int, int | None, float]], frequency: int, resolution: int
) -> list[tuple[int, int | None, float]]:
    """To the sensor's resolution: repeat coarser data, average finer data.

    Finer data is averaged per step of the sensor's resolution (epoch-aligned)
    over the values present; its belief time is the latest of the step.
    """
    if frequency == resolution:
        return believed
    if frequency > resolution:
        if frequency % resolution:
            raise FileError([str(incompatible_resolution(frequency, resolution))])
        repeat = frequency // resolution
        return [
            (s + i * resolution, b, v) for s, b, v in believed for i in range(repeat)
        ]
    if resolution % frequency:
        raise FileError([str(incompatible_resolution(frequency, resolution))])
    groups: dict[int, list[tuple[int | None, float]]] = {}
    for s, b, v in believed:
        groups.setdefault(s - s % resolution, []).append((b, v))
    out: list[tuple[int, int | None, float]] = []
    for start in sorted(groups):
        group = groups[start]
        times = [b for b, _ in group if b is not None]
        out.append((start, max(times) if times else None, mean([v for _, v in group])))
    return out


def upload_rows(
    content_type: str, body: bytes, sensor: SensorRecord, *, limit: int, now_ms: int
) -> list[BeliefRow]:
    """The belief rows of an upload's files: all of them, or a 422 naming every
    refused row of every file (at most `limit` rows, else TooManyBeliefsError)."""
    form = parse_form(content_type, body, sensor)
    rows: dict[tuple[int, int], tuple[float, int]] = {}
    errors: dict[str, list[str]] = {}
    for index, file in enumerate(form.files):
        try:
            events = read_events(file, sensor.timezone)
            found = file_rows(
                events,
                sensor,
                form.unit,
                instantly=form.instantly,
                now_ms=now_ms,
                limit=limit - len(rows),
            )
            for start, horizon, value in found:
                stored = rows.setdefault((start, horizon), (value, index))
                if stored[0] != value:
                    at = dt.datetime.fromtimestamp(start / 1000, dt.UTC).isoformat()
                    raise FileError(
                        [
                            f"The event starting {at} has another value in file "
                            f"{stored[1]}."
                        ]
                    )
        except FileError as err:
            errors[str(index)] = [
                f"Invalid content in file: {file.filename}. Failed with: {message}"
                for message in err.messages
            ]
    if errors:
        raise upload_error({FILES: errors})
    return [(s, h, v) for (s, h), (v, _) in rows.items()]
