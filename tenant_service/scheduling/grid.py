"""Parsed flex-models and flex-contexts put on the planning grid: a `SiteProblem`.

`build_problem` reads each referenced sensor once through a callable, converts every
value to its kind's canonical unit per step, applies the defaults and clipping the
flex-model parser's docstring (flexmodel.py) lists, and names every missing or
unreadable value in one `FlexModelError`. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from typing import TypeAlias

import numpy as np

from tenant_service.scheduling.flexmodel import (
    CAPACITY_PARTIAL,
    CAPACITY_UNDEFINED,
    CAPACITY_UNKNOWN,
    CHARGING,
    CONSUMPTION_CAPACITY,
    DISCHARGING,
    EFFICIENCY,
    EFFICIENCY_RANGE,
    FLEX_CONTEXT,
    FLOW,
    INFLEXIBLE,
    MS_PER_HOUR,
    NO_SENSOR,
    OFF_GRID,
    ONE_CURRENCY,
    POWER,
    POWER_CAPACITY,
    PRICE,
    PRICE_KIND,
    PRICES_PARTIAL,
    PRICES_UNKNOWN,
    PRODUCTION_CAPACITY,
    SENSOR_UNIT,
    SITE_CONSUMPTION_CAPACITY,
    SITE_POWER_CAPACITY,
    SITE_PRODUCTION_CAPACITY,
    SOC_GAIN,
    SOC_MAX,
    SOC_MAXIMA,
    SOC_MIN,
    SOC_MINIMA,
    SOC_TARGETS,
    SOC_USAGE,
    STATE_OF_CHARGE_FIELD,
    STORAGE,
    DeviceModel,
    Errors,
    FlexContext,
    FlexModelError,
    Kind,
    Path,
    Segment,
    SensorRef,
    TimeSeries,
    Variable,
    currency_of,
    soc_kind,
)
from tenant_service.scheduling.problem import Array, SiteProblem, StorageDevice
from tenant_service.timing import format_duration, from_epoch_ms
from tenant_service.units import UnitError, conversion

Fetch: TypeAlias = Callable[[int, int, int, int], Awaitable[list[float | None]]]


def _known(values: Array, default: float | Array) -> Array:
    """The values, with `default` where they are nan (unknown)."""
    return np.where(np.isnan(values), default, values)


class _Builder:
    """Puts values on the planning grid, reading sensors once each."""

    def __init__(
        self,
        *,
        start_ms: int,
        step_ms: int,
        steps: int,
        fetch: Fetch,
        sensor_units: Mapping[int, str],
    ) -> None:
        self.start_ms = start_ms
        self.step_ms = step_ms
        self.steps = steps
        self.fetch = fetch
        self.sensor_units = sensor_units
        self.errors = Errors()
        self.currencies: list[tuple[Path, str]] = []
        self.cache: dict[tuple[int, bool], list[float | None]] = {}

    def empty(self) -> Array:
        return np.full(self.steps, np.nan, dtype=np.float64)

    async def read(self, sensor: int, soc: bool) -> list[float | None]:
        """A sensor's values per step; SoC sensors at the end of each step."""
        key = (sensor, soc)
        if key not in self.cache:
            start = self.start_ms + (self.step_ms if soc else 0)
            end = start + self.steps * self.step_ms
            values = await self.fetch(sensor, start, end, self.step_ms)
            if len(values) != self.steps:
                raise ValueError(
                    f"fetch gave {len(values)} values of sensor {sensor} "
                    f"for {self.steps} steps"
                )
            self.cache[key] = values
        return self.cache[key]

    async def array(self, path: Path, value: Variable | None, kind: Kind) -> Array:
        """The value per step in the kind's canonical unit; nan where unknown."""
        if value is None:
            return self.empty()
        if isinstance(value, SensorRef):
            return await self.sensor_array(path, value.sensor, kind)
        if isinstance(value, TimeSeries):
            return self.series_array(path, value, kind)
        return np.full(self.steps, value, dtype=np.float64)

    async def sensor_array(self, path: Path, sensor: int, kind: Kind) -> Array:
        unit = self.sensor_units.get(sensor)
        if unit is None:
            self.errors.add(path, NO_SENSOR.format(sensor=sensor))
            return self.empty()
        resolution = self.step_ms
        if kind.unit == PRICE:
            currency = currency_of(unit)
            if currency is None:
                self.errors.add(
                    path, SENSOR_UNIT.format(unit=unit, target="a price per MWh")
                )
                return self.empty()
            self.currencies.append((path, currency))
            target = f"{currency}/MWh"
            resolution = 0  # a price per MW is not a price per MWh
        else:
            target = kind.unit
        try:
            factor, offset = conversion(unit, target, resolution)
        except (UnitError, ArithmeticError):
            self.errors.add(
                path, SENSOR_UNIT.format(unit=unit, target=target or "dimensionless")
            )
            return self.empty()
        values = await self.read(sensor, kind.soc)
        result = np.array(
            [np.nan if item is None else float(item) for item in values],
            dtype=np.float64,
        )
        # A value beyond float range after conversion is as unknown as a missing one.
        with np.errstate(over="ignore", invalid="ignore"):
            result = result * factor + offset
        result[~np.isfinite(result)] = np.nan
        return result

    def series_array(self, path: Path, series: TimeSeries, kind: Kind) -> Array:
        result = self.empty()
        for index, segment in enumerate(series.segments):
            span = (
                self.soc_span((*path, str(index), "datetime"), segment)
                if kind.soc
                else self.flow_span(segment)
            )
            if span is None:
                continue
            low, high = span
            part = result[low:high]
            if kind.overlap == "min":
                result[low:high] = np.fmin(part, segment.value)
            elif kind.overlap == "max":
                result[low:high] = np.fmax(part, segment.value)
            else:
                part[np.isnan(part)] = segment.value
        return result

    def flow_span(self, segment: Segment) -> tuple[int, int] | None:
        """Steps a segment overlaps (a point: the step containing it)."""
        first = (segment.start_ms - self.start_ms) // self.step_ms
        if segment.end_ms > segment.start_ms:
            after = -((self.start_ms - segment.end_ms) // self.step_ms)
        else:
            after = first + 1
        low, high = max(first, 0), min(after, self.steps)
        return (low, high) if low < high else None

    def soc_span(self, path: Path, segment: Segment) -> tuple[int, int] | None:
        """Steps whose end lies in [start, end]; a point must be a step's end."""
        offset = segment.start_ms - self.start_ms
        inside = 0 < offset <= self.steps * self.step_ms
        if segment.point and inside and offset % self.step_ms:
            moment = from_epoch_ms(segment.start_ms).isoformat()
            step = format_duration(self.step_ms)
            self.errors.add(path, OFF_GRID.format(moment=moment, step=step))
            return None
        low = -((self.start_ms - segment.start_ms) // self.step_ms) - 1
        high = (segment.end_ms - self.start_ms) // self.step_ms
        low, high = max(low, 0), min(high, self.steps)
        return (low, high) if low < high else None

    def require(
        self,
        path: Path,
        values: Array,
        value: Variable | None,
        unknown: str,
        partial: str,
    ) -> None:
        """Name the field if any step lacks a value."""
        missing = np.isnan(values)
        # A sensor that could not be read is already named for that.
        if not missing.any() or self.errors.has(path):
            return
        suffix = f" (sensor {value.sensor})" if isinstance(value, SensorRef) else ""
        self.errors.add(path, (unknown if missing.all() else partial) + suffix)

    async def efficiency(self, path: Path, value: Variable | None) -> Array:
        values = await self.array(path, value, EFFICIENCY)
        known = values[~np.isnan(values)]
        if ((known <= 0.0) | (known > 1.0 + 1e-12)).any():
            self.errors.add(path, EFFICIENCY_RANGE)
        return np.clip(_known(values, 1.0), 0.0, 1.0)

    async def device(
        self, index: int, model: DeviceModel, context: FlexContext
    ) -> StorageDevice:
        def at(name: str) -> Path:
            return (*model.location, name)

        soc_at_start = model.soc_at_start if model.soc_at_start is not None else 0.0
        targets = await self.array(
            at(SOC_TARGETS), model.soc_targets, soc_kind("MWh", overlap="first")
        )
        soc_min = await self.array(
            at(SOC_MIN), model.soc_min, soc_kind("MWh", overlap="max")
        )
        soc_min = _known(soc_min, 0.0)
        soc_max = await self.array(
            at(SOC_MAX), model.soc_max, soc_kind("MWh", overlap="min")
        )
        known_targets = targets[~np.isnan(targets)]
        default_max = float(known_targets.max()) if known_targets.size else np.inf
        soc_max = _known(soc_max, default_max)
        minima = await self.array(
            at(SOC_MINIMA), model.soc_minima, soc_kind("MWh", overlap="max")
        )
        maxima = await self.array(
            at(SOC_MAXIMA), model.soc_maxima, soc_kind("MWh", overlap="min")
        )
        soft_minima = soft_maxima = None
        if context.soc_minima_breach_price is None:
            lower = np.clip(_known(minima, soc_min), soc_min, soc_max)
        else:
            lower = np.fmin(soc_min, soc_max)
            soft_minima = np.clip(minima, soc_min, soc_max)
        if context.soc_maxima_breach_price is None:
            upper = np.clip(_known(maxima, soc_max), soc_min, soc_max)
        else:
            upper = soc_max
            soft_maxima = np.clip(maxima, soc_min, soc_max)

        capacity_value, capacity_path = model.power_capacity, at(POWER_CAPACITY)
        if capacity_value is None and context.site_power_capacity is not None:
            capacity_value = context.site_power_capacity
            capacity_path = (FLEX_CONTEXT, SITE_POWER_CAPACITY)
        if capacity_value is None:
            self.errors.add(capacity_path, CAPACITY_UNDEFINED)
        power = await self.array(capacity_path, capacity_value, POWER)
        if capacity_value is not None:
            self.require(
                capacity_path, power, capacity_value, CAPACITY_UNKNOWN, CAPACITY_PARTIAL
            )
        power = np.clip(_known(power, 0.0), 0.0, None)
        consumption = await self.array(
            at(CONSUMPTION_CAPACITY), model.consumption_capacity, POWER
        )
        production = await self.array(
            at(PRODUCTION_CAPACITY), model.production_capacity, POWER
        )
        # Capacities are positive by definition and never exceed the power capacity.
        consumption = np.clip(np.fmin(consumption, power), 0.0, None)
        production = np.clip(np.fmin(production, power), 0.0, None)

        if model.roundtrip_efficiency is not None:
            split = math.sqrt(model.roundtrip_efficiency)
            charging = np.full(self.steps, split, dtype=np.float64)
            discharging = charging.copy()
        else:
            charging = await self.efficiency(at(CHARGING), model.charging_efficiency)
            discharging = await self.efficiency(
                at(DISCHARGING), model.discharging_efficiency
            )
        storage = await self.efficiency(at(STORAGE), model.storage_efficiency)

        step_hours = self.step_ms / MS_PER_HOUR
        gain = np.zeros(self.steps, dtype=np.float64)
        for number, flow in enumerate(model.soc_gain):
            values = await self.array((*at(SOC_GAIN), str(number)), flow, FLOW)
            gain += _known(values, 0.0) * step_hours
        usage = np.zeros(self.steps, dtype=np.float64)
        for number, flow in enumerate(model.soc_usage):
            values = await self.array((*at(SOC_USAGE), str(number)), flow, FLOW)
            usage += _known(values, 0.0) * step_hours

        if model.state_of_charge is not None:
            self.check_soc_sensor(at(STATE_OF_CHARGE_FIELD), model.state_of_charge)
        name = f"device {index}" if model.sensor is None else f"sensor {model.sensor}"
        return StorageDevice(
            name=name,
            soc_at_start=soc_at_start,
            soc_min=lower,
            soc_max=upper,
            soc_target=targets,
            consumption_capacity=consumption,
            production_capacity=production,
            charging_efficiency=charging,
            discharging_efficiency=discharging,
            storage_efficiency=storage,
            soc_gain=gain,
            soc_usage=usage,
            prefer_charging_sooner=model.prefer_charging_sooner,
            soc_minima=soft_minima,
            soc_maxima=soft_maxima,
        )

    def check_soc_sensor(self, path: Path, sensor: int) -> None:
        """The SoC schedule's sensor exists and holds energy or a percentage."""
        unit = self.sensor_units.get(sensor)
        if unit is None:
            self.errors.add(path, NO_SENSOR.format(sensor=sensor))
        elif unit.strip() != "%":
            try:
                conversion(unit, "MWh", 0)
            except (UnitError, ArithmeticError):
                self.errors.add(path, SENSOR_UNIT.format(unit=unit, target="MWh"))

    async def site(
        self, context: FlexContext
    ) -> tuple[Array, Array, Array, Array, Array]:
        """Prices (currency/MWh), site consumption/production and power capacities
        (MW, inf = none) per step."""
        consumption_path = (FLEX_CONTEXT, context.consumption_price_field)
        production_path = (FLEX_CONTEXT, context.production_price_field)
        consumption_price = await self.array(
            consumption_path, context.consumption_price, PRICE_KIND
        )
        self.require(
            consumption_path,
            consumption_price,
            context.consumption_price,
            PRICES_UNKNOWN,
            PRICES_PARTIAL,
        )
        if context.production_price is None:
            production_price = consumption_price
        else:
            production_price = await self.array(
                production_path, context.production_price, PRICE_KIND
            )
            self.require(
                production_path,
                production_price,
                context.production_price,
                PRICES_UNKNOWN,
                PRICES_PARTIAL,
            )
        currency = context.currency
        for path, code in self.currencies:
            if currency is None:
                currency = code
            elif code != currency:
                self.errors.add(path, ONE_CURRENCY.format(currency=currency))

        site_power = await self.array(
            (FLEX_CONTEXT, SITE_POWER_CAPACITY), context.site_power_capacity, POWER
        )
        site_power = _known(site_power, np.inf)
        site_consumption = await self.array(
            (FLEX_CONTEXT, SITE_CONSUMPTION_CAPACITY),
            context.site_consumption_capacity,
            POWER,
        )
        site_production = await self.array(
            (FLEX_CONTEXT, SITE_PRODUCTION_CAPACITY),
            context.site_production_capacity,
            POWER,
        )
        site_consumption = np.clip(np.fmin(site_consumption, site_power), 0.0, None)
        site_production = np.clip(np.fmin(site_production, site_power), 0.0, None)
        # Unknown prices are reported above; zeros keep the arrays finite meanwhile.
        return (
            _known(consumption_price, 0.0),
            _known(production_price, 0.0),
            _known(site_consumption, np.inf),
            _known(site_production, np.inf),
            site_power,
        )

    async def inflexible(
        self, context: FlexContext, consumption_positive: Container[int]
    ) -> Array:
        total = np.zeros(self.steps, dtype=np.float64)
        for index, sensor in enumerate(context.inflexible_device_sensors):
            path = (FLEX_CONTEXT, INFLEXIBLE, str(index))
            values = _known(await self.sensor_array(path, sensor, FLOW), 0.0)
            # FlexMeasures stores production as positive unless the sensor says not.
            total += values if sensor in consumption_positive else -values
        return total


async def build_problem(
    models: Sequence[DeviceModel],
    context: FlexContext,
    *,
    start_ms: int,
    step_ms: int,
    steps: int,
    fetch: Fetch,
    sensor_units: Mapping[int, str],
    consumption_positive: Container[int] = frozenset(),
) -> SiteProblem:
    """The numeric problem on `steps` steps of `step_ms` from `start_ms`.

    `fetch(sensor, start_ms, end_ms, step_ms)` gives a sensor's values per step in its
    own unit (None = unknown); `sensor_units` the unit of every referenced sensor;
    `consumption_positive` the inflexible sensors that store consumption as positive.
    """
    if step_ms <= 0 or steps <= 0:
        raise ValueError("the planning grid needs a positive step and step count")
    builder = _Builder(
        start_ms=start_ms,
        step_ms=step_ms,
        steps=steps,
        fetch=fetch,
        sensor_units=sensor_units,
    )
    devices = [
        await builder.device(index, model, context)
        for index, model in enumerate(models)
    ]
    prices = await builder.site(context)
    consumption_price, production_price, site_consumption, site_production = prices[:4]
    # With a breach price, the consumption (production) capacity is a contract the
    # schedule may exceed at that price; site-power-capacity stays the hard limit.
    site_power = prices[4]
    consumption_contract = production_contract = None
    if context.site_consumption_breach_price is not None:
        consumption_contract, site_consumption = site_consumption, site_power
    if context.site_production_breach_price is not None:
        production_contract, site_production = site_production, site_power
    inflexible = await builder.inflexible(context, consumption_positive)
    if builder.errors:
        raise FlexModelError(builder.errors.tree)
    return SiteProblem(
        step_hours=step_ms / MS_PER_HOUR,
        consumption_price=consumption_price,
        production_price=production_price,
        inflexible=inflexible,
        site_consumption_capacity=site_consumption,
        site_production_capacity=site_production,
        devices=tuple(devices),
        soc_minima_breach_price=context.soc_minima_breach_price,
        soc_maxima_breach_price=context.soc_maxima_breach_price,
        site_consumption_contract=consumption_contract,
        site_production_contract=production_contract,
        site_consumption_breach_price=context.site_consumption_breach_price,
        site_production_breach_price=context.site_production_breach_price,
    )
