"""The forecasting job function: read history, forecast, store the forecast.

RQ runs `run_forecast_job` on the tenant's scheduling queue, in the scheduling
worker (on the engine of the tenant whose queue it came from, `run_for_tenant`). Per
viewpoint (one, unless `forecast-frequency` asks for more) the job reads, as known
at the viewpoint's belief time (belief time <= it), the target sensor's history
(latest belief per event, on its own resolution, in its own unit), the past
regressors up to the viewpoint and the future regressors up to the end of the
forecast, calls the model (`model.forecast`) and stores its values as beliefs of
the sensor: belief time = the viewpoint's belief time, so each horizon is the
event's end minus it (1 h ... 48 h for 48 hourly values), under a "forecaster"
data source per model version and config. Re-running replaces the stored values.

A regressor with no value known at the belief time (FlexMeasures fills it with
zeros and finishes) fails the job with a message saying so.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenant_service.beliefs import Belief
from tenant_service.forecasting.model import (
    DEFAULT_TRAIN_PERIOD_MS,
    ForecastConfig,
    ForecastError,
    Series,
    forecast,
)
from tenant_service.scheduling.job import (
    read_series,
    remember_failure,
    run_for_tenant,
)
from tenant_service.store import beliefs as belief_store
from tenant_service.store import sources as source_store
from tenant_service.store.sensors import SensorRecord, get_sensor
from tenant_service.timing import from_epoch_ms

logger = logging.getLogger(__name__)

FORECASTER_NAME: Final = "flexhost forecaster"
FORECASTER_TYPE: Final = "forecaster"
FORECASTER_MODEL: Final = "LightGBM"
FORECASTER_VERSION: Final = "1"
DAY_MS: Final = 86_400_000
# Read before the training window too, for features over the past week.
LAG_MARGIN_MS: Final = 8 * DAY_MS


def run_forecast_job(request: dict[str, Any]) -> dict[str, Any]:
    """The job function: make and store one forecast (see the module docstring)."""
    try:
        return run_for_tenant(compute, request)
    except ForecastError as err:
        # The same inputs would fail again: no retry.
        remember_failure(err, retry=False)
        raise
    except Exception as err:
        remember_failure(err, retry=True)
        raise


def source_attributes(config: dict[str, Any]) -> dict[str, Any]:
    """The forecaster data source's attributes for a trigger's config."""
    return {
        "model": FORECASTER_MODEL,
        "version": FORECASTER_VERSION,
        "config": config,
    }


async def compute(engine: AsyncEngine, request: dict[str, Any]) -> dict[str, Any]:
    """Forecast each viewpoint, store all values in one transaction; the result."""
    started = time.perf_counter()
    sensor_id = int(request["sensor"])
    start_ms, end_ms = int(request["start_ms"]), int(request["end_ms"])
    belief_ms = int(request["belief_time_ms"])
    frequency_ms, horizon_ms = (
        int(request["frequency_ms"]),
        int(request["max_horizon_ms"]),
    )
    viewpoints = int(request["viewpoints"])
    train_period = request.get("train_period_ms")
    train_start = request.get("train_start_ms")
    lower, upper = request.get("lower"), request.get("upper")
    async with engine.connect() as conn:
        sensor = await _sensor(conn, sensor_id)
        config = ForecastConfig(
            train_period_ms=None if train_period is None else int(train_period),
            max_forecast_horizon_ms=horizon_ms,
            timezone=sensor.timezone or None,  # the calendar features' zone
        )
        step = sensor.event_resolution_ms
        if step <= 0 or start_ms % step or end_ms % step:
            raise ForecastError(
                f"Sensor {sensor_id}'s resolution changed since the trigger."
            )
        regressors = {
            int(r["sensor"]): await _sensor(conn, int(r["sensor"]))
            for r in (*request["past_regressors"], *request["future_regressors"])
        }
        history_ms = (
            int(train_period) if train_period is not None else DEFAULT_TRAIN_PERIOD_MS
        ) + LAG_MARGIN_MS
        beliefs: list[Belief] = []
        read_ms = fit_ms = 0.0
        for k in range(viewpoints):
            viewpoint = start_ms + k * frequency_ms
            known_at = belief_ms + k * frequency_ms
            until = min(viewpoint + horizon_ms, end_ms)
            if until <= viewpoint:
                break
            steps = (until - viewpoint) // step
            first = viewpoint - history_ms
            if train_start is not None:
                first = max(first, int(train_start) - LAG_MARGIN_MS)
            first -= first % step
            t0 = time.perf_counter()
            target = await _history(conn, sensor, first, viewpoint, known_at)
            _check_missing(target, float(request.get("missing_threshold", 1.0)))
            past = [
                await _regressor(
                    conn, regressors, r, (first, first, viewpoint), step, known_at
                )
                for r in request["past_regressors"]
            ]
            future = [
                await _regressor(
                    conn, regressors, r, (first, viewpoint, until), step, known_at
                )
                for r in request["future_regressors"]
            ]
            t1 = time.perf_counter()
            values = forecast(
                target,
                start_ms=viewpoint,
                steps=steps,
                past_regressors=past,
                future_regressors=future,
                config=config,
            )
            fit_ms += (time.perf_counter() - t1) * 1000
            read_ms += (t1 - t0) * 1000
            out = np.asarray(values, dtype=np.float64)[:steps]
            if out.shape != (steps,) or not np.isfinite(out).all():
                raise ForecastError("The model gave no finite value for every step.")
            if lower is not None or upper is not None:
                out = np.clip(out, lower, upper)
            beliefs += [
                Belief(
                    event_start=viewpoint + i * step,
                    belief_horizon=viewpoint + (i + 1) * step - known_at,
                    value=float(v) + 0.0,
                )
                for i, v in enumerate(out.tolist())
            ]
        stored_at = time.perf_counter()
        source_id = await source_store.named_source_id(
            conn,
            FORECASTER_NAME,
            FORECASTER_TYPE,
            FORECASTER_MODEL,
            FORECASTER_VERSION,
            attributes=source_attributes(request["config"]),
        )
        # A later viewpoint's beliefs win where viewpoints overlap (same key:
        # only when belief times coincide, which they do not).
        await belief_store.save_beliefs(
            conn, sensor.id, source_id, beliefs, allow_overwrite=True
        )
        await conn.commit()
    timings = {
        "read_ms": round(read_ms, 2),
        "fit_ms": round(fit_ms, 2),
        "store_ms": round((time.perf_counter() - stored_at) * 1000, 2),
        "total_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    logger.info("forecast computed", extra=timings)
    return {
        "source_id": source_id,
        "sensor": sensor.id,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "belief_time_ms": belief_ms + (viewpoints - 1) * frequency_ms,
        "num-beliefs": len(beliefs),
        **timings,
    }


async def _sensor(conn: AsyncConnection, sensor_id: int) -> SensorRecord:
    record = await get_sensor(conn, sensor_id)
    if record is None:
        raise ForecastError(f"Sensor {sensor_id} no longer exists.")
    return record


async def _history(
    conn: AsyncConnection, sensor: SensorRecord, first: int, end: int, known_at: int
) -> Series:
    step = sensor.event_resolution_ms
    read = belief_store.ReadFilter(prior_ms=known_at)
    values = await read_series(conn, sensor, first, end, step, read)
    return Series(first, step, _array(values))


def _array(values: list[float | None]) -> npt.NDArray[np.float64]:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _check_missing(target: Series, threshold: float) -> None:
    """FlexMeasures' missing-threshold: the share of missing history allowed."""
    size = target.values.size
    missing = int(np.isnan(target.values).sum())
    if size and missing / size > threshold:
        raise ForecastError(
            f"{missing} of {size} values of the history are missing, more than the "
            f"missing-threshold of {threshold:g} allows."
        )


async def _regressor(
    conn: AsyncConnection,
    records: dict[int, SensorRecord],
    regressor: dict[str, Any],
    window: tuple[int, int, int],
    step: int,
    known_at: int,
) -> Series:
    """A regressor on the target's grid, read over [first, end).

    ForecastError when none of its values in [check_from, end) is known.
    """
    first, check_from, end = window
    record = records[int(regressor["sensor"])]
    read = belief_store.ReadFilter(
        prior_ms=known_at,
        source_id=regressor.get("source_id"),
        source_type=regressor.get("source_type"),
        source_account_id=regressor.get("source_account_id"),
    )
    values = _array(await read_series(conn, record, first, end, step, read))
    checked = values[(check_from - first) // step :]
    if checked.size == 0 or np.isnan(checked).all():
        kind = "past" if check_from == first else "future"
        when = from_epoch_ms(known_at).isoformat()
        where = "before the forecast" if kind == "past" else "in the forecast window"
        raise ForecastError(
            f"The {kind} regressor (sensor {record.id}) has no values {where} known "
            f"at {when}; post its data with a belief time (prior or horizon) at or "
            "before that time."
        )
    return Series(first, step, values)
