"""Pure time-series handling of sensor data: series to beliefs, beliefs to a window.

All times are integer milliseconds since the epoch (UTC), all durations integer
milliseconds. No aiohttp, no SQL, no datetime objects per value. Every bad input
raises `SeriesError` naming the field of FlexMeasures' request schema (`_schema`
for object-level problems).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

MAX_VALUES: Final = 1_000_000
SCHEMA: Final = "_schema"
# Default read resolutions of instantaneous sensors: the finest giving at most
# MAX_DEFAULT_POINTS values over the window (else one value for the window).
INSTANTANEOUS_STEPS_MS: Final = (
    60_000,
    300_000,
    900_000,
    3_600_000,
    86_400_000,
)
MAX_DEFAULT_POINTS: Final = 1_000


class SeriesError(ValueError):
    """A series that cannot be stored or read as asked; `field` names the input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Belief:
    """One belief to store: event start and belief horizon (ms), and value."""

    event_start: int
    belief_horizon: int
    value: float


def timedelta_text(ms: float) -> str:
    """Python's str() of a timedelta of `ms` milliseconds, as FlexMeasures prints."""
    return str(dt.timedelta(microseconds=round(ms * 1000)))


def incompatible_resolution(frequency_ms: float, resolution_ms: int) -> SeriesError:
    """FlexMeasures' message for a frequency that does not fit the sensor."""
    return SeriesError(
        SCHEMA,
        f"Resolution of {timedelta_text(frequency_ms)} is incompatible with the "
        f"sensor's required resolution of {timedelta_text(resolution_ms)}.",
    )


def to_sensor_resolution(
    start_ms: int,
    duration_ms: int,
    values: Sequence[float | None],
    resolution_ms: int,
) -> list[tuple[int, float]]:
    """(event start, value) pairs at the sensor resolution; nulls are dropped.

    Coarser data is upsampled by repeating, finer data downsampled by the mean of
    the present values. Instantaneous sensors (resolution 0) keep the frequency.
    """
    count = len(values)
    if count == 0:
        raise SeriesError("values", "Shorter than minimum length 1.")
    if count > MAX_VALUES:
        raise SeriesError("values", f"Longer than maximum length {MAX_VALUES}.")
    if duration_ms < 0 or (duration_ms == 0 and resolution_ms > 0):
        raise SeriesError("duration", "Duration must be positive.")
    if resolution_ms == 0:
        if duration_ms == 0:
            if count > 1:
                raise SeriesError(
                    SCHEMA, "Cannot post several values over a zero duration."
                )
            return _present([start_ms], values)
        if duration_ms % count:
            raise incompatible_resolution(duration_ms / count, resolution_ms)
        step = duration_ms // count
        return _present(range(start_ms, start_ms + duration_ms, step), values)
    if duration_ms % count:
        raise incompatible_resolution(duration_ms / count, resolution_ms)
    frequency = duration_ms // count
    if frequency % resolution_ms == 0:
        repeat = frequency // resolution_ms
        if repeat * count > MAX_VALUES:
            raise SeriesError(
                SCHEMA,
                f"Upsampling to the sensor's resolution would give more than "
                f"{MAX_VALUES} values.",
            )
        if repeat == 1:
            return _present(range(start_ms, start_ms + duration_ms, frequency), values)
        return [
            (start_ms + (i * repeat + j) * resolution_ms, float(value))
            for i, value in enumerate(values)
            if value is not None
            for j in range(repeat)
        ]
    if resolution_ms % frequency == 0:
        group = resolution_ms // frequency
        if count % group:
            raise SeriesError(
                SCHEMA,
                f"Duration of {timedelta_text(duration_ms)} is not a multiple of the "
                f"sensor's required resolution of {timedelta_text(resolution_ms)}.",
            )
        out: list[tuple[int, float]] = []
        for i in range(0, count, group):
            present = [v for v in values[i : i + group] if v is not None]
            if present:
                out.append((start_ms + (i // group) * resolution_ms, mean(present)))
        return out
    raise incompatible_resolution(frequency, resolution_ms)


def _present(
    starts: Iterable[int], values: Sequence[float | None]
) -> list[tuple[int, float]]:
    return [
        (start, float(value))
        for start, value in zip(starts, values, strict=True)
        if value is not None
    ]


def floor_to_resolution(ms: int, resolution_ms: int) -> int:
    """`ms` floored to a multiple of the resolution (epoch-aligned)."""
    return ms - ms % resolution_ms if resolution_ms > 0 else ms


def knowledge_time(event_start_ms: int, resolution_ms: int) -> int:
    """FlexMeasures' default (ex post): an event is knowable when it ends."""
    return event_start_ms + resolution_ms


def to_beliefs(
    events: Iterable[tuple[int, float]],
    resolution_ms: int,
    *,
    prior_ms: int | None,
    horizon_ms: int | None,
    now_ms: int,
) -> list[Belief]:
    """Beliefs of the events: belief time `prior`, else horizon, else receipt time."""
    rows = to_rows(
        events, resolution_ms, prior_ms=prior_ms, horizon_ms=horizon_ms, now_ms=now_ms
    )
    return [Belief(start, horizon, value) for start, horizon, value in rows]


# A belief as a plain tuple (event start, belief horizon, value): what a large
# write builds, at a fraction of the cost of Belief objects.
BeliefRow = tuple[int, int, float]


def to_rows(
    events: Iterable[tuple[int, float]],
    resolution_ms: int,
    *,
    prior_ms: int | None,
    horizon_ms: int | None,
    now_ms: int,
) -> list[BeliefRow]:
    """`to_beliefs` as BeliefRow tuples."""
    if prior_ms is None and horizon_ms is not None:
        return [(start, horizon_ms, value) for start, value in events]
    knowledge_offset = resolution_ms - (now_ms if prior_ms is None else prior_ms)
    return [(start, start + knowledge_offset, value) for start, value in events]


def default_read_resolution(duration_ms: int, resolution_ms: int) -> int:
    """The resolution of a read without one: the sensor's, or window-based."""
    if resolution_ms > 0:
        return resolution_ms
    for step in INSTANTANEOUS_STEPS_MS:
        if duration_ms % step == 0 and duration_ms // step <= MAX_DEFAULT_POINTS:
            return step
    return max(duration_ms, 1)


def check_read_resolution(requested_ms: int, resolution_ms: int) -> None:
    """A read resolution must be a positive multiple of the sensor resolution."""
    if requested_ms <= 0:
        raise SeriesError("resolution", "Resolution must be positive.")
    if resolution_ms > 0 and requested_ms % resolution_ms:
        raise incompatible_resolution(requested_ms, resolution_ms)


def check_window(duration_ms: int, step_ms: int) -> None:
    """A read may return at most MAX_VALUES values."""
    if window_length(duration_ms, step_ms) > MAX_VALUES:
        raise SeriesError(
            SCHEMA,
            f"The window has more than {MAX_VALUES} values at resolution "
            f"{timedelta_text(step_ms)}; ask for a coarser resolution.",
        )


def window_length(duration_ms: int, step_ms: int) -> int:
    """Number of values of a window (a partial last step counts)."""
    return -(-duration_ms // step_ms)


def reindex(
    rows: Iterable[tuple[int, float]],
    start_ms: int,
    duration_ms: int,
    step_ms: int,
) -> list[float | None]:
    """Values on the window grid: mean per step of the events starting in it.

    Steps without events are None. Events outside [start, start + duration) are
    ignored.
    """
    pairs = list(rows)
    return reindex_columns(
        [p[0] for p in pairs], [p[1] for p in pairs], start_ms, duration_ms, step_ms
    )


def reindex_columns(
    starts: Sequence[int],
    values: Sequence[float],
    start_ms: int,
    duration_ms: int,
    step_ms: int,
) -> list[float | None]:
    """`reindex` of events given as two columns (event starts, values)."""
    length = window_length(duration_ms, step_ms)
    if len(starts) == length and length:
        # The common case of a full window at the data's resolution: no gaps.
        grid = range(start_ms, start_ms + length * step_ms, step_ms)
        if starts == grid or list(starts) == list(grid):
            return list(values)
    out: list[float | None] = [None] * length
    groups: dict[int, list[float]] = {}
    for event_start, value in zip(starts, values, strict=True):
        offset = event_start - start_ms
        if offset < 0 or offset >= duration_ms:
            continue
        index = offset // step_ms
        current = out[index]
        if current is None:
            out[index] = value
        elif index in groups:
            groups[index].append(value)
        else:
            groups[index] = [current, value]
    for index, group in groups.items():
        out[index] = mean(group)
    return out


def mean(values: Sequence[float]) -> float:
    """The mean, exact for equal values and free of intermediate overflow."""
    low, high = min(values), max(values)
    if low == high:
        return low
    count = len(values)
    return math.fsum(v / count for v in values)
