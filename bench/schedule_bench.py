"""The storage scheduler's linear program: build and solve time vs FlexMeasures 1.0.1.

Run: `.venv/bin/python -m bench.schedule_bench [--repeat 20]`.
Builds and solves, in-process and without I/O, (a) one battery over one day, (b)
one week and (c) one month (30 days) at 15-minute resolution, and (d) ten
batteries on one site over one day with a site capacity that binds. Prices are
hourly day-ahead-like curves (night trough, morning and evening peaks, a solar dip
at noon) with seeded noise, so every run solves the same problems. Each case runs
`--repeat` times after one warm-up; the time covers `storage.solve`: validating,
building the sparse matrix, HiGHS, and reading the schedule back. Printed: median
and p90 in ms, the median per step (to show cost grows about linearly with the
horizon: month/day per step), and case (a) against the 1,316 ms FlexMeasures 1.0.1
takes in its worker for the same schedule (../shared/anchor/README.md).
Other benches can import `problem_for(days, devices)`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Final

import numpy as np

from tenant_service.scheduling.problem import Array, SiteProblem, StorageDevice
from tenant_service.scheduling.storage import solve

STEP_HOURS: Final = 0.25
STEPS_PER_DAY: Final = 96
SEED: Final = 20261128
# ../shared/anchor/README.md: one battery, 24 h at 15 min, time in the worker.
FM_ONE_DAY_MS: Final = 1316.0
CASES: Final = (
    ("(a) 1 battery, 1 day", 1, 1),
    ("(b) 1 battery, 1 week", 7, 1),
    ("(c) 1 battery, 1 month", 30, 1),
    ("(d) 10 batteries, 1 day, site capacity", 1, 10),
)


def prices(days: int, rng: np.random.Generator) -> Array:
    """EUR/MWh per 15 minutes: hourly values with a daily shape and noise."""
    hour = np.arange(24 * days) % 24
    shape = (
        60.0
        + 35.0 * np.exp(-(((hour - 8) / 2.0) ** 2))  # morning peak
        + 55.0 * np.exp(-(((hour - 19) / 2.5) ** 2))  # evening peak
        - 40.0 * np.exp(-(((hour - 13) / 2.5) ** 2))  # solar dip
        - 15.0 * np.exp(-(((hour - 3) / 2.5) ** 2))  # night trough
    )
    hourly = shape + rng.normal(0.0, 8.0, hour.size)
    return np.repeat(np.round(hourly, 2), 4)


def problem_for(days: int, devices: int) -> SiteProblem:
    """A site with `devices` batteries over `days` days of 15-minute steps."""
    rng = np.random.default_rng(SEED + 1000 * days + devices)
    steps = days * STEPS_PER_DAY
    price = prices(days, rng)

    def full(value: float) -> Array:
        return np.full(steps, value)

    batteries = []
    for i in range(devices):
        capacity = 2.0 + 0.5 * (i % 3)  # MW
        energy = 2.0 * capacity  # MWh: two-hour batteries
        start = float(rng.uniform(0.3, 0.7)) * energy
        target = full(np.nan)
        target[-1] = start  # leave the battery as full as it came
        batteries.append(
            StorageDevice(
                name=f"sensor {i + 1}",
                soc_at_start=start,
                soc_min=full(0.1 * energy),
                soc_max=full(0.9 * energy),
                soc_target=target,
                consumption_capacity=full(capacity),
                production_capacity=full(capacity),
                charging_efficiency=full(0.95),
                discharging_efficiency=full(0.95),
                storage_efficiency=full(0.9999),
                soc_gain=full(0.0),
                soc_usage=full(0.0),
            )
        )
    quarter = np.arange(steps) % STEPS_PER_DAY
    # A building's own load, MW: a daytime block over a base load.
    inflexible = (
        0.5 * devices
        + 0.3 * devices * ((quarter >= 32) & (quarter < 72))
        + rng.normal(0.0, 0.05 * devices, steps)
    )
    # One battery's site is unconstrained; with many, the connection binds.
    site_capacity = full(np.inf) if devices == 1 else full(1.2 * devices)
    return SiteProblem(
        step_hours=STEP_HOURS,
        consumption_price=price,
        production_price=price,
        inflexible=inflexible if devices > 1 else full(0.0),
        site_consumption_capacity=site_capacity,
        site_production_capacity=site_capacity,
        devices=tuple(batteries),
    )


@dataclass(frozen=True, slots=True)
class Timing:
    """One case's build+solve times."""

    label: str
    steps: int
    devices: int
    median_ms: float
    p90_ms: float
    cost: float

    @property
    def us_per_step(self) -> float:
        """Median microseconds per time step."""
        return 1000.0 * self.median_ms / self.steps


def measure(label: str, days: int, devices: int, repeat: int) -> Timing:
    """Solve one case `repeat` times after a warm-up."""
    problem = problem_for(days, devices)
    cost = solve(problem).cost
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        solve(problem)
        times.append(1000.0 * (time.perf_counter() - started))
    return Timing(
        label=label,
        steps=problem.steps,
        devices=devices,
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        cost=cost,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    timings = [
        measure(label, days, devices, args.repeat) for label, days, devices in CASES
    ]
    print(
        f"\nflexhost storage scheduler: build + solve with HiGHS, {args.repeat} runs"
        " per case after a warm-up, 15-minute steps"
    )
    print(
        f"{'case':<40} {'steps':>6} {'median ms':>10} {'p90 ms':>8}"
        f" {'us/step':>8} {'cost EUR':>10}"
    )
    for timing in timings:
        print(
            f"{timing.label:<40} {timing.steps:>6} {timing.median_ms:>10.2f}"
            f" {timing.p90_ms:>8.2f} {timing.us_per_step:>8.1f} {timing.cost:>10.2f}"
        )
    day, week, month = timings[0], timings[1], timings[2]
    print(
        f"\ngrowth with the horizon, per step: week/day"
        f" {week.us_per_step / day.us_per_step:.2f}x, month/day"
        f" {month.us_per_step / day.us_per_step:.2f}x (1.00x = linear)"
    )
    print(
        f"FlexMeasures 1.0.1 takes {FM_ONE_DAY_MS:,.0f} ms in its worker for (a)"
        " (anchor README); flexhost median"
        f" {day.median_ms:.2f} ms: {FM_ONE_DAY_MS / day.median_ms:,.0f}x faster"
    )


if __name__ == "__main__":
    main()
