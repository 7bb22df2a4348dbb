"""The storage scheduler's linear program against optima worked out by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from tenant_service.scheduling.problem import (
    Array,
    InfeasibleError,
    SiteProblem,
    Solution,
    StorageDevice,
)
from tenant_service.scheduling.storage import TIE_BREAK, solve

INF = math.inf
NAN = math.nan
Values = float | Sequence[float]


def arr(values: Values, steps: int) -> Array:
    """A float array of `steps` values from a scalar or a sequence."""
    if isinstance(values, Sequence):
        out = np.array(values, dtype=np.float64)
        if out.shape != (steps,):
            raise ValueError(f"{values!r} is not {steps} long")
        return out
    return np.full(steps, float(values))


def battery(
    steps: int,
    *,
    name: str = "sensor 1",
    start: float = 0.0,
    soc_min: Values = 0.0,
    soc_max: Values = 10.0,
    target: Values = NAN,
    charge: Values = 1.0,
    discharge: Values = 1.0,
    charging_efficiency: Values = 1.0,
    discharging_efficiency: Values = 1.0,
    storage_efficiency: Values = 1.0,
    gain: Values = 0.0,
    usage: Values = 0.0,
    sooner: bool = True,
) -> StorageDevice:
    """A storage device with lossless, 1 MW, 0-10 MWh defaults."""
    return StorageDevice(
        name=name,
        soc_at_start=start,
        soc_min=arr(soc_min, steps),
        soc_max=arr(soc_max, steps),
        soc_target=arr(target, steps),
        consumption_capacity=arr(charge, steps),
        production_capacity=arr(discharge, steps),
        charging_efficiency=arr(charging_efficiency, steps),
        discharging_efficiency=arr(discharging_efficiency, steps),
        storage_efficiency=arr(storage_efficiency, steps),
        soc_gain=arr(gain, steps),
        soc_usage=arr(usage, steps),
        prefer_charging_sooner=sooner,
    )


def site(
    prices: Sequence[float],
    *devices: StorageDevice,
    production_prices: Values | None = None,
    inflexible: Values = 0.0,
    consumption_capacity: Values = INF,
    production_capacity: Values = INF,
    hours: float = 1.0,
) -> SiteProblem:
    """A site with hourly steps, one price for both directions unless given."""
    steps = len(prices)
    return SiteProblem(
        step_hours=hours,
        consumption_price=arr(prices, steps),
        production_price=arr(
            prices if production_prices is None else production_prices, steps
        ),
        inflexible=arr(inflexible, steps),
        site_consumption_capacity=arr(consumption_capacity, steps),
        site_production_capacity=arr(production_capacity, steps),
        devices=devices,
    )


def close(actual: Array | float, expected: Array | Values) -> bool:
    """Equal within the solver's tolerances."""
    return bool(np.allclose(actual, expected, rtol=0, atol=1e-6))


def test_solve_charges_in_cheapest_and_discharges_in_dearest_hours() -> None:
    result = solve(site([10, 50, 20, 80], battery(4, soc_max=1)))
    assert close(result.power[0], [1, -1, 1, -1])
    assert close(result.soc[0], [1, 0, 1, 0])
    assert close(result.cost, 10 - 50 + 20 - 80)


def test_solve_keeps_soc_within_bounds() -> None:
    device = battery(3, start=1, soc_min=0.4, soc_max=1.5, charge=2, discharge=2)
    result = solve(site([100, 10, 100], device))
    assert close(result.soc[0], [0.4, 1.5, 0.4])
    assert close(result.power[0], [-0.6, 1.1, -1.1])
    assert close(result.cost, -60 + 11 - 110)


def test_solve_meets_soc_targets() -> None:
    device = battery(
        3,
        start=1,
        soc_min=0.4,
        soc_max=1.5,
        charge=2,
        discharge=2,
        target=[1, NAN, 1.5],
    )
    result = solve(site([100, 10, 100], device))
    assert close(result.soc[0], [1, 1.5, 1.5])
    assert close(result.power[0], [0, 0.5, 0])
    assert close(result.cost, 5)


def test_solve_targets_at_every_step_fix_the_schedule() -> None:
    device = battery(3, start=2, target=[3, 3, 1.5], discharge=2)
    result = solve(site([-5, 40, 60], device))
    assert close(result.soc[0], [3, 3, 1.5])
    assert close(result.power[0], [1, 0, -1.5])
    assert close(result.cost, -5 - 90)


def test_solve_respects_device_capacities() -> None:
    device = battery(4, charge=0.5, discharge=2)
    result = solve(site([10, 10, 100, 100], device))
    # 1 MWh fits in one discharging hour; the tie-breaker discharges later.
    assert close(result.power[0], [0.5, 0.5, 0, -1])
    assert close(result.cost, 10 - 100)


def test_solve_with_quarter_hours_scales_energy_by_step_length() -> None:
    device = battery(4, soc_max=0.5, charge=2, discharge=2)
    result = solve(site([10, 10, 100, 100], device, hours=0.25))
    assert close(result.power[0], [2, 0, 0, -2])
    assert close(result.soc[0], [0.5, 0.5, 0.5, 0])
    assert close(result.cost, (2 * 10 - 2 * 100) * 0.25)


def test_solve_skips_cycles_that_roundtrip_losses_make_unprofitable() -> None:
    device = battery(2, charging_efficiency=0.9, discharging_efficiency=0.9)
    # Buying 1 MWh at 100 returns 0.81 MWh: 89.1 at 110.
    result = solve(site([100, 110], device))
    assert close(result.power[0], [0, 0])
    assert close(result.cost, 0)


def test_solve_applies_charging_and_discharging_efficiencies() -> None:
    device = battery(2, charging_efficiency=0.9, discharging_efficiency=0.9)
    result = solve(site([10, 100], device))
    assert close(result.power[0], [1, -0.81])
    assert close(result.soc[0], [0.9, 0])
    assert close(result.cost, 10 - 81)


def test_solve_applies_storage_efficiency_each_step() -> None:
    device = battery(3, start=4, storage_efficiency=0.5, charge=0, discharge=100)
    # Selling x now earns 10 x; waiting leaves a quarter of it to sell at 100.
    result = solve(site([10, 10, 100], device))
    assert close(result.soc[0], [2, 1, 0])
    assert close(result.power[0], [0, 0, -0.5])
    assert close(result.cost, -50)


def test_solve_accounts_for_soc_gain_and_usage() -> None:
    device = battery(3, start=0.5, soc_max=1, usage=[0, 1.5, 0], gain=[0, 0, 1])
    result = solve(site([30, 10, 20], device))
    # 1 MWh bought at 10 covers the usage; the gain is sold at 20.
    assert close(result.power[0], [0, 1, -1])
    assert close(result.soc[0], [0.5, 0, 0])
    assert close(result.cost, 10 - 20)


def test_solve_shares_site_capacity_between_devices() -> None:
    devices = (
        battery(3, name="sensor 1", soc_max=1, discharge=2),
        battery(3, name="sensor 2", soc_max=1, discharge=2),
    )
    result = solve(site([10, 20, 100], *devices, consumption_capacity=1.5))
    total = result.power[0] + result.power[1]
    assert close(total, [1.5, 0.5, -2])
    assert close(result.cost, 15 + 10 - 200)
    for soc in result.soc:
        assert close(soc[-1], 0)


def test_solve_leaves_the_inflexible_load_room_at_the_site() -> None:
    device = battery(3, soc_max=1)
    problem = site([10, 20, 100], device, inflexible=1, consumption_capacity=1.5)
    result = solve(problem)
    assert close(result.power[0], [0.5, 0.5, -1])
    assert close(result.cost, 1.5 * 10 + 1.5 * 20 + 0 * 100)


def test_solve_stores_own_production_when_feed_in_pays_less() -> None:
    device = battery(2)
    problem = site([50, 50], device, production_prices=[10, 10], inflexible=[-1, 1])
    result = solve(problem)
    assert close(result.power[0], [1, -1])
    assert close(result.cost, 0)


def test_solve_nets_flows_of_devices_against_each_other() -> None:
    # Flat prices with a spread between directions: one device's discharge feeds
    # the other's charging rather than being exported and reimported.
    devices = (
        battery(2, name="sensor 1", start=1, target=[NAN, 0]),
        battery(2, name="sensor 2", start=0, target=[NAN, 1]),
    )
    result = solve(site([50, 50], *devices, production_prices=[10, 10]))
    assert close(result.power[0] + result.power[1], [0, 0])
    assert close(result.cost, 0)


def test_solve_prefers_charging_sooner_on_equal_prices() -> None:
    device = battery(96, target=[*[NAN] * 95, 2], charge=1)
    result = solve(site([40] * 96, device, hours=0.25))
    expected = np.zeros(96)
    expected[:8] = 1
    assert close(result.power[0], expected)
    assert close(result.cost, 40 * 2)


def test_solve_prefers_discharging_later_on_equal_prices() -> None:
    device = battery(96, start=2, target=[*[NAN] * 95, 0], discharge=1)
    result = solve(site([40] * 96, device, hours=0.25))
    expected = np.zeros(96)
    expected[-8:] = -1
    assert close(result.power[0], expected)


def test_solve_prefers_sooner_within_equal_hours_only() -> None:
    # Hourly prices on a quarter-hour grid: the tie-breaker picks the first quarters
    # of the cheapest hour, never a dearer hour.
    prices = [30.0] * 4 + [29.99] * 4 + [30.0] * 4
    device = battery(12, target=[*[NAN] * 11, 0.5], charge=1)
    result = solve(site(prices, device, production_prices=0, hours=0.25))
    assert close(result.power[0], [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0])


def test_solve_without_preference_costs_the_same() -> None:
    problem = site([40] * 8, battery(8, target=[*[NAN] * 7, 2], sooner=False))
    result = solve(problem)
    assert close(result.soc[0][-1], 2)
    assert close(result.cost, 80)


def test_solve_without_devices_prices_the_inflexible_load() -> None:
    result = solve(
        site([10, 20], production_prices=[5, 5], inflexible=[1, -2], hours=0.5)
    )
    assert result.power == ()
    assert close(result.cost, (10 - 10) * 0.5)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        pytest.param(
            site([10, 10, 10], battery(3, target=[NAN, 3, NAN])),
            "soc-targets of sensor 1 cannot be met: at the end of step 2 of 3 the SoC"
            " must be 3 MWh but can reach only 2 MWh.",
            id="target-out-of-reach",
        ),
        pytest.param(
            site([10, 10, 10], battery(3, soc_max=4, target=[NAN, 5, NAN])),
            "soc-targets of sensor 1 cannot be met: at the end of step 2 of 3 the"
            " target 5 MWh lies outside soc-min/soc-max (0 to 4 MWh).",
            id="target-above-soc-max",
        ),
        pytest.param(
            site([10, 10, 10], battery(3, start=1, soc_min=[0, 0, 4.5])),
            "soc-minima of sensor 1 cannot be met: at the end of step 3 of 3 the SoC"
            " must be at least 4.5 MWh but can reach only 4 MWh.",
            id="minimum-out-of-reach",
        ),
        pytest.param(
            site([10, 10], battery(2, start=5, soc_max=[4.5, 2])),
            "soc-maxima of sensor 1 cannot be met: at the end of step 2 of 2 the SoC"
            " must be at most 2 MWh but cannot get below 3 MWh.",
            id="maximum-out-of-reach",
        ),
        pytest.param(
            site([10, 10], battery(2, soc_min=[0, 2], soc_max=[3, 1])),
            "soc-min/soc-max of sensor 1 conflict: at the end of step 2 of 2 the"
            " minimum 2 MWh exceeds the maximum 1 MWh.",
            id="min-above-max",
        ),
        pytest.param(
            site(
                [10, 10],
                battery(2, start=5, discharge=0.5),
                inflexible=[0, 2],
                consumption_capacity=1,
            ),
            "site-consumption-capacity cannot be met: during step 2 of 2 the site"
            " consumes at least 1.5 MW, above 1 MW.",
            id="site-consumption",
        ),
        pytest.param(
            site(
                [10, 10],
                battery(2, charge=1),
                inflexible=-3,
                production_capacity=1.5,
            ),
            "site-production-capacity cannot be met: during step 1 of 2 the site"
            " produces at least 2 MW, above 1.5 MW.",
            id="site-production",
        ),
        pytest.param(
            site(
                [10, 10],
                battery(2, name="sensor 1", target=[NAN, 2], charge=2),
                battery(2, name="sensor 2", target=[NAN, 2], charge=2),
                consumption_capacity=1.5,
            ),
            "soc-targets of sensor 1 cannot be met within the site's capacities and"
            " the other devices' constraints.",
            id="targets-beyond-shared-site",
        ),
        pytest.param(
            site(
                [10, 10],
                battery(2, name="sensor 1", start=0.5),
                battery(2, name="sensor 2", start=0.5),
                inflexible=[2, 0],
                consumption_capacity=0,
            ),
            "site-consumption-capacity cannot be met together with the devices' SoC"
            " constraints and capacities.",
            id="site-beyond-stored-energy",
        ),
    ],
)
def test_solve_names_the_constraint_that_cannot_be_met(
    problem: SiteProblem, message: str
) -> None:
    with pytest.raises(InfeasibleError) as info:
        solve(problem)
    assert str(info.value) == message


# FlexMeasures' default breach price: 1000 EUR/kWh.
BREACH = 1e6


def test_solve_prices_missed_soft_targets_and_minima_as_flexmeasures() -> None:
    """The anchor's case: 24 quarter hours, 0.5 MWh at start, 1 MW; 10 MWh due
    at 03:00 and at least 8 MWh at 05:00. FlexMeasures 1.0.1 finished the job with
    all/any soc targets 6.5e6/2.6e7 and all/any soc minima 2.5e6/1e7 (EUR)."""
    steps = 24
    minima = np.full(steps, NAN)
    minima[19] = 8.0
    device = replace(
        battery(steps, start=0.5, soc_max=20, target=[NAN] * 11 + [10] + [NAN] * 12),
        soc_minima=minima,
    )
    problem = replace(
        site([15.0] * 8 + [30.0] * 16, device, hours=0.25),
        soc_minima_breach_price=BREACH,
        soc_maxima_breach_price=BREACH,
    )
    result = solve(problem)
    assert close(result.soc[0][11], 3.5)  # as full as 1 MW for 3 h can make it
    assert close(result.soc[0][19], 5.5)
    costs = result.commitment_costs
    assert costs["all soc targets"] == pytest.approx(6.5e6)
    assert costs["any soc targets"] == pytest.approx(2.6e7)
    assert costs["all soc minima"] == pytest.approx(2.5e6)
    assert costs["any soc minima"] == pytest.approx(1e7)
    assert costs["electricity net energy"] == pytest.approx(result.cost)
    assert 0 < costs["prefer a full storage 0 sooner"] < 0.01
    assert "all soc maxima" not in costs


def test_solve_prices_a_soft_maximum_and_overshot_target() -> None:
    """Gain pushes the SoC up: 1 MWh over a 4 MWh maximum in one step, 2 MWh over a
    3 MWh target in another (hourly steps: "any" = price x largest breach)."""
    maxima = np.array([NAN, 4.0, NAN])
    device = replace(
        battery(3, start=5, charge=0, discharge=0, target=[NAN, NAN, 3], soc_max=10),
        soc_maxima=maxima,
    )
    problem = replace(
        site([10.0, 10.0, 10.0], device),
        soc_minima_breach_price=BREACH,
        soc_maxima_breach_price=2 * BREACH,
    )
    result = solve(problem)
    assert close(result.soc[0], [5, 5, 5])
    costs = result.commitment_costs
    assert costs["all soc maxima"] == pytest.approx(2e6)
    assert costs["any soc maxima"] == pytest.approx(2e6)
    assert costs["all soc targets"] == pytest.approx(4e6)
    assert costs["any soc targets"] == pytest.approx(4e6)
    assert "all soc minima" not in costs  # no soc-minima given


def test_solve_meets_reachable_soft_targets_exactly() -> None:
    device = battery(
        3, start=1, soc_max=1.5, charge=2, discharge=2, target=[1, NAN, 1.5]
    )
    problem = replace(
        site([100, 10, 100], device),
        soc_minima_breach_price=BREACH,
        soc_maxima_breach_price=BREACH,
    )
    result = solve(problem)
    assert close(result.soc[0], [1, 1.5, 1.5])
    assert close(result.cost, 5)
    assert result.commitment_costs["all soc targets"] == pytest.approx(0, abs=1e-3)
    assert result.commitment_costs["any soc targets"] == pytest.approx(0, abs=1e-3)


def test_solve_prices_a_soft_site_capacity() -> None:
    """1.5 MW of inflexible load under a 1 MW contract, two hourly steps: 0.5 MW over
    in each ("all": P * 0.5 MW * 1 h, twice; "any": P * 0.5 MW)."""
    device = battery(2, charge=0, discharge=0)
    problem = replace(
        site([10.0, 10.0], device, inflexible=1.5),
        site_consumption_contract=np.array([1.0, 1.0]),
        site_consumption_breach_price=1e7,
        site_production_breach_price=1e7,
    )
    result = solve(problem)
    costs = result.commitment_costs
    assert costs["electricity all consumption breaches"] == pytest.approx(1e7)
    assert costs["electricity any consumption breach"] == pytest.approx(5e6)
    assert costs["electricity all production breaches"] == 0
    assert costs["electricity any production breach"] == 0
    assert costs["electricity net energy"] == pytest.approx(30.0)


def test_solve_discharges_rather_than_breach_the_site_capacity() -> None:
    device = battery(2, start=1)
    problem = replace(
        site([10.0, 10.0], device, inflexible=1.5),
        site_consumption_contract=np.array([1.0, 1.0]),
        site_consumption_breach_price=1e7,
    )
    result = solve(problem)
    assert close(result.power[0], [-0.5, -0.5])
    assert result.commitment_costs["electricity all consumption breaches"] == (
        pytest.approx(0, abs=1e-3)
    )


def test_solve_with_hard_targets_still_names_the_one_missed() -> None:
    device = battery(3, start=0, soc_max=20, target=[NAN, NAN, 10])
    with pytest.raises(InfeasibleError, match="soc-targets of sensor 1 cannot be met"):
        solve(site([10.0, 10.0, 10.0], device))


def test_solve_reports_the_time_limit_as_infeasible() -> None:
    steps = 2880
    prices = 50 + 30 * np.sin(np.arange(steps) / 10)
    problem = site(list(prices), battery(steps), hours=0.25)
    with pytest.raises(InfeasibleError, match="time limit of 1e-09 s"):
        solve(problem, time_limit=1e-9)


def test_solve_reports_unbounded_schedules() -> None:
    device = battery(2, charge=INF, soc_max=INF)
    with pytest.raises(InfeasibleError, match="unbounded"):
        solve(site([-10, 10], device))


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        pytest.param(
            replace(site([1, 2, 3], battery(3)), inflexible=np.zeros(2)),
            r"inflexible has shape \(2,\), expected \(3,\)",
            id="length",
        ),
        pytest.param(
            site([1, 2], battery(2, charging_efficiency=[1, 0])),
            r"sensor 1: charging_efficiency must be in \(0, 1\], not 0.0 at step 2",
            id="zero-efficiency",
        ),
        pytest.param(
            site([1, 2], battery(2, storage_efficiency=-0.5)),
            r"storage_efficiency must be in \(0, 1\]",
            id="negative-efficiency",
        ),
        pytest.param(
            site([1, 2], battery(2, discharge=[1, NAN])),
            "production_capacity must be at least 0",
            id="nan-capacity",
        ),
        pytest.param(
            site([1, 2], battery(2), production_prices=[1, 3]),
            "production_price 3 exceeds consumption_price 2 at step 2 of 2",
            id="dearer-feed-in",
        ),
        pytest.param(
            replace(site([1, 2], battery(2)), step_hours=0.0),
            "step_hours must be positive",
            id="step-hours",
        ),
    ],
)
def test_solve_rejects_malformed_problems(problem: SiteProblem, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        solve(problem)


# An independent formulation: no SoC variables (each SoC is an affine function of
# the flows so far, written out term by term), solved by scipy's interior point.


@dataclass(frozen=True, slots=True)
class Reference:
    """The optimum of the dense formulation, or None if it is infeasible."""

    cost: float | None


def reference(problem: SiteProblem) -> Reference:
    """Solve `problem` as a dense LP over flows only, with scipy."""
    steps, dt = problem.steps, problem.step_hours
    devices = problem.devices
    n = 2 * len(devices) * steps + 2 * steps  # c, p per device; then g+, g-

    def c(d: int, t: int) -> int:
        return 2 * d * steps + t

    def p(d: int, t: int) -> int:
        return 2 * d * steps + steps + t

    def g_in(t: int) -> int:
        return 2 * len(devices) * steps + t

    def g_out(t: int) -> int:
        return 2 * len(devices) * steps + steps + t

    cost = [0.0] * n
    bounds: list[tuple[float | None, float | None]] = [(0.0, None)] * n
    for t in range(steps):
        cost[g_in(t)] = float(problem.consumption_price[t]) * dt
        cost[g_out(t)] = -float(problem.production_price[t]) * dt
        bounds[g_in(t)] = (0.0, _finite(problem.site_consumption_capacity[t]))
        bounds[g_out(t)] = (0.0, _finite(problem.site_production_capacity[t]))
    a_ub: list[list[float]] = []
    b_ub: list[float] = []
    a_eq: list[list[float]] = []
    b_eq: list[float] = []
    for d, device in enumerate(devices):
        for t in range(steps):
            bounds[c(d, t)] = (0.0, float(device.consumption_capacity[t]))
            bounds[p(d, t)] = (0.0, float(device.production_capacity[t]))
        for t in range(steps):
            # soc[t] = constant + sum_k row[k] x[k], decaying each step's change
            # by the storage efficiencies of the steps after it.
            row = [0.0] * n
            constant = float(device.soc_at_start) * math.prod(
                float(device.storage_efficiency[j]) for j in range(t + 1)
            )
            for k in range(t + 1):
                decay = math.prod(
                    float(device.storage_efficiency[j]) for j in range(k + 1, t + 1)
                )
                row[c(d, k)] += decay * float(device.charging_efficiency[k]) * dt
                row[p(d, k)] -= decay * dt / float(device.discharging_efficiency[k])
                constant += decay * float(device.soc_gain[k] - device.soc_usage[k])
            if not math.isnan(device.soc_target[t]):
                a_eq.append(row)
                b_eq.append(float(device.soc_target[t]) - constant)
            if math.isfinite(device.soc_max[t]):
                a_ub.append(row)
                b_ub.append(float(device.soc_max[t]) - constant)
            if math.isfinite(device.soc_min[t]):
                a_ub.append([-v for v in row])
                b_ub.append(constant - float(device.soc_min[t]))
    for t in range(steps):
        row = [0.0] * n
        row[g_in(t)] = 1.0
        row[g_out(t)] = -1.0
        for d in range(len(devices)):
            row[c(d, t)] = -1.0
            row[p(d, t)] = 1.0
        a_eq.append(row)
        b_eq.append(float(problem.inflexible[t]))
    # The interior point method first (another algorithm than ours); it sometimes
    # gives up on an infeasible instance, so the dual simplex then decides.
    for method in ("highs-ipm", "highs-ds"):
        result = linprog(
            cost,
            A_ub=a_ub or None,
            b_ub=b_ub or None,
            A_eq=a_eq,
            b_eq=b_eq,
            bounds=bounds,
            method=method,
        )
        if result.status in (0, 2):
            break
    if result.status == 2:
        return Reference(cost=None)
    if result.status != 0:
        raise RuntimeError(f"the reference LP ended with {result.message}")
    return Reference(cost=float(result.fun))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


TOL = 1e-6


def check_constraints(problem: SiteProblem, result: Solution) -> None:
    """Every constraint holds on the returned schedule, within TOL."""
    dt = problem.step_hours
    net = problem.inflexible + sum(result.power, np.zeros(problem.steps))
    assert np.all(net <= problem.site_consumption_capacity + TOL)
    assert np.all(-net <= problem.site_production_capacity + TOL)
    expected_cost = np.sum(
        problem.consumption_price * np.maximum(net, 0)
        - problem.production_price * np.maximum(-net, 0)
    )
    assert math.isclose(result.cost, expected_cost * dt, rel_tol=1e-9, abs_tol=1e-5)
    for device, power, soc in zip(
        problem.devices, result.power, result.soc, strict=True
    ):
        cc, pc = device.consumption_capacity, device.production_capacity
        assert np.all(power <= cc + TOL)
        assert np.all(-power <= pc + TOL)
        assert np.all(soc >= device.soc_min - TOL)
        assert np.all(soc <= device.soc_max + TOL)
        has_target = ~np.isnan(device.soc_target)
        assert np.allclose(soc[has_target], device.soc_target[has_target], atol=TOL)
        # The SoC change is what the net power allows: at most all of it charged
        # (or none of the discharge lost), at least with the most simultaneous
        # charging and discharging the capacities leave room for.
        previous = np.concatenate([[device.soc_at_start], soc[:-1]])
        change = (
            soc
            - device.storage_efficiency * previous
            - device.soc_gain
            + device.soc_usage
        ) / dt
        eta_c, eta_d = device.charging_efficiency, device.discharging_efficiency
        charging = power >= 0
        most = np.where(charging, eta_c * power, power / eta_d)
        both = np.where(
            charging,
            np.minimum(pc, cc - power),
            np.minimum(cc, pc + power),
        )
        least = most + np.maximum(both, 0) * (eta_c - 1 / eta_d)
        assert np.all(change <= most + TOL)
        assert np.all(change >= least - TOL)


@st.composite
def problems(draw: st.DrawFn) -> SiteProblem:
    """Small sites (up to 6 steps, 1-2 devices) on coarse grids of values."""
    steps = draw(st.integers(min_value=1, max_value=6))

    def per_step(*options: float) -> list[float]:
        values = st.sampled_from(options)
        return draw(st.lists(values, min_size=steps, max_size=steps))

    def one(*options: float) -> float:
        return draw(st.sampled_from(options))

    prices = draw(st.lists(st.integers(-20, 100), min_size=steps, max_size=steps))
    spread = draw(st.lists(st.integers(0, 30), min_size=steps, max_size=steps))
    devices = tuple(
        battery(
            steps,
            name=f"sensor {i + 1}",
            start=one(0.0, 0.5, 1.0, 2.0),
            soc_min=per_step(0.0, 0.0, 0.5, 1.0, -INF),
            soc_max=per_step(1.0, 2.0, 3.0, INF),
            target=per_step(NAN, NAN, NAN, 0.0, 0.5, 1.5, 2.0),
            charge=per_step(0.0, 0.5, 1.0, 2.0),
            discharge=per_step(0.0, 0.5, 1.0, 2.0),
            charging_efficiency=one(0.5, 0.8, 0.95, 1.0),
            discharging_efficiency=one(0.5, 0.8, 0.95, 1.0),
            storage_efficiency=one(0.9, 0.99, 1.0),
            gain=per_step(0.0, 0.0, 0.5, 1.0),
            usage=per_step(0.0, 0.0, 0.5, 1.0),
            sooner=False,
        )
        for i in range(draw(st.integers(min_value=1, max_value=2)))
    )
    return site(
        [float(v) for v in prices],
        *devices,
        production_prices=[float(v - s) for v, s in zip(prices, spread, strict=True)],
        inflexible=per_step(-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0),
        consumption_capacity=one(0.5, 1.0, 2.0, 3.0, INF),
        production_capacity=one(0.0, 0.5, 1.0, 3.0, INF),
        hours=one(0.25, 0.5, 1.0),
    )


@settings(max_examples=100, deadline=None)
@given(problem=problems())
def test_solve_matches_an_independent_formulation(problem: SiteProblem) -> None:
    expected = reference(problem)
    if expected.cost is None:
        with pytest.raises(InfeasibleError):
            solve(problem)
        return
    result = solve(problem)
    assert math.isclose(result.cost, expected.cost, rel_tol=1e-6, abs_tol=1e-5)
    check_constraints(problem, result)
    sooner = tuple(replace(d, prefer_charging_sooner=True) for d in problem.devices)
    with_tie_breaker = solve(replace(problem, devices=sooner))
    check_constraints(problem, with_tie_breaker)
    # The tie-breaker adds at most TIE_BREAK of the largest price per MWh charged
    # or discharged, so it moves the optimum by no more than that.
    scale = float(np.abs(problem.consumption_price).max()) or 1.0
    most_moved = problem.step_hours * sum(
        float(np.sum(d.consumption_capacity + d.production_capacity))
        for d in problem.devices
    )
    bound = TIE_BREAK * scale * most_moved
    assert result.cost - 1e-5 <= with_tie_breaker.cost <= result.cost + bound + 1e-5
