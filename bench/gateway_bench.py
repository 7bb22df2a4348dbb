"""Gateway overhead: the same requests direct to the backend and via the gateway.

GET /api/v3_0/users/<id> (the token, rate-limit and upstream-share checks of every
request) and POST /api/v3_0/sensors/<id>/data of 96 values already stored (the body
path: its deadline and transfer-rate checks, then the backend answers without writing).

Run: `.venv/bin/python -m bench.gateway_bench [--seconds 5] [--rounds 3] [--postgres]`.
Starts one tenant backend and one gateway on loopback (Redis: the local one, or one
started here), interleaves the runs, and prints medians and ratios. If the FlexMeasures
anchor runs on 127.0.0.1:5000 (../shared/anchor), its GET /api/ is measured in the same
rounds; otherwise the anchor's recorded figure (1,661 req/s) is shown for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

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
from contract.identity import HEADER, Caller, sign_identity

DATA_LUA = HERE / "wrk_sensor_data.lua"
DAY = "2026-01-05T00:00:00+00:00"
FM_API_ROOT_RPS = 1661.0  # ../shared/anchor/README.md, wrk 8 connections, 2026-11-28
TENANT = "bench"
HOST = f"{TENANT}.localhost"
EMAIL = "admin@bench.test"


async def postgres_database() -> tuple[str, str]:
    import asyncpg

    name = f"flexhost_bench_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name


async def drop_postgres(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def _seed_sensor(gateway: str, token: str) -> tuple[int, str]:
    """An asset with a MW sensor and one day of values; (sensor id, that POST body)."""
    auth = {"Host": HOST, "Authorization": token}
    types = http_any(f"{gateway}/api/v3_0/assets/types", headers=auth)
    battery = next(t["id"] for t in types if t["name"] == "battery")
    asset = http_any(
        f"{gateway}/api/v3_0/assets",
        method="POST",
        body={"name": "Bench battery", "generic_asset_type_id": battery},
        headers=auth,
    )
    sensor = http_any(
        f"{gateway}/api/v3_0/sensors",
        method="POST",
        body={
            "name": "power",
            "unit": "MW",
            "event_resolution": "PT15M",
            "generic_asset_id": asset["id"],
        },
        headers=auth,
    )
    body = json.dumps(
        {
            "start": DAY,
            "duration": "PT24H",
            "unit": "MW",
            "values": [round(i * 0.25 - 7.5, 2) for i in range(96)],
        }
    )
    sensor_id = int(sensor["id"])
    url = f"{gateway}/api/v3_0/sensors/{sensor_id}/data"
    http_any(url, method="POST", body=json.loads(body), headers=auth)
    return sensor_id, body


def _line(result: Result) -> str:
    return (
        f"{result.label:<34} {result.rps:>10.0f} {result.p50_ms:>9.2f} "
        f"{result.p99_ms:>9.2f} {result.errors + result.non_2xx:>7d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--postgres", action="store_true", help="backend on PostgreSQL")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="flexhost-bench-"))
    processes = Processes()
    pg_name: str | None = None
    try:
        password = new_secret()
        if args.postgres:
            db_url, pg_name = asyncio.run(postgres_database())
        else:
            db_url = f"sqlite+aiosqlite:///{workdir / 'bench.sqlite3'}"
        asyncio.run(prepare_database(db_url, password, EMAIL))

        stack = start_stack(processes, workdir, db_url, TENANT)
        secret, gateway = stack.secret, stack.gateway
        login = http_json(
            f"{gateway}/api/requestAuthToken",
            body={"email": EMAIL, "password": password},
            headers={"Host": HOST},
        )
        token, user_id = str(login["auth_token"]), int(str(login["user_id"]))
        path = f"/api/v3_0/users/{user_id}"
        sensor_id, day_body = _seed_sensor(gateway, token)
        data_path = f"/api/v3_0/sensors/{sensor_id}/data"
        fm_running = port_open(5000)

        runs: dict[str, list[Result]] = {}
        for _ in range(args.rounds):
            identity = sign_identity(
                secret=secret,
                tenant=TENANT,
                caller=Caller(user_id, None, (), int(time.time() * 1000)),
                host=HOST,
                scheme="http",
                request_id="bench",
            )
            plan = [
                (
                    "direct GET /users/<id>",
                    f"{stack.backend}{path}",
                    {HEADER: identity},
                ),
                (
                    "gateway GET /users/<id>",
                    f"{gateway}{path}",
                    {"Host": HOST, "Authorization": token},
                ),
                ("gateway GET /api/", f"{gateway}/api/", {"Host": HOST}),
            ]
            posts = [
                (
                    "direct POST 96 values (stored)",
                    f"{stack.backend}{data_path}",
                    {HEADER: identity},
                ),
                (
                    "gateway POST 96 values (stored)",
                    f"{gateway}{data_path}",
                    {"Host": HOST, "Authorization": token},
                ),
            ]
            for label, url, headers in posts:
                result = wrk(
                    url,
                    label=label,
                    headers=headers,
                    connections=args.connections,
                    seconds=args.seconds,
                    script=DATA_LUA,
                    env={"BENCH_FIXED_BODY": day_body},
                )
                runs.setdefault(label, []).append(result)
                time.sleep(0.5)
            if fm_running:
                plan.append(
                    ("FlexMeasures GET /api/", "http://127.0.0.1:5000/api/", {})
                )
            for label, url, headers in plan:
                result = wrk(
                    url,
                    label=label,
                    headers=headers,
                    connections=args.connections,
                    seconds=args.seconds,
                )
                runs.setdefault(label, []).append(result)
                time.sleep(0.5)
            # Added latency on its own, without queueing: one connection.
            for label, url, headers in plan[:2]:
                result = wrk(
                    url,
                    label=f"{label} @1",
                    headers=headers,
                    connections=1,
                    seconds=args.seconds,
                )
                runs.setdefault(result.label, []).append(result)
                time.sleep(0.5)

        medians = {label: median_result(results) for label, results in runs.items()}
        store = "PostgreSQL" if args.postgres else "SQLite"
        print(
            f"\nflexhost gateway bench: {args.connections} connections, "
            f"{args.rounds} x {args.seconds}s interleaved, backend on {store}; medians"
        )
        print(f"{'path':<34} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
        for result in medians.values():
            print(_line(result))
        direct = medians["direct GET /users/<id>"]
        through = medians["gateway GET /users/<id>"]
        root = medians["gateway GET /api/"]
        fm_root = (
            medians["FlexMeasures GET /api/"].rps if fm_running else FM_API_ROOT_RPS
        )
        fm_note = "measured now" if fm_running else "anchor README figure"
        print(
            f"\nthroughput kept through the gateway: {through.rps / direct.rps:.0%} "
            "(target >= 65%; nginx proxy_pass keeps 82% here)"
        )
        post_direct = medians["direct POST 96 values (stored)"]
        post_through = medians["gateway POST 96 values (stored)"]
        kept = post_through.rps / post_direct.rps
        print(
            "POST throughput kept through the gateway (body deadline, transfer "
            f"rate and upstream share checked): {kept:.0%}"
        )
        alone = medians["gateway GET /users/<id> @1"].p50_ms
        alone -= medians["direct GET /users/<id> @1"].p50_ms
        print(
            f"p50 added by the gateway: {alone:+.2f} ms at 1 connection, "
            f"{through.p50_ms - direct.p50_ms:+.2f} ms at {args.connections} "
            "(target < 1 ms)"
        )
        print(
            f"GET /api/ vs FlexMeasures 1.0.1 ({fm_root:.0f} req/s, {fm_note}): "
            f"{root.rps / fm_root:.1f}x (target >= 10x)"
        )
    finally:
        processes.stop()
        if pg_name is not None:
            asyncio.run(drop_postgres(pg_name))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
