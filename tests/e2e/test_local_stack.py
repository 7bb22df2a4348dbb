"""`flexhost up` as a real process: the whole local stack on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.launcher import (
    PASSWORD,
    Launcher,
    eventually_login,
    get_root,
    launcher_env,
    tenant_entry,
)
from tests.helpers.net import free_port, tcp_open
from tests.helpers.wait import INTERVAL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def wait_closed(port: int, seconds: float) -> bool:
    """Whether 127.0.0.1:port stops accepting connections within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not await asyncio.to_thread(tcp_open, "127.0.0.1", port):
            return True
        await asyncio.sleep(INTERVAL)
    return False


def alive(pid: int) -> bool:
    """Whether a process with this pid still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_gone(pids: set[int], seconds: float) -> bool:
    """Whether none of `pids` exists any more within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not [pid for pid in pids if alive(pid)]:
            return True
        await asyncio.sleep(INTERVAL)
    return False


async def test_up_serves_tenants_follows_the_file_and_stops_cleanly(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    gw, company, acme, extra = (free_port() for _ in range(4))
    tenants = tmp_path / "tenants.yaml"
    base = "tenants:\n" + tenant_entry("company", company) + tenant_entry("acme", acme)
    tenants.write_text(base)
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    try:
        await up.wait_for(r"flexhost is up", 60)
        redis_port = int(
            (await up.wait_for(r"Redis at redis://127\.0\.0\.1:(\d+)", 1))[1]
        )
        assert "data lives in" in up.output()
        # A dedicated demo tenant's backend starts while it is seeded, not after
        # (their migrations take turns); the banner waits for the seeding.
        output = up.output()
        for tenant in ("company", "acme"):
            started = output.index(f"started {tenant} (pid")
            seeded = output.index(f"demo account created: admin@{tenant}.test")
            assert started < seeded < output.index("flexhost is up")
        for tenant in ("company", "acme"):
            status, body = await get_root(http, gw, tenant)
            assert status == 200, body
            assert body["status"] == 200
            assert "v3_0" in str(body["versions"])
        assert PASSWORD not in up.output()
        assert (tmp_path / ".flexhost" / "company.sqlite3").is_file()
        secret = tmp_path / ".flexhost" / "secrets" / "company"
        assert secret.stat().st_mode & 0o777 == 0o600

        token = await eventually_login(http, gw, "company", PASSWORD, 10)
        url = f"http://127.0.0.1:{gw}/api/v3_0/users"
        headers = {"Host": f"company.localhost:{gw}", "Authorization": token}
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            emails = [user["email"] for user in await resp.json()]
        assert "admin@company.test" in emails

        tenants.write_text(base + tenant_entry("extra", extra))
        await eventually_login(http, gw, "extra", PASSWORD, 15)
        assert tcp_open("127.0.0.1", extra)

        tenants.write_text(base)
        assert await wait_closed(extra, 15), up.output()
        await up.wait_for(r"stopped extra", 5)
        status, _body = await get_root(http, gw, "company")
        assert status == 200

        tenants.write_text(base + "  - subdomain: [broken\n")
        await up.wait_for(r"rejected \(\d+ problem\(s\).*last good config stays", 10)
        status, _body = await get_root(http, gw, "acme")
        assert status == 200
        assert tcp_open("127.0.0.1", acme)
        tenants.write_text(base)

        crashed = int((await up.wait_for(r"started acme \(pid (\d+)\)", 1))[1])
        os.kill(crashed, signal.SIGKILL)
        await up.wait_for(r"acme exited unexpectedly", 10)
        await eventually_login(http, gw, "acme", PASSWORD, 15)

        pids = up.pids()
        assert len(pids) >= 5  # redis, gateway, company, acme, extra
        assert await up.interrupt() == 0, up.output()
        for port in (gw, company, acme, extra, redis_port):
            assert not tcp_open("127.0.0.1", port), port
        assert not [pid for pid in pids if alive(pid)], up.output()
    finally:
        await up.kill()


async def test_up_prints_a_generated_password_once_and_keeps_tokens(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    gw, company = free_port(), free_port()
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n" + tenant_entry("company", company)
    )
    first = Launcher(tmp_path, gw)
    await first.start(launcher_env(None))
    try:
        found = await first.wait_for(r"admin@company\.test password (\S+)", 60)
        password = found[1]
        await first.wait_for(r"flexhost is up", 60)
        token = await eventually_login(http, gw, "company", password, 10)
        assert await first.interrupt() == 0, first.output()
    finally:
        await first.kill()

    second = Launcher(tmp_path, gw)
    await second.start(launcher_env(None))
    try:
        await second.wait_for(r"flexhost is up", 60)
        assert password not in second.output()
        url = f"http://127.0.0.1:{gw}/api/v3_0/users"
        headers = {"Host": f"company.localhost:{gw}", "Authorization": token}
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        assert await second.interrupt() == 0, second.output()
    finally:
        await second.kill()


async def test_up_killed_leaves_no_children(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    gw, company = free_port(), free_port()
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n" + tenant_entry("company", company)
    )
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    try:
        await up.wait_for(r"flexhost is up", 60)
        pids = up.pids()
        assert len(pids) == 4  # redis, gateway, company, company-worker
        if up.proc is not None:
            up.proc.kill()
            await up.proc.wait()
        assert await wait_gone(pids, 15), up.output()
        assert await wait_closed(gw, 5)
        assert await wait_closed(company, 5)
    finally:
        await up.kill()


async def test_up_refuses_a_broken_tenants_file(tmp_path: Path) -> None:
    (tmp_path / "tenants.yaml").write_text("tenants:\n  - subdomain: x\n")
    up = Launcher(tmp_path, free_port())
    await up.start(launcher_env(PASSWORD))
    try:
        async with asyncio.timeout(30):
            code = await up.proc.wait() if up.proc else -1
        assert code == 1
        assert re.search(r"tenants\.yaml:2:\d+: tenants\[0\]\.backends", up.output())
        assert not up.pids()
    finally:
        await up.kill()


async def test_up_runs_schedules_with_no_extra_command(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """`flexhost up` runs a scheduling worker per tenant: triggers get done.

    A schedule and a forecast (both kinds of job run on the one worker).
    """
    gw, company = free_port(), free_port()
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n" + tenant_entry("company", company)
    )
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    try:
        await up.wait_for(r"flexhost is up", 60)
        token = await eventually_login(http, gw, "company", PASSWORD, 10)
        base = f"http://127.0.0.1:{gw}/api/v3_0"
        headers = {"Host": f"company.localhost:{gw}", "Authorization": token}

        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(
                method, base + path, json=body, headers=headers
            ) as resp:
                return resp.status, await resp.json()

        status, types = await call("GET", "/assets/types")
        battery = next(t["id"] for t in types if t["name"] == "battery")
        status, asset = await call(
            "POST", "/assets", {"name": "B", "generic_asset_type_id": battery}
        )
        assert status == 201, asset
        sensors = {}
        for name, unit, resolution in (
            ("power", "MW", "PT15M"),
            ("price", "EUR/MWh", "PT1H"),
        ):
            status, sensor = await call(
                "POST",
                "/sensors",
                {
                    "name": name,
                    "unit": unit,
                    "event_resolution": resolution,
                    "generic_asset_id": asset["id"],
                },
            )
            assert status == 201, sensor
            sensors[name] = sensor["id"]
        start = "2026-03-02T00:00:00+00:00"
        status, body = await call(
            "POST",
            f"/sensors/{sensors['price']}/data",
            {
                "start": start,
                "duration": "PT4H",
                "unit": "EUR/MWh",
                "values": [1, 9, 9, 1],
            },
        )
        assert status == 200, body
        status, job = await call(
            "POST",
            f"/sensors/{sensors['power']}/schedules/trigger",
            {
                "start": start,
                "duration": "PT4H",
                "flex-model": {
                    "soc-at-start": "0 MWh",
                    "soc-max": "1 MWh",
                    "power-capacity": "1 MW",
                },
                "flex-context": {"consumption-price": {"sensor": sensors["price"]}},
            },
        )
        assert status == 202, job
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            status, state = await call("GET", f"/jobs/{job['job']}")
            if status != 202 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert status == 200, (state, up.output()[-3000:])
        # The same worker runs forecasts: three days of hourly prices, then one.
        status, body = await call(
            "POST",
            f"/sensors/{sensors['price']}/data",
            {
                "start": "2026-03-03T00:00:00+00:00",
                "duration": "PT72H",
                "unit": "EUR/MWh",
                "values": [h % 24 for h in range(72)],
                "horizon": "PT0H",
            },
        )
        assert status == 200, body
        status, job = await call(
            "POST",
            f"/sensors/{sensors['price']}/forecasts/trigger",
            {"start": "2026-03-06T00:00:00+00:00", "duration": "PT6H"},
        )
        assert status == 202, job
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            status, state = await call(
                "GET", job["results-url"].removeprefix("/api/v3_0")
            )
            if status != 202 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert status == 200, (state, up.output()[-3000:])
        assert len(state["values"]) == 6
        assert await up.interrupt() == 0, up.output()
    finally:
        await up.kill()


def command_lines(pids: set[int]) -> list[bytes]:
    """The command lines of the processes in `pids` that still run."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes())
    return found


def mode_of(path: Path) -> int:
    """The permission bits of `path`."""
    return path.stat().st_mode & 0o777


async def test_up_keeps_its_data_private_and_redis_behind_a_password(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    import redis.asyncio as aioredis
    import redis.exceptions

    gw, company = free_port(), free_port()
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n" + tenant_entry("company", company)
    )
    data = tmp_path / ".flexhost"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an older flexhost (or a umask of 022) left it
    stray = data / "notes.txt"
    stray.write_text("x")
    stray.chmod(0o644)
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    try:
        await up.wait_for(r"flexhost is up", 60)
        port = int((await up.wait_for(r"Redis at redis://127\.0\.0\.1:(\d+)", 1))[1])
        token = await eventually_login(http, gw, "company", PASSWORD, 15)
        password = (data / "redis.password").read_text().strip()
        assert len(password) >= 32
        assert mode_of(data) == 0o700
        assert mode_of(data / "redis") == 0o700
        assert mode_of(data / "secrets") == 0o700
        for name in (
            "company.sqlite3",
            "redis.password",
            "redis/redis.conf",
            "secrets/company",
            "notes.txt",
        ):
            assert mode_of(data / name) == 0o600, name
        for journal in data.glob("company.sqlite3-*"):
            assert mode_of(journal) == 0o600, journal
        # Redis refuses clients without the password; it is on no command line.
        anonymous = aioredis.Redis(host="127.0.0.1", port=port)
        with pytest.raises(redis.exceptions.AuthenticationError):
            await anonymous.ping()
        await anonymous.aclose()
        allowed = aioredis.Redis(host="127.0.0.1", port=port, password=password)
        assert await allowed.ping()
        await allowed.aclose()
        for line in command_lines(up.pids()):
            assert password.encode() not in line
        assert await up.interrupt() == 0, up.output()
        assert password not in up.output()
        assert mode_of(data / "redis" / "dump.rdb") == 0o600
    finally:
        await up.kill()

    # Started again: the same password, and the tokens kept in Redis still work.
    again = Launcher(tmp_path, gw)
    await again.start(launcher_env(PASSWORD))
    try:
        await again.wait_for(r"flexhost is up", 60)
        assert (data / "redis.password").read_text().strip() == password
        url = f"http://127.0.0.1:{gw}/api/v3_0/users"
        headers = {"Host": f"company.localhost:{gw}", "Authorization": token}
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        assert await again.interrupt() == 0, again.output()
        assert password not in again.output()
    finally:
        await again.kill()


async def test_ctrl_c_under_load_stops_within_its_budget_and_says_what_it_waits_for(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    gw, company = free_port(), free_port()
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n" + tenant_entry("company", company)
    )
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    stop = asyncio.Event()
    answers: dict[str, int] = {}
    try:
        await up.wait_for(r"flexhost is up", 60)
        token = await eventually_login(http, gw, "company", PASSWORD, 15)
        base = f"http://127.0.0.1:{gw}/api/v3_0"
        headers = {"Host": f"company.localhost:{gw}", "Authorization": token}
        async with http.get(f"{base}/assets/types", headers=headers) as resp:
            battery = next(t["id"] for t in await resp.json() if t["name"] == "battery")
        async with http.post(
            f"{base}/assets",
            json={"name": "B", "generic_asset_type_id": battery},
            headers=headers,
        ) as resp:
            asset = (await resp.json())["id"]
        async with http.post(
            f"{base}/sensors",
            json={
                "name": "power",
                "unit": "MW",
                "event_resolution": "PT15M",
                "generic_asset_id": asset,
            },
            headers=headers,
        ) as resp:
            sensor = (await resp.json())["id"]
        connector = aiohttp.TCPConnector(limit=0)
        load = aiohttp.ClientSession(connector=connector)

        def count(outcome: str) -> None:
            answers[outcome] = answers.get(outcome, 0) + 1

        async def reader() -> None:
            while not stop.is_set():
                try:
                    async with load.get(
                        f"{base}/sensors/{sensor}", headers=headers
                    ) as resp:
                        await resp.read()
                        count(str(resp.status))
                except (aiohttp.ClientError, OSError) as err:
                    count(type(err).__name__)
                    await asyncio.sleep(0.05)

        async def slow_body() -> AsyncIterator[bytes]:
            yield b'{"start": "2026-01-01T00:00:00+00:00", "unit": "MW", "values": [1'
            while True:  # ~800 bytes/s: above any minimum rate, never done
                await asyncio.sleep(0.25)
                yield b", 1" * 66

        async def uploader() -> None:
            try:
                async with load.post(
                    f"{base}/sensors/{sensor}/data",
                    data=slow_body(),
                    headers={**headers, "Content-Type": "application/json"},
                ) as resp:
                    count(f"upload {resp.status}")
            except (aiohttp.ClientError, OSError) as err:
                count(f"upload {type(err).__name__}")

        tasks = [asyncio.create_task(reader()) for _ in range(16)]
        tasks += [asyncio.create_task(uploader()) for _ in range(4)]
        await asyncio.sleep(2)
        assert answers.get("200", 0) > 0, answers
        started = time.monotonic()
        code = await up.interrupt()
        took = time.monotonic() - started
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await load.close()
        print(f"flexhost up stopped in {took:.1f} s under load; answers {answers}")
        assert code == 0, up.output()
        output = up.output()
        for line in output.splitlines():
            if re.search(
                r"draining|waiting for|stopped in|killed|grace over|worker\]", line
            ):
                print(line[:300])
        found = re.search(r"stopping; waiting for: (.*)", output)
        assert found is not None, output[-3000:]
        assert "gateway" in found[1], found[0]
        assert re.search(r"gateway \(\d+ requests? in flight\)", output), found[0]
        # The budget: 2 s grace + 2 s margin for the gateway, the same for the
        # backends and workers, 2 s for Redis (a generous sanity bound on top).
        assert took < 10 + 5, output[-3000:]
        assert re.search(r"stopped in \d+\.\d s", output)
        assert not [pid for pid in up.pids() if alive(pid)], output[-3000:]
    finally:
        stop.set()
        await up.kill()
