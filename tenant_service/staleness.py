"""Sensor status: staleness per source type, as FlexMeasures 1.0.1 computes it.

`data/services/sensors.py` there: for each default source type that recorded
data, the most recent event among beliefs formed before now. Its knowledge time
(the event's end, for ex-post sensors) is how old the data is; for schedulers
and forecasters it is the event start, which should lie in the future. Data is
stale when older than `max_staleness` (default two resolutions, or a day for
sensors whose knowledge horizon is "x days ago at y o'clock"), or, in the
future, less far ahead than `max_future_staleness` (default 12 hours). A sensor
attribute `status_specs` overrides both (and narrows the search).

No aiohttp, no SQL.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Final

import humanize
import isodate

from tenant_service.timing import TimingError, parse_datetime, to_epoch_ms

# FlexMeasures' DEFAULT_DATASOURCE_TYPES, in its order: only these are looked at.
SOURCE_TYPES: Final = (
    "user",
    "scheduler",
    "forecaster",
    "reporter",
    "demo script",
    "gateway",
    "market",
)
FUTURE_TYPES: Final = frozenset({"scheduler", "forecaster"})
DAILY_KNOWLEDGE: Final = "x_days_ago_at_y_oclock"
MAX_FUTURE_STALENESS: Final = dt.timedelta(hours=-12)
NO_DATA: Final = "no data recorded"
NO_FUTURE_DATA: Final = "Found no future data which this source should have"


class SpecsError(ValueError):
    """A sensor's `status_specs` attribute that cannot be used."""


@dataclass(frozen=True, slots=True)
class Search:
    """The `staleness_search` filters (times in ms); None: no filter."""

    event_starts_after: int | None = None
    event_ends_before: int | None = None
    beliefs_after: int | None = None
    beliefs_before: int | None = None
    horizons_at_least: int | None = None
    horizons_at_most: int | None = None
    source: int | None = None
    source_types: tuple[str, ...] | None = None
    exclude_source_types: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Specs:
    """How stale is stale, and which beliefs count."""

    max_staleness: dt.timedelta
    max_future_staleness: dt.timedelta
    search: Search


TIME_FIELDS: Final = frozenset(
    {"event_starts_after", "event_ends_before", "beliefs_after", "beliefs_before"}
)
# BeliefsSearchConfigSchema's fields that only shape a search's result rows, not
# which event is the most recent one: accepted and without effect here.
IGNORED_SEARCH: Final = frozenset(
    {
        "most_recent_beliefs_only",
        "most_recent_events_only",
        "one_deterministic_belief_per_event",
        "one_deterministic_belief_per_event_per_source",
        "resolution",
        "sum_multiple",
        "source_account_ids",
    }
)


def specs_of(
    attributes: str, knowledge_horizon_fnc: str | None, resolution_ms: int
) -> Specs:
    """The sensor's status specs: its `status_specs` attribute, else the defaults."""
    try:
        parsed = json.loads(attributes or "{}")
    except (ValueError, RecursionError):
        parsed = {}
    given = parsed.get("status_specs") if isinstance(parsed, dict) else None
    if given:
        return _parse_specs(given)
    if knowledge_horizon_fnc == DAILY_KNOWLEDGE:
        max_staleness = dt.timedelta(days=1)
    else:
        max_staleness = dt.timedelta(milliseconds=2 * resolution_ms)
    return Specs(max_staleness, MAX_FUTURE_STALENESS, Search())


def _parse_specs(given: Any) -> Specs:
    if not isinstance(given, dict):
        raise SpecsError("status_specs must be an object.")
    errors: list[str] = []
    for name in ("max_staleness", "max_future_staleness", "staleness_search"):
        if name not in given:
            errors.append(f"{name}: Missing data for required field.")
    unknown = sorted(
        set(given) - {"max_staleness", "max_future_staleness", "staleness_search"}
    )
    errors += [f"{name}: Unknown field." for name in unknown]
    if errors:
        raise SpecsError("; ".join(errors))
    return Specs(
        _duration(given["max_staleness"], "max_staleness"),
        _duration(given["max_future_staleness"], "max_future_staleness"),
        _search(given["staleness_search"]),
    )


def _duration(value: Any, name: str) -> dt.timedelta:
    try:
        parsed = isodate.parse_duration(value) if isinstance(value, str) else None
    except (ValueError, isodate.ISO8601Error):
        parsed = None
    if not isinstance(parsed, dt.timedelta):
        raise SpecsError(f"{name}: Cannot parse {value!r} as ISO8601 duration.")
    return parsed


def _search(given: Any) -> Search:
    if not isinstance(given, dict):
        raise SpecsError("staleness_search must be an object.")
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name in IGNORED_SEARCH:
            continue
        if name in ("event_starts_after", "event_ends_before") or name in (
            "beliefs_after",
            "beliefs_before",
        ):
            values[name] = _time(value, name)
        elif name in ("horizons_at_least", "horizons_at_most"):
            values[name] = _duration(value, name) // dt.timedelta(milliseconds=1)
        elif name == "source":
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecsError("source: Not a valid integer.")
            values[name] = value
        elif name in ("source_types", "exclude_source_types"):
            if not isinstance(value, list) or not all(
                isinstance(v, str) for v in value
            ):
                raise SpecsError(f"{name}: Not a valid list of strings.")
            values[name] = tuple(value)
        else:
            raise SpecsError(f"staleness_search.{name}: Unknown field.")
    return Search(**values)


def _time(value: Any, name: str) -> int:
    try:
        return to_epoch_ms(parse_datetime(value))
    except TimingError as err:
        raise SpecsError(f"{name}: {err}") from err


def statuses(
    latest: dict[str, int],
    resolution_ms: int,
    specs: Specs,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """One status per source type with data (latest event start, ms), in
    FlexMeasures' order; one "no data recorded" status if none has any."""
    out: list[dict[str, Any]] = []
    for source_type in SOURCE_TYPES:
        if source_type not in latest:
            continue
        event_start = _at(latest[source_type])
        if source_type in FUTURE_TYPES:
            start_time, relevant = event_start, event_start > now
        else:
            start_time = event_start + dt.timedelta(milliseconds=resolution_ms)
            relevant = True
        out.append(_status(source_type, now - start_time, relevant, specs, now))
    if not out:
        out.append(
            {
                "reason": NO_DATA,
                "source_type": None,
                "stale": True,
                "staleness": None,
                "staleness_since": None,
            }
        )
    return out


def _status(
    source_type: str,
    staleness: dt.timedelta,
    relevant: bool,
    specs: Specs,
    now: dt.datetime,
) -> dict[str, Any]:
    since = now - staleness
    if not relevant:
        return {
            "reason": NO_FUTURE_DATA,
            "source_type": source_type,
            "stale": True,
            "staleness": None,
            "staleness_since": since.isoformat(),
        }
    past = staleness > dt.timedelta(0)
    limit = specs.max_staleness if past else specs.max_future_staleness
    stale = staleness > limit
    timeline = "old" if past else "in the future"
    if past:
        part = "but should not be more" if stale else "which is not more"
    else:
        part = "but should be more" if stale else "which is not less"
    size = staleness if past else -staleness
    return {
        "reason": f"most recent data is {humanize.precisedelta(size)} {timeline}, "
        f"{part} than {humanize.precisedelta(limit)} {timeline}",
        "source_type": source_type,
        "stale": stale,
        "staleness": isodate.duration_isoformat(size),
        "staleness_since": since.isoformat(),
    }


def _at(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


def inflexible_device_ids(flex_context: dict[str, Any]) -> list[int]:
    """Sensor ids of a flex-context's inflexible devices (also per commodity)."""
    contexts = [flex_context, *(flex_context.get("commodities") or [])]
    ids: list[int] = []
    for context in contexts:
        if not isinstance(context, dict):
            continue
        for key in INFLEXIBLE_KEYS:
            entries = context.get(key) or []
            for entry in entries if isinstance(entries, list) else []:
                sensor = entry.get("sensor") if isinstance(entry, dict) else entry
                if isinstance(sensor, int) and sensor not in ids:
                    ids.append(sensor)
    return ids


INFLEXIBLE_KEYS: Final = (
    "inflexible-device-sensors",
    "inflexible-consumption",
    "inflexible-production",
)


def relation(
    sensor_id: int,
    sensor_asset_id: int,
    asset_id: int,
    flex_context: dict[str, Any],
    inflexible_ids: list[int],
) -> str:
    """How the sensor relates to the asset, as FlexMeasures words it."""
    relations: list[str] = []
    if sensor_asset_id == asset_id:
        relations.append("sensor belongs to this asset")
    if sensor_id in inflexible_ids:
        relations.append("flex context (inflexible device)")
    for name, value in flex_context.items():
        if (
            isinstance(value, dict)
            and name not in INFLEXIBLE_KEYS
            and value.get("sensor") == sensor_id
        ):
            relations.append(f"flex context ({name})")
    return ";".join(relations)
