"""Sensor data through the gateway, backend on PostgreSQL, vs FlexMeasures 1.0.1.

Run: `.venv/bin/python -m bench.data_bench [--seconds 5] [--rounds 3] [--no-anchor]`.
Starts one tenant backend on a fresh PostgreSQL database and one gateway on loopback,
seeds an asset and a MW/PT15M sensor through the API (plus one day and one year of
15-minute data), then measures with wrk at 8 connections, in interleaved rounds:
(a) POST 96 values, each request a new day; (b) the same POST repeated (identical
data); (c) GET one day; (d) GET one year (35,040 values); (e) GET /sensors.
If the FlexMeasures anchor answers on 127.0.0.1:5000 (../shared/anchor), the same
cases run against its sensor 1 in the same rounds and ratios are printed; otherwise
the anchor README's figures are shown for reference. The database is dropped at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import datetime as dt
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench._harness import (
    HERE,
    Processes,
    Result,
    http_any,
    http_json,
    median_result,
    new_secret,
    port_open,
    prepare_database,
    start_stack,
    wrk,
)
from bench.gateway_bench import (
    EMAIL,
    drop_postgres,
    postgres_database,
)

TENANT: Final = "bench"
HOST: Final = f"{TENANT}.localhost"
ANCHOR: Final = "http://127.0.0.1:5000"
ANCHOR_EMAIL: Final = "admin@anchor.example"
ANCHOR_PASSWORD: Final = "anchor-admin-pw"  # the anchor's public seed (README)
ANCHOR_SENSOR: Final = 1
DATA_LUA: Final = HERE / "wrk_sensor_data.lua"
# ../shared/anchor/README.md, wrk 8 connections, 2026-11-28 (repeated POST: 1 conn.)
FM_FIGURES: Final = {
    "POST 96 values, new day": 37.0,
    "POST 96 values, repeated": 1.6,
    "GET one day": 85.0,
    "GET /sensors": 216.0,
}
TARGETS: Final = {
    "POST 96 values, new day": 10.0,
    "POST 96 values, repeated": 100.0,
    "GET one day": 10.0,
    "GET one year": 10.0,
    "GET /sensors": 10.0,
}
YEAR_P50_TARGET_MS: Final = 150.0
NO_FIGURE: Final = "no FlexMeasures figure; the absolute target below applies"
DAY: Final = "2024-06-01T00:00:00+00:00"  # the fixed day of (b) and (c)
SEED_PRIOR: Final = "2025-01-01T00:00:00+00:00"  # fixed: re-runs are idempotent
YEAR: Final = 2023
YEAR_START: Final = f"{YEAR}-01-01T00:00:00+00:00"
NEW_DAYS_FROM: Final = calendar.timegm((2030, 1, 1, 0, 0, 0))
STRIDE_DAYS: Final = 2_000  # days between wrk threads (FlexMeasures stops at 2262)
SLOTS_PER_RUN: Final = 3  # wrk uses up to 2 threads; one spare


def values(count: int, offset: int = 0) -> list[float]:
    """Deterministic MW values."""
    return [round(((i + offset) % 96) * 0.05 - 1.5, 2) for i in range(count)]


@dataclass(frozen=True, slots=True)
class Target:
    """One server under test: base URL, headers, sensor."""

    name: str
    base: str
    headers: dict[str, str]
    sensor: int


def _post(target: Target, path: str, body: dict[str, object]) -> object:
    return http_any(
        target.base + path, method="POST", body=body, headers=target.headers
    )


def _seed_data(target: Target, *, year: bool) -> None:
    """One day (for b, c) and one year (for d) of 15-minute values, fixed prior."""
    bodies: list[dict[str, object]] = [
        {
            "start": DAY,
            "duration": "PT24H",
            "unit": "MW",
            "prior": SEED_PRIOR,
            "values": values(96),
        }
    ]
    for month in range(1, 13 if year else 1):
        first = dt.datetime(YEAR, month, 1, tzinfo=dt.UTC)
        days = calendar.monthrange(YEAR, month)[1]
        bodies.append(
            {
                "start": first.isoformat(),
                "duration": f"P{days}D",
                "unit": "MW",
                "prior": SEED_PRIOR,
                "values": values(days * 96),
            }
        )
    for body in bodies:
        try:
            _post(target, f"/api/v3_0/sensors/{target.sensor}/data", body)
        except urllib.error.HTTPError as err:
            if err.code != 403:  # 403 = differently seeded before; use what is there
                raise SystemExit(
                    f"{target.name}: seeding failed: {err.code} {err.read()[:300]!r}"
                ) from err


def _query(**params: str) -> str:
    return urllib.parse.urlencode(params)


def _plan(
    target: Target, run: int, prior: str
) -> list[tuple[str, str, dict[str, str], int]]:
    """(case, url, env for the lua script or {}, connections) of one round."""
    data = f"{target.base}/api/v3_0/sensors/{target.sensor}/data"
    day_values = json.dumps(values(96), separators=(",", ":"))
    fixed = json.dumps(
        {
            "start": DAY,
            "duration": "PT24H",
            "unit": "MW",
            "prior": SEED_PRIOR,
            "values": values(96),
        },
        separators=(",", ":"),
    )
    base = NEW_DAYS_FROM + run * SLOTS_PER_RUN * STRIDE_DAYS * 86400
    is_anchor = target.name == "FlexMeasures"
    year: tuple[str, str, dict[str, str], int] = (
        "GET one year",
        f"{data}?{_query(start=YEAR_START, duration='P365D', unit='MW')}",
        {},
        8,
    )
    return [
        (
            "POST 96 values, new day",
            data,
            {
                "BENCH_VALUES": day_values,
                "BENCH_UNIT": "MW",
                "BENCH_PRIOR": prior,
                "BENCH_DAY_BASE": str(base),
                "BENCH_DAY_STRIDE": str(STRIDE_DAYS),
            },
            8,
        ),
        # The anchor's figure for this case was taken at 1 connection.
        (
            "POST 96 values, repeated",
            data,
            {"BENCH_FIXED_BODY": fixed},
            1 if is_anchor else 8,
        ),
        (
            "GET one day",
            f"{data}?{_query(start=DAY, duration='PT24H', unit='MW')}",
            {},
            8,
        ),
        # Not on the anchor: its one-year reads outlive wrk's timeout and keep
        # its database busy long after (seen here), spoiling the other cases.
        *([] if is_anchor else [year, (f"{year[0]}, 1 connection", year[1], {}, 1)]),
        ("GET /sensors", f"{target.base}/api/v3_0/sensors", {}, 8),
    ]


def _line(result: Result) -> str:
    return (
        f"{result.label:<42} {result.rps:>9.1f} {result.p50_ms:>9.2f} "
        f"{result.p99_ms:>9.2f} {result.errors + result.non_2xx:>7d}"
    )


def _our_target(gateway: str, password: str) -> Target:
    login = http_json(
        f"{gateway}/api/requestAuthToken",
        body={"email": EMAIL, "password": password},
        headers={"Host": HOST},
    )
    headers = {"Host": HOST, "Authorization": str(login["auth_token"])}
    types = http_any(f"{gateway}/api/v3_0/assets/types", headers=headers)
    battery = next(t["id"] for t in types if t["name"] == "battery")
    asset = http_json(
        f"{gateway}/api/v3_0/assets",
        body={"name": "Bench battery", "generic_asset_type_id": battery},
        headers=headers,
    )
    sensor = http_json(
        f"{gateway}/api/v3_0/sensors",
        body={
            "name": "power",
            "unit": "MW",
            "event_resolution": "PT15M",
            "generic_asset_id": asset["id"],
            "timezone": "Europe/Amsterdam",
        },
        headers=headers,
    )
    return Target("flexhost", gateway, headers, int(str(sensor["id"])))


def _anchor_target() -> Target | None:
    if not port_open(5000):
        return None
    try:
        login = http_json(
            f"{ANCHOR}/api/requestAuthToken",
            body={"email": ANCHOR_EMAIL, "password": ANCHOR_PASSWORD},
            headers={},
        )
    except (urllib.error.URLError, ValueError) as err:
        print(f"FlexMeasures anchor on :5000 did not log in ({err}); using figures")
        return None
    return Target(
        "FlexMeasures",
        ANCHOR,
        {"Authorization": str(login["auth_token"])},
        ANCHOR_SENSOR,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-anchor", action="store_true", help="do not measure FlexMeasures"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="backend processes behind the gateway (FlexMeasures' anchor runs 2 "
        "gunicorn workers; on 2 cores a second replica measured no gain)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="flexhost-data-bench-"))
    processes = Processes()
    pg_name: str | None = None
    try:
        password = new_secret()
        db_url, pg_name = asyncio.run(postgres_database())
        asyncio.run(prepare_database(db_url, password, EMAIL))
        gateway = start_stack(
            processes, workdir, db_url, TENANT, replicas=args.replicas
        ).gateway
        targets = [_our_target(gateway, password)]
        anchor = None if args.no_anchor else _anchor_target()
        if anchor is not None:
            targets.append(anchor)
        for target in targets:
            started = time.perf_counter()
            _seed_data(target, year=target is not anchor)
            print(
                f"seeded {target.name} sensor {target.sensor} "
                f"in {time.perf_counter() - started:.1f}s"
            )
        prior = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        runs: dict[tuple[str, str], list[Result]] = {}
        run = 0
        for _ in range(args.rounds):
            for target in targets:
                for case, url, env, connections in _plan(target, run, prior):
                    result = wrk(
                        url,
                        label=f"{target.name} {case}",
                        headers=target.headers,
                        connections=connections,
                        seconds=args.seconds,
                        script=DATA_LUA if env else None,
                        env=env,
                    )
                    runs.setdefault((target.name, case), []).append(result)
                    time.sleep(0.5)
                run += 1
        _report(runs, anchor is not None, args)
    finally:
        processes.stop()
        if pg_name is not None:
            asyncio.run(drop_postgres(pg_name))
        shutil.rmtree(workdir, ignore_errors=True)


def _report(
    runs: dict[tuple[str, str], list[Result]],
    anchor_measured: bool,
    args: argparse.Namespace,
) -> None:
    medians = {key: median_result(results) for key, results in runs.items()}
    print(
        f"\nflexhost data bench: {args.rounds} x {args.seconds}s interleaved, "
        f"through the gateway, {args.replicas} backend replica(s) on PostgreSQL, "
        "8 connections; medians"
    )
    print(f"{'case':<42} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for result in medians.values():
        print(_line(result))
    source = "measured now" if anchor_measured else "anchor README figures"
    print(f"\nvs FlexMeasures 1.0.1 ({source}):")
    for case, factor in TARGETS.items():
        ours = medians[("flexhost", case)]
        if ("FlexMeasures", case) in medians:
            theirs: float | None = medians[("FlexMeasures", case)].rps
        else:
            theirs = FM_FIGURES.get(case)
        if theirs is None:
            note = NO_FIGURE
        elif theirs <= 0:
            note = "FlexMeasures completed no request"
        else:
            ratio = ours.rps / theirs
            verdict = "ok" if ratio >= factor else "BELOW TARGET"
            note = (
                f"{ratio:,.1f}x (FlexMeasures {theirs:,.1f}/s; "
                f"target >= {factor:g}x) {verdict}"
            )
        print(f"  {case:<28} {note}")
    alone = medians[("flexhost", "GET one year, 1 connection")].p50_ms
    loaded = medians[("flexhost", "GET one year")].p50_ms
    verdict = "ok" if alone < YEAR_P50_TARGET_MS else "BELOW TARGET"
    print(
        f"  one year of 15-minute data: p50 {alone:.1f} ms alone, {loaded:.1f} ms "
        f"with 8 at once (target < {YEAR_P50_TARGET_MS:.0f} ms) {verdict}"
    )


if __name__ == "__main__":
    main()
