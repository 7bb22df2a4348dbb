"""Forecast jobs end to end in the worker vs FlexMeasures 1.0.1's job times.

Run: `.venv/bin/python -m bench.forecast_jobs [--repeat 5] [--sqlite]`.

`bench.forecast` times the model alone; FlexMeasures' job time (ended-at minus
started-at) also covers loading from and saving to its database. This bench times
what our worker does for a job: on a fresh PostgreSQL database (dropped at exit, also
on Ctrl-C or SIGTERM; `--sqlite`: a temporary SQLite file instead), seeded with the
anchor's data set (`../shared/anchor/forecast/make_series.py`, as `bench.forecast`
loads it) stored as FlexMeasures' harness posts it (history with horizon 0, the
future temperature with prior T - 1 h), the forecast job's `compute(engine,
request)` runs in this process on one engine kept across runs, as the worker does,
for each of FlexMeasures' configurations. The request is what the trigger endpoint
makes of FlexMeasures' trigger body for it (`params.parse_trigger`). Each case runs
`--repeat` times after a warm-up (which also imports LightGBM); the forecast stored
by the run before is deleted first (not timed), so each run stores its whole
forecast. The MAE is of the forecast read back from the database as the results
endpoint reads it. Printed: FlexMeasures' MAE and job time beside ours, the speed
ratio, and our read/fit/store split.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._harness import load_average
from bench.forecast import (
    CASES,
    DAY_MS,
    EVAL_DAYS,
    HISTORY_DAYS,
    SPEED_GOAL,
    Case,
    anchor_dir,
    fm_figures,
    load_generator,
)
from bench.gateway_bench import drop_postgres, postgres_database
from bench.schedule_bench import loop_factory
from tenant_service.beliefs import Belief
from tenant_service.forecasting.job import compute
from tenant_service.forecasting.params import parse_trigger
from tenant_service.store import accounts as account_store
from tenant_service.store import assets as asset_store
from tenant_service.store import beliefs as belief_store
from tenant_service.store import sensors as sensor_store
from tenant_service.store import sources as source_store
from tenant_service.store.db import create_engine, migrate
from tenant_service.timing import from_epoch_ms

HOUR_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True)
class Sensors:
    """The load and temperature sensor of one resolution."""

    load: int
    temperature: int


@dataclass(frozen=True, slots=True)
class JobTiming:
    """One case: median wall time of compute() and its split; the MAE."""

    case: Case
    median_s: float
    p90_s: float
    read_ms: float
    fit_ms: float
    store_ms: float
    mae: float


async def seed(
    engine: AsyncEngine, data: dict[str, Any], t0_ms: int, start_ms: int
) -> dict[str, Sensors]:
    """An account and asset; per resolution a load (kW) and temperature (°C) sensor."""
    out: dict[str, Sensors] = {}
    async with engine.begin() as conn:
        account = await account_store.create_account(conn, name="Bench")
        types = {t.name: t.id for t in await asset_store.list_types(conn)}
        asset = await asset_store.create_asset(
            conn,
            {
                "name": "Forecast Bench Site",
                "account_id": account,
                "generic_asset_type_id": types["building"],
            },
        )
        source = await source_store.named_source_id(conn, "bench", "script")
        for res, series in data.items():
            _t, load, temp, _is_out, per_day = series
            step = DAY_MS // per_day
            ids = []
            for name, unit in (("load", "kW"), ("temperature", "°C")):
                ids.append(
                    await sensor_store.create_sensor(
                        conn,
                        {
                            "name": f"{name} {res}",
                            "unit": unit,
                            "timezone": "UTC",
                            "event_resolution": step,
                            "generic_asset_id": asset,
                        },
                    )
                )
            n_hist = HISTORY_DAYS * per_day

            def beliefs(
                values: Any, first: int, last: int, known: int | None, step: int = step
            ) -> list[Belief]:
                return [
                    Belief(
                        event_start=t0_ms + i * step,
                        # horizon 0 (known at the event's end) or known at `known`
                        belief_horizon=0
                        if known is None
                        else t0_ms + (i + 1) * step - known,
                        value=float(values[i]),
                    )
                    for i in range(first, last)
                ]

            await belief_store.save_beliefs(
                conn, ids[0], source, beliefs(load, 0, n_hist, None)
            )
            await belief_store.save_beliefs(
                conn, ids[1], source, beliefs(temp, 0, n_hist, None)
            )
            await belief_store.save_beliefs(
                conn,
                ids[1],
                source,
                beliefs(temp, n_hist, len(temp), start_ms - HOUR_MS),
            )
            out[res] = Sensors(ids[0], ids[1])
    return out


def trigger_body(case: Case, sensors: Sensors, start_ms: int) -> dict[str, Any]:
    """FlexMeasures' trigger body for the case (as the anchor's harness sends it)."""
    config: dict[str, Any] = {}
    if case.future_temp and case.past_temp:
        config["regressors"] = [sensors.temperature]
    elif case.future_temp:
        config["future-regressors"] = [sensors.temperature]
    if case.train_days:
        config["train-period"] = f"P{case.train_days}D"
    return {
        "start": from_epoch_ms(start_ms).isoformat(),
        "duration": f"P{EVAL_DAYS}D",
        "config": config,
    }


async def measure(
    engine: AsyncEngine,
    case: Case,
    sensors: Sensors,
    truth: Any,
    start_ms: int,
    repeat: int,
) -> JobTiming:
    """compute() `repeat` times after a warm-up; the MAE of what it stored."""
    per_day = len(truth) // EVAL_DAYS
    step = DAY_MS // per_day
    trigger = parse_trigger(
        trigger_body(case, sensors, start_ms), resolution_ms=step, now_ms=start_ms
    )
    request = trigger.job_request(sensors.load)
    walls: list[float] = []
    splits: dict[str, list[float]] = {"read_ms": [], "fit_ms": [], "store_ms": []}
    result: dict[str, Any] = {}
    for run in range(repeat + 1):
        if result:  # each run stores its whole forecast (deleting is not timed)
            async with engine.begin() as conn:
                await belief_store.delete_beliefs(
                    conn, sensors.load, source_id=int(result["source_id"])
                )
        started = time.perf_counter()
        result = await compute(engine, request)
        if run == 0:
            continue  # warm-up
        walls.append(time.perf_counter() - started)
        for key, values in splits.items():
            values.append(float(result[key]))
    async with engine.connect() as conn:
        starts, values = await belief_store.latest_values(
            conn,
            sensors.load,
            int(result["start_ms"]),
            int(result["end_ms"]),
            step,
            belief_store.ReadFilter(
                source_id=int(result["source_id"]),
                prior_ms=int(result["belief_time_ms"]),
            ),
        )
    if len(starts) != len(truth):
        raise SystemExit(f"{case.label}: {len(starts)} values stored, not {len(truth)}")
    mae = float(np.mean(np.abs(np.asarray(values) - np.asarray(truth))))
    return JobTiming(
        case=case,
        median_s=statistics.median(walls),
        p90_s=float(np.percentile(walls, 90)),
        read_ms=statistics.median(splits["read_ms"]),
        fit_ms=statistics.median(splits["fit_ms"]),
        store_ms=statistics.median(splits["store_ms"]),
        mae=mae,
    )


async def run(url: str, repeat: int) -> list[JobTiming]:
    """Migrate and seed the database at `url`, then time every case."""
    anchor = anchor_dir(None)
    gen = load_generator(anchor)
    data, _outliers = gen.build()
    t0_ms = int(gen.T0.timestamp() * 1000)
    start_ms = int(gen.T_PRED.timestamp() * 1000)
    await migrate(url)
    engine = create_engine(url)
    try:
        sensors = await seed(engine, data, t0_ms, start_ms)
        timings = []
        for case in CASES:
            _t, load, _temp, _is_out, per_day = data[case.res]
            n_hist = HISTORY_DAYS * per_day
            truth = load[n_hist : n_hist + EVAL_DAYS * per_day]
            timings.append(
                await measure(engine, case, sensors[case.res], truth, start_ms, repeat)
            )
        return timings
    finally:
        await engine.dispose()


def print_table(timings: list[JobTiming], repeat: int, database: str) -> None:
    """FlexMeasures' job beside ours."""
    fm = fm_figures(anchor_dir(None))
    print(
        f"\nflexhost forecast job (read + forecast + store, {database}) vs FlexMeasures"
        f" 1.0.1's job time; ours: median of {repeat} runs after a warm-up"
        f"\nload average now {load_average()}"
    )
    print(
        f"{'configuration':<38} {'FM MAE':>7} {'ours':>6} {'FM job s':>9}"
        f" {'ours s':>7} {'p90 s':>7} {'speed':>7} {'read ms':>8} {'fit ms':>7}"
        f" {'store ms':>9}  goal"
    )
    for t in timings:
        theirs = fm.get((t.case.variant, t.case.res))
        if theirs is None:
            print(f"{t.case.label:<38} (no FlexMeasures run) ours {t.median_s:.3f} s")
            continue
        ratio = theirs.job_s / t.median_s
        met = t.mae <= theirs.mae and ratio >= SPEED_GOAL
        print(
            f"{t.case.label:<38} {theirs.mae:>7.2f} {t.mae:>6.2f} {theirs.job_s:>9.2f}"
            f" {t.median_s:>7.3f} {t.p90_s:>7.3f} {ratio:>6.0f}x {t.read_ms:>8.1f}"
            f" {t.fit_ms:>7.1f} {t.store_ms:>9.1f}  {'met' if met else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sqlite", action="store_true", help="SQLite, not PostgreSQL")
    args = parser.parse_args()
    # SIGTERM becomes SystemExit (as bench._harness.Processes), so `finally` drops it.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    if args.sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.sqlite3'}"
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                timings = runner.run(run(url, args.repeat))
        print_table(timings, args.repeat, "SQLite")
        return
    name: str | None = None
    try:
        url, name = asyncio.run(postgres_database())
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            timings = runner.run(run(url, args.repeat))
    finally:
        if name is not None:
            asyncio.run(drop_postgres(name))
    print_table(timings, args.repeat, "PostgreSQL")


if __name__ == "__main__":
    main()
