"""Units of sensors and sensor data, with pint, as FlexMeasures has them.

Currencies are units of their own dimension (`EUR/MWh`), `%` is dimensionless/100,
`VA`, `var` and their hourly stocks exist, SI prefixes apply to all. Conversion
computes one factor (and offset, for temperatures) per request with pint and
applies it to the values in plain Python: pint is never called per value.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final

import pint

# ISO 4217 codes of the currencies users post prices in; each its own dimension.
CURRENCIES: Final = tuple(
    [
        "EUR",
        "USD",
        "GBP",
        "KRW",
        "JPY",
        "CHF",
        "CNY",
        "INR",
        "AUD",
        "CAD",
        "NZD",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "RON",
        "BGN",
        "ISK",
        "TRY",
        "BRL",
        "MXN",
        "ZAR",
        "SGD",
        "HKD",
        "TWD",
        "THB",
        "IDR",
        "MYR",
        "PHP",
        "AED",
        "SAR",
        "ILS",
        "EGP",
        "NGN",
        "KES",
        "ARS",
        "CLP",
        "COP",
        "PEN",
        "VND",
        "UAH",
    ]
)

MS_PER_HOUR: Final = 3_600_000


class UnitError(ValueError):
    """A unit is unknown, or not convertible to the one required."""


@functools.cache
def registry() -> pint.UnitRegistry[Any]:
    """The one unit registry, built on first use (not at import)."""
    ureg: pint.UnitRegistry[Any] = pint.UnitRegistry()
    for code in CURRENCIES:
        ureg.define(f"{code} = [currency_{code}]")
    ureg.define("volt_ampere_reactive = volt_ampere = var = VAr")
    ureg.define("volt_ampere_hour = volt_ampere * hour = VAh")
    ureg.define("volt_ampere_reactive_hour = volt_ampere_reactive * hour = varh")
    return ureg


@functools.lru_cache(maxsize=1024)
def _units(unit: str) -> pint.Unit:
    """Parse a unit string ("" is dimensionless); UnitError if unknown."""
    text = unit.strip()
    if not text:
        return registry().dimensionless
    try:
        parsed = registry().parse_units(text)
    except Exception as err:  # pint raises many types (syntax, undefined, ...)
        raise UnitError(f"Unknown unit: {unit!r}.") from err
    return parsed


def validate_unit(unit: str) -> str:
    """Return `unit` if pint understands it ("" = dimensionless), else UnitError."""
    if not isinstance(unit, str):
        raise UnitError("A unit must be a string.")
    _units(unit)
    return unit


def is_convertible(from_unit: str, to_unit: str, resolution_ms: int = 0) -> bool:
    """Whether values in `from_unit` can be converted to `to_unit`."""
    try:
        conversion(from_unit, to_unit, resolution_ms)
    except UnitError:
        return False
    return True


def incompatible_unit(required: str, got: str) -> UnitError:
    """FlexMeasures' message for a unit that does not convert to the required one."""
    return UnitError(
        f"Required unit for this sensor is {required}, got incompatible unit: {got}"
    )


@functools.lru_cache(maxsize=1024)
def conversion(from_unit: str, to_unit: str, resolution_ms: int) -> tuple[float, float]:
    """(factor, offset) so that to = from * factor + offset.

    Stocks and flows convert through the event resolution: kWh per 15 minutes is
    4 kW. UnitError "Required unit for this sensor is X, got incompatible unit: Y".
    """
    if from_unit == to_unit:
        return 1.0, 0.0
    incompatible = incompatible_unit(to_unit, from_unit)
    try:
        source, target = _units(from_unit), _units(to_unit)
    except UnitError as err:
        raise incompatible from err
    ureg = registry()
    try:
        if source.dimensionality == target.dimensionality:
            zero = ureg.Quantity(0.0, source).to(target).magnitude
            one = ureg.Quantity(1.0, source).to(target).magnitude
            return float(one - zero), float(zero)
        if resolution_ms > 0:
            hours = ureg.Quantity(resolution_ms / MS_PER_HOUR, "hour")
            unit_quantity = ureg.Quantity(1.0, source)
            for candidate in (unit_quantity / hours, unit_quantity * hours):
                if candidate.dimensionality == target.dimensionality:
                    return float(candidate.to(target).magnitude), 0.0
    except pint.PintError as err:  # offset units in products, etc.
        raise incompatible from err
    raise incompatible


def convert(
    values: Sequence[float | None],
    from_unit: str,
    to_unit: str,
    resolution_ms: int = 0,
) -> list[float | None]:
    """Values in `from_unit` expressed in `to_unit` (None stays None)."""
    factor, offset = conversion(from_unit, to_unit, resolution_ms)
    if factor == 1.0 and offset == 0.0:
        return list(values)
    if offset == 0.0:
        return [None if v is None else v * factor for v in values]
    return [None if v is None else v * factor + offset for v in values]
