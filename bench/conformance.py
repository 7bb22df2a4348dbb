"""The 61 recorded FlexMeasures 1.0.1 exchanges, replayed against the anchor and us.

Run: `.venv/bin/python -m bench.conformance [--ours URL --host HOST --email E
--password P --other-email E --other-password P] [--reference FILE] [--verbose]`.

Reads the cases (`### ...` sections up to the rate-limit section) of
`../shared/reference/flexmeasures-observed.md`, sends each request, in order, to the
FlexMeasures anchor on 127.0.0.1:5000 (../shared/anchor, seeded: admin@anchor.example,
user@other.example of another account, asset 1 with sensors 1 and 2) and to ours, and
prints per case whether both answer with the same status and with the same JSON key
sets (every key path, list items merged), then the share of each. Without `--ours`
it starts its own stack (one backend on a fresh SQLite file, one gateway, Redis if
none runs on 6379) and seeds it as the anchor is: account 1 with the site admin
admin@anchor.example, account 2 with user@other.example, asset 1 with sensor 1
(power, MW, PT15M) and sensor 2 (price, EUR/MWh, PT1H), and a sensor 3 of account 2.

Tokens in the recording: `.<redacted-token>` is the admin's, `<redacted-token>` the
other account's user's (or, in the "expired" case, a token nobody issued); bodies
shortened with " ... " are rebuilt (the value lists are arithmetic); the 3.3 MiB body
is generated. A difference listed in IMPROVEMENTS is a documented deliberate one
(openapi.yaml, README) and is counted apart. Exit status 0 when every other case is
equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench._harness import HERE, Processes, http_any, http_json, start_stack

# ../shared next to the main checkout (a git worktree may sit one level deeper), else
# the copy in tests/data.
REFERENCE: Final = next(
    path
    for path in (
        HERE.parent.parent / "shared/reference/flexmeasures-observed.md",
        HERE.parent.parent.parent / "shared/reference/flexmeasures-observed.md",
        HERE.parent / "tests/data/flexmeasures-observed.md",
    )
    if path.exists()
)
ANCHOR: Final = "http://127.0.0.1:5000"
ADMIN_EMAIL: Final = "admin@anchor.example"
ADMIN_PASSWORD: Final = "anchor-admin-pw"  # the anchor's public seed (its README)
OTHER_EMAIL: Final = "user@other.example"
OTHER_PASSWORD: Final = "other-user-pw"
TENANT: Final = "conf"
ANCHOR_EA: Final = "ea1.2026-12.localhost:fm1.1"  # sensor 1's address in the recording
ADMIN_TOKEN: Final = ".<redacted-token>"
OTHER_TOKEN: Final = "<redacted-token>"
LARGE_BODY_BYTES: Final = 3_460_000  # "3.3 MiB", over FlexMeasures' 3.1 MiB limit

# Case title -> why ours answers differently on purpose (also in openapi.yaml and
# README.md). Such a case counts as an improvement, not as a difference.
IMPROVEMENTS: Final[dict[str, str]] = {
    "GET /api (no trailing slash)": (
        "JSON always under /api: ours answers GET /api itself (200, the same body"
        " as /api/) instead of a 308 with an HTML page"
    ),
    "requestAuthToken: GET (wrong method)": (
        "JSON always under /api: a JSON 405 envelope instead of an HTML page"
    ),
    "unknown API path": (
        "JSON always under /api: a JSON 404 envelope instead of an HTML page"
    ),
    "unknown API version": (
        "JSON always under /api: a JSON 404 envelope instead of an HTML page"
    ),
    "DELETE on /api/ (method not allowed)": (
        "JSON always under /api: a JSON 405 envelope instead of an HTML page"
    ),
    "malformed JSON": (
        "the 422 names the missing `values` too (FlexMeasures leaves it out, and"
        " answers 500 when only `values` is missing)"
    ),
    "no Content-Type header": (
        "the 422 names the missing `values` too (FlexMeasures leaves it out, and"
        " answers 500 when only `values` is missing)"
    ),
    "'Bearer <token>' prefix": (
        "the gateway also accepts `Authorization: Bearer <token>` (the raw token"
        " stays the norm), as most HTTP clients send it"
    ),
}
# Seconds to wait before a case, as the recording did: FlexMeasures answers 403
# INVALID_REPLACEMENT to new values for a period when they arrive right after the
# first ones (seen here, within a second), but 200 PROCESSED in the recording.
PAUSE_BEFORE: Final = {"same period, different values (replacement)": 1.5}
# The recording's data cases use May 1990; each run moves them to another year, the
# same on both servers, so that "fresh period" is fresh on the long-lived anchor too.
RECORDED_YEAR: Final = "1990-05-"


@dataclass(slots=True)
class Case:
    """One recorded exchange: the request as sent, and the title it is known by."""

    title: str
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Server:
    """Where to send a case, and the tokens its placeholders stand for."""

    name: str
    base: str
    host: str
    admin_token: str
    other_token: str
    entity_address: str  # sensor 1's


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    keys: frozenset[str] | None  # None: not JSON


def parse_cases(text: str) -> list[Case]:
    """The `### ` sections before the rate-limit section, with their requests."""
    text = text.split("\n## Rate limiting", 1)[0]
    cases = []
    for section in text.split("\n### ")[1:]:
        title, _, rest = section.partition("\n")
        block = rest.split("Request:\n```http\n", 1)[1].split("\n```", 1)[0]
        head, _, body = block.partition("\n\n")
        lines = head.split("\n")
        method, target = lines[0].split(" ", 1)
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        cases.append(
            Case(title.strip(), method, target, headers, _rebuild(body) or None)
        )
    return cases


def _rebuild(body: str) -> bytes:
    """The body as sent: an elided arithmetic value list ("a, b, ... y, z") refilled."""
    if " ... " not in body:
        return body.encode()
    before, after = body.split(" ... ", 1)
    opening = before.rindex("[")
    closing = after.index("]")
    first = [float(x) for x in before[opening + 1 :].split(",")[:2]]
    last = float(after[:closing].split(",")[-1])
    step = round(first[1] - first[0], 10)
    count = round((last - first[0]) / step) + 1
    values = [round(first[0] + i * step, 10) for i in range(count)]
    return (before[:opening] + json.dumps(values) + after[closing + 1 :]).encode()


def prepare(
    case: Case, server: Server, year: int
) -> tuple[dict[str, str], bytes | None]:
    """Headers and body of a case for one server (tokens, host, addresses)."""
    headers = {"Host": server.host}
    for name, value in case.headers.items():
        if ADMIN_TOKEN in value:
            token = server.admin_token
            if "tampered" in case.title:
                token = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
            value = value.replace(ADMIN_TOKEN, token)
        elif OTHER_TOKEN in value:
            token = server.other_token
            if "expired" in case.title:
                token = secrets.token_urlsafe(32)
            value = value.replace(OTHER_TOKEN, token)
        headers[name] = value
    body = case.body
    if body is not None:
        body = body.replace(ANCHOR_EA.encode(), server.entity_address.encode())
        body = body.replace(RECORDED_YEAR.encode(), f"{year}-05-".encode())
    if "larger than 3 MiB" in case.title:
        values = ", ".join(["1.23456789"] * (LARGE_BODY_BYTES // 12))
        body = (
            '{"values": [' + values + '], "start": "1990-06-01T00:00:00+01:00",'
            ' "duration": "P1D", "unit": "MW"}'
        ).encode()
    return headers, body


def send(case: Case, server: Server, year: int) -> Answer:
    """One case against one server, its May 1990 moved to May of `year`."""
    headers, body = prepare(case, server, year)
    target = case.target.replace(
        urllib.parse.quote(ANCHOR_EA, safe=""),
        urllib.parse.quote(server.entity_address, safe=""),
    ).replace(RECORDED_YEAR, f"{year}-05-")
    parts = urllib.parse.urlsplit(server.base)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=60
    )
    try:
        connection.request(case.method, target, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        keys: frozenset[str] | None = frozenset(key_paths(json.loads(raw)))
    except ValueError:
        keys = None
    return Answer(response.status, keys)


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (`a.b`, list items as `a[].b`)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.add(path)
            paths |= key_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, f"{prefix}[]")
    return paths


def token(base: str, host: str, email: str, password: str) -> str:
    answer = http_json(
        f"{base}/api/requestAuthToken",
        body={"email": email, "password": password},
        headers={"Host": host},
    )
    return str(answer["auth_token"])


def entity_address(base: str, host: str, auth: str) -> str:
    sensor = http_any(
        f"{base}/api/v3_0/sensors/1", headers={"Host": host, "Authorization": auth}
    )
    return str(sensor["entity_address"])


def server(name: str, base: str, host: str, args: argparse.Namespace) -> Server:
    """Log both users in on one server."""
    admin = token(base, host, args.email, args.password)
    other = token(base, host, args.other_email, args.other_password)
    return Server(name, base, host, admin, other, entity_address(base, host, admin))


async def _prepare_database(url: str) -> None:
    """Migrate, then the anchor's two accounts and users (as its setup does)."""
    from tenant_service import cli
    from tenant_service.store.db import migrate

    await migrate(url)
    os.environ["CONFORMANCE_ADMIN_PW"] = ADMIN_PASSWORD
    os.environ["CONFORMANCE_OTHER_PW"] = OTHER_PASSWORD
    steps = (
        ["add-account", "--name", "Anchor Account"],
        ["add-account", "--name", "Other Account"],
        [
            *("add-user", "--email", ADMIN_EMAIL, "--account", "Anchor Account"),
            *("--role", "admin", "--password-env", "CONFORMANCE_ADMIN_PW"),
        ],
        [
            *("add-user", "--email", OTHER_EMAIL, "--account", "Other Account"),
            *("--password-env", "CONFORMANCE_OTHER_PW"),
        ],
    )
    for argv in steps:
        if await asyncio.to_thread(cli.main, ["--database-url", url, *argv]) != 0:
            raise SystemExit(f"could not prepare the database: flexhost admin {argv}")


def seed_ours(base: str, host: str) -> None:
    """Asset 1 with sensors 1 (power) and 2 (price); a sensor 3 of account 2."""
    auth = {
        "Host": host,
        "Authorization": token(base, host, ADMIN_EMAIL, ADMIN_PASSWORD),
    }
    types = {
        t["name"]: t["id"]
        for t in http_any(f"{base}/api/v3_0/assets/types", headers=auth)
    }
    sensors = (
        ("power", "MW", "PT15M"),
        ("day-ahead price", "EUR/MWh", "PT1H"),
        ("other power", "MW", "PT15M"),
    )
    assets = {}
    for account, name in ((1, "Anchor Site"), (2, "Other Site")):
        asset = http_any(
            f"{base}/api/v3_0/assets",
            method="POST",
            body={
                "name": name,
                "account_id": account,
                "generic_asset_type_id": types["building"],
                "latitude": 52.37,
                "longitude": 4.89,
            },
            headers=auth,
        )
        assets[account] = asset["id"]
    for number, (name, unit, resolution) in enumerate(sensors, start=1):
        sensor = http_any(
            f"{base}/api/v3_0/sensors",
            method="POST",
            body={
                "name": name,
                "unit": unit,
                "event_resolution": resolution,
                "generic_asset_id": assets[1 if number < 3 else 2],
                "timezone": "Europe/Amsterdam",
            },
            headers=auth,
        )
        if sensor["id"] != number:
            raise SystemExit(f"seeding: sensor {name!r} got id {sensor['id']}")


def compare(cases: list[Case], anchor: Server, ours: Server, verbose: bool) -> int:
    """Send every case to both; print the table and totals; the exit status."""
    year = secrets.choice([y for y in range(1950, 2020) if y != 1990])
    equal_status = equal_keys = improved = 0
    failures = []
    print(f"data cases moved to May {year}")
    print(f"{'case':<72} {'status':>11}  status keys")
    for case in cases:
        time.sleep(PAUSE_BEFORE.get(case.title, 0.0))
        theirs, mine = send(case, anchor, year), send(case, ours, year)
        same_status = theirs.status == mine.status
        same_keys = theirs.keys == mine.keys
        equal_status += same_status
        equal_keys += same_keys
        note = ""
        if not (same_status and same_keys):
            if case.title in IMPROVEMENTS:
                improved += 1
                note = "  improvement: " + IMPROVEMENTS[case.title]
            else:
                failures.append(case.title)
        print(
            f"{case.title[:72]:<72} {theirs.status:>4} / {mine.status:<4}"
            f"  {'yes' if same_status else 'NO':<6} {'yes' if same_keys else 'NO'}"
            f"{note}"
        )
        if verbose and not same_keys and theirs.keys is not None:
            print(
                f"      only FlexMeasures: {sorted(theirs.keys - (mine.keys or set()))}"
            )
            print(
                f"      only ours:         {sorted((mine.keys or set()) - theirs.keys)}"
            )
    total = len(cases)
    print()
    print(f"cases: {total}")
    print(f"equal status:   {equal_status}/{total} = {equal_status / total:.0%}")
    print(f"equal key sets: {equal_keys}/{total} = {equal_keys / total:.0%}")
    print(f"documented improvements among the differences: {improved}")
    matched = total - len(failures)
    print(
        f"equal or a documented improvement: {matched}/{total} = {matched / total:.0%}"
    )
    print(f"other differences: {len(failures)}")
    for title in failures:
        print(f"  - {title}")
    return 1 if failures else 0


# Schedules: the same triggers on both (--schedules). The anchor needs its scheduling
# worker and fm_sched_setup.py's battery ("battery power", prices on sensor 2).
BATTERY: Final = "battery power"
SCHEDULE_WAIT_S: Final = 90.0


def _day(offset_hours: float) -> dt.datetime:
    """Tomorrow 00:00 UTC plus some hours."""
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=1, hours=offset_hours)


def schedule_triggers() -> dict[str, dict[str, Any]]:
    """Trigger bodies by name; the start in +05:00, the sensors' zone is +01:00."""
    start = _day(0).astimezone(dt.timezone(dt.timedelta(hours=5))).isoformat()
    context = {"consumption-price": {"sensor": 2}}
    feasible = {
        "soc-at-start": "0.5 MWh",
        "soc-min": "0 MWh",
        "soc-max": "2 MWh",
        "power-capacity": "1 MW",
        "soc-targets": [{"datetime": _day(3).isoformat(), "value": "1.8 MWh"}],
    }
    infeasible = {
        **feasible,
        "soc-max": "20 MWh",
        "soc-targets": [{"datetime": _day(3).isoformat(), "value": "10 MWh"}],
        "soc-minima": [{"datetime": _day(5).isoformat(), "value": "8 MWh"}],
    }
    window = {"start": start, "duration": "PT6H"}
    return {
        "feasible target": {
            **window,
            "flex-model": feasible,
            "flex-context": context,
        },
        "infeasible target and minimum (soft)": {
            **window,
            "flex-model": infeasible,
            "flex-context": context,
        },
        "the same, relax-soc-constraints false": {
            **window,
            "flex-model": infeasible,
            "flex-context": {**context, "relax-soc-constraints": False},
        },
        "target above soc-max": {
            **window,
            "flex-model": {
                **feasible,
                "soc-targets": [{"datetime": _day(3).isoformat(), "value": "3 MWh"}],
            },
            "flex-context": context,
        },
        # 1 MWh due in 1 h under a 0.5 MW contract: breach the site or the target.
        "site capacity below what a target needs": {
            **window,
            "flex-model": {
                **feasible,
                "soc-targets": [{"datetime": _day(1).isoformat(), "value": "1.5 MWh"}],
            },
            "flex-context": {**context, "site-consumption-capacity": "0.5 MW"},
        },
        "the same, with a cheap site breach": {
            **window,
            "flex-model": {
                **feasible,
                "soc-targets": [{"datetime": _day(1).isoformat(), "value": "1.5 MWh"}],
            },
            "flex-context": {
                **context,
                "site-consumption-capacity": "0.5 MW",
                "site-consumption-breach-price": "100 EUR/kW",
            },
        },
    }


def _auth(server: Server) -> dict[str, str]:
    return {"Host": server.host, "Authorization": server.admin_token}


def battery_sensor(server: Server) -> int | None:
    """The id of the admin's sensor named BATTERY, if any."""
    sensors = http_any(f"{server.base}/api/v3_0/sensors", headers=_auth(server))
    ids = [s["id"] for s in sensors if s["name"] == BATTERY]
    return int(ids[0]) if ids else None


def seed_battery(anchor: Server, ours: Server) -> None:
    """On ours: a battery with a power sensor, and the anchor's prices on sensor 2."""
    auth = _auth(ours)
    types = {
        t["name"]: t["id"]
        for t in http_any(f"{ours.base}/api/v3_0/assets/types", headers=auth)
    }
    asset = http_any(
        f"{ours.base}/api/v3_0/assets",
        method="POST",
        body={
            "name": "Smoke Battery",
            "account_id": 1,
            "generic_asset_type_id": types["battery"],
            "latitude": 52.0,
            "longitude": 4.0,
        },
        headers=auth,
    )
    http_any(
        f"{ours.base}/api/v3_0/sensors",
        method="POST",
        body={
            "name": BATTERY,
            "unit": "MW",
            "event_resolution": "PT15M",
            "generic_asset_id": asset["id"],
            "timezone": "Europe/Amsterdam",
        },
        headers=auth,
    )
    query = urllib.parse.urlencode(
        {"start": _day(-24).isoformat(), "duration": "PT72H", "unit": "EUR/MWh"}
    )
    prices = http_any(
        f"{anchor.base}/api/v3_0/sensors/2/data?{query}", headers=_auth(anchor)
    )
    http_any(
        f"{ours.base}/api/v3_0/sensors/2/data",
        method="POST",
        body={
            "start": _day(-24).isoformat(),
            "duration": "PT72H",
            "unit": "EUR/MWh",
            "values": prices["values"],
        },
        headers=auth,
    )


def run_schedule(server: Server, sensor: int, body: dict[str, Any]) -> dict[str, Any]:
    """Trigger, wait for the job, get the schedule; its JSON (or the failure)."""
    base, auth = f"{server.base}/api/v3_0", _auth(server)
    job = http_any(
        f"{base}/sensors/{sensor}/schedules/trigger",
        method="POST",
        body={**body, "force-new-job-creation": True},
        headers=auth,
    )["schedule"]
    deadline = time.monotonic() + SCHEDULE_WAIT_S
    while time.monotonic() < deadline:
        try:
            state = http_any(f"{base}/jobs/{job}", headers=auth)
        except urllib.error.HTTPError as err:
            return {"failed": json.loads(err.read()).get("message")}
        if state.get("status") == "FINISHED":
            return dict(
                http_any(
                    f"{base}/sensors/{sensor}/schedules/{job}?duration=PT6H",
                    headers=auth,
                )
            )
        time.sleep(0.3)
    return {"failed": f"no answer within {SCHEDULE_WAIT_S:g} s (no worker?)"}


def compare_schedules(anchor: Server, ours: Server) -> None:
    """The same triggers on both; starts, values and commitment costs side by side."""
    theirs_id, ours_id = battery_sensor(anchor), battery_sensor(ours)
    if theirs_id is None or ours_id is None:
        print("\nschedules: no battery on the anchor (run fm_sched_setup.py)")
        return
    print(f"\nschedules (anchor sensor {theirs_id}, ours {ours_id}):")
    for name, body in schedule_triggers().items():
        theirs = run_schedule(anchor, theirs_id, body)
        mine = run_schedule(ours, ours_id, body)
        print(f"- {name}")
        if "failed" in theirs or "failed" in mine:
            print(f"    FlexMeasures: {theirs.get('failed', 'finished')}")
            print(f"    ours:         {mine.get('failed', 'finished')}")
            continue
        print(f"    start: {theirs['start']} / {mine['start']}")
        for label, answer in (("FlexMeasures", theirs), ("ours", mine)):
            print(f"    {label + ':':<13} {answer['values']}")
        pairs = zip(theirs["values"], mine["values"], strict=True)
        gap = max(abs(a - b) for a, b in pairs)
        print(f"    largest difference per step: {gap:g} MW")
        fm_costs = theirs["scheduler_info"].get("commitment_costs", {})
        our_costs = mine["scheduler_info"].get("commitment_costs", {})
        print(f"    {'commitment costs':<40} {'FlexMeasures':>22} {'ours':>22}")
        for key in sorted(set(fm_costs) | set(our_costs)):
            fm, us = fm_costs.get(key, "-"), our_costs.get(key, "-")
            print(f"    {key:<40} {fm!s:>22} {us!s:>22}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--anchor", default=ANCHOR)
    parser.add_argument("--ours", help="our gateway's base URL (default: start one)")
    parser.add_argument("--host", help="our tenant's host name (with --ours)")
    parser.add_argument("--email", default=ADMIN_EMAIL)
    parser.add_argument("--password", default=ADMIN_PASSWORD)
    parser.add_argument("--other-email", default=OTHER_EMAIL)
    parser.add_argument("--other-password", default=OTHER_PASSWORD)
    parser.add_argument("--verbose", action="store_true", help="list differing keys")
    parser.add_argument(
        "--schedules",
        action="store_true",
        help="also run the same schedule triggers on both (the anchor needs its"
        " scheduling worker and fm_sched_setup.py's battery)",
    )
    args = parser.parse_args()
    cases = parse_cases(args.reference.read_text(encoding="utf-8"))
    anchor_args = argparse.Namespace(
        email=ADMIN_EMAIL,
        password=ADMIN_PASSWORD,
        other_email=OTHER_EMAIL,
        other_password=OTHER_PASSWORD,
    )
    try:
        anchor_host = urllib.parse.urlsplit(args.anchor).netloc
        anchor = server("FlexMeasures", args.anchor, anchor_host, anchor_args)
    except (OSError, KeyError) as err:
        raise SystemExit(
            f"FlexMeasures does not answer a login on {args.anchor} ({err}); start"
            " the anchor: bash ../shared/anchor/fm_anchor.sh start"
        ) from err
    if args.ours:
        host = args.host or urllib.parse.urlsplit(args.ours).netloc
        ours = server("ours", args.ours, host, args)
        status = compare(cases, anchor, ours, args.verbose)
        if args.schedules:
            compare_schedules(anchor, ours)
        sys.exit(status)
    processes = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="flexhost-conformance-"))
    try:
        url = f"sqlite+aiosqlite:///{workdir / 'conf.sqlite3'}"
        asyncio.run(_prepare_database(url))
        stack = start_stack(processes, workdir, url, TENANT, scheduling=args.schedules)
        host = f"{TENANT}.localhost:{urllib.parse.urlsplit(stack.gateway).port}"
        seed_ours(stack.gateway, host)
        ours = server("ours", stack.gateway, host, args)
        status = compare(cases, anchor, ours, args.verbose)
        if args.schedules:
            seed_battery(anchor, ours)
            compare_schedules(anchor, ours)
    finally:
        processes.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
