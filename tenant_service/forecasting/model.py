"""Point forecasts of one sensor's series: boosted trees plus a residual correction.

Two stages, both trained afresh on every call (no model is stored):

1. *Profile*: LightGBM on what is known for every step in advance: calendar
   features (hour of day, fractional at sub-hourly resolutions; day of week, in the
   sensor's time zone) and the future regressors at that step (e.g. the weather
   forecast). Trees split on the calendar together but on each regressor alone, so
   the profile is a daily/weekly shape plus one response curve per regressor.
   History values far off a quick first fit, and off their neighbours, are outliers
   and left out.
2. *Level*: the profile's residuals are autocorrelated (weather the model does not
   see, a trend, slow drifts, level shifts). For every horizon h = 1..H one linear
   model maps what is known at an origin (the last residual, the mean residual over
   the last 6 h, day and week, and the past regressors' last day) to the residual h
   steps later. All horizons are one ridge solve with H right-hand sides, so this
   "direct" multi-horizon correction costs almost nothing, unlike one tree model per
   horizon or a recursive forecast.

The forecast is profile + level. Everything is deterministic (fixed seeds, one
thread). This module imports nothing from aiohttp or the database. Time on
FlexMeasures' benchmark data (bench/forecast.py): 20-40 ms for 48 hourly values
from 60 days, 50-90 ms for 192 quarter-hours.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
# 1970-01-01 was a Thursday; with Monday = 0 that is day 3.
_EPOCH_WEEKDAY: Final = 3
DEFAULT_TRAIN_PERIOD_MS: Final = 60 * DAY_MS
MIN_HISTORY_MS: Final = 2 * DAY_MS  # FlexMeasures' smallest train-period


@dataclass(frozen=True, slots=True)
class Series:
    """A regular series: value i is for the event from start_ms + i * resolution_ms."""

    start_ms: int  # UTC epoch ms of the first value's event start
    resolution_ms: int  # > 0
    values: Array  # float64, NaN where unknown


class ForecastError(Exception):
    """The forecast cannot be made; the message is meant for the API user."""


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """How to train; the defaults are chosen on the benchmark (bench/forecast.py)."""

    # History to train on, up to the forecast start. None: DEFAULT_TRAIN_PERIOD_MS.
    train_period_ms: int | None = None
    # Horizons beyond this reuse this horizon's level correction. None: all steps.
    max_forecast_horizon_ms: int | None = None
    # LightGBM, chosen on the benchmark's data sets (its seed and five others)
    n_estimators: int = 300
    learning_rate: float = 0.08
    num_leaves: int = 7
    min_data_in_leaf: int = 20
    seed: int = 42
    # Trees split on the calendar together, but on each regressor alone: the profile is
    # a daily/weekly shape plus one response curve per regressor (more robust on short
    # histories than letting every tree mix them).
    additive: bool = True
    # History values further than this many robust standard deviations off a first
    # quick fit (and off their neighbours' deviation from it) are outliers, left out
    # of training; 0: keep all.
    outlier_k: float = 5.0
    # Calendar features in this IANA time zone (the sensor's); None: UTC.
    timezone: str | None = None


def _fmt_duration(ms: int) -> str:
    hours = ms / HOUR_MS
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    if hours == int(hours):
        return f"{int(hours)} hour{'s' if hours != 1 else ''}"
    return f"{ms / 60_000:g} minutes"


def _align(reg: Series, grid_start_ms: int, res_ms: int, n: int, what: str) -> Array:
    """The regressor on the target grid [grid_start_ms, + n * res_ms), NaN if unknown.

    Finer regressors are averaged over each target step (ignoring NaN), coarser ones are
    forward-filled (each target step takes the value of the regressor step it falls in).
    """
    r = reg.resolution_ms
    if r <= 0:
        raise ForecastError(f"{what} has a resolution of {r} ms; it must be positive.")
    vals = np.asarray(reg.values, dtype=np.float64)
    vals = np.where(np.isfinite(vals), vals, np.nan)
    out = np.full(n, np.nan)
    if res_ms % r == 0:  # same or finer: mean of `k` regressor values per target step
        k = res_ms // r
        offset = grid_start_ms - reg.start_ms
        if offset % r:
            raise ForecastError(
                f"{what} (resolution {_fmt_duration(r)}) is not aligned with the "
                "target's steps."
            )
        first = offset // r  # regressor index of the grid's first value
        idx = first + np.arange(n * k)
        ok = (idx >= 0) & (idx < len(vals))
        fine = np.full(n * k, np.nan)
        fine[ok] = vals[idx[ok]]
        blocks = fine.reshape(n, k)
        counts = np.sum(~np.isnan(blocks), axis=1)
        sums = np.nansum(blocks, axis=1)
        has = counts > 0
        out[has] = sums[has] / counts[has]
        return out
    if r % res_ms == 0:  # coarser: forward-fill
        if (reg.start_ms - grid_start_ms) % res_ms:
            raise ForecastError(
                f"{what} (resolution {_fmt_duration(r)}) is not aligned with the "
                "target's steps."
            )
        t = grid_start_ms + np.arange(n, dtype=np.int64) * res_ms
        idx = (t - reg.start_ms) // r
        ok = (idx >= 0) & (idx < len(vals))
        out[ok] = vals[idx[ok]]
        return out
    raise ForecastError(
        f"{what} has a resolution of {_fmt_duration(r)}, which cannot be aligned "
        f"with the target's {_fmt_duration(res_ms)} "
        "(one must be a multiple of the other)."
    )


def _calendar(t_ms: npt.NDArray[np.int64], tz: str | None) -> tuple[Array, Array]:
    """(hour of day, fractional; day of week, Monday = 0) in zone tz (None: UTC)."""
    if tz is not None:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ForecastError(f"Unknown time zone {tz!r}.") from err
        # UTC offsets change on whole hours: look each hour up once
        hours, inverse = np.unique(t_ms // HOUR_MS, return_inverse=True)
        offsets = [
            datetime.fromtimestamp(int(h) * 3600, UTC).astimezone(zone).utcoffset()
            for h in hours
        ]
        offsets_ms = np.array(
            [0 if o is None else o // timedelta(milliseconds=1) for o in offsets],
            dtype=np.int64,
        )
        t_ms = t_ms + offsets_ms[inverse]
    hod = (t_ms % DAY_MS) / HOUR_MS
    dow = ((t_ms // DAY_MS + _EPOCH_WEEKDAY) % 7).astype(np.float64)
    return hod.astype(np.float64), dow


def _trailing_mean(x: Array, window: int) -> Array:
    """Mean of the last `window` values up to and including each index, ignoring NaN."""
    known = ~np.isnan(x)
    csum = np.concatenate(([0.0], np.cumsum(np.where(known, x, 0.0))))
    ccount = np.concatenate(([0], np.cumsum(known)))
    hi = np.arange(1, len(x) + 1)
    lo = np.maximum(hi - window, 0)
    count = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


def _centred_median(x: Array, window: int) -> Array:
    """Median of the `window` values centred on each index, ignoring NaN."""
    half = window // 2
    padded = np.concatenate((np.full(half, np.nan), x, np.full(half, np.nan)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: NaN
        return np.asarray(np.nanmedian(windows, axis=1), dtype=np.float64)


def _robust_sd(x: Array) -> float:
    """1.4826 x the median absolute deviation: the standard deviation, were x normal."""
    return float(np.median(np.abs(x - np.median(x)))) * 1.4826 if len(x) else 0.0


def _lgb_params(config: ForecastConfig, n_features: int, n_rows: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "objective": "regression",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        # short histories (two days of hours) need smaller leaves to show a day's shape
        "min_data_in_leaf": min(config.min_data_in_leaf, max(3, n_rows // 50)),
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": 1,  # tiny data: threads cost more than they save
        "verbose": -1,
    }
    if config.additive and n_features > 2:
        params["interaction_constraints"] = [[0, 1]] + [
            [j] for j in range(2, n_features)
        ]
    return params


def preload() -> None:
    """Import LightGBM now (~0.3 s), e.g. when a worker starts, not in its first job."""
    import lightgbm  # noqa: F401


def forecast(
    target: Series,
    *,
    start_ms: int,
    steps: int,
    past_regressors: Sequence[Series] = (),
    future_regressors: Sequence[Series] = (),
    config: ForecastConfig = ForecastConfig(),
) -> Array:
    """`steps` values on the target's grid from start_ms (see the module docstring)."""
    import lightgbm as lgb  # imported here: ~0.3 s, only the worker needs it

    res = target.resolution_ms
    if res <= 0:
        raise ForecastError(
            f"The target has a resolution of {res} ms; it must be positive."
        )
    if steps <= 0:
        raise ForecastError(
            "Nothing to forecast: the number of steps must be positive."
        )
    if (start_ms - target.start_ms) % res:
        raise ForecastError(
            f"The forecast start is not on the sensor's {_fmt_duration(res)} grid."
        )
    train_ms = config.train_period_ms or DEFAULT_TRAIN_PERIOD_MS
    if train_ms < MIN_HISTORY_MS:
        raise ForecastError(
            f"The train period is {_fmt_duration(train_ms)}; at least "
            f"{_fmt_duration(MIN_HISTORY_MS)} are needed."
        )
    n_hist = -(-train_ms // res)  # steps of history used
    grid_start = start_ms - n_hist * res
    n = n_hist + steps
    # the target on the grid; nothing at or after start_ms is used
    y = _align(target, grid_start, res, n, "The target")
    y[n_hist:] = np.nan
    n_known = int(np.sum(~np.isnan(y[:n_hist])))
    need = -(-MIN_HISTORY_MS // res)
    if n_known < need:
        raise ForecastError(
            f"Too little history to forecast: {_fmt_duration(n_known * res)} of data "
            f"in the train period ({_fmt_duration(n_hist * res)} before the start); "
            f"at least {_fmt_duration(need * res)} are needed."
        )

    t = grid_start + np.arange(n, dtype=np.int64) * res
    hod, dow = _calendar(t, config.timezone)
    cols = [hod, dow]
    for i, reg in enumerate(future_regressors):
        x = _align(reg, grid_start, res, n, f"Future regressor {i + 1}")
        if np.isnan(x[n_hist:]).all():
            raise ForecastError(
                f"Future regressor {i + 1} has no values in the forecast window; "
                "it must cover the period to forecast."
            )
        if np.isnan(x[:n_hist]).all():
            raise ForecastError(
                f"Future regressor {i + 1} has no values in the train period, "
                "so the model cannot learn from it."
            )
        cols.append(x)
    X = np.column_stack(cols)

    hist = y[:n_hist]
    known = ~np.isnan(hist)

    # stage 1: the profile
    train = np.flatnonzero(known)
    params = _lgb_params(config, X.shape[1], len(train))

    def fit(rows: npt.NDArray[np.intp], rounds: int) -> Any:
        ds = lgb.Dataset(
            X[rows],
            label=hist[rows],
            categorical_feature=[1],
            free_raw_data=True,
            params={"verbose": -1, "max_bin": 63, "num_threads": 1},
        )
        return lgb.train(params, ds, num_boost_round=rounds, keep_training_booster=True)

    per_hour = max(1, HOUR_MS // res)
    per_day = max(1, DAY_MS // res)
    outlier = np.zeros(n_hist, dtype=bool)
    if config.outlier_k:
        # A quick first fit. Outliers are values far off it *and* off their neighbours'
        # deviation from it (the median over half a day around them), so a level shift
        # (new equipment, a new tenant) is followed, not dropped.
        dev = np.full(n_hist, np.nan)
        dev[train] = hist[train] - fit(train, config.n_estimators // 3).predict(
            X[train], num_threads=1
        )
        local = dev - _centred_median(dev, per_day // 2 + 1)
        sd = _robust_sd(local[~np.isnan(local)])
        if sd > 0:
            outlier = np.abs(local) > config.outlier_k * sd
            train = np.flatnonzero(known & ~outlier)
    profile = np.asarray(
        fit(train, config.n_estimators).predict(X, num_threads=1), dtype=np.float64
    )

    # stage 2: the level correction, fitted on in-sample residuals without the outliers
    resid = np.where(outlier, np.nan, y[:n_hist] - profile[:n_hist])
    # in units of their robust sd, so the ridge below does not depend on the unit
    rsd = _robust_sd(resid[~np.isnan(resid)]) or 1.0
    resid /= rsd
    feats = [
        _trailing_mean(resid, 1),
        _trailing_mean(resid, 6 * per_hour),
        _trailing_mean(resid, per_day),
        _trailing_mean(resid, 7 * per_day),
    ]
    for i, reg in enumerate(past_regressors):
        x = _align(reg, grid_start, res, n, f"Past regressor {i + 1}")[:n_hist]
        xk = ~np.isnan(x)
        if not xk.any():
            raise ForecastError(
                f"Past regressor {i + 1} has no values in the train period, "
                "so the model cannot learn from it."
            )
        xs = (x - np.mean(x[xk])) / (np.std(x[xk]) or 1.0)
        feats.append(_trailing_mean(xs, per_day))
    F = np.column_stack(feats)
    # unknown feature values: the next-longer window's, else 0 (the residuals' mean)
    for j in (2, 1, 0):
        F[:, j] = np.where(np.isnan(F[:, j]), F[:, j + 1], F[:, j])
    F = np.nan_to_num(F)
    # horizons with their own coefficients; later ones reuse the last
    h_max = min(steps, n_hist // 2)
    if config.max_forecast_horizon_ms:
        h_max = max(1, min(h_max, config.max_forecast_horizon_ms // res))
    # origins: with at least half a day of known residuals in the day before them, and
    # their next h_max residuals in the history
    day_known = _trailing_mean((~np.isnan(resid)).astype(np.float64), per_day)
    first = int(np.argmax(day_known >= 0.5)) if (day_known >= 0.5).any() else n_hist
    origins = np.arange(max(first, per_day - 1), n_hist - h_max)
    origins = origins[day_known[origins] >= 0.5]
    level = np.zeros(steps)
    if len(origins) >= max(per_day, 4 * (F.shape[1] + 1)):
        A = np.column_stack([np.ones(len(origins)), F[origins]])
        # A.T @ Y, where Y[o, h - 1] is the residual h steps after origin o (unknown
        # ones count as "no correction"), as one correlation per feature: Y, origins x
        # horizons, is never built
        r = np.nan_to_num(resid[origins[0] + 1 : origins[-1] + h_max + 1])
        a_full = np.zeros((origins[-1] - origins[0] + 1, A.shape[1]))
        a_full[origins - origins[0]] = A  # rows of skipped origins stay 0
        aty = np.stack(
            [np.correlate(r, a_full[:, k], mode="valid") for k in range(A.shape[1])]
        )
        # a little ridge, so short histories do not produce wild coefficients
        reg_m = 1e-3 * len(origins) * np.eye(A.shape[1])
        reg_m[0, 0] = 0.0
        coef = np.linalg.solve(A.T @ A + reg_m, aty)  # (features + 1, h_max)
        a_now = np.concatenate(([1.0], F[n_hist - 1]))
        corr = (a_now @ coef) * rsd
        level[:h_max] = corr
        level[h_max:] = corr[-1]
    return np.asarray(profile[n_hist:] + level, dtype=np.float64)
