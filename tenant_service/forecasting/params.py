"""Forecast trigger bodies (FlexMeasures' ForecastingTriggerSchema) -> a job request.

Errors are collected as FlexMeasures names them, under its location
`combined_sensor_data_description`: top-level fields by their JSON key, config
fields nested under `config`, regressors by list index. Where FlexMeasures accepts
a field we do not use, a neutral value passes and anything else is a clear 422
(`NOT_SUPPORTED`). Refused on purpose (documented): `output-path` and
`model-save-dir` (directories on the worker host chosen by the client) and, as
FlexMeasures, `sensor-to-save` and a top-level `model` (Unknown field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from tenant_service.beliefs import floor_to_resolution, timedelta_text
from tenant_service.schemas.fields import (
    MISSING,
    NOT_A_NUMBER,
    NOT_A_STRING,
    NOT_AN_INTEGER,
    UNKNOWN_FIELD,
)
from tenant_service.timing import (
    TimingError,
    format_duration,
    parse_datetime,
    parse_duration,
    to_epoch_ms,
)

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
# FLEXMEASURES_PLANNING_HORIZON: the default duration (and retrain frequency).
DEFAULT_DURATION_MS: Final = 2 * DAY_MS
MIN_TRAIN_PERIOD_MS: Final = 2 * DAY_MS
# One model fit per viewpoint: bounded so one trigger cannot occupy the worker.
MAX_VIEWPOINTS: Final = 96
MAX_STEPS: Final = 2880  # values per viewpoint (30 days of 15-minute steps)
NOT_SUPPORTED: Final = "Not supported by this server."
NOT_A_LIST: Final = "Not a valid list."
NOT_A_BOOLEAN: Final = "Not a valid boolean."
NOT_A_MAPPING: Final = "Not a valid mapping type."
TOP_FIELDS: Final = frozenset(
    {
        "start",
        "end",
        "duration",
        "prior",
        "max-forecast-horizon",
        "forecast-frequency",
        "probabilistic",
        "config",
    }
)
CONFIG_FIELDS: Final = frozenset(
    {
        "model",
        "future-regressors",
        "past-regressors",
        "regressors",
        "annotation-regressors",
        "model-params",
        "missing-threshold",
        "ensure-positive",
        "lower",
        "upper",
        "snap",
        "train-start",
        "train-period",
        "max-training-period",
        "retrain-frequency",
    }
)
# Source filters of a sensor reference; lists of one value are supported.
REFERENCE_FILTERS: Final = {
    "sources": "source_id",
    "source-types": "source_type",
    "source-account": "source_account_id",
}


class TriggerError(ValueError):
    """Invalid trigger: `errors` in FlexMeasures' nested field-error shape."""

    def __init__(self, errors: dict[str, Any]) -> None:
        self.errors = errors
        super().__init__(", ".join(sorted(errors)))


@dataclass(frozen=True, slots=True)
class Regressor:
    """A sensor whose values help the forecast, optionally of some sources only."""

    sensor: int
    source_id: int | None = None
    source_type: str | None = None
    source_account_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The job payload form."""
        return {
            "sensor": self.sensor,
            "source_id": self.source_id,
            "source_type": self.source_type,
            "source_account_id": self.source_account_id,
        }


@dataclass(frozen=True, slots=True)
class Trigger:
    """A parsed forecast trigger, on the sensor's grid (ms since the epoch)."""

    start_ms: int
    end_ms: int
    belief_time_ms: int
    max_horizon_ms: int
    frequency_ms: int
    viewpoints: int
    train_period_ms: int | None
    train_start_ms: int | None
    past: tuple[Regressor, ...]
    future: tuple[Regressor, ...]
    missing_threshold: float
    lower: float | None
    upper: float | None
    config: dict[str, Any] = field(default_factory=dict)

    def job_request(self, sensor_id: int) -> dict[str, Any]:
        """The forecasting job's request (JSON) for this trigger on that sensor."""
        return {
            "sensor": sensor_id,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "belief_time_ms": self.belief_time_ms,
            "max_horizon_ms": self.max_horizon_ms,
            "frequency_ms": self.frequency_ms,
            "viewpoints": self.viewpoints,
            "train_period_ms": self.train_period_ms,
            "train_start_ms": self.train_start_ms,
            "missing_threshold": self.missing_threshold,
            "lower": self.lower,
            "upper": self.upper,
            "past_regressors": [r.as_json() for r in self.past],
            "future_regressors": [r.as_json() for r in self.future],
            "config": self.config,
        }

    def sensor_ids(self) -> list[int]:
        """The regressors' sensors, each once, in order of mention."""
        return list(dict.fromkeys(r.sensor for r in (*self.future, *self.past)))


class _Errors:
    def __init__(self) -> None:
        self.top: dict[str, Any] = {}
        self.config: dict[str, Any] = {}

    def fail(self, name: str, message: str, *, config: bool = False) -> None:
        target = self.config if config else self.top
        found = target.setdefault(name, [])
        if isinstance(found, list):
            found.append(message)

    def all(self) -> dict[str, Any]:
        out = dict(self.top)
        if self.config:
            out["config"] = self.config
        return out


def _datetime(
    errors: _Errors, data: dict[str, Any], name: str, *, config: bool = False
) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    try:
        return to_epoch_ms(parse_datetime(value))
    except TimingError as err:
        errors.fail(name, str(err), config=config)
        return None


def _duration(
    errors: _Errors, data: dict[str, Any], name: str, *, config: bool = False
) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    try:
        return parse_duration(value, allow_zero=False, allow_negative=False)
    except TimingError as err:
        errors.fail(name, str(err), config=config)
        return None


def parse_trigger(data: dict[str, Any], *, resolution_ms: int, now_ms: int) -> Trigger:
    """Validate a trigger body for a sensor of this resolution; raise TriggerError."""
    errors = _Errors()
    if len({"start", "end", "duration"} & data.keys()) > 2:
        raise TriggerError(
            {
                "duration": [
                    "Provide 'duration' with either 'start' or 'end', but not with "
                    "both."
                ]
            }
        )
    data = {k: v for k, v in data.items() if v is not None}
    for key in data:
        if key not in TOP_FIELDS:
            errors.fail(key, UNKNOWN_FIELD)
    start = _datetime(errors, data, "start")
    end = _datetime(errors, data, "end")
    prior = _datetime(errors, data, "prior")
    duration = _duration(errors, data, "duration")
    max_horizon = _duration(errors, data, "max-forecast-horizon")
    frequency = _duration(errors, data, "forecast-frequency")
    probabilistic = data.get("probabilistic", False)
    if not isinstance(probabilistic, bool):
        errors.fail("probabilistic", NOT_A_BOOLEAN)
    elif probabilistic:
        errors.fail("probabilistic", NOT_SUPPORTED)
    raw_config = data.get("config", {})
    if not isinstance(raw_config, dict):
        errors.fail("config", NOT_A_MAPPING)
        raw_config = {}
    config = _parse_config(errors, raw_config)
    if resolution_ms <= 0:
        errors.fail(
            "sensor", "Forecasts need a sensor with a resolution (not instantaneous)."
        )
    for name, value in (
        ("max-forecast-horizon", max_horizon),
        ("forecast-frequency", frequency),
    ):
        if value is not None and resolution_ms > 0 and value % resolution_ms:
            errors.fail(
                name,
                f"{name} must be a multiple of the sensor resolution "
                f"({timedelta_text(resolution_ms)})",
            )
    if errors.all():
        raise TriggerError(errors.all())
    # As FlexMeasures' ForecasterParametersSchema.resolve_config.
    floored_now = floor_to_resolution(now_ms, resolution_ms)
    if start is None:
        if duration is not None and end is not None:
            start = end - duration
        else:
            start = floored_now
            if end is not None and start >= end:
                raise TriggerError(
                    {"end": [f"Resolved predict start is not before end ({end})."]}
                )
        belief_time = prior if prior is not None else now_ms
    else:
        belief_time = prior if prior is not None else start
    # On the sensor's grid (FlexMeasures forecasts from the moment given).
    start = floor_to_resolution(start, resolution_ms)
    if end is None:
        end = start + (duration if duration is not None else DEFAULT_DURATION_MS)
    if end <= start:
        raise TriggerError({"start": ["start must be before end"]})
    end = start + -(-(end - start) // resolution_ms) * resolution_ms
    period = end - start
    if max_horizon is not None and duration is not None and max_horizon < period:
        raise TriggerError(
            {
                "max_forecast_horizon": [
                    "This combination of parameters will not yield forecasts for the "
                    "entire prediction window."
                ]
            }
        )
    if max_horizon is None:
        max_horizon = period
    elif max_horizon > period:
        raise TriggerError(
            {
                "max_forecast_horizon": [
                    "max-forecast-horizon must be less than or equal to predict-period"
                ]
            }
        )
    elif max_horizon < period and frequency is None:
        period = max_horizon
        end = start + period
    if frequency is None:
        frequency = min(max_horizon, period)
    viewpoints = max(period // frequency, 1)
    if viewpoints > MAX_VIEWPOINTS:
        raise TriggerError(
            {
                "forecast-frequency": [
                    f"This would make {viewpoints} forecasts (one per "
                    f"forecast-frequency); this server makes at most {MAX_VIEWPOINTS} "
                    "per trigger."
                ]
            }
        )
    if max_horizon // resolution_ms > MAX_STEPS:
        raise TriggerError(
            {
                "duration": [
                    f"At most {MAX_STEPS} values per forecast "
                    f"({format_duration(MAX_STEPS * resolution_ms)} at this "
                    "sensor's resolution)."
                ]
            }
        )
    return Trigger(
        start_ms=start,
        end_ms=end,
        belief_time_ms=belief_time,
        max_horizon_ms=max_horizon,
        frequency_ms=frequency,
        viewpoints=viewpoints,
        train_period_ms=config.train_period_ms,
        train_start_ms=config.train_start_ms,
        past=config.past,
        future=config.future,
        missing_threshold=config.missing_threshold,
        lower=config.lower,
        upper=config.upper,
        config=config.echo,
    )


@dataclass(slots=True)
class _Config:
    past: tuple[Regressor, ...] = ()
    future: tuple[Regressor, ...] = ()
    train_period_ms: int | None = None
    train_start_ms: int | None = None
    missing_threshold: float = 1.0
    lower: float | None = None
    upper: float | None = None
    echo: dict[str, Any] = field(default_factory=dict)


def _parse_config(errors: _Errors, data: dict[str, Any]) -> _Config:
    out = _Config()
    for key in data:
        if key not in CONFIG_FIELDS:
            errors.fail(key, UNKNOWN_FIELD, config=True)
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        errors.fail("model", NOT_A_STRING, config=True)
    lists: dict[str, list[Regressor]] = {}
    for name in ("future-regressors", "past-regressors", "regressors"):
        lists[name] = _regressors(errors, data, name)
    both = lists["regressors"]
    future = lists["future-regressors"] + [
        r for r in both if r not in lists["future-regressors"]
    ]
    past = lists["past-regressors"] + [
        r for r in both if r not in lists["past-regressors"]
    ]
    out.future, out.past = tuple(future), tuple(past)
    for name in ("annotation-regressors", "snap", "model-params"):
        value = data.get(name)
        if value not in (None, [], {}):
            errors.fail(name, NOT_SUPPORTED, config=True)
    threshold = data.get("missing-threshold", 1.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        errors.fail("missing-threshold", NOT_A_NUMBER, config=True)
    elif threshold < 0:
        errors.fail(
            "missing-threshold",
            "Must be greater than or equal to 0.",
            config=True,
        )
    else:
        out.missing_threshold = float(threshold)
    positive = data.get("ensure-positive", False)
    if positive is not None and not isinstance(positive, bool):
        errors.fail("ensure-positive", NOT_A_BOOLEAN, config=True)
    for name in ("lower", "upper"):
        bound = data.get(name)
        if bound is None:
            continue
        if (
            isinstance(bound, bool)
            or not isinstance(bound, int | float)
            or not math.isfinite(bound)
        ):
            errors.fail(
                name,
                "Must be a number (in the sensor's unit); quantity strings are "
                "not supported by this server.",
                config=True,
            )
        elif name == "lower":
            out.lower = float(bound)
        else:
            out.upper = float(bound)
    if positive is True:
        out.lower = max(out.lower, 0.0) if out.lower is not None else 0.0
    period = data.get("train-period")
    deprecated = data.get("max-training-period")
    for name, value in (("train-period", period), ("max-training-period", deprecated)):
        if value is None:
            continue
        length = _duration(errors, data, name, config=True)
        if length is None:
            continue
        if length < MIN_TRAIN_PERIOD_MS:
            errors.fail(
                "train-period",
                "train-period must be at least 2 days (48 hours)",
                config=True,
            )
        elif out.train_period_ms is None or length < out.train_period_ms:
            out.train_period_ms = length
    retrain = _duration(errors, data, "retrain-frequency", config=True)
    if retrain is not None and retrain < HOUR_MS:
        errors.fail(
            "retrain-frequency",
            "retrain-frequency must be at least 1 hour",
            config=True,
        )
    if "train-start" in data:
        out.train_start_ms = _datetime(errors, data, "train-start", config=True)
    # What decides the forecast: the data source is one per distinct config.
    out.echo = {
        "future-regressors": [r.as_json() for r in out.future],
        "past-regressors": [r.as_json() for r in out.past],
        "train-period-ms": out.train_period_ms,
        "train-start-ms": out.train_start_ms,
        "missing-threshold": out.missing_threshold,
        "lower": out.lower,
        "upper": out.upper,
    }
    return out


def _regressors(errors: _Errors, data: dict[str, Any], name: str) -> list[Regressor]:
    raw = data.get(name, [])
    if not isinstance(raw, list):
        errors.fail(name, NOT_A_LIST, config=True)
        return []
    found: list[Regressor] = []
    problems: dict[str, list[str]] = {}
    for index, item in enumerate(raw):
        try:
            found.append(_regressor(item))
        except ValueError as err:
            problems[str(index)] = [str(err)]
    if problems:
        errors.config[name] = problems
    return found


def _sensor_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise ValueError(NOT_AN_INTEGER)
    return value


def _regressor(item: Any) -> Regressor:
    if not isinstance(item, dict):
        return Regressor(_sensor_id(item))
    if "sensor" not in item:
        raise ValueError(f"sensor: {MISSING}")
    sensor = _sensor_id(item["sensor"])
    filters: dict[str, Any] = {}
    for key, value in item.items():
        if key == "sensor" or value is None:
            continue
        target = REFERENCE_FILTERS.get(key)
        if target is None or not isinstance(value, list) or len(value) > 1:
            raise ValueError(
                f"{key}: {NOT_SUPPORTED} Sensor references may filter by one of "
                "'sources', 'source-types' or 'source-account', with one value."
            )
        if not value:
            continue
        one = value[0]
        if target == "source_type":
            if not isinstance(one, str):
                raise ValueError(f"{key}: {NOT_A_STRING}")
            filters[target] = one
        else:
            filters[target] = _sensor_id(one)
    return Regressor(sensor, **filters)


def unknown_sensor(config: Any, sensor_id: int) -> dict[str, Any]:
    """FlexMeasures' config errors for a regressor sensor that does not exist."""
    errors: dict[str, Any] = {}
    if not isinstance(config, dict):
        return errors
    message = [f"No sensor found with ID {sensor_id}."]
    for name in ("future-regressors", "past-regressors", "regressors"):
        items = config.get(name)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            found = item.get("sensor") if isinstance(item, dict) else item
            if found == sensor_id:
                errors.setdefault(name, {})[str(index)] = message
    return errors
