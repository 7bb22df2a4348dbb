"""Property tests of the forecast trigger parser."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tenant_service.forecasting.params import Trigger, TriggerError, parse_trigger
from tenant_service.timing import format_duration, from_epoch_ms

HOUR = 3_600_000
NOW = 494_444 * HOUR  # 2026-05-28T20:00Z
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
TOP = st.sampled_from(
    [
        "start",
        "end",
        "duration",
        "prior",
        "max-forecast-horizon",
        "forecast-frequency",
        "probabilistic",
        "config",
        "output-path",
    ]
)
CONFIG = st.sampled_from(
    [
        "future-regressors",
        "past-regressors",
        "regressors",
        "train-period",
        "missing-threshold",
        "lower",
        "upper",
        "model",
        "snap",
    ]
)
VALUES = (
    JSON
    | st.sampled_from(["PT1H", "P2D", "PT90M", "P1D", "PT0H", "P1Y", "x"])
    | st.sampled_from(["2026-03-15T00:00:00+00:00", "2026-03-15T00:30:00+01:00"])
)


def check(trigger: Trigger, resolution: int) -> None:
    assert trigger.start_ms % resolution == 0
    assert trigger.end_ms > trigger.start_ms
    assert (trigger.end_ms - trigger.start_ms) % resolution == 0
    assert trigger.max_horizon_ms % resolution == 0
    assert 0 < trigger.max_horizon_ms <= trigger.end_ms - trigger.start_ms
    assert trigger.viewpoints >= 1
    assert trigger.frequency_ms > 0


@given(
    st.dictionaries(TOP, VALUES, max_size=5),
    st.dictionaries(CONFIG, VALUES, max_size=4),
    st.sampled_from([HOUR // 4, HOUR, 0]),
)
def test_parse_trigger_only_trigger_errors(
    body: dict[str, Any], config: dict[str, Any], resolution: int
) -> None:
    if config:
        body = {**body, "config": config}
    try:
        trigger = parse_trigger(body, resolution_ms=resolution, now_ms=NOW)
    except TriggerError as err:
        errors = err.errors
    else:
        check(trigger, resolution)
        return
    assert errors


@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=1, max_value=200),
    st.sampled_from([HOUR // 4, HOUR]),
)
def test_parse_trigger_window_round_trip(
    hours_after: int, steps: int, resolution: int
) -> None:
    start = NOW + hours_after * HOUR
    body = {
        "start": from_epoch_ms(start).isoformat(),
        "duration": format_duration(steps * resolution),
    }
    trigger = parse_trigger(body, resolution_ms=resolution, now_ms=NOW)
    check(trigger, resolution)
    assert (trigger.start_ms, trigger.end_ms) == (start, start + steps * resolution)
    assert trigger.belief_time_ms == start
    assert trigger.viewpoints == 1
