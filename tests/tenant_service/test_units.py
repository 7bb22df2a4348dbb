"""Units: validation and conversion factors with pint."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_service.units import UnitError, convert, is_convertible, validate_unit

QUARTER = 15 * 60 * 1000


@pytest.mark.parametrize(
    "unit",
    [
        "MW",
        "kW",
        "kWh",
        "EUR/MWh",
        "USD/kWh",
        "KRW",
        "JPY/MWh",
        "%",
        "°C",
        "",
        "VA",
        "kvar",
        "kVAh",
        "m/s",
        "W/m²",
        "GBP",
        "CHF/MWh",
    ],
)
def test_units_valid(unit: str) -> None:
    assert validate_unit(unit) == unit


@pytest.mark.parametrize("unit", ["bananas", "kW/", "EURO", "3 ++ x"])
def test_units_invalid(unit: str) -> None:
    with pytest.raises(UnitError):
        validate_unit(unit)


@pytest.mark.parametrize(
    ("values", "source", "target", "resolution", "expected"),
    [
        ([1.0, None, 2.0], "MW", "kW", QUARTER, [1000.0, None, 2000.0]),
        ([1.0], "kWh", "kW", QUARTER, [4.0]),
        ([4.0], "kW", "kWh", QUARTER, [1.0]),
        ([1.0], "MWh", "kW", 3_600_000, [1000.0]),
        ([1.0], "J/s", "W", 0, [1.0]),
        ([50.0], "%", "", 0, [0.5]),
        ([0.5], "", "%", 0, [50.0]),
        ([1000.0], "EUR/MWh", "EUR/kWh", 0, [1.0]),
        ([10.0], "°C", "K", 0, [283.15]),
        ([1.0], "kVA", "W", 0, [1000.0]),
    ],
)
def test_units_convert(
    values: list[float | None],
    source: str,
    target: str,
    resolution: int,
    expected: list[float | None],
) -> None:
    assert convert(values, source, target, resolution) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("source", "target"),
    [("°C", "kW"), ("EUR/MWh", "USD/MWh"), ("bananas", "MW"), ("kWh", "kW")],
)
def test_units_incompatible(source: str, target: str) -> None:
    with pytest.raises(UnitError) as caught:
        convert([1.0], source, target, 0)
    assert str(caught.value) == (
        f"Required unit for this sensor is {target}, got incompatible unit: {source}"
    )
    assert not is_convertible(source, target)


def test_units_year_of_values_is_fast() -> None:
    values: list[float | None] = [float(i) for i in range(35_040)]
    converted = convert(values, "MW", "kW", QUARTER)
    assert converted[-1] == 35_039_000.0


@given(st.text(max_size=20))
def test_units_bad_input_raises_only_unit_error(text: str) -> None:
    with contextlib.suppress(UnitError):
        validate_unit(text)
    with contextlib.suppress(UnitError):
        convert([1.0], text, "kW", QUARTER)
