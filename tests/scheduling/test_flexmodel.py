"""The storage flex-model and flex-context: parsing, merging and the numeric problem."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenant_service.scheduling.flexmodel import (
    FLEX_CONTEXT_FIELDS,
    FLEX_MODEL_FIELDS,
    DeviceModel,
    FlexContext,
    FlexModelError,
    SensorRef,
    TimeSeries,
    merge,
    parse_flex_context,
    parse_flex_model,
    sensor_ids,
    soc_targets_end_ms,
)
from tenant_service.scheduling.grid import build_problem
from tenant_service.scheduling.problem import SiteProblem
from tenant_service.timing import to_epoch_ms

HOUR = 3_600_000
QUARTER = 900_000
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
START_MS = to_epoch_ms(START)
PRICE = {"consumption-price": "100 EUR/MWh"}
AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")


def at(hours: float) -> str:
    """An ISO datetime `hours` after START."""
    return (START + dt.timedelta(hours=hours)).isoformat()


class Sensors:
    """A fake sensor store: values per sensor per step, and the calls made."""

    def __init__(
        self, data: Mapping[int, Sequence[float | None]] | None = None
    ) -> None:
        self.data = dict(data or {})
        self.calls: list[tuple[int, int, int, int]] = []

    async def fetch(
        self, sensor: int, start_ms: int, end_ms: int, step_ms: int
    ) -> list[float | None]:
        self.calls.append((sensor, start_ms, end_ms, step_ms))
        steps = (end_ms - start_ms) // step_ms
        values = list(self.data.get(sensor, [None] * steps))
        return values[:steps] + [None] * (steps - len(values))


async def build(
    flex_model: object,
    flex_context: object = PRICE,
    *,
    steps: int = 4,
    step_ms: int = HOUR,
    start_ms: int = START_MS,
    units: Mapping[int, str] | None = None,
    sensors: Sensors | None = None,
    consumption_positive: frozenset[int] = frozenset(),
) -> SiteProblem:
    """Parse and build with sensible defaults."""
    models = parse_flex_model(flex_model, sensor=1)
    context = parse_flex_context(flex_context)
    store = sensors or Sensors()
    return await build_problem(
        models,
        context,
        start_ms=start_ms,
        step_ms=step_ms,
        steps=steps,
        fetch=store.fetch,
        sensor_units={1: "MW", **(units or {})},
        consumption_positive=consumption_positive,
    )


def messages(raw: object, *, context: bool = False) -> dict[str, Any]:
    """The messages of the FlexModelError that parsing `raw` raises."""
    parse = parse_flex_context if context else parse_flex_model
    with pytest.raises(FlexModelError) as caught:
        parse(raw)
    return caught.value.messages


def dig(tree: Mapping[str, Any], path: Sequence[str]) -> list[str]:
    """The message list at `path` of a nested message dict."""
    node: Any = tree
    for key in path:
        assert isinstance(node, dict), (tree, path)
        node = node[key]
    assert isinstance(node, list), (tree, path)
    return node


def device(raw: Mapping[str, Any], **kwargs: Any) -> DeviceModel:
    """The only device of a one-object flex-model."""
    (model,) = parse_flex_model(dict(raw), **kwargs)
    return model


# Value forms and conversions


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2 MW", 2.0),
        ("2000 kW", 2.0),
        ("2000kW", 2.0),
        (" 1.5e3 kW ", 1.5),
        ("500000 W", 0.5),
        ({"sensor": 4}, SensorRef(4)),
        ({"sensor": "4"}, SensorRef(4)),
    ],
)
def test_flexmodel_power_capacity_forms(raw: object, expected: object) -> None:
    assert device({"power-capacity": raw}).power_capacity == expected


def test_flexmodel_time_series_forms() -> None:
    model = device(
        {
            "power-capacity": [
                {"start": at(0), "end": at(1), "value": "1 MW"},
                {"start": at(1), "duration": "PT2H", "value": "2000 kW"},
                {"end": at(4), "duration": "PT1H", "value": "3 MW"},
                {"datetime": at(5), "value": "4 MW"},
            ]
        }
    )
    assert isinstance(model.power_capacity, TimeSeries)
    spans = [
        (s.start_ms - START_MS, s.end_ms - START_MS, s.value, s.point)
        for s in model.power_capacity.segments
    ]
    assert spans == [
        (0, HOUR, 1.0, False),
        (HOUR, 3 * HOUR, 2.0, False),
        (3 * HOUR, 4 * HOUR, 3.0, False),
        (5 * HOUR, 5 * HOUR, 4.0, True),
    ]


@pytest.mark.parametrize(
    ("raw", "sensor_units", "expected"),
    [
        ({"soc-at-start": "25 kWh"}, None, 0.025),
        ({"soc-at-start": "0.5 MWh"}, None, 0.5),
        ({"soc-at-start": 25, "soc-unit": "kWh"}, None, 0.025),
        ({"soc-at-start": 2, "soc-unit": "MWh"}, None, 2.0),
        ({"soc-at-start": 2}, None, 2.0),
        # Without soc-unit, bare numbers follow the power sensor's unit.
        ({"soc-at-start": 25}, {1: "kW"}, 0.025),
        ({"soc-at-start": 25}, {1: "kWh"}, 0.025),
        ({"soc-at-start": 2}, {1: "MW"}, 2.0),
        ({"soc-at-start": 2, "soc-unit": "MWh"}, {1: "kW"}, 2.0),
        ({"soc-at-start": "25 kWh", "soc-unit": "MWh"}, None, 0.025),
    ],
)
def test_flexmodel_soc_units(
    raw: dict[str, Any], sensor_units: dict[int, str] | None, expected: float
) -> None:
    model = device(raw, sensor=1, sensor_units=sensor_units)
    assert model.soc_at_start == pytest.approx(expected)


def test_flexmodel_soc_targets_bare_numbers_use_soc_unit() -> None:
    model = device(
        {
            "soc-unit": "kWh",
            "soc-targets": [
                {"datetime": at(1), "value": 30},
                {"datetime": at(2), "value": "0.04 MWh"},
            ],
            "soc-minima": [{"start": at(1), "end": at(3), "value": 10}],
        }
    )
    assert isinstance(model.soc_targets, TimeSeries)
    assert [s.value for s in model.soc_targets.segments] == pytest.approx([0.03, 0.04])
    assert isinstance(model.soc_minima, TimeSeries)
    assert model.soc_minima.segments[0].value == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("90%", 0.9),
        ("90 %", 0.9),
        ("100%", 1.0),
        (0.95, 0.95),
        ("0.95", 0.95),
        (1, 1.0),
    ],
)
def test_flexmodel_efficiency_forms(raw: object, expected: float) -> None:
    model = device({"roundtrip-efficiency": raw, "storage-efficiency": raw})
    assert model.roundtrip_efficiency == pytest.approx(expected)
    assert model.storage_efficiency == pytest.approx(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("100 EUR/MWh", 100.0),
        ("0.2 EUR/kWh", 200.0),
        ("-5 EUR/MWh", -5.0),
        ("1 kEUR/MWh", 1000.0),
        ("30 USD/MWh", 30.0),
    ],
)
def test_flexcontext_price_forms(raw: str, expected: float) -> None:
    context = parse_flex_context({"consumption-price": raw})
    assert context.consumption_price == pytest.approx(expected)
    assert context.currency == raw.split()[-1].split("/")[0].removeprefix("k")


def test_flexcontext_fields() -> None:
    context = parse_flex_context(
        {
            "consumption-price": {"sensor": 3},
            "production-price": [
                {"start": at(0), "end": at(2), "value": "0.05 EUR/kWh"}
            ],
            "inflexible-device-sensors": [7, "8"],
            "site-power-capacity": "1.5 MVA",
            "site-consumption-capacity": "1000 kW",
            "site-production-capacity": {"sensor": 9},
        }
    )
    assert context.consumption_price == SensorRef(3)
    assert isinstance(context.production_price, TimeSeries)
    assert context.production_price.segments[0].value == pytest.approx(50.0)
    assert context.inflexible_device_sensors == (7, 8)
    assert context.site_power_capacity == pytest.approx(1.5)
    assert context.site_consumption_capacity == pytest.approx(1.0)
    assert context.site_production_capacity == SensorRef(9)


def test_flexcontext_deprecated_price_sensors() -> None:
    context = parse_flex_context(
        {"consumption-price-sensor": 3, "production-price-sensor": 4}
    )
    assert context.consumption_price == SensorRef(3)
    assert context.production_price == SensorRef(4)
    assert context.consumption_price_field == "consumption-price-sensor"


def test_flexmodel_list_names_each_sensor() -> None:
    models = parse_flex_model(
        [
            {"sensor": 5, "power-capacity": "1 MW", "state-of-charge": {"sensor": 6}},
            {"sensor": 7, "power-capacity": "2 MW", "prefer-charging-sooner": False},
        ]
    )
    assert [m.sensor for m in models] == [5, 7]
    assert [m.location for m in models] == [("flex-model", "0"), ("flex-model", "1")]
    assert models[0].state_of_charge == 6
    assert models[1].prefer_charging_sooner is False


def test_flexmodel_none_is_one_default_device() -> None:
    (model,) = parse_flex_model(None, sensor=3)
    assert model == DeviceModel(sensor=3, location=("flex-model",))
    assert parse_flex_context(None) == FlexContext()


def test_flexmodel_soc_gain_and_usage_are_lists_of_flows() -> None:
    model = device(
        {
            "soc-gain": ["1 MW", {"sensor": 8}],
            "soc-usage": [[{"start": at(0), "end": at(1), "value": "500 kW"}]],
        }
    )
    assert model.soc_gain == (1.0, SensorRef(8))
    assert isinstance(model.soc_usage[0], TimeSeries)


# The numeric problem


async def test_build_converts_to_mw_mwh_and_eur_per_mwh() -> None:
    problem = await build(
        {
            "soc-at-start": "10 kWh",
            "soc-min": "5 kWh",
            "soc-max": "50 kWh",
            "power-capacity": "20 kW",
            "consumption-capacity": "10 kW",
            "roundtrip-efficiency": "81%",
            "storage-efficiency": "99%",
        },
        {"consumption-price": "0.25 EUR/kWh", "production-price": "200 EUR/MWh"},
        step_ms=QUARTER,
    )
    (battery,) = problem.devices
    assert problem.step_hours == 0.25
    assert battery.name == "sensor 1"
    assert battery.soc_at_start == pytest.approx(0.01)
    assert battery.soc_min == pytest.approx([0.005] * 4)
    assert battery.soc_max == pytest.approx([0.05] * 4)
    assert battery.consumption_capacity == pytest.approx([0.01] * 4)
    assert battery.production_capacity == pytest.approx([0.02] * 4)
    assert battery.charging_efficiency == pytest.approx([0.9] * 4)
    assert battery.discharging_efficiency == pytest.approx([0.9] * 4)
    assert battery.storage_efficiency == pytest.approx([0.99] * 4)
    assert problem.consumption_price == pytest.approx([250.0] * 4)
    assert problem.production_price == pytest.approx([200.0] * 4)


async def test_build_defaults() -> None:
    problem = await build({"power-capacity": "2 MW"})
    (battery,) = problem.devices
    assert battery.soc_at_start == 0.0
    assert list(battery.soc_min) == [0.0] * 4
    assert list(battery.soc_max) == [math.inf] * 4
    assert np.isnan(battery.soc_target).all()
    assert list(battery.consumption_capacity) == [2.0] * 4
    assert list(battery.production_capacity) == [2.0] * 4
    for efficiency in (
        battery.charging_efficiency,
        battery.discharging_efficiency,
        battery.storage_efficiency,
    ):
        assert list(efficiency) == [1.0] * 4
    assert list(battery.soc_gain) == [0.0] * 4
    assert list(battery.soc_usage) == [0.0] * 4
    assert battery.prefer_charging_sooner is True
    assert list(problem.production_price) == list(problem.consumption_price)
    assert list(problem.inflexible) == [0.0] * 4
    assert list(problem.site_consumption_capacity) == [math.inf] * 4
    assert list(problem.site_production_capacity) == [math.inf] * 4


async def test_build_soc_max_defaults_to_highest_target() -> None:
    problem = await build(
        {
            "power-capacity": "1 MW",
            "soc-targets": [
                {"datetime": at(2), "value": "3 MWh"},
                {"datetime": at(4), "value": "2 MWh"},
            ],
        }
    )
    (battery,) = problem.devices
    assert list(battery.soc_max) == [3.0] * 4
    assert list(np.nan_to_num(battery.soc_target, nan=-1)) == [-1, 3.0, -1, 2.0]


async def test_build_power_capacity_falls_back_to_site_power_capacity() -> None:
    problem = await build(
        {"consumption-capacity": "3 MW"},
        {**PRICE, "site-power-capacity": "2 MW", "site-production-capacity": "1 MW"},
    )
    (battery,) = problem.devices
    assert list(battery.consumption_capacity) == [2.0] * 4
    assert list(battery.production_capacity) == [2.0] * 4
    # As FlexMeasures by default: the production capacity is soft (a contract the
    # schedule may exceed at the breach price), site-power-capacity is the hard limit.
    assert list(problem.site_consumption_capacity) == [2.0] * 4
    assert list(problem.site_production_capacity) == [2.0] * 4
    assert problem.site_production_contract is not None
    assert list(problem.site_production_contract) == [1.0] * 4
    assert problem.site_production_breach_price == 1e7  # 10000 EUR/kW
    hard = await build(
        {"consumption-capacity": "3 MW"},
        {
            **PRICE,
            "site-power-capacity": "2 MW",
            "site-production-capacity": "1 MW",
            "relax-site-capacity-constraints": False,
        },
    )
    assert list(hard.site_production_capacity) == [1.0] * 4
    assert hard.site_production_contract is None
    assert hard.site_production_breach_price is None


async def test_build_charging_and_discharging_efficiencies() -> None:
    problem = await build(
        {
            "power-capacity": "1 MW",
            "charging-efficiency": "90%",
            "discharging-efficiency": [
                {"start": at(0), "end": at(2), "value": "80%"},
            ],
        }
    )
    (battery,) = problem.devices
    assert battery.charging_efficiency == pytest.approx([0.9] * 4)
    assert battery.discharging_efficiency == pytest.approx([0.8, 0.8, 1.0, 1.0])


async def test_build_flow_series_cover_the_steps_they_overlap() -> None:
    problem = await build(
        {
            "power-capacity": [
                {"start": at(0), "end": at(4), "value": "4 MW"},
                # Overlapping segments: capacities take the least.
                {"start": at(0.5), "end": at(1.25), "value": "1 MW"},
                {"datetime": at(3.5), "value": "3 MW"},
            ]
        }
    )
    (battery,) = problem.devices
    assert list(battery.consumption_capacity) == [1.0, 1.0, 4.0, 3.0]


async def test_build_flow_series_take_the_first_given_for_prices() -> None:
    problem = await build(
        {"power-capacity": "1 MW"},
        {
            "consumption-price": [
                {"start": at(0), "end": at(2), "value": "10 EUR/MWh"},
                {"start": at(1), "end": at(4), "value": "0.02 EUR/kWh"},
            ]
        },
    )
    assert list(problem.consumption_price) == pytest.approx([10.0, 10.0, 20.0, 20.0])


SOC_SERIES: Final = {
    "power-capacity": "1 MW",
    "soc-max": "10 MWh",
    "soc-targets": [{"datetime": at(1), "value": "5 MWh"}],
    # Covers the step ends at 01:00, 02:00 and 03:00.
    "soc-minima": [{"start": at(0.5), "end": at(3), "value": "2 MWh"}],
    "soc-maxima": [{"start": at(4), "duration": "PT1H", "value": "8 MWh"}],
}


async def test_build_soc_series_are_instants_at_step_ends() -> None:
    problem = await build(SOC_SERIES, {**PRICE, "relax-soc-constraints": False})
    (battery,) = problem.devices
    assert list(np.nan_to_num(battery.soc_target, nan=-1)) == [5.0, -1, -1, -1]
    assert list(battery.soc_min) == [2.0, 2.0, 2.0, 0.0]
    assert list(battery.soc_max) == [10.0, 10.0, 10.0, 8.0]
    assert battery.soc_minima is None
    assert battery.soc_maxima is None
    assert problem.soc_minima_breach_price is None
    assert not problem.soft_targets


async def test_build_soc_minima_and_maxima_are_soft_by_default() -> None:
    problem = await build(SOC_SERIES)
    (battery,) = problem.devices
    assert list(battery.soc_min) == [0.0] * 4
    assert list(battery.soc_max) == [10.0] * 4
    assert battery.soc_minima is not None
    assert battery.soc_maxima is not None
    assert list(np.nan_to_num(battery.soc_minima, nan=-1)) == [2.0, 2.0, 2.0, -1]
    assert list(np.nan_to_num(battery.soc_maxima, nan=-1)) == [-1, -1, -1, 8.0]
    # FlexMeasures' default: 1000 EUR/kWh.
    assert problem.soc_minima_breach_price == 1e6
    assert problem.soc_maxima_breach_price == 1e6
    assert problem.soft_targets


@pytest.mark.parametrize(
    ("context", "minima", "maxima"),
    [
        ({"relax-constraints": False}, None, None),
        ({"relax-constraints": False, "relax-soc-constraints": True}, 1e6, 1e6),
        ({"relax-soc-constraints": "no"}, None, None),
        ({"soc-minima-breach-price": "2 EUR/kWh"}, 2000.0, 1e6),
        (
            {"relax-soc-constraints": False, "soc-maxima-breach-price": "5 EUR/MWh"},
            None,
            5.0,
        ),
        # No default with the deprecated price sensor fields, as FlexMeasures.
        ({"consumption-price-sensor": 9}, None, None),
        ({"relax-site-capacity-constraints": False}, 1e6, 1e6),
    ],
)
def test_flexcontext_relaxation_sets_the_breach_prices(
    context: dict[str, Any], minima: float | None, maxima: float | None
) -> None:
    parsed = parse_flex_context(context)
    assert parsed.soc_minima_breach_price == minima
    assert parsed.soc_maxima_breach_price == maxima


@pytest.mark.parametrize(
    ("context", "consumption", "production"),
    [
        ({}, 1e7, 1e7),
        ({"relax-constraints": False}, None, None),
        ({"relax-soc-constraints": False}, 1e7, 1e7),
        ({"relax-site-capacity-constraints": False}, None, None),
        ({"site-consumption-breach-price": "2 EUR/kW"}, 2000.0, 1e7),
        ({"consumption-price-sensor": 9}, None, None),
    ],
)
def test_flexcontext_relaxation_sets_the_site_breach_prices(
    context: dict[str, Any], consumption: float | None, production: float | None
) -> None:
    parsed = parse_flex_context(context)
    assert parsed.site_consumption_breach_price == consumption
    assert parsed.site_production_breach_price == production


async def test_build_soc_points_outside_the_window_are_ignored() -> None:
    problem = await build(
        {
            "power-capacity": "1 MW",
            "soc-targets": [
                {"datetime": at(0), "value": "1 MWh"},
                {"datetime": at(4), "value": "2 MWh"},
                {"datetime": at(5.5), "value": "3 MWh"},
            ],
        }
    )
    (battery,) = problem.devices
    assert list(np.nan_to_num(battery.soc_target, nan=-1)) == [-1, -1, -1, 2.0]


async def test_build_dst_crossing_aware_datetimes() -> None:
    # 27 October 2024: Amsterdam goes from +02:00 to +01:00 at 03:00 local time.
    start = dt.datetime(2024, 10, 27, 0, 0, tzinfo=AMSTERDAM)
    start_ms = to_epoch_ms(start)
    flex_model = {
        "power-capacity": [
            # 02:30+02:00 to 02:30+01:00 is the one hour of steps 2 (and not 3).
            {
                "start": "2024-10-27T02:30:00+02:00",
                "end": "2024-10-27T02:30:00+01:00",
                "value": "1 MW",
            },
            {"start": "2024-10-27T00:00:00+02:00", "duration": "PT6H", "value": "5 MW"},
        ],
        "soc-targets": [
            # 02:00+01:00 is three hours after 00:00+02:00: the end of step 2.
            {"datetime": "2024-10-27T02:00:00+01:00", "value": "1 MWh"},
            {"datetime": "2024-10-27T03:00:00Z", "value": "2 MWh"},
        ],
    }
    problem = await build(flex_model, steps=6, start_ms=start_ms)
    (battery,) = problem.devices
    assert list(np.nan_to_num(battery.soc_target, nan=-1)) == [-1, -1, 1.0, -1, 2.0, -1]
    assert list(battery.consumption_capacity) == [5.0, 5.0, 1.0, 1.0, 5.0, 5.0]


async def test_build_reads_sensors_in_their_units() -> None:
    sensors = Sensors(
        {
            3: [0.1, 0.2, 0.25, 0.3],  # EUR/kWh
            4: [50, 60, 70, 80],  # kW
            5: [25, 25, 25, 25],  # kWh per quarter hour = 100 kW
            6: [90, 80, 100, 95],  # %
            7: [200, 300, 400, 500],  # kWh, SoC at step ends
        }
    )
    problem = await build(
        {
            "power-capacity": {"sensor": 4},
            "soc-gain": [{"sensor": 5}],
            "storage-efficiency": {"sensor": 6},
            "soc-maxima": {"sensor": 7},
        },
        {"consumption-price": {"sensor": 3}, "production-price": "0 EUR/MWh"},
        step_ms=QUARTER,
        units={3: "EUR/kWh", 4: "kW", 5: "kWh", 6: "%", 7: "kWh"},
        sensors=sensors,
    )
    (battery,) = problem.devices
    assert problem.consumption_price == pytest.approx([100.0, 200.0, 250.0, 300.0])
    assert battery.consumption_capacity == pytest.approx([0.05, 0.06, 0.07, 0.08])
    # 25 kWh per quarter hour is 100 kW, so 0.025 MWh gained per quarter hour.
    assert battery.soc_gain == pytest.approx([0.025] * 4)
    assert battery.storage_efficiency == pytest.approx([0.9, 0.8, 1.0, 0.95])
    assert battery.soc_maxima == pytest.approx([0.2, 0.3, 0.4, 0.5])


async def test_build_unknown_prices_name_the_field() -> None:
    sensors = Sensors({3: [100.0, None, 120.0, 130.0], 4: [None] * 4})
    with pytest.raises(FlexModelError) as caught:
        await build(
            {"power-capacity": "1 MW"},
            {"consumption-price": {"sensor": 3}, "production-price-sensor": 4},
            units={3: "EUR/MWh", 4: "EUR/MWh"},
            sensors=sensors,
        )
    assert caught.value.messages == {
        "flex-context": {
            "consumption-price": [
                "Prices partially unknown for planning window. (sensor 3)"
            ],
            "production-price-sensor": [
                "Prices unknown for planning window. (sensor 4)"
            ],
        }
    }
    assert "Prices unknown for planning window" in str(caught.value)


async def test_build_without_prices_fails() -> None:
    with pytest.raises(FlexModelError) as caught:
        await build({"power-capacity": "1 MW"}, {})
    assert caught.value.messages == {
        "flex-context": {"consumption-price": ["Prices unknown for planning window."]}
    }


async def test_build_without_power_capacity_fails() -> None:
    with pytest.raises(FlexModelError) as caught:
        await build([{"sensor": 1}, {"sensor": 2, "power-capacity": "1 MW"}])
    assert caught.value.messages == {
        "flex-model": {
            "0": {
                "power-capacity": [
                    "Power capacity is not defined in the sensor attributes or the flex-model."
                ]
            }
        }
    }


async def test_build_power_capacity_sensor_with_gaps_fails() -> None:
    with pytest.raises(FlexModelError) as caught:
        await build(
            {"power-capacity": {"sensor": 4}},
            units={4: "kW"},
            sensors=Sensors({4: [1.0, None, 1.0, 1.0]}),
        )
    assert dig(caught.value.messages, ["flex-model", "power-capacity"]) == [
        "Power capacity partially unknown for planning window. (sensor 4)"
    ]


async def test_build_off_grid_datetime_names_the_field() -> None:
    with pytest.raises(FlexModelError) as caught:
        await build(
            [
                {
                    "sensor": 1,
                    "power-capacity": "1 MW",
                    "soc-targets": [
                        {"datetime": at(1), "value": "1 MWh"},
                        {"datetime": at(1.5), "value": "1 MWh"},
                    ],
                }
            ]
        )
    (message,) = dig(
        caught.value.messages, ["flex-model", "0", "soc-targets", "1", "datetime"]
    )
    assert message == (
        "Datetime 2024-01-01T01:30:00+00:00 is not at the end of a PT1H step "
        "of the planning window."
    )


async def test_build_unknown_and_unfit_sensors_name_the_field() -> None:
    with pytest.raises(FlexModelError) as caught:
        await build(
            {
                "power-capacity": {"sensor": 4},
                "soc-targets": {"sensor": 5},
                "state-of-charge": {"sensor": 6},
            },
            {"consumption-price": {"sensor": 7}},
            units={4: "EUR/MWh", 6: "°C", 7: "kW"},
        )
    assert caught.value.messages == {
        "flex-model": {
            "power-capacity": ["Cannot convert EUR/MWh to MW"],
            "soc-targets": ["No sensor found with ID 5."],
            "state-of-charge": ["Cannot convert °C to MWh"],
        },
        "flex-context": {"consumption-price": ["Cannot convert kW to a price per MWh"]},
    }


async def test_build_price_currencies_must_agree() -> None:
    with pytest.raises(FlexModelError) as caught:
        await build(
            {"power-capacity": "1 MW"},
            {"consumption-price": "1 EUR/MWh", "production-price": {"sensor": 3}},
            units={3: "USD/MWh"},
            sensors=Sensors({3: [1.0] * 4}),
        )
    assert dig(caught.value.messages, ["flex-context", "production-price"]) == [
        "All prices in the flex-context must share the same currency unit "
        "(in this case: 'EUR')."
    ]


async def test_build_inflexible_devices_are_production_positive_by_default() -> None:
    sensors = Sensors({7: [100, 200, None, 0], 8: [1, 1, 1, 1]})
    problem = await build(
        {"power-capacity": "1 MW"},
        {**PRICE, "inflexible-device-sensors": [7, 8]},
        units={7: "kW", 8: "MW"},
        sensors=sensors,
        consumption_positive=frozenset({8}),
    )
    assert problem.inflexible == pytest.approx([0.9, 0.8, 1.0, 1.0])


async def test_build_soc_gain_and_usage_add_up_per_step() -> None:
    problem = await build(
        {
            "power-capacity": "1 MW",
            "soc-gain": ["1 MW", "400 kW"],
            "soc-usage": [
                [{"start": at(0), "end": at(0.5), "value": "2 MW"}],
                "100 kW",
            ],
        },
        step_ms=QUARTER,
    )
    (battery,) = problem.devices
    assert battery.soc_gain == pytest.approx([0.35] * 4)
    assert battery.soc_usage == pytest.approx([0.525, 0.525, 0.025, 0.025])


async def test_build_reads_each_sensor_once_and_soc_sensors_one_step_later() -> None:
    sensors = Sensors({3: [1.0] * 4, 7: [1.0] * 4})
    await build(
        {"power-capacity": "1 MW", "soc-minima": {"sensor": 7}},
        {"consumption-price": {"sensor": 3}, "production-price": {"sensor": 3}},
        units={3: "EUR/MWh", 7: "MWh"},
        sensors=sensors,
    )
    assert sorted(sensors.calls) == [
        (3, START_MS, START_MS + 4 * HOUR, HOUR),
        (7, START_MS + HOUR, START_MS + 5 * HOUR, HOUR),
    ]


async def test_build_multiple_devices_keep_their_order_and_names() -> None:
    problem = await build(
        [
            {"sensor": 5, "power-capacity": "1 MW"},
            {"sensor": 2, "power-capacity": "2 MW", "soc-at-start": "1 MWh"},
        ]
    )
    assert [d.name for d in problem.devices] == ["sensor 5", "sensor 2"]
    assert [d.soc_at_start for d in problem.devices] == [0.0, 1.0]


async def test_build_values_beyond_float_range_count_as_unknown() -> None:
    with pytest.raises(FlexModelError) as caught:
        await build(
            {"power-capacity": "1 MW"},
            {"consumption-price": {"sensor": 3}},
            units={3: "EUR/kWh"},
            sensors=Sensors({3: [1e308, 1.0, math.nan, math.inf]}),
        )
    assert caught.value.messages == {
        "flex-context": {
            "consumption-price": [
                "Prices partially unknown for planning window. (sensor 3)"
            ]
        }
    }


async def test_build_rejects_a_fetch_of_the_wrong_length() -> None:
    async def short(
        sensor: int, start_ms: int, end_ms: int, step_ms: int
    ) -> list[float | None]:
        return [1.0]

    with pytest.raises(ValueError, match="fetch gave 1 values of sensor 3"):
        await build_problem(
            parse_flex_model({"power-capacity": "1 MW"}),
            parse_flex_context({"consumption-price": {"sensor": 3}}),
            start_ms=START_MS,
            step_ms=HOUR,
            steps=4,
            fetch=short,
            sensor_units={3: "EUR/MWh"},
        )


async def test_build_rejects_an_empty_grid() -> None:
    models = parse_flex_model({"power-capacity": "1 MW"})
    with pytest.raises(ValueError, match="planning grid"):
        await build_problem(
            models,
            parse_flex_context(PRICE),
            start_ms=START_MS,
            step_ms=HOUR,
            steps=0,
            fetch=Sensors().fetch,
            sensor_units={},
        )


# merge, sensor_ids, soc_targets_end_ms


def test_merge_fills_missing_keys_from_stored() -> None:
    stored = {"soc-max": "10 MWh", "power-capacity": "1 MW"}
    assert merge({"power-capacity": "2 MW"}, stored) == {
        "soc-max": "10 MWh",
        "power-capacity": "2 MW",
    }
    assert merge(None, stored) == stored
    assert merge(None, None) == {}
    assert merge({"a": 1}, "not an object") == {"a": 1}
    assert merge("bad", stored) == "bad"


def test_merge_fills_each_device_of_a_list_but_not_its_sensor() -> None:
    stored = {"sensor": 9, "soc-max": "10 MWh", "power-capacity": "1 MW"}
    merged = merge([{"sensor": 1}, {"sensor": 2, "soc-max": "5 MWh"}, "bad"], stored)
    assert merged == [
        {"sensor": 1, "soc-max": "10 MWh", "power-capacity": "1 MW"},
        {"sensor": 2, "soc-max": "5 MWh", "power-capacity": "1 MW"},
        "bad",
    ]


def test_merge_old_and_new_price_names_do_not_clash() -> None:
    stored = {"consumption-price": {"sensor": 3}, "production-price-sensor": 4}
    merged = merge(
        {"consumption-price-sensor": 5, "production-price": "1 EUR/MWh"}, stored
    )
    assert merged == {"consumption-price-sensor": 5, "production-price": "1 EUR/MWh"}
    context = parse_flex_context(merged)
    assert context.consumption_price == SensorRef(5)


def test_merge_result_parses_with_stored_values() -> None:
    models = parse_flex_model(merge([{"sensor": 1}], {"power-capacity": "1 MW"}))
    assert models[0].power_capacity == 1.0


def test_sensor_ids_lists_every_reference() -> None:
    models = parse_flex_model(
        [
            {
                "sensor": 1,
                "state-of-charge": {"sensor": 2},
                "soc-min": {"sensor": 3},
                "soc-targets": {"sensor": 4},
                "power-capacity": {"sensor": 5},
                "charging-efficiency": {"sensor": 6},
                "soc-gain": [{"sensor": 7}, "1 MW"],
                "soc-usage": [{"sensor": 8}],
            },
            {"sensor": 9, "soc-maxima": {"sensor": 10}, "storage-efficiency": "90%"},
        ]
    )
    context = parse_flex_context(
        {
            "consumption-price-sensor": 11,
            "production-price": {"sensor": 12},
            "inflexible-device-sensors": [13, 14],
            "site-power-capacity": {"sensor": 15},
            "site-consumption-capacity": "1 MW",
        }
    )
    assert sensor_ids(models, context) == set(range(1, 16))


def test_soc_targets_end_ms_is_the_latest_target() -> None:
    models = parse_flex_model(
        [
            {"sensor": 1, "soc-targets": [{"datetime": at(3), "value": 1}]},
            {
                "sensor": 2,
                "soc-targets": [{"start": at(1), "duration": "PT7H", "value": 1}],
            },
            {"sensor": 3, "soc-targets": {"sensor": 4}},
        ]
    )
    assert soc_targets_end_ms(models) == START_MS + 8 * HOUR
    assert soc_targets_end_ms(parse_flex_model({})) is None


# Bad input: one FlexModelError naming each field


UNSUPPORTED_INT = (
    "Unsupported value type. `<class 'int'>` was provided but only dict, list, str, "
    "pint Quantity, tuple, and numeric values with a default source unit are supported."
)
UNSUPPORTED_BOOL = UNSUPPORTED_INT.replace("<class 'int'>", "<class 'bool'>")


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        ({"foo": 1}, ["foo"], "Unknown field."),
        ({"soc-max": "5 MW"}, ["soc-max"], "Cannot convert value `5 MW` to 'MWh'"),
        (
            {"soc-at-start": "5 EUR"},
            ["soc-at-start"],
            "Cannot convert value `5 EUR` to 'MWh'",
        ),
        (
            {"power-capacity": "2 MWh"},
            ["power-capacity"],
            "Cannot convert value `2 MWh` to 'MW'",
        ),
        (
            {"power-capacity": "2"},
            ["power-capacity"],
            "Cannot convert value `2` to 'MW'",
        ),
        (
            {"roundtrip-efficiency": "90 kW"},
            ["roundtrip-efficiency"],
            "Cannot convert value `90 kW` to 'dimensionless'",
        ),
        (
            {"power-capacity": "-1 MW"},
            ["power-capacity"],
            "Must be greater than or equal to 0.",
        ),
        (
            {"consumption-capacity": "-1 kW"},
            ["consumption-capacity"],
            "Must be greater than or equal to 0.",
        ),
        ({"soc-min": -1}, ["soc-min"], "Must be greater than or equal to 0."),
        (
            {"production-capacity": [{"datetime": at(1), "value": "-2 MW"}]},
            ["production-capacity", "0", "value"],
            "Must be greater than or equal to 0.",
        ),
        (
            {"roundtrip-efficiency": "110%"},
            ["roundtrip-efficiency"],
            "Must be greater than 0 % and less than or equal to 100 %.",
        ),
        (
            {"roundtrip-efficiency": 0},
            ["roundtrip-efficiency"],
            "Must be greater than 0 % and less than or equal to 100 %.",
        ),
        (
            {"storage-efficiency": 90},
            ["storage-efficiency"],
            "Must be greater than 0 % and less than or equal to 100 %.",
        ),
        (
            {"charging-efficiency": [{"datetime": at(1), "value": "101%"}]},
            ["charging-efficiency", "0", "value"],
            "Must be greater than 0 % and less than or equal to 100 %.",
        ),
        (
            {"soc-targets": [{"datetime": "2024-01-01T01:00:00", "value": 1}]},
            ["soc-targets", "0", "datetime"],
            "Not a valid aware datetime.",
        ),
        (
            {"soc-targets": [{"datetime": "tomorrow", "value": 1}]},
            ["soc-targets", "0", "datetime"],
            "Not a valid datetime.",
        ),
        (
            {"soc-targets": [{"datetime": 5, "value": 1}]},
            ["soc-targets", "0", "datetime"],
            "Not a valid datetime.",
        ),
        (
            {"soc-minima": [{"start": at(0), "end": "2024-01-01T03:00", "value": 1}]},
            ["soc-minima", "0", "end"],
            "Not a valid aware datetime.",
        ),
        ({"soc-at-start": math.nan}, ["soc-at-start"], "Not a valid number."),
        ({"soc-at-start": math.inf}, ["soc-at-start"], "Not a valid number."),
        ({"soc-max": -math.inf}, ["soc-max"], "Not a valid number."),
        ({"soc-at-start": 10**400}, ["soc-at-start"], "Not a valid number."),
        (
            {"soc-at-start": "nan MWh"},
            ["soc-at-start"],
            "Cannot convert value 'nan MWh' to a valid quantity.",
        ),
        (
            {"soc-at-start": "1e999 MWh"},
            ["soc-at-start"],
            "Cannot convert value '1e999 MWh' to a valid quantity.",
        ),
        (
            {"soc-at-start": "abc"},
            ["soc-at-start"],
            "Cannot convert value 'abc' to a valid quantity.",
        ),
        (
            {"power-capacity": "lots MW"},
            ["power-capacity"],
            "Cannot convert value 'lots MW' to a valid quantity.",
        ),
        (
            {"power-capacity": "2 flubs"},
            ["power-capacity"],
            "Cannot convert value '2 flubs' to a valid quantity.",
        ),
        ({"power-capacity": 2}, ["power-capacity"], UNSUPPORTED_INT),
        ({"power-capacity": True}, ["power-capacity"], UNSUPPORTED_BOOL),
        ({"soc-at-start": True}, ["soc-at-start"], UNSUPPORTED_BOOL),
        ({"soc-at-start": [1]}, ["soc-at-start"], "Not a valid quantity."),
        ({"soc-at-start": None}, ["soc-at-start"], "Field may not be null."),
        (
            {"roundtrip-efficiency": {"sensor": 3}},
            ["roundtrip-efficiency"],
            "Not a valid quantity.",
        ),
        ({"soc-unit": "Wh"}, ["soc-unit"], "Must be one of: kWh, MWh."),
        ({"soc-unit": 1}, ["soc-unit"], "Not a valid string."),
        (
            {"prefer-charging-sooner": "maybe"},
            ["prefer-charging-sooner"],
            "Not a valid boolean.",
        ),
        ({"sensor": "x"}, ["sensor"], "Not a valid integer."),
        ({"sensor": -1}, ["sensor"], "Not a valid integer."),
        (
            {"sensor": 1.5},
            ["sensor"],
            "Sensor ID has the wrong type. Got `float` but `int` was expected.",
        ),
        (
            {"power-capacity": {"sensor": True}},
            ["power-capacity", "sensor"],
            "Sensor ID has the wrong type. Got `bool` but `int` was expected.",
        ),
        (
            {"power-capacity": {"id": 3}},
            ["power-capacity"],
            "Dictionary provided but `sensor` key not found.",
        ),
        (
            {"power-capacity": {"sensor": 3, "source": 1}},
            ["power-capacity", "source"],
            "Unknown field.",
        ),
        (
            {"state-of-charge": 5},
            ["state-of-charge"],
            "The `state-of-charge` field can only be a sensor reference.",
        ),
        (
            {"roundtrip-efficiency": "90%", "charging-efficiency": "95%"},
            ["roundtrip-efficiency"],
            "Fields `charging-efficiency` and `roundtrip-efficiency` are mutually exclusive.",
        ),
        ({"soc-gain": "1 MW"}, ["soc-gain"], "Not a valid list."),
        ({"soc-usage": []}, ["soc-usage"], "Shorter than minimum length 1."),
        (
            {"soc-gain": ["1 MWh"]},
            ["soc-gain", "0"],
            "Cannot convert value `1 MWh` to 'MW'",
        ),
        (
            {"soc-gain": [{"datetime": at(1), "value": "1 MW"}]},
            ["soc-gain", "0"],
            "Dictionary provided but `sensor` key not found.",
        ),
        ({"soc-targets": [5]}, ["soc-targets", "0", "_schema"], "Invalid input type."),
        (
            {"soc-targets": [{"datetime": at(1)}]},
            ["soc-targets", "0", "value"],
            "Missing data for required field.",
        ),
        (
            {"soc-targets": [{"datetime": at(1), "value": 1, "x": 2}]},
            ["soc-targets", "0", "x"],
            "Unknown field.",
        ),
        (
            {"soc-targets": [{"value": 1}]},
            ["soc-targets", "0", "_schema"],
            "Missing field(s) to describe timing: use the 'datetime' field, or a combination of 2 fields of 'start', 'end' and 'duration'.",
        ),
        (
            {"soc-targets": [{"datetime": at(1), "start": at(1), "value": 1}]},
            ["soc-targets", "0", "_schema"],
            "If using the 'datetime' field, no 'start', 'end' or 'duration' is expected.",
        ),
        (
            {"soc-targets": [{"duration": "PT1H", "value": 1}]},
            ["soc-targets", "0", "_schema"],
            "If using the 'duration' field, either 'start' or 'end' is expected.",
        ),
        (
            {"soc-targets": [{"start": at(1), "duration": "P1M", "value": 1}]},
            ["soc-targets", "0", "duration"],
            "Duration P1M has no fixed length: months and years are not supported.",
        ),
        (
            {"soc-targets": [{"start": at(2), "end": at(1), "value": 1}]},
            ["soc-targets", "0", "end"],
            "The end may not be before the start.",
        ),
    ],
)
def test_flexmodel_rejects(raw: dict[str, Any], path: list[str], message: str) -> None:
    tree = messages(raw)
    assert list(tree) == ["flex-model"]
    assert message in dig(tree, ["flex-model", *path])


def test_flexmodel_collects_every_problem() -> None:
    tree = messages(
        [
            {
                "sensor": 1,
                "soc-max": "5 MW",
                "soc-targets": [
                    {"datetime": at(1), "value": 1},
                    {"datetime": "2024-01-01T02:00", "value": "x"},
                ],
            },
            {"power-capacity": "1 MW"},
            "device",
            {"sensor": 1},
        ]
    )
    assert tree == {
        "flex-model": {
            "0": {
                "soc-max": ["Cannot convert value `5 MW` to 'MWh'"],
                "soc-targets": {
                    "1": {
                        "value": ["Cannot convert value 'x' to a valid quantity."],
                        "datetime": ["Not a valid aware datetime."],
                    }
                },
            },
            "1": {"sensor": ["Missing data for required field."]},
            "2": {"_schema": ["Invalid input type."]},
            "3": {"sensor": ["Sensor 1 is listed more than once."]},
        }
    }


@pytest.mark.parametrize(
    ("raw", "tree"),
    [
        ("battery", {"flex-model": {"_schema": ["Invalid input type."]}}),
        (5, {"flex-model": {"_schema": ["Invalid input type."]}}),
        ([], {"flex-model": ["Shorter than minimum length 1."]}),
    ],
)
def test_flexmodel_rejects_other_shapes(raw: object, tree: dict[str, Any]) -> None:
    assert messages(raw) == tree


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        ({"relax-everything": True}, ["relax-everything"], "Unknown field."),
        (
            {"relax-soc-constraints": "maybe"},
            ["relax-soc-constraints"],
            "Not a valid boolean.",
        ),
        (
            {"site-production-breach-price": "1 EUR/MWh"},
            ["site-production-breach-price"],
            "Cannot convert value `1 EUR/MWh` to '/MW'",
        ),
        (
            {"soc-minima-breach-price": "-1 EUR/MWh"},
            ["soc-minima-breach-price"],
            "Must be greater than or equal to 0.",
        ),
        (
            {"consumption-price": "1 EUR/MWh", "soc-maxima-breach-price": "1 GBP/kWh"},
            ["soc-maxima-breach-price"],
            "All prices in the flex-context must share the same currency unit (in this case: 'EUR').",
        ),
        (
            {"consumption-price": "10 MW"},
            ["consumption-price"],
            "Cannot convert value `10 MW` to '/MWh'",
        ),
        (
            {"consumption-price": "10 EUR/MW"},
            ["consumption-price"],
            "Cannot convert value `10 EUR/MW` to '/MWh'",
        ),
        (
            {"consumption-price": "10 EUR"},
            ["consumption-price"],
            "Cannot convert value `10 EUR` to '/MWh'",
        ),
        ({"production-price": 10}, ["production-price"], UNSUPPORTED_INT),
        (
            {"consumption-price": math.nan},
            ["consumption-price"],
            "Unsupported value type. `<class 'float'>` was provided but only dict, list, str, pint Quantity, tuple, and numeric values with a default source unit are supported.",
        ),
        (
            {"consumption-price": "1 EUR/MWh", "consumption-price-sensor": 3},
            ["consumption-price"],
            "Must pass either consumption-price or consumption-price-sensor.",
        ),
        (
            {"consumption-price-sensor": "three"},
            ["consumption-price-sensor"],
            "Not a valid integer.",
        ),
        (
            {"consumption-price": "1 EUR/MWh", "production-price": "1 USD/MWh"},
            ["production-price"],
            "All prices in the flex-context must share the same currency unit (in this case: 'EUR').",
        ),
        (
            {
                "consumption-price": [
                    {"datetime": at(0), "value": "1 EUR/MWh"},
                    {"datetime": at(1), "value": "1 GBP/MWh"},
                ]
            },
            ["consumption-price", "1", "value"],
            "All prices in the flex-context must share the same currency unit (in this case: 'EUR').",
        ),
        (
            {"inflexible-device-sensors": 5},
            ["inflexible-device-sensors"],
            "Not a valid list.",
        ),
        (
            {"inflexible-device-sensors": [5, "x"]},
            ["inflexible-device-sensors", "1"],
            "Not a valid integer.",
        ),
        (
            {"site-power-capacity": "-2 MW"},
            ["site-power-capacity"],
            "Must be greater than or equal to 0.",
        ),
        (
            {"site-consumption-capacity": "2 MWh"},
            ["site-consumption-capacity"],
            "Cannot convert value `2 MWh` to 'MW'",
        ),
        (
            {"site-production-capacity": None},
            ["site-production-capacity"],
            "Field may not be null.",
        ),
    ],
)
def test_flexcontext_rejects(
    raw: dict[str, Any], path: list[str], message: str
) -> None:
    tree = messages(raw, context=True)
    assert list(tree) == ["flex-context"]
    assert message in dig(tree, ["flex-context", *path])


def test_flexcontext_rejects_other_shapes() -> None:
    assert messages([], context=True) == {
        "flex-context": {"_schema": ["Invalid input type."]}
    }


def test_flexmodelerror_str_lists_each_field() -> None:
    error = FlexModelError({"flex-model": {"0": {"soc-max": ["a"], "x": ["b", "c"]}}})
    assert str(error) == "flex-model.0.soc-max: a; flex-model.0.x: b; flex-model.0.x: c"


# Properties


FIELD_NAMES = sorted(FLEX_MODEL_FIELDS | FLEX_CONTEXT_FIELDS)
TEXTS = st.sampled_from(
    [
        "25 kWh",
        "2 MW",
        "90%",
        "0.95",
        "100 EUR/MWh",
        "0.2 USD/kWh",
        "-1 MW",
        "1e999 MW",
        "nan",
        "kWh",
        "MWh",
        "PT1H",
        "P1M",
        "2024-01-01T01:00:00+00:00",
        "2024-01-01T01:00:00",
        "2024-10-27T02:00:00+01:00",
        "",
        "°C",
        "1 m/s**2",
        "true",
    ]
)
KEYS = st.sampled_from(
    [*FIELD_NAMES, "sensor", "value", "datetime", "start", "end", "duration", "x"]
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | TEXTS
)
JSON = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)


@given(JSON)
@settings(max_examples=400, deadline=None)
def test_flexmodel_parsers_raise_only_flexmodelerror(raw: object) -> None:
    for parse in (parse_flex_model, parse_flex_context):
        error: FlexModelError | None = None
        try:
            parse(raw)
        except FlexModelError as err:
            error = err
        if error is not None:
            assert error.messages
            assert str(error)


SEGMENT = st.fixed_dictionaries(
    {
        "value": st.sampled_from(["1 MW", "0.5 MWh", "90%", "10 EUR/MWh", 1, 0.5]),
        "start": st.integers(-2, 8).map(lambda h: at(h / 2)),
    },
    optional={
        "end": st.integers(-2, 10).map(lambda h: at(h / 2)),
        "duration": st.sampled_from(["PT30M", "PT1H", "PT0M"]),
    },
) | st.fixed_dictionaries(
    {
        "value": st.sampled_from(["1 MW", "2 MWh", "50%", "5 EUR/MWh", 2]),
        "datetime": st.integers(-2, 12).map(lambda h: at(h / 2)),
    }
)
VALUES = (
    TEXTS
    | st.sampled_from([{"sensor": 3}, {"sensor": 4}, 0.5, 2])
    | st.lists(SEGMENT, max_size=3)
)
FLEX_MODELS = st.dictionaries(
    st.sampled_from(sorted(FLEX_MODEL_FIELDS - {"sensor"})), VALUES, max_size=6
)
FLEX_CONTEXTS = st.dictionaries(st.sampled_from(sorted(FLEX_CONTEXT_FIELDS)), VALUES)


@given(
    FLEX_MODELS,
    FLEX_CONTEXTS,
    st.lists(st.none() | st.floats(), min_size=8, max_size=8),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_build_problem_raises_only_flexmodelerror(
    flex_model: dict[str, Any], flex_context: dict[str, Any], data: list[float | None]
) -> None:
    try:
        models = parse_flex_model(flex_model, sensor=1)
        context = parse_flex_context(flex_context)
    except FlexModelError:
        return
    sensors = Sensors({3: data, 4: data})
    units = {1: "MW", 3: "EUR/kWh", 4: "kW"}
    problem: SiteProblem | FlexModelError
    try:
        problem = asyncio.run(
            build_problem(
                models,
                context,
                start_ms=START_MS,
                step_ms=HOUR // 2,
                steps=8,
                fetch=sensors.fetch,
                sensor_units=units,
            )
        )
    except FlexModelError as err:
        problem = err
    if isinstance(problem, FlexModelError):
        assert problem.messages
        return
    assert problem.steps == 8
    for battery in problem.devices:
        assert (battery.consumption_capacity >= 0).all()
        assert (battery.production_capacity >= 0).all()
        assert (
            (battery.charging_efficiency > 0) & (battery.charging_efficiency <= 1)
        ).all()
    assert not np.isnan(problem.consumption_price).any()
