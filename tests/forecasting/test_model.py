"""The forecasting model on small synthetic series (the benchmark is bench/forecast.py)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from tenant_service.forecasting import ForecastConfig, ForecastError, Series, forecast

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_785_715_200_000  # 2026-08-03T00:00Z, a Monday
Array = npt.NDArray[np.float64]


def daily(n: int, per_hour: int = 1, seed: int = 1) -> Array:
    """A clear daily pattern (night 20, day 60) plus a little noise."""
    hours = np.arange(n) / per_hour
    shape = 40 - 20 * np.cos(2 * np.pi * (hours % 24) / 24)
    return shape + np.random.default_rng(seed).normal(0, 1, n)


def split(values: Array, n_hist: int, res: int = HOUR) -> tuple[Series, int, Array]:
    """History series, forecast start, and the truth after it."""
    return Series(T0, res, values[:n_hist].copy()), T0 + n_hist * res, values[n_hist:]


def mae(a: Array, b: Array) -> float:
    return float(np.mean(np.abs(a - b)))


def test_daily_pattern_is_forecast_well() -> None:
    values = daily(24 * 23)
    target, start, truth = split(values, 24 * 21)
    predicted = forecast(target, start_ms=start, steps=48)
    assert predicted.shape == (48,)
    assert predicted.dtype == np.float64
    naive = mae(np.full(48, np.mean(target.values)), truth)  # ~12.7
    assert mae(predicted, truth) < 0.15 * naive


def test_deterministic() -> None:
    values = daily(24 * 15)
    target, start, _ = split(values, 24 * 14)
    temp = Series(T0, HOUR, np.random.default_rng(3).normal(10, 3, 24 * 15))
    runs = [
        forecast(target, start_ms=start, steps=24, future_regressors=[temp])
        for _ in range(3)
    ]
    assert all(np.array_equal(runs[0], run) for run in runs[1:])


def test_future_regressor_that_drives_the_target_helps() -> None:
    n = 24 * 30
    rng = np.random.default_rng(7)
    temp = 12 + np.cumsum(rng.normal(0, 0.6, n))  # a wandering "weather"
    values = daily(n) + 3.0 * np.clip(15 - temp, 0, None)
    target, start, truth = split(values, n - 48)
    without = forecast(target, start_ms=start, steps=48)
    with_temp = forecast(
        target, start_ms=start, steps=48, future_regressors=[Series(T0, HOUR, temp)]
    )
    assert mae(with_temp, truth) < 0.6 * mae(without, truth)


def test_too_little_history_says_how_much() -> None:
    target, start, _ = split(daily(24 * 3), 30)
    with pytest.raises(ForecastError) as err:
        forecast(target, start_ms=start, steps=24)
    assert str(err.value) == (
        "Too little history to forecast: 30 hours of data in the train period"
        " (60 days before the start); at least 2 days are needed."
    )


def test_train_period_under_two_days_is_refused() -> None:
    target, start, _ = split(daily(24 * 10), 24 * 9)
    with pytest.raises(
        ForecastError, match="train period is 24 hours; at least 2 days"
    ):
        forecast(
            target, start_ms=start, steps=24, config=ForecastConfig(train_period_ms=DAY)
        )


def test_values_at_and_after_start_are_ignored() -> None:
    values = daily(24 * 16)
    start = T0 + 24 * 14 * HOUR
    full = forecast(Series(T0, HOUR, values), start_ms=start, steps=24)
    cut = forecast(Series(T0, HOUR, values[: 24 * 14]), start_ms=start, steps=24)
    assert np.array_equal(full, cut)


def test_outliers_are_left_out_but_a_level_shift_is_followed() -> None:
    values = daily(24 * 40)
    truth_clean = values[-48:].copy()
    spiky = values.copy()
    spiky[[100, 300, 500, 700, 900, 905]] *= [2.5, 0.1, 2.2, 0.1, 3.0, 0.1]
    target, start, _ = split(spiky, 24 * 38)
    kept = forecast(
        target, start_ms=start, steps=48, config=ForecastConfig(outlier_k=0)
    )
    left_out = forecast(target, start_ms=start, steps=48)
    assert mae(left_out, truth_clean) < 0.8 * mae(kept, truth_clean)
    shifted = values.copy()
    shifted[24 * 30 :] += 30  # e.g. new equipment, eight days before the start
    target, start, truth = split(shifted, 24 * 38)
    assert mae(forecast(target, start_ms=start, steps=48), truth) < 8  # 30 if ignored


def test_nan_gaps_in_history() -> None:
    values = daily(24 * 23)
    target, start, truth = split(values, 24 * 21)
    gappy = target.values.copy()
    gappy[24 * 5 : 24 * 7] = np.nan  # two days missing
    gappy[::7] = np.nan  # and scattered values
    gappy[-3:] = np.nan  # and the last three hours
    gappy[50] = np.inf  # non-finite values count as unknown
    predicted = forecast(Series(T0, HOUR, gappy), start_ms=start, steps=48)
    assert np.all(np.isfinite(predicted))
    assert mae(predicted, truth) < 2.0


def test_regressors_on_other_resolutions_are_aligned() -> None:
    n = 24 * 30
    rng = np.random.default_rng(11)
    temp_15 = np.repeat(12 + np.cumsum(rng.normal(0, 0.6, n)), 4)  # PT15M
    temp_1h = temp_15.reshape(n, 4).mean(axis=1)
    values = daily(n) + 3.0 * np.clip(15 - temp_1h, 0, None)
    target, start, truth = split(values, n - 48)
    on_grid = forecast(
        target, start_ms=start, steps=48, future_regressors=[Series(T0, HOUR, temp_1h)]
    )
    finer = forecast(
        target,
        start_ms=start,
        steps=48,
        future_regressors=[Series(T0, HOUR // 4, temp_15)],
    )
    # the PT15M regressor, averaged per hour, is the hourly one
    assert np.allclose(finer, on_grid)
    # a coarser (PT2H) regressor is forward-filled onto the hourly grid
    coarse = forecast(
        target,
        start_ms=start,
        steps=48,
        future_regressors=[Series(T0, 2 * HOUR, temp_1h.reshape(-1, 2).mean(axis=1))],
    )
    assert mae(coarse, truth) < 2.0
    # a past regressor on PT30M
    past = forecast(
        target,
        start_ms=start,
        steps=48,
        past_regressors=[Series(T0, HOUR // 2, np.repeat(temp_1h[: n - 48], 2))],
    )
    assert np.all(np.isfinite(past))


def test_regressor_that_cannot_be_aligned() -> None:
    target, start, _ = split(daily(24 * 10), 24 * 9)
    odd = Series(T0, 40 * 60_000, np.zeros(400))  # PT40M on a PT1H grid
    with pytest.raises(ForecastError, match="40 minutes, which cannot be aligned"):
        forecast(target, start_ms=start, steps=24, future_regressors=[odd])
    shifted = Series(T0 + 600_000, HOUR, np.zeros(400))  # hourly, 10 minutes off
    with pytest.raises(ForecastError, match="not aligned"):
        forecast(target, start_ms=start, steps=24, future_regressors=[shifted])


def test_future_regressor_must_cover_the_forecast() -> None:
    target, start, _ = split(daily(24 * 10), 24 * 9)
    history_only = Series(T0, HOUR, np.ones(24 * 9))
    with pytest.raises(ForecastError, match="no values in the forecast window"):
        forecast(target, start_ms=start, steps=24, future_regressors=[history_only])
    future_only = Series(start, HOUR, np.ones(24))
    with pytest.raises(
        ForecastError, match="Future regressor 1 has no values in the train"
    ):
        forecast(target, start_ms=start, steps=24, future_regressors=[future_only])
    with pytest.raises(
        ForecastError, match="Past regressor 1 has no values in the train"
    ):
        forecast(target, start_ms=start, steps=24, past_regressors=[future_only])


def test_fifteen_minute_steps() -> None:
    res = HOUR // 4
    values = daily(96 * 16, per_hour=4)
    target, start, truth = split(values, 96 * 14, res)
    predicted = forecast(target, start_ms=start, steps=192)
    assert predicted.shape == (192,)
    assert mae(predicted, truth) < 2.0


def test_start_off_the_grid() -> None:
    target, start, _ = split(daily(24 * 10), 24 * 9)
    with pytest.raises(ForecastError, match="not on the sensor's 1 hour grid"):
        forecast(target, start_ms=start + 60_000, steps=24)


def test_calendar_in_a_time_zone() -> None:
    # the pattern follows Amsterdam's clock, across the switch to winter time
    start_utc = 1_790_294_400_000  # 2026-09-25T00:00Z; the clocks go back on 10-25
    n = 24 * 32
    t = start_utc + np.arange(n) * HOUR
    local_hour = ((t + np.where(t < 1_792_890_000_000, 2, 1) * HOUR) % DAY) / HOUR
    values = 40 - 20 * np.cos(2 * np.pi * local_hour / 24)
    target = Series(start_utc, HOUR, values[: n - 48])
    start = start_utc + (n - 48) * HOUR
    zoned = forecast(
        target,
        start_ms=start,
        steps=48,
        config=ForecastConfig(timezone="Europe/Amsterdam"),
    )
    assert mae(zoned, values[n - 48 :]) < 1.5
    with pytest.raises(ForecastError, match="Unknown time zone 'Mars/Base'"):
        forecast(
            target, start_ms=start, steps=4, config=ForecastConfig(timezone="Mars/Base")
        )


def test_two_days_of_history_are_enough() -> None:
    values = daily(24 * 4)
    target, start, truth = split(values, 48)
    predicted = forecast(target, start_ms=start, steps=48)
    assert mae(predicted, truth) < 0.25 * mae(
        np.full(48, np.mean(target.values)), truth
    )


def test_max_forecast_horizon() -> None:
    values = daily(24 * 16)
    target, start, truth = split(values, 24 * 14)
    capped = forecast(
        target,
        start_ms=start,
        steps=48,
        config=ForecastConfig(max_forecast_horizon_ms=6 * HOUR),
    )
    full = forecast(target, start_ms=start, steps=48)
    # the same profile; the level correction up to the cap from (a few more) origins
    assert np.allclose(capped[:6], full[:6], atol=0.2)
    assert mae(capped, truth) < 2.0
