"""Pure series handling: resampling, reindexing, belief times (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_service.beliefs import (
    MAX_VALUES,
    Belief,
    SeriesError,
    floor_to_resolution,
    reindex,
    to_beliefs,
    to_sensor_resolution,
)

QUARTER = 15 * 60 * 1000
HOUR = 4 * QUARTER
START = 1_767_225_600_000  # 2026-01-01T00:00Z

finite = st.floats(allow_nan=False, allow_infinity=False)
maybe = st.one_of(st.none(), finite)


def test_beliefs_upsample_repeats_and_downsample_means() -> None:
    assert to_sensor_resolution(START, HOUR, [1.0, 3.0], QUARTER) == [
        (START, 1.0),
        (START + QUARTER, 1.0),
        (START + 2 * QUARTER, 3.0),
        (START + 3 * QUARTER, 3.0),
    ]
    ((start, mean),) = to_sensor_resolution(START, HOUR, [1.0, 2.0, None, 4.0], HOUR)
    assert start == START
    assert mean == pytest.approx(7.0 / 3)


def test_beliefs_incompatible_resolution_message() -> None:
    with pytest.raises(SeriesError) as caught:
        to_sensor_resolution(START, 24 * HOUR, [1.0] * 95, QUARTER)
    assert str(caught.value) == (
        "Resolution of 0:15:09.473684 is incompatible with the sensor's required "
        "resolution of 0:15:00."
    )
    assert caught.value.field == "_schema"


def test_beliefs_instantaneous() -> None:
    assert to_sensor_resolution(START, 0, [5.0], 0) == [(START, 5.0)]
    assert to_sensor_resolution(START, 120_000, [1.0, 2.0], 0) == [
        (START, 1.0),
        (START + 60_000, 2.0),
    ]
    with pytest.raises(SeriesError):
        to_sensor_resolution(START, 0, [1.0, 2.0], 0)


def test_beliefs_belief_times() -> None:
    events = [(START, 1.0)]
    # prior: knowledge time (event end) minus belief time
    assert to_beliefs(events, QUARTER, prior_ms=START, horizon_ms=None, now_ms=0) == [
        Belief(START, QUARTER, 1.0)
    ]
    assert to_beliefs(events, QUARTER, prior_ms=None, horizon_ms=-5, now_ms=0) == [
        Belief(START, -5, 1.0)
    ]
    now = START + HOUR
    assert to_beliefs(events, QUARTER, prior_ms=None, horizon_ms=None, now_ms=now) == [
        Belief(START, QUARTER - HOUR, 1.0)
    ]


def test_beliefs_floor() -> None:
    assert floor_to_resolution(START + 7 * 60_000, QUARTER) == START
    assert floor_to_resolution(START + 7, 0) == START + 7


@given(
    st.lists(finite, min_size=1, max_size=50),
    st.sampled_from([2, 3, 4, 6]),
)
def test_beliefs_upsample_then_downsample_is_identity(
    values: list[float], factor: int
) -> None:
    fine = QUARTER
    coarse = fine * factor
    up = to_sensor_resolution(START, coarse * len(values), values, fine)
    assert len(up) == factor * len(values)
    down = to_sensor_resolution(START, coarse * len(values), [v for _, v in up], coarse)
    assert [v for _, v in down] == values
    assert [s for s, _ in down] == [START + i * coarse for i in range(len(values))]


@given(finite, st.integers(1, 20), st.sampled_from([2, 4, 5]))
def test_beliefs_downsample_constant(value: float, groups: int, factor: int) -> None:
    values: list[float | None] = [value] * (groups * factor)
    down = to_sensor_resolution(
        START, groups * factor * QUARTER, values, factor * QUARTER
    )
    assert [v for _, v in down] == [value] * groups


@given(st.lists(maybe, min_size=1, max_size=60))
def test_beliefs_reindex_round_trip(values: list[float | None]) -> None:
    rows = [(START + i * QUARTER, v) for i, v in enumerate(values) if v is not None]
    assert reindex(rows, START, QUARTER * len(values), QUARTER) == values
    assert reindex(iter(rows), START, QUARTER * len(values), QUARTER) == values


@given(st.lists(finite, min_size=2, max_size=40).filter(lambda v: len(v) % 2 == 0))
def test_beliefs_reindex_means_per_step(values: list[float]) -> None:
    rows = [(START + i * QUARTER, v) for i, v in enumerate(values)]
    out = reindex(rows, START, QUARTER * len(values), 2 * QUARTER)
    assert len(out) == len(values) // 2
    for i, got in enumerate(out):
        pair = values[2 * i : 2 * i + 2]
        assert got == pytest.approx(sum(p / 2 for p in pair))


@given(
    st.integers(-(2**40), 2**40),
    st.integers(-(2**40), 2**40),
    st.lists(st.one_of(maybe, st.integers(-5, 5)), max_size=30),
    st.sampled_from([0, 1, QUARTER, HOUR, 7]),
)
def test_beliefs_bad_input_raises_only_series_error(
    start: int, duration: int, values: list[float | None], resolution: int
) -> None:
    try:
        events = to_sensor_resolution(start, duration, values, resolution)
    except SeriesError:
        return
    assert len(events) <= MAX_VALUES
    assert all(v is not None for _, v in events)
