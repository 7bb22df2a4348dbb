"""FlexMeasures' storage flex-model and flex-context: parsed and checked.

`parse_flex_model` and `parse_flex_context` check the JSON as FlexMeasures' schemas do
and collect every problem into one `FlexModelError`, whose `.messages` mirror the JSON
as marshmallow's do, `{"flex-model": {"0": {"soc-targets": {"1": {"datetime": [..]}}}}}`
(its `str` lists them: `flex-model.0.soc-targets.1.datetime: Not a valid datetime.`).
`merge` fills a trigger's missing keys from the asset's stored JSON and `sensor_ids`
lists the sensors to check; `grid.build_problem` turns the parsed values into a
`SiteProblem` (problem.py) on the planning grid. Nothing here does I/O.

Values take FlexMeasures' forms: a quantity string ("25 kWh", "2 MW", "90%", "0.95",
"100 EUR/MWh"), a bare number where FlexMeasures has a default unit (SoC fields: the
`soc-unit`; efficiencies: a fraction), a sensor reference `{"sensor": 5}`, or a time
series of `{"datetime", "value"}` / `{"start", "end" | "duration", "value"}` segments.

Decisions (FlexMeasures 1.0 where it is clear, otherwise the simplest safe choice):
- `merge` works on the raw JSON, before parsing: trigger keys win, top level only. For a
  list flex-model the stored object fills each device, except its `sensor`. A trigger's
  `consumption-price-sensor` hides a stored `consumption-price` and vice versa (same for
  production), so old and new names do not clash.
- Bare numbers in SoC fields are in `soc-unit`; without it, in the unit of the device's
  power sensor as FlexMeasures guesses it (kWh or MWh as is, kW -> kWh, MW -> MWh; the
  caller passes `sensor_units`), else MWh. Power and price fields take no bare numbers.
- `soc-at-start` defaults to 0 (the asset attributes FlexMeasures also reads are not
  kept here); `state-of-charge` is kept as the sensor to record the SoC schedule on.
- `soc-min` defaults to 0; `soc-max` to the highest SoC target in the window, else no
  bound. Minima and maxima fall back to these and are clipped to [soc-min, soc-max].
- `power-capacity` is required: from the flex-model (the caller may merge a sensor's
  `capacity_in_mw` into the stored object), else the flex-context's
  `site-power-capacity` (FlexMeasures' last fallback), else a FlexModelError.
  Consumption and production capacities default to it and never exceed it.
- `roundtrip-efficiency` splits as its square root into charging and discharging and
  excludes those two fields; efficiencies default to 100%; `storage-efficiency` is the
  share kept over one step of the planning grid.
- `production-price` defaults to the consumption price. Missing prices (or power
  capacity) anywhere in the window are a FlexModelError naming the field ("Prices
  unknown for planning window."), as FlexMeasures' job fails. All prices share one
  currency. Missing gains, usages and inflexible power count as 0.
- Inflexible sensors are stored production-positive unless listed in
  `consumption_positive` (their `consumption_is_positive` attribute), as FlexMeasures.
- SoC values (soc-min/max, minima, maxima, targets) hold at instants: a `datetime`
  point is the SoC at the end of the step ending then, and must lie on the grid; a
  start/end segment covers every step end within [start, end]. Points outside the
  window are ignored, as FlexMeasures disregards them (`soc_targets_end_ms` lets the
  caller extend the window first). A SoC sensor is read on the grid shifted by one step.
- Flows (capacities, efficiencies, gains, usages, prices) cover the steps their
  segments overlap; a `datetime` point covers the step containing it. Overlapping
  segments resolve as FlexMeasures does: capacities and maxima take the least, minima
  the most, everything else the first given. Durations of days are 24 hours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from tenant_service.timing import (
    MAX_TEXT,
    NOT_A_DATETIME,
    TimingError,
    parse_datetime,
    parse_duration,
    to_epoch_ms,
)
from tenant_service.units import UnitError, conversion, registry, validate_unit

FLEX_MODEL: Final = "flex-model"
FLEX_CONTEXT: Final = "flex-context"

UNKNOWN_FIELD: Final = "Unknown field."
NOT_NULL: Final = "Field may not be null."
MISSING: Final = "Missing data for required field."
INVALID_TYPE: Final = "Invalid input type."
NOT_A_LIST: Final = "Not a valid list."
NOT_A_BOOLEAN: Final = "Not a valid boolean."
NOT_A_STRING: Final = "Not a valid string."
NOT_AN_INTEGER: Final = "Not a valid integer."
NOT_A_NUMBER: Final = "Not a valid number."
NOT_A_QUANTITY: Final = "Not a valid quantity."
TOO_SHORT: Final = "Shorter than minimum length 1."
UNSUPPORTED: Final = (
    "Unsupported value type. `{value_type}` was provided but only dict, list, str, "
    "pint Quantity, tuple, and numeric values with a default source unit are supported."
)
BAD_QUANTITY: Final = "Cannot convert value '{text}' to a valid quantity."
WRONG_UNIT: Final = "Cannot convert value `{text}` to '{unit}'"
NO_SENSOR_KEY: Final = "Dictionary provided but `sensor` key not found."
SENSOR_ID_TYPE: Final = (
    "Sensor ID has the wrong type. Got `{value_type}` but `int` was expected."
)
NO_SENSOR: Final = "No sensor found with ID {sensor}."
SENSOR_UNIT: Final = "Cannot convert {unit} to {target}"
EFFICIENCY_RANGE: Final = "Must be greater than 0 % and less than or equal to 100 %."
NOT_NEGATIVE: Final = "Must be greater than or equal to 0."
SOC_UNITS: Final = "Must be one of: kWh, MWh."
EXCLUSIVE: Final = "Fields `{field}` and `roundtrip-efficiency` are mutually exclusive."
EITHER: Final = "Must pass either {field} or {field}-sensor."
DUPLICATE_SENSOR: Final = "Sensor {sensor} is listed more than once."
STATE_OF_CHARGE: Final = "The `state-of-charge` field can only be a sensor reference."
ONE_CURRENCY: Final = (
    "All prices in the flex-context must share the same currency unit "
    "(in this case: '{currency}')."
)
DATETIME_ALONE: Final = (
    "If using the 'datetime' field, no 'start', 'end' or 'duration' is expected."
)
DURATION_NEEDS_ONE: Final = (
    "If using the 'duration' field, either 'start' or 'end' is expected."
)
NO_TIMING: Final = (
    "Missing field(s) to describe timing: use the 'datetime' field, "
    "or a combination of 2 fields of 'start', 'end' and 'duration'."
)
END_BEFORE_START: Final = "The end may not be before the start."
OFF_GRID: Final = (
    "Datetime {moment} is not at the end of a {step} step of the planning window."
)
PRICES_UNKNOWN: Final = "Prices unknown for planning window."
PRICES_PARTIAL: Final = "Prices partially unknown for planning window."
CAPACITY_UNDEFINED: Final = (
    "Power capacity is not defined in the sensor attributes or the flex-model."
)
CAPACITY_UNKNOWN: Final = "Power capacity unknown for planning window."
CAPACITY_PARTIAL: Final = "Power capacity partially unknown for planning window."

SOC_UNIT_CHOICES: Final = ("kWh", "MWh")
MAX_SENSOR_ID: Final = 2**63 - 1
PRICE: Final = "/MWh"  # canonical unit marker: any currency per MWh
POWER_PRICE: Final = "/MW"  # canonical unit marker: any currency per MW
MS_PER_HOUR: Final = 3_600_000
# A quantity string: a decimal number, then its unit (empty = dimensionless).
_QUANTITY: Final = re.compile(
    r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*", re.DOTALL
)
_CURRENCY_DIMENSION: Final = "[currency_"

SENSOR: Final = "sensor"
STATE_OF_CHARGE_FIELD: Final = "state-of-charge"
SOC_AT_START: Final = "soc-at-start"
SOC_UNIT: Final = "soc-unit"
SOC_MIN: Final = "soc-min"
SOC_MAX: Final = "soc-max"
SOC_MINIMA: Final = "soc-minima"
SOC_MAXIMA: Final = "soc-maxima"
SOC_TARGETS: Final = "soc-targets"
ROUNDTRIP: Final = "roundtrip-efficiency"
CHARGING: Final = "charging-efficiency"
DISCHARGING: Final = "discharging-efficiency"
STORAGE: Final = "storage-efficiency"
POWER_CAPACITY: Final = "power-capacity"
CONSUMPTION_CAPACITY: Final = "consumption-capacity"
PRODUCTION_CAPACITY: Final = "production-capacity"
SOC_GAIN: Final = "soc-gain"
SOC_USAGE: Final = "soc-usage"
PREFER_CHARGING_SOONER: Final = "prefer-charging-sooner"
FLEX_MODEL_FIELDS: Final = frozenset(
    {
        SENSOR,
        STATE_OF_CHARGE_FIELD,
        SOC_AT_START,
        SOC_UNIT,
        SOC_MIN,
        SOC_MAX,
        SOC_MINIMA,
        SOC_MAXIMA,
        SOC_TARGETS,
        ROUNDTRIP,
        CHARGING,
        DISCHARGING,
        STORAGE,
        POWER_CAPACITY,
        CONSUMPTION_CAPACITY,
        PRODUCTION_CAPACITY,
        SOC_GAIN,
        SOC_USAGE,
        PREFER_CHARGING_SOONER,
    }
)

CONSUMPTION_PRICE: Final = "consumption-price"
PRODUCTION_PRICE: Final = "production-price"
CONSUMPTION_PRICE_SENSOR: Final = "consumption-price-sensor"
PRODUCTION_PRICE_SENSOR: Final = "production-price-sensor"
INFLEXIBLE: Final = "inflexible-device-sensors"
SITE_POWER_CAPACITY: Final = "site-power-capacity"
SITE_CONSUMPTION_CAPACITY: Final = "site-consumption-capacity"
SITE_PRODUCTION_CAPACITY: Final = "site-production-capacity"
# As FlexMeasures 1.0.1: soc-minima, soc-maxima and soc-targets are soft constraints
# with these breach prices (currency per MWh), filled in with a default of 1000 per
# kWh unless relaxation is turned off (relax-soc-constraints, else relax-constraints).
SOC_MINIMA_BREACH_PRICE: Final = "soc-minima-breach-price"
SOC_MAXIMA_BREACH_PRICE: Final = "soc-maxima-breach-price"
RELAX_CONSTRAINTS: Final = "relax-constraints"
RELAX_SOC_CONSTRAINTS: Final = "relax-soc-constraints"
DEFAULT_SOC_BREACH_PRICE: Final = 1_000_000.0  # 1000 per kWh
# Likewise the site's consumption and production capacities (currency per MW of the
# largest breach, and per MW per hour of each step's), default 10000 per kW, unless
# relax-site-capacity-constraints (else relax-constraints) is false. site-power-capacity
# then stays the hard limit.
SITE_CONSUMPTION_BREACH_PRICE: Final = "site-consumption-breach-price"
SITE_PRODUCTION_BREACH_PRICE: Final = "site-production-breach-price"
RELAX_SITE_CAPACITY_CONSTRAINTS: Final = "relax-site-capacity-constraints"
DEFAULT_SITE_BREACH_PRICE: Final = 10_000_000.0  # 10000 per kW
FLEX_CONTEXT_FIELDS: Final = frozenset(
    {
        CONSUMPTION_PRICE,
        PRODUCTION_PRICE,
        CONSUMPTION_PRICE_SENSOR,
        PRODUCTION_PRICE_SENSOR,
        INFLEXIBLE,
        SITE_POWER_CAPACITY,
        SITE_CONSUMPTION_CAPACITY,
        SITE_PRODUCTION_CAPACITY,
        SOC_MINIMA_BREACH_PRICE,
        SOC_MAXIMA_BREACH_PRICE,
        RELAX_CONSTRAINTS,
        RELAX_SOC_CONSTRAINTS,
        SITE_CONSUMPTION_BREACH_PRICE,
        SITE_PRODUCTION_BREACH_PRICE,
        RELAX_SITE_CAPACITY_CONSTRAINTS,
    }
)
# Old and new names of one setting: a trigger's use of either hides the stored other.
_ALIASES: Final = {
    CONSUMPTION_PRICE: CONSUMPTION_PRICE_SENSOR,
    CONSUMPTION_PRICE_SENSOR: CONSUMPTION_PRICE,
    PRODUCTION_PRICE: PRODUCTION_PRICE_SENSOR,
    PRODUCTION_PRICE_SENSOR: PRODUCTION_PRICE,
}
_SEGMENT_FIELDS: Final = frozenset({"value", "datetime", "start", "end", "duration"})
_TRUE: Final = frozenset({"t", "true", "on", "y", "yes", "1"})
_FALSE: Final = frozenset({"f", "false", "off", "n", "no", "0"})

Path: TypeAlias = tuple[str, ...]


class FlexModelError(Exception):
    """Bad flex-model or flex-context; `.messages` nest as the JSON (marshmallow)."""

    def __init__(self, messages: dict[str, Any]) -> None:
        self.messages = messages
        super().__init__("; ".join(_flatten(messages, ())))


def _flatten(node: object, path: Path) -> list[str]:
    """`flex-model.soc-max: message` lines of a nested message dict."""
    if isinstance(node, dict):
        return [
            line
            for key, child in node.items()
            for line in _flatten(child, (*path, key))
        ]
    if isinstance(node, list):
        return [f"{'.'.join(path)}: {message}" for message in node]
    return [f"{'.'.join(path)}: {node}"]


@dataclass(frozen=True, slots=True)
class SensorRef:
    """A value read from a sensor's data (`{"sensor": id}`)."""

    sensor: int


@dataclass(frozen=True, slots=True)
class Segment:
    """One value over [start, end] (epoch ms), in the field's canonical unit."""

    start_ms: int
    end_ms: int
    value: float
    point: bool  # given as `datetime`: an instant that must lie on the grid


@dataclass(frozen=True, slots=True)
class TimeSeries:
    """Segments as listed; the field's overlap rule combines them."""

    segments: tuple[Segment, ...]


# A fixed value (in MWh, MW, a fraction or currency/MWh), a sensor, or segments.
Variable: TypeAlias = float | SensorRef | TimeSeries


@dataclass(frozen=True, slots=True)
class DeviceModel:
    """One device's parsed storage flex-model, in MWh, MW and fractions."""

    sensor: int | None
    location: Path  # where its fields are in the JSON, e.g. ("flex-model", "0")
    soc_at_start: float | None = None
    soc_min: Variable | None = None
    soc_max: Variable | None = None
    soc_minima: Variable | None = None
    soc_maxima: Variable | None = None
    soc_targets: Variable | None = None
    state_of_charge: int | None = None
    roundtrip_efficiency: float | None = None
    charging_efficiency: Variable | None = None
    discharging_efficiency: Variable | None = None
    storage_efficiency: Variable | None = None
    power_capacity: Variable | None = None
    consumption_capacity: Variable | None = None
    production_capacity: Variable | None = None
    soc_gain: tuple[Variable, ...] = ()
    soc_usage: tuple[Variable, ...] = ()
    prefer_charging_sooner: bool = True


@dataclass(frozen=True, slots=True)
class FlexContext:
    """The parsed flex-context: prices in currency/MWh, capacities in MW."""

    consumption_price: Variable | None = None
    production_price: Variable | None = None
    currency: str | None = None  # of the prices given as quantities
    inflexible_device_sensors: tuple[int, ...] = ()
    site_power_capacity: Variable | None = None
    site_consumption_capacity: Variable | None = None
    site_production_capacity: Variable | None = None
    # Which JSON key each price came from, to name it in messages.
    consumption_price_field: str = CONSUMPTION_PRICE
    production_price_field: str = PRODUCTION_PRICE
    # Currency per MWh of SoC missed; None: soc-minima (soc-maxima) are hard.
    soc_minima_breach_price: float | None = DEFAULT_SOC_BREACH_PRICE
    soc_maxima_breach_price: float | None = DEFAULT_SOC_BREACH_PRICE
    # Currency per MW over the site's consumption (production) capacity; None: hard.
    site_consumption_breach_price: float | None = DEFAULT_SITE_BREACH_PRICE
    site_production_breach_price: float | None = DEFAULT_SITE_BREACH_PRICE


@dataclass(frozen=True, slots=True)
class Kind:
    """How a field's values are read: canonical unit, bare-number unit, checks."""

    unit: str  # "MWh", "MW", "" (fraction) or PRICE
    bare_unit: str | None = None  # unit of a bare number; None: not allowed
    non_negative: bool = False
    efficiency: bool = False
    soc: bool = False  # values at step ends, not flows over steps
    overlap: str = "first"  # "first", "min" or "max"


POWER: Final = Kind("MW", non_negative=True, overlap="min")
FLOW: Final = Kind("MW")
EFFICIENCY: Final = Kind("", bare_unit="", efficiency=True)
PRICE_KIND: Final = Kind(PRICE)
BREACH_PRICE_KIND: Final = Kind(PRICE, non_negative=True)
POWER_BREACH_PRICE_KIND: Final = Kind(POWER_PRICE, non_negative=True)


def soc_kind(bare_unit: str, *, non_negative: bool = False, overlap: str) -> Kind:
    """The kind of a state-of-charge field with this bare-number unit."""
    return Kind(
        "MWh", bare_unit=bare_unit, non_negative=non_negative, soc=True, overlap=overlap
    )


class _InvalidError(ValueError):
    """One value's problem, with its message."""


class Errors:
    """Messages collected into a nested dict keyed by JSON location."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Path, message: str) -> None:
        node = self.tree
        for key in path[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif isinstance(child, list):
                # A field with its own message and nested ones: marshmallow's _schema.
                child = node[key] = {"_schema": child}
            node = child
        existing = node.get(path[-1])
        if existing is None:
            node[path[-1]] = [message]
        elif isinstance(existing, dict):
            existing.setdefault("_schema", []).append(message)
        else:
            existing.append(message)

    def has(self, path: Path) -> bool:
        """Whether there is a message at or under `path`."""
        node: Any = self.tree
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    def __bool__(self) -> bool:
        return bool(self.tree)


def _number(value: float) -> float:
    """A JSON number as a finite float, else _InvalidError."""
    try:
        number = float(value)
    except OverflowError as err:
        raise _InvalidError(NOT_A_NUMBER) from err
    if not math.isfinite(number):
        raise _InvalidError(NOT_A_NUMBER)
    return number


def _split_quantity(text: str) -> tuple[float, str]:
    """("25 kWh") -> (25.0, "kWh"); _InvalidError if not a number and a known unit."""
    bad = _InvalidError(BAD_QUANTITY.format(text=text[:MAX_TEXT]))
    if len(text) > MAX_TEXT:
        raise bad
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise bad
    try:
        number = _number(float(match.group(1)))
        unit = validate_unit(match.group(2))
    except (_InvalidError, UnitError) as err:
        raise bad from err
    return number, unit


def currency_of(unit: str, per: str = "MWh") -> str | None:
    """The currency code of a price per energy unit ("EUR/kWh" -> "EUR"), else None.

    `per` = "MW": of a price per power unit ("EUR/kW" -> "EUR") instead.
    """
    try:
        validate_unit(unit)
        dimensions = registry().parse_units(unit.strip()).dimensionality
    except (UnitError, ValueError, TypeError, ArithmeticError):
        return None
    codes = [
        key[len(_CURRENCY_DIMENSION) : -1]
        for key in dimensions
        if str(key).startswith(_CURRENCY_DIMENSION)
    ]
    if len(codes) != 1:
        return None
    try:
        conversion(unit, f"{codes[0]}/{per}", 0)
    except (UnitError, ArithmeticError):
        return None
    return codes[0]


def _to_canonical(
    number: float, unit: str, kind: Kind, text: str
) -> tuple[float, str | None]:
    """`number unit` in the kind's canonical unit, and its currency for prices."""
    currency: str | None = None
    target = kind.unit
    if kind.unit in (PRICE, POWER_PRICE):
        currency = currency_of(unit, kind.unit[1:])
        if currency is None:
            raise _InvalidError(WRONG_UNIT.format(text=text, unit=kind.unit))
        target = f"{currency}{kind.unit}"
    try:
        factor, offset = conversion(unit, target, 0)
    except (UnitError, ArithmeticError) as err:
        shown = target or "dimensionless"
        raise _InvalidError(WRONG_UNIT.format(text=text, unit=shown)) from err
    value = number * factor + offset
    if not math.isfinite(value):
        raise _InvalidError(NOT_A_NUMBER)
    return value, currency


def _check_range(value: float, kind: Kind) -> float:
    """The value, if the kind allows it; efficiencies a hair above 1 become 1."""
    if kind.efficiency:
        # "100 %" may land a rounding error above 1.
        if not 0.0 < value <= 1.0 + 1e-12:
            raise _InvalidError(EFFICIENCY_RANGE)
        return min(value, 1.0)
    if kind.non_negative and value < 0.0:
        raise _InvalidError(NOT_NEGATIVE)
    return value


def _literal(raw: object, kind: Kind) -> tuple[float, str | None]:
    """A quantity string or bare number in the kind's canonical unit (and currency)."""
    if isinstance(raw, str):
        number, unit = _split_quantity(raw)
        text = raw
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if kind.bare_unit is None:
            raise _InvalidError(UNSUPPORTED.format(value_type=type(raw)))
        number, unit = _number(raw), kind.bare_unit
        text = f"{raw} {unit}".strip()
    else:
        raise _InvalidError(UNSUPPORTED.format(value_type=type(raw)))
    value, currency = _to_canonical(number, unit, kind, text)
    return _check_range(value, kind), currency


def _sensor_id(raw: object) -> int:
    """A sensor id (an integer, or a string of digits), else _InvalidError."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise _InvalidError(SENSOR_ID_TYPE.format(value_type=type(raw).__name__))
    if isinstance(raw, str):
        text = raw.strip()
        if not text.isdigit() or len(text) > 19:
            raise _InvalidError(NOT_AN_INTEGER)
        raw = int(text)
    if not 0 <= raw <= MAX_SENSOR_ID:
        raise _InvalidError(NOT_AN_INTEGER)
    return raw


def _boolean(raw: object) -> bool:
    """A marshmallow Boolean: true/false, 0/1 and their usual strings."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return raw == 1
    if isinstance(raw, str) and raw.lower() in _TRUE | _FALSE:
        return raw.lower() in _TRUE
    raise _InvalidError(NOT_A_BOOLEAN)


class _Parser:
    """Reads values into canonical units, collecting messages and price currencies."""

    def __init__(self) -> None:
        self.errors = Errors()
        self.currencies: list[tuple[Path, str]] = []

    def fail(self, path: Path, message: str) -> None:
        self.errors.add(path, message)

    def unknown_fields(
        self, path: Path, raw: Mapping[Any, Any], known: Container[str]
    ) -> None:
        for key in raw:
            if key not in known:
                self.fail((*path, str(key)), UNKNOWN_FIELD)

    def sensor_id(self, path: Path, raw: object) -> int | None:
        if raw is None:
            self.fail(path, NOT_NULL)
            return None
        try:
            return _sensor_id(raw)
        except _InvalidError as err:
            self.fail(path, str(err))
            return None

    def sensor_ref(self, path: Path, raw: Mapping[Any, Any]) -> SensorRef | None:
        if SENSOR not in raw:
            self.fail(path, NO_SENSOR_KEY)
            return None
        extra = [key for key in raw if key != SENSOR]
        self.unknown_fields(path, raw, (SENSOR,))
        sensor = self.sensor_id((*path, SENSOR), raw[SENSOR])
        return None if sensor is None or extra else SensorRef(sensor)

    def fixed(self, path: Path, raw: object, kind: Kind) -> float | None:
        if raw is None:
            self.fail(path, NOT_NULL)
            return None
        if isinstance(raw, (dict, list)):
            self.fail(path, NOT_A_QUANTITY)
            return None
        return self.literal(path, raw, kind)

    def literal(self, path: Path, raw: object, kind: Kind) -> float | None:
        try:
            value, currency = _literal(raw, kind)
        except _InvalidError as err:
            self.fail(path, str(err))
            return None
        if currency is not None:
            self.currencies.append((path, currency))
        return value

    def variable(self, path: Path, raw: object, kind: Kind) -> Variable | None:
        if raw is None:
            self.fail(path, NOT_NULL)
            return None
        if isinstance(raw, dict):
            return self.sensor_ref(path, raw)
        if isinstance(raw, list):
            return self.series(path, raw, kind)
        return self.literal(path, raw, kind)

    def series(self, path: Path, raw: list[Any], kind: Kind) -> TimeSeries | None:
        segments = [
            self.segment((*path, str(index)), item, kind)
            for index, item in enumerate(raw)
        ]
        valid = [segment for segment in segments if segment is not None]
        return TimeSeries(tuple(valid)) if len(valid) == len(segments) else None

    def moment(self, path: Path, raw: object) -> int | None:
        if raw is None:
            self.fail(path, NOT_NULL)
            return None
        if not isinstance(raw, str):
            self.fail(path, NOT_A_DATETIME)
            return None
        try:
            return to_epoch_ms(parse_datetime(raw))
        except TimingError as err:
            self.fail(path, str(err))
            return None

    def segment(self, path: Path, raw: object, kind: Kind) -> Segment | None:
        if not isinstance(raw, dict):
            self.fail((*path, "_schema"), INVALID_TYPE)
            return None
        count = _count(self.errors.tree)
        self.unknown_fields(path, raw, _SEGMENT_FIELDS)
        value: float | None = None
        if "value" not in raw:
            self.fail((*path, "value"), MISSING)
        elif raw["value"] is None:
            self.fail((*path, "value"), NOT_NULL)
        else:
            value = self.literal((*path, "value"), raw["value"], kind)
        times = {
            key: self.moment((*path, key), raw[key])
            for key in ("datetime", "start", "end")
            if key in raw
        }
        duration: int | None = None
        if "duration" in raw:
            text = raw["duration"]
            try:
                if not isinstance(text, str):
                    raise TimingError(NOT_A_STRING)
                duration = parse_duration(text, allow_negative=False)
            except TimingError as err:
                self.fail((*path, "duration"), str(err))
        if _count(self.errors.tree) != count or value is None:
            return None
        return self.window(path, value, times, "duration" in raw, duration)

    def window(
        self,
        path: Path,
        value: float,
        times: Mapping[str, int | None],
        has_duration: bool,
        duration: int | None,
    ) -> Segment | None:
        start, end = times.get("start"), times.get("end")
        if "datetime" in times:
            moment = times["datetime"]
            if "start" in times or "end" in times or has_duration:
                self.fail((*path, "_schema"), DATETIME_ALONE)
                return None
            if moment is None:
                return None
            return Segment(moment, moment, value, point=True)
        if has_duration:
            if ("start" in times) == ("end" in times) or duration is None:
                self.fail((*path, "_schema"), DURATION_NEEDS_ONE)
                return None
            if start is not None:
                return Segment(start, start + duration, value, point=False)
            if end is not None:
                return Segment(end - duration, end, value, point=False)
            return None
        if start is None or end is None:
            self.fail((*path, "_schema"), NO_TIMING)
            return None
        if end < start:
            self.fail((*path, "end"), END_BEFORE_START)
            return None
        return Segment(start, end, value, point=False)

    def flows(self, path: Path, raw: object, kind: Kind) -> tuple[Variable, ...]:
        if not isinstance(raw, list):
            self.fail(path, NOT_A_LIST if raw is not None else NOT_NULL)
            return ()
        if not raw:
            self.fail(path, TOO_SHORT)
            return ()
        parsed = [
            self.variable((*path, str(index)), item, kind)
            for index, item in enumerate(raw)
        ]
        return tuple(item for item in parsed if item is not None)

    def check_currencies(self, currency: str | None = None) -> str | None:
        """The one currency of all prices seen, after naming those that differ."""
        for path, code in self.currencies:
            if currency is None:
                currency = code
            elif code != currency:
                self.fail(path, ONE_CURRENCY.format(currency=currency))
        return currency


def _count(tree: Mapping[str, Any]) -> int:
    """How many messages a nested message dict holds."""
    total = 0
    for child in tree.values():
        total += _count(child) if isinstance(child, dict) else len(child)
    return total


def _default_soc_unit(raw: Mapping[str, Any], sensor_unit: str | None) -> str:
    """The unit of bare SoC numbers: soc-unit, else guessed from the power sensor."""
    unit = raw.get(SOC_UNIT)
    if isinstance(unit, str) and unit in SOC_UNIT_CHOICES:
        return unit
    if sensor_unit in ("MWh", "kWh"):
        return sensor_unit
    if sensor_unit in ("MW", "kW"):
        return f"{sensor_unit}h"
    return "MWh"


def _parse_device(
    parser: _Parser,
    location: Path,
    raw: Mapping[str, Any],
    *,
    sensor: int | None,
    require_sensor: bool,
    sensor_units: Mapping[int, str],
) -> DeviceModel | None:
    """One device's flex-model object."""
    count = _count(parser.errors.tree)
    parser.unknown_fields(location, raw, FLEX_MODEL_FIELDS)

    def at(name: str) -> Path:
        return (*location, name)

    if SENSOR in raw:
        sensor = parser.sensor_id(at(SENSOR), raw[SENSOR])
    elif require_sensor:
        parser.fail(at(SENSOR), MISSING)
    if SOC_UNIT in raw:
        unit = raw[SOC_UNIT]
        if not isinstance(unit, str):
            parser.fail(at(SOC_UNIT), NOT_A_STRING)
        elif unit not in SOC_UNIT_CHOICES:
            parser.fail(at(SOC_UNIT), SOC_UNITS)
    bare = _default_soc_unit(
        raw, sensor_units.get(sensor) if sensor is not None else None
    )

    def variable(name: str, kind: Kind) -> Variable | None:
        return parser.variable(at(name), raw[name], kind) if name in raw else None

    state_of_charge: int | None = None
    if STATE_OF_CHARGE_FIELD in raw:
        value = raw[STATE_OF_CHARGE_FIELD]
        if isinstance(value, dict):
            ref = parser.sensor_ref(at(STATE_OF_CHARGE_FIELD), value)
            state_of_charge = ref.sensor if ref is not None else None
        else:
            parser.fail(
                at(STATE_OF_CHARGE_FIELD),
                NOT_NULL if value is None else STATE_OF_CHARGE,
            )
    for name in (CHARGING, DISCHARGING):
        if name in raw and ROUNDTRIP in raw:
            parser.fail(at(ROUNDTRIP), EXCLUSIVE.format(field=name))
    prefer = True
    if PREFER_CHARGING_SOONER in raw:
        try:
            prefer = _boolean(raw[PREFER_CHARGING_SOONER])
        except _InvalidError as err:
            parser.fail(at(PREFER_CHARGING_SOONER), str(err))
    model = DeviceModel(
        sensor=sensor,
        location=location,
        soc_at_start=(
            parser.fixed(
                at(SOC_AT_START), raw[SOC_AT_START], soc_kind(bare, overlap="first")
            )
            if SOC_AT_START in raw
            else None
        ),
        soc_min=variable(SOC_MIN, soc_kind(bare, non_negative=True, overlap="max")),
        soc_max=variable(SOC_MAX, soc_kind(bare, overlap="min")),
        soc_minima=variable(
            SOC_MINIMA, soc_kind(bare, non_negative=True, overlap="max")
        ),
        soc_maxima=variable(SOC_MAXIMA, soc_kind(bare, overlap="min")),
        soc_targets=variable(SOC_TARGETS, soc_kind(bare, overlap="first")),
        state_of_charge=state_of_charge,
        roundtrip_efficiency=(
            parser.fixed(at(ROUNDTRIP), raw[ROUNDTRIP], EFFICIENCY)
            if ROUNDTRIP in raw
            else None
        ),
        charging_efficiency=variable(CHARGING, EFFICIENCY),
        discharging_efficiency=variable(DISCHARGING, EFFICIENCY),
        storage_efficiency=variable(STORAGE, EFFICIENCY),
        power_capacity=variable(POWER_CAPACITY, POWER),
        consumption_capacity=variable(CONSUMPTION_CAPACITY, POWER),
        production_capacity=variable(PRODUCTION_CAPACITY, POWER),
        soc_gain=(
            parser.flows(at(SOC_GAIN), raw[SOC_GAIN], FLOW) if SOC_GAIN in raw else ()
        ),
        soc_usage=(
            parser.flows(at(SOC_USAGE), raw[SOC_USAGE], FLOW)
            if SOC_USAGE in raw
            else ()
        ),
        prefer_charging_sooner=prefer,
    )
    return model if _count(parser.errors.tree) == count else None


def parse_flex_model(
    value: object,
    *,
    sensor: int | None = None,
    sensor_units: Mapping[int, str] | None = None,
) -> list[DeviceModel]:
    """Devices of a storage flex-model: one object, or a list naming each `sensor`.

    `sensor` is the power sensor of a single object without one (the sensor trigger
    endpoint); `sensor_units` the known units of power sensors, for bare SoC numbers.
    """
    units = sensor_units or {}
    parser = _Parser()
    models: list[DeviceModel | None] = []
    if value is None:
        value = {}
    if isinstance(value, dict):
        models.append(
            _parse_device(
                parser,
                (FLEX_MODEL,),
                value,
                sensor=sensor,
                require_sensor=False,
                sensor_units=units,
            )
        )
    elif isinstance(value, list):
        if not value:
            parser.fail((FLEX_MODEL,), TOO_SHORT)
        seen: set[int] = set()
        for index, item in enumerate(value):
            location = (FLEX_MODEL, str(index))
            if not isinstance(item, dict):
                parser.fail((*location, "_schema"), INVALID_TYPE)
                continue
            models.append(
                _parse_device(
                    parser,
                    location,
                    item,
                    sensor=None,
                    require_sensor=True,
                    sensor_units=units,
                )
            )
            try:
                listed = _sensor_id(item.get(SENSOR))
            except _InvalidError:
                continue  # named by _parse_device
            if listed in seen:
                parser.fail((*location, SENSOR), DUPLICATE_SENSOR.format(sensor=listed))
            seen.add(listed)
    else:
        parser.fail((FLEX_MODEL, "_schema"), INVALID_TYPE)
    if parser.errors:
        raise FlexModelError(parser.errors.tree)
    return [model for model in models if model is not None]


def parse_flex_context(value: object) -> FlexContext:
    """The flex-context: prices, inflexible devices and site capacities."""
    parser = _Parser()
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise FlexModelError({FLEX_CONTEXT: {"_schema": [INVALID_TYPE]}})
    location = (FLEX_CONTEXT,)
    parser.unknown_fields(location, value, FLEX_CONTEXT_FIELDS)

    def at(name: str) -> Path:
        return (*location, name)

    def price(name: str) -> tuple[Variable | None, str]:
        old = f"{name}-sensor"
        if name in value and old in value:
            parser.fail(at(name), EITHER.format(field=name))
        if name in value:
            return parser.variable(at(name), value[name], PRICE_KIND), name
        if old in value:
            sensor = parser.sensor_id(at(old), value[old])
            return (SensorRef(sensor) if sensor is not None else None), old
        return None, name

    def capacity(name: str) -> Variable | None:
        return parser.variable(at(name), value[name], POWER) if name in value else None

    consumption_price, consumption_field = price(CONSUMPTION_PRICE)
    production_price, production_field = price(PRODUCTION_PRICE)
    inflexible: list[int] = []
    if INFLEXIBLE in value:
        sensors = value[INFLEXIBLE]
        if not isinstance(sensors, list):
            parser.fail(at(INFLEXIBLE), NOT_A_LIST if sensors is not None else NOT_NULL)
        else:
            for index, item in enumerate(sensors):
                sensor = parser.sensor_id((*at(INFLEXIBLE), str(index)), item)
                if sensor is not None:
                    inflexible.append(sensor)
    relax = {}
    for name in (
        RELAX_CONSTRAINTS,
        RELAX_SOC_CONSTRAINTS,
        RELAX_SITE_CAPACITY_CONSTRAINTS,
    ):
        if name in value:
            try:
                relax[name] = _boolean(value[name])
            except _InvalidError as err:
                parser.fail(at(name), str(err))
    # FlexMeasures fills no default breach price when the deprecated price sensor
    # fields are used (they predate relaxation).
    legacy = CONSUMPTION_PRICE_SENSOR in value or PRODUCTION_PRICE_SENSOR in value
    relax_all = relax.get(RELAX_CONSTRAINTS, True) and not legacy
    breach: dict[str, float | None] = {}
    for flag, names, default, kind in (
        (
            RELAX_SOC_CONSTRAINTS,
            (SOC_MINIMA_BREACH_PRICE, SOC_MAXIMA_BREACH_PRICE),
            DEFAULT_SOC_BREACH_PRICE,
            BREACH_PRICE_KIND,
        ),
        (
            RELAX_SITE_CAPACITY_CONSTRAINTS,
            (SITE_CONSUMPTION_BREACH_PRICE, SITE_PRODUCTION_BREACH_PRICE),
            DEFAULT_SITE_BREACH_PRICE,
            POWER_BREACH_PRICE_KIND,
        ),
    ):
        relaxed = relax.get(flag, relax_all) and not legacy
        for name in names:
            breach[name] = default if relaxed else None
            if name in value:
                breach[name] = parser.fixed(at(name), value[name], kind)
    context = FlexContext(
        consumption_price=consumption_price,
        production_price=production_price,
        currency=parser.check_currencies(),
        inflexible_device_sensors=tuple(inflexible),
        site_power_capacity=capacity(SITE_POWER_CAPACITY),
        site_consumption_capacity=capacity(SITE_CONSUMPTION_CAPACITY),
        site_production_capacity=capacity(SITE_PRODUCTION_CAPACITY),
        consumption_price_field=consumption_field,
        production_price_field=production_field,
        soc_minima_breach_price=breach[SOC_MINIMA_BREACH_PRICE],
        soc_maxima_breach_price=breach[SOC_MAXIMA_BREACH_PRICE],
        site_consumption_breach_price=breach[SITE_CONSUMPTION_BREACH_PRICE],
        site_production_breach_price=breach[SITE_PRODUCTION_BREACH_PRICE],
    )
    if parser.errors:
        raise FlexModelError(parser.errors.tree)
    return context


def merge(trigger: object, stored: object) -> object:
    """Raw trigger JSON with missing keys filled from the asset's stored JSON object."""
    base: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
    if trigger is None:
        return base
    if isinstance(trigger, dict):
        return _fill(trigger, base)
    if isinstance(trigger, list):
        per_device = {key: item for key, item in base.items() if key != SENSOR}
        return [
            _fill(item, per_device) if isinstance(item, dict) else item
            for item in trigger
        ]
    return trigger


def _fill(trigger: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    hidden = {_ALIASES[key] for key in trigger if key in _ALIASES}
    return {
        **{key: item for key, item in base.items() if key not in hidden},
        **trigger,
    }


def _variable_sensors(value: Variable | None) -> set[int]:
    return {value.sensor} if isinstance(value, SensorRef) else set()


def sensor_ids(models: Sequence[DeviceModel], context: FlexContext) -> set[int]:
    """Every sensor the flex-model and flex-context refer to."""
    found: set[int] = set(context.inflexible_device_sensors)
    for value in (
        context.consumption_price,
        context.production_price,
        context.site_power_capacity,
        context.site_consumption_capacity,
        context.site_production_capacity,
    ):
        found |= _variable_sensors(value)
    for model in models:
        if model.sensor is not None:
            found.add(model.sensor)
        if model.state_of_charge is not None:
            found.add(model.state_of_charge)
        for value in (
            model.soc_min,
            model.soc_max,
            model.soc_minima,
            model.soc_maxima,
            model.soc_targets,
            model.charging_efficiency,
            model.discharging_efficiency,
            model.storage_efficiency,
            model.power_capacity,
            model.consumption_capacity,
            model.production_capacity,
            *model.soc_gain,
            *model.soc_usage,
        ):
            found |= _variable_sensors(value)
    return found


def soc_targets_end_ms(models: Sequence[DeviceModel]) -> int | None:
    """The latest instant a listed SoC target names (to extend the window to it)."""
    ends = [
        segment.end_ms
        for model in models
        if isinstance(model.soc_targets, TimeSeries)
        for segment in model.soc_targets.segments
    ]
    return max(ends, default=None)
