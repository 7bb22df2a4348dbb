"""Property tests of the duration, datetime, time zone and entity address parsers."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_service.addresses import entity_address, parse_entity_address
from tenant_service.timing import (
    MAX_DURATION_MS,
    TimingError,
    format_duration,
    from_epoch_ms,
    parse_datetime,
    parse_duration,
    parse_resolution,
    to_epoch_ms,
    valid_timezone,
)

DURATIONS_MS = st.integers(min_value=-MAX_DURATION_MS, max_value=MAX_DURATION_MS)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("PT15M", 900_000),
        ("P0DT0H15M0S", 900_000),
        ("P1D", 86_400_000),
        ("P1DT0H0M0S", 86_400_000),
        ("PT1H", 3_600_000),
        ("PT0.5S", 500),
        ("P1W", 7 * 86_400_000),
        ("P0D", 0),
        ("-PT15M", -900_000),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "P0D"),
        (900_000, "PT15M"),
        (3_600_000, "PT1H"),
        (86_400_000, "P1D"),
        (86_400_000 + 900_000, "P1DT15M"),
        (1_500, "PT1.5S"),
        (1, "PT0.001S"),
        (-900_000, "-PT15M"),
    ],
)
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_format_duration_in_hours() -> None:
    assert format_duration(86_400_000, days=False) == "PT24H"
    assert format_duration(0, days=False) == "P0D"


@pytest.mark.parametrize(
    "text", ["P1M", "P1Y", "P1Y2M", "", "P", "x", "15 minutes", "PT0.0001S", "P1e400D"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(TimingError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["P0D", "PT0S", "-PT15M", "-P1D"])
def test_parse_resolution_must_be_positive(text: str) -> None:
    with pytest.raises(TimingError):
        parse_resolution(text)


@given(DURATIONS_MS)
def test_duration_round_trip(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms
    assert parse_duration(format_duration(ms, days=False)) == ms


@given(
    st.integers(0, 10**6), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)
)
def test_pandas_long_form(days: int, hours: int, minutes: int, seconds: int) -> None:
    text = f"P{days}DT{hours}H{minutes}M{seconds}S"
    expected = ((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1_000
    assert parse_duration(text) == expected


@given(st.text(max_size=40))
def test_parse_duration_only_timing_errors(text: str) -> None:
    with contextlib.suppress(TimingError):
        parse_duration(text)


@given(st.from_regex(r"-?P([0-9]{1,6}[YMWD]){0,3}(T([0-9.,]{1,8}[HMS]){0,3})?"))
def test_parse_duration_iso_like_only_timing_errors(text: str) -> None:
    with contextlib.suppress(TimingError):
        assert isinstance(parse_duration(text), int)


@given(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.timezones(),
    )
)
def test_datetime_round_trip(value: dt.datetime) -> None:
    parsed = parse_datetime(value.isoformat())
    # In UTC: inter-zone comparison of folded or imaginary local times is never equal.
    assert parsed.astimezone(dt.UTC) == value.astimezone(dt.UTC)
    assert parsed.utcoffset() == value.utcoffset()


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), timezones=st.timezones()))
def test_epoch_ms_round_trip(value: dt.datetime) -> None:
    value = value.replace(microsecond=value.microsecond // 1000 * 1000)
    back = from_epoch_ms(to_epoch_ms(value), value.tzinfo or dt.UTC)
    assert back.astimezone(dt.UTC) == value.astimezone(dt.UTC)


@pytest.mark.parametrize(
    "text", ["2024-01-01T00:00:00", "2024-01-01", "yesterday", "", "2024-13-01T00:00Z"]
)
def test_parse_datetime_rejects(text: str) -> None:
    with pytest.raises(TimingError):
        parse_datetime(text)


def test_parse_datetime_zulu() -> None:
    assert parse_datetime("2024-01-01T00:00:00Z") == dt.datetime(
        2024, 1, 1, tzinfo=dt.UTC
    )


@given(st.text(max_size=40))
def test_parse_datetime_only_timing_errors(text: str) -> None:
    with contextlib.suppress(TimingError):
        assert parse_datetime(text).tzinfo is not None


def test_valid_timezone() -> None:
    assert valid_timezone("Europe/Amsterdam")
    assert valid_timezone("UTC")
    assert not valid_timezone("Mars/Olympus")
    assert not valid_timezone("")


@pytest.mark.parametrize(
    ("host", "today", "address"),
    [
        (
            "company.flexmeasures.io",
            dt.date(2026, 11, 28),
            "ea1.2021-01.io.flexmeasures.company:fm1.7",
        ),
        ("localhost:5000", dt.date(2026, 11, 28), "ea1.2026-12.localhost:fm1.7"),
        ("example.com", dt.date(2026, 12, 3), "ea1.2027-01.com.example:fm1.7"),
    ],
)
def test_entity_address(host: str, today: dt.date, address: str) -> None:
    assert entity_address(host, 7, today) == address
    assert parse_entity_address(address) == 7


@given(
    st.integers(0, 10**12),
    st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){0,3}", fullmatch=True),
)
def test_entity_address_round_trip(sensor_id: int, host: str) -> None:
    assert (
        parse_entity_address(entity_address(host, sensor_id, dt.date(2025, 1, 1)))
        == sensor_id
    )


@pytest.mark.parametrize(
    "text", ["", "fm1.3", "ea1.2021-01.io.flexmeasures:fm0.3", "ea1.2021-01.x:fm1.a"]
)
def test_parse_entity_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="entity address"):
        parse_entity_address(text)
