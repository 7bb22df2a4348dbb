"""Pure parsers and formatters for times, durations and time zones (no aiohttp).

Durations are ISO 8601 (`PT15M`, `P1D`, and pandas' long forms such as `P0DT0H15M0S`)
held as integer milliseconds. Months and years are refused: they have no fixed length.
Every bad input raises `TimingError` (a `ValueError`) with a marshmallow-style message.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import Final

import isodate

MS_PER_SECOND: Final = 1_000
MS_PER_MINUTE: Final = 60 * MS_PER_SECOND
MS_PER_HOUR: Final = 60 * MS_PER_MINUTE
MS_PER_DAY: Final = 24 * MS_PER_HOUR
# About 10,000 years: anything longer is surely a mistake, and stays far from overflow.
MAX_DURATION_MS: Final = 10_000 * 366 * MS_PER_DAY
MAX_TEXT: Final = 100

NOT_A_DURATION: Final = "Cannot parse {text} as ISO8601 duration."
NOT_FIXED: Final = (
    "Duration {text} has no fixed length: months and years are not supported."
)
NOT_WHOLE_MS: Final = "Duration {text} is not a whole number of milliseconds."
NOT_POSITIVE: Final = "Duration {text} must be positive."
NEGATIVE: Final = "Duration {text} may not be negative."
NOT_A_DATETIME: Final = "Not a valid datetime."
NAIVE: Final = "Not a valid aware datetime."


class TimingError(ValueError):
    """A duration, datetime or time zone that cannot be used."""


def parse_duration(
    text: str, *, allow_zero: bool = True, allow_negative: bool = True
) -> int:
    """An ISO 8601 duration of fixed length, in milliseconds."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise TimingError(NOT_A_DURATION.format(text=str(text)[:MAX_TEXT]))
    stripped = text.strip()
    try:
        parsed = isodate.parse_duration(stripped)
    except (ValueError, ArithmeticError, TypeError) as err:
        raise TimingError(NOT_A_DURATION.format(text=text)) from err
    if isinstance(parsed, isodate.Duration):
        if parsed.years or parsed.months:
            raise TimingError(NOT_FIXED.format(text=text))
        delta: dt.timedelta = parsed.tdelta
    else:
        delta = parsed
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    ms, rest = divmod(micros, 1_000)
    if rest:
        raise TimingError(NOT_WHOLE_MS.format(text=text))
    if abs(ms) > MAX_DURATION_MS:
        raise TimingError(NOT_A_DURATION.format(text=text))
    if ms < 0 and not allow_negative:
        raise TimingError(NEGATIVE.format(text=text))
    if ms == 0 and not allow_zero:
        raise TimingError(NOT_POSITIVE.format(text=text))
    if ms < 0 and not allow_zero:
        raise TimingError(NOT_POSITIVE.format(text=text))
    return ms


def parse_resolution(text: str) -> int:
    """A positive duration (an event or data resolution), in milliseconds."""
    return parse_duration(text, allow_zero=False, allow_negative=False)


def format_duration(ms: int, *, days: bool = True) -> str:
    """FlexMeasures' (isodate's) normal form: `PT15M`, `PT1H`, `P1D`, zero `P0D`.

    With `days=False` whole days are written as hours (`PT24H`), as FlexMeasures
    echoes the duration of a data request.
    """
    if ms < 0:
        return "-" + format_duration(-ms, days=days)
    if ms == 0:
        return "P0D"
    day_count, rest = divmod(ms, MS_PER_DAY) if days else (0, ms)
    hours, rest = divmod(rest, MS_PER_HOUR)
    minutes, rest = divmod(rest, MS_PER_MINUTE)
    seconds, millis = divmod(rest, MS_PER_SECOND)
    out = "P"
    if day_count:
        out += f"{day_count}D"
    if hours or minutes or seconds or millis:
        out += "T"
        if hours:
            out += f"{hours}H"
        if minutes:
            out += f"{minutes}M"
        if seconds or millis:
            out += f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "S"
    return out


def parse_datetime(text: str) -> dt.datetime:
    """A timezone-aware ISO 8601 datetime; naive ones are refused."""
    value = _iso_datetime(text)
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimingError(NAIVE)
    return _in_range(value)


def parse_datetime_utc(text: str) -> dt.datetime:
    """An ISO 8601 datetime; a naive one is taken to be UTC."""
    value = _iso_datetime(text)
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=dt.UTC)
    return _in_range(value)


def _iso_datetime(text: str) -> dt.datetime:
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise TimingError(NOT_A_DATETIME)
    try:
        return dt.datetime.fromisoformat(text.strip())
    except (ValueError, OverflowError) as err:
        raise TimingError(NOT_A_DATETIME) from err


def _in_range(value: dt.datetime) -> dt.datetime:
    try:
        value.astimezone(dt.UTC)
    except OverflowError as err:
        raise TimingError(NOT_A_DATETIME) from err
    return value


def to_epoch_ms(value: dt.datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime (truncated)."""
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000 + delta.microseconds // 1_000


def from_epoch_ms(ms: int, tz: dt.tzinfo = dt.UTC) -> dt.datetime:
    """The aware datetime of milliseconds since the Unix epoch."""
    return (
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    ).astimezone(tz)


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_timezone(name: str) -> bool:
    """Whether `name` is an IANA time zone known to this system."""
    return isinstance(name, str) and name in _timezones()
