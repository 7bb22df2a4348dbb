"""The storage scheduler vs FlexMeasures 1.0.1: the solver alone, and the worker's job.

Run: `.venv/bin/python -m bench.schedule_bench [--repeat 20] [--no-database]`.

Solver alone: builds and solves, in-process and without I/O, (a) one battery over
one day, (b) one week and (c) one month (30 days) at 15-minute resolution, and (d)
ten batteries on one site over one day with a site capacity that binds. Prices are
hourly day-ahead-like curves (night trough, morning and evening peaks, a solar dip
at noon) with seeded noise, so every run solves the same problems. Each case runs
`--repeat` times after one warm-up; the time covers `storage.solve`: validating,
building the sparse matrix, HiGHS, and reading the schedule back. Printed: median
and p90 in ms, the median per step (to show cost grows about linearly with the
horizon: month/day per step), and case (a) against the 1,316 ms FlexMeasures 1.0.1
takes in its worker for the same schedule (../shared/anchor/README.md).
Other benches can import `problem_for(days, devices)`.

End to end in the worker (skipped with `--no-database`): on a fresh PostgreSQL
database (dropped at exit, also on Ctrl-C or SIGTERM), seeded with an account, a site
asset, ten MW/PT15M battery power sensors and an EUR/MWh/PT1H price sensor with 30
days of prices, the worker's `compute(engine, request)` runs in this process on one
engine kept across runs, as the worker does, for the same four cases: each battery
has soc-at-start 1 MWh, soc-min 0 MWh, soc-max 4 MWh, power-capacity 2 MW and 90%
roundtrip efficiency; case (d) has a site-power-capacity of 12 MW. Each case runs
`--repeat` times after one warm-up, each run with a new belief time. Stored beliefs
whose value is unchanged are not stored again (as FlexMeasures' save of changed
beliefs only), so the case's earlier schedules are deleted before each run (not
timed) and every run stores its whole schedule; one more line repeats (a) keeping
them, where nothing new is stored. Printed: median and p90 of compute()'s wall time,
the median read/solve/store split it reports, per step costs, (a) against the
1,316 ms of FlexMeasures 1.0.1 and against the target (under 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from typing import Any, Final

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.gateway_bench import drop_postgres, postgres_database
from tenant_service.beliefs import Belief
from tenant_service.config import DEFAULT_JOB_TIMEOUT
from tenant_service.scheduling.job import compute
from tenant_service.scheduling.problem import Array, SiteProblem, StorageDevice
from tenant_service.scheduling.storage import solve
from tenant_service.store import accounts as account_store
from tenant_service.store import assets as asset_store
from tenant_service.store import beliefs as belief_store
from tenant_service.store import sensors as sensor_store
from tenant_service.store import sources as source_store
from tenant_service.store.db import create_engine, migrate
from tenant_service.store.tables import timed_beliefs

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
TARGET_DAY_MS: Final = 50.0  # (a) end to end in the worker
HOUR_MS: Final = 3_600_000
STEP_MS: Final = 900_000
PRICE_DAYS: Final = 30  # the month of case (c)
START_MS: Final = calendar.timegm((2025, 6, 1, 0, 0, 0)) * 1000
PRICES_KNOWN_MS: Final = START_MS - 2 * 24 * HOUR_MS  # belief time of all prices
FIRST_BELIEF_MS: Final = START_MS - 24 * HOUR_MS  # of the first schedule; +1 s a run
BATTERY: Final = {
    "soc-at-start": "1 MWh",
    "soc-min": "0 MWh",
    "soc-max": "4 MWh",
    "power-capacity": "2 MW",
    "roundtrip-efficiency": "90%",
}
SITE_CAPACITY: Final = "12 MW"  # of (d): ten 2 MW batteries, so it binds


def prices(days: int, rng: np.random.Generator) -> Array:
    """EUR/MWh per 15 minutes: hourly values with a daily shape and noise."""
    return np.repeat(hourly_prices(days, rng), 4)


def hourly_prices(days: int, rng: np.random.Generator) -> Array:
    """EUR/MWh per hour: a daily shape with noise."""
    hour = np.arange(24 * days) % 24
    shape = (
        60.0
        + 35.0 * np.exp(-(((hour - 8) / 2.0) ** 2))  # morning peak
        + 55.0 * np.exp(-(((hour - 19) / 2.5) ** 2))  # evening peak
        - 40.0 * np.exp(-(((hour - 13) / 2.5) ** 2))  # solar dip
        - 15.0 * np.exp(-(((hour - 3) / 2.5) ** 2))  # night trough
    )
    hourly = shape + rng.normal(0.0, 8.0, hour.size)
    return np.round(hourly, 2)


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


@dataclass(frozen=True, slots=True)
class Site:
    """The seeded sensors: battery power sensors on one site, and the price."""

    power_ids: tuple[int, ...]
    price_id: int


@dataclass(frozen=True, slots=True)
class WorkerTiming:
    """One case's compute() times, and what compute() says it spent them on."""

    label: str
    steps: int
    median_ms: float
    p90_ms: float
    read_ms: float
    solve_ms: float
    store_ms: float
    stored: int  # median beliefs stored per run

    @property
    def us_per_step(self) -> float:
        """Median microseconds per time step."""
        return 1000.0 * self.median_ms / self.steps


async def seed(engine: AsyncEngine, devices: int) -> Site:
    """An account, a site with `devices` battery power sensors, 30 days of prices."""
    async with engine.begin() as conn:
        account_id = await account_store.create_account(conn, name="Bench")
        types = {t.name: t.id for t in await asset_store.list_types(conn)}
        asset_id = await asset_store.create_asset(
            conn,
            {
                "name": "Bench site",
                "account_id": account_id,
                "generic_asset_type_id": types["battery"],
            },
        )

        async def sensor(name: str, unit: str, resolution_ms: int) -> int:
            return await sensor_store.create_sensor(
                conn,
                {
                    "name": name,
                    "unit": unit,
                    "timezone": "UTC",
                    "event_resolution": resolution_ms,
                    "generic_asset_id": asset_id,
                },
            )

        power_ids = [
            await sensor(f"battery {i + 1} power", "MW", STEP_MS)
            for i in range(devices)
        ]
        price_id = await sensor("day-ahead price", "EUR/MWh", HOUR_MS)
        source_id = await source_store.named_source_id(conn, "bench", "script")
        rng = np.random.default_rng(SEED)
        beliefs = [
            Belief(
                event_start=START_MS + hour * HOUR_MS,
                belief_horizon=START_MS + (hour + 1) * HOUR_MS - PRICES_KNOWN_MS,
                value=value,
            )
            for hour, value in enumerate(hourly_prices(PRICE_DAYS, rng).tolist())
        ]
        await belief_store.save_beliefs(conn, price_id, source_id, beliefs)
    return Site(tuple(power_ids), price_id)


def schedule_request(
    site: Site, days: int, devices: int, belief_ms: int
) -> dict[str, Any]:
    """A job request as the trigger endpoints make it (schedules.py `_trigger`)."""
    sensors = list(site.power_ids[:devices])
    context: dict[str, Any] = {"consumption-price": {"sensor": site.price_id}}
    if devices > 1:
        context["site-power-capacity"] = SITE_CAPACITY
    return {
        "sensors": sensors,
        "start_ms": START_MS,
        "step_ms": STEP_MS,
        "steps": days * STEPS_PER_DAY,
        "belief_time_ms": belief_ms,
        "flex_model": [{**BATTERY, "sensor": sensor} for sensor in sensors],
        "flex_context": context,
        "time_limit": max(1, DEFAULT_JOB_TIMEOUT - 5),
    }


async def _beliefs_on(engine: AsyncEngine, sensors: list[int]) -> int:
    async with engine.connect() as conn:
        query = (
            select(func.count())
            .select_from(timed_beliefs)
            .where(timed_beliefs.c.sensor_id.in_(sensors))
        )
        return int((await conn.execute(query)).scalar_one())


async def _delete_schedules(engine: AsyncEngine, sensors: list[int]) -> None:
    async with engine.begin() as conn:
        for sensor_id in sensors:
            await belief_store.delete_beliefs(conn, sensor_id)


async def measure_worker(
    engine: AsyncEngine,
    site: Site,
    case: tuple[str, int, int],
    *,
    repeat: int,
    belief_times: Iterator[int],
    keep: bool = False,
) -> WorkerTiming:
    """Run compute() `repeat` times after a warm-up, each with a new belief time.

    Unless `keep`, the schedules stored before are deleted ahead of each run (not
    timed), so that each run stores its whole schedule.
    """
    label, days, devices = case
    sensors = list(site.power_ids[:devices])
    walls: list[float] = []
    splits: dict[str, list[float]] = {"read_ms": [], "solve_ms": [], "store_ms": []}
    stored: list[int] = []
    for run in range(repeat + 1):
        if not keep:
            await _delete_schedules(engine, sensors)
        before = await _beliefs_on(engine, sensors)
        request = schedule_request(site, days, devices, next(belief_times))
        started = time.perf_counter()
        result = await compute(engine, request)
        wall = 1000.0 * (time.perf_counter() - started)
        if run == 0:
            continue  # warm-up
        walls.append(wall)
        for key, values in splits.items():
            values.append(float(result[key]))
        stored.append(await _beliefs_on(engine, sensors) - before)
    return WorkerTiming(
        label=label,
        steps=days * STEPS_PER_DAY,
        median_ms=statistics.median(walls),
        p90_ms=float(np.percentile(walls, 90)),
        read_ms=statistics.median(splits["read_ms"]),
        solve_ms=statistics.median(splits["solve_ms"]),
        store_ms=statistics.median(splits["store_ms"]),
        stored=round(statistics.median(stored)),
    )


async def worker_cases(url: str, repeat: int) -> list[WorkerTiming]:
    """Migrate and seed the database at `url`, then time every case in the worker."""
    await migrate(url)
    engine = create_engine(url)
    try:
        site = await seed(engine, max(devices for _, _, devices in CASES))
        belief_times = count(FIRST_BELIEF_MS, 1000)
        timings = [
            await measure_worker(
                engine, site, case, repeat=repeat, belief_times=belief_times
            )
            for case in CASES
        ]
        label, days, devices = CASES[0]
        again = (f"{label}, schedule kept", days, devices)
        timings.append(
            await measure_worker(
                engine,
                site,
                again,
                repeat=repeat,
                belief_times=belief_times,
                keep=True,
            )
        )
        return timings
    finally:
        await engine.dispose()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The worker's event loop: uvloop where installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_worker_cases(repeat: int) -> list[WorkerTiming]:
    """Time the worker cases on a fresh PostgreSQL database, dropped at exit."""
    # SIGTERM becomes SystemExit (as bench._harness.Processes), so `finally` drops it.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    name: str | None = None
    try:
        url, name = asyncio.run(postgres_database())
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(worker_cases(url, repeat))
    finally:
        if name is not None:
            asyncio.run(drop_postgres(name))


def print_solver(timings: list[Timing], repeat: int) -> None:
    """The solver-only table and summary."""
    print(
        f"\nflexhost storage scheduler: build + solve with HiGHS, {repeat} runs"
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


def print_worker(timings: list[WorkerTiming], repeat: int) -> None:
    """The end-to-end table and summary."""
    print(
        "\nflexhost scheduling worker, end to end: compute() in this process on"
        f" PostgreSQL,\n{repeat} runs per case after a warm-up, each with a new belief"
        " time and storing its whole\nschedule (the last line keeps the earlier"
        " schedules: nothing changed, nothing stored)"
    )
    print(
        f"{'case':<40} {'steps':>6} {'median ms':>10} {'p90 ms':>8}"
        f" {'read':>7} {'solve':>7} {'store':>7} {'us/step':>8} {'stored':>7}"
    )
    for timing in timings:
        print(
            f"{timing.label:<40} {timing.steps:>6} {timing.median_ms:>10.2f}"
            f" {timing.p90_ms:>8.2f} {timing.read_ms:>7.2f} {timing.solve_ms:>7.2f}"
            f" {timing.store_ms:>7.2f} {timing.us_per_step:>8.1f} {timing.stored:>7}"
        )
    print("(read/solve/store: medians of what compute() reports, ms; stored: beliefs)")
    day, week, month = timings[0], timings[1], timings[2]
    print(
        f"\ngrowth with the horizon, per step: week/day"
        f" {week.us_per_step / day.us_per_step:.2f}x, month/day"
        f" {month.us_per_step / day.us_per_step:.2f}x (1.00x = linear)"
    )
    print(
        f"FlexMeasures 1.0.1 takes {FM_ONE_DAY_MS:,.0f} ms in its worker for (a)"
        f" (anchor README); flexhost median {day.median_ms:.2f} ms in the worker:"
        f" {FM_ONE_DAY_MS / day.median_ms:,.0f}x faster"
    )
    verdict = "ok" if day.median_ms < TARGET_DAY_MS else "MISSED"
    print(
        f"target: (a) under {TARGET_DAY_MS:.0f} ms end to end in the worker:"
        f" {day.median_ms:.2f} ms median, {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--no-database",
        action="store_true",
        help="time the solver alone (no PostgreSQL needed)",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    timings = [
        measure(label, days, devices, args.repeat) for label, days, devices in CASES
    ]
    worker = None if args.no_database else run_worker_cases(args.repeat)
    print_solver(timings, args.repeat)
    if worker is not None:
        print_worker(worker, args.repeat)


if __name__ == "__main__":
    main()
