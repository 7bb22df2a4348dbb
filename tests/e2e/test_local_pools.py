"""`flexhost up` with pools: 200 tenants on two loopback addresses are two backend
processes and two workers, serve through the gateway, and take a new tenant
without a new process."""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp
import pytest

from deploy.local import BANNER_WAIT_S
from tests.helpers.launcher import (
    PASSWORD,
    Launcher,
    eventually_login,
    get_root,
    launcher_env,
    login_answer,
)
from tests.helpers.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TENANTS = 200


def entry(subdomain: str, port: int, *, demo: bool = False) -> str:
    """One tenant of a tenants file."""
    text = f'  - subdomain: {subdomain}\n    backends: ["http://127.0.0.1:{port}"]\n'
    return text + ("    demo: true\n" if demo else "")


async def test_up_runs_pools_not_a_process_per_tenant(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    gw, first, second = (free_port() for _ in range(3))
    pools = (first, second)
    text = "tenants:\n" + "".join(
        entry(f"t{i:03d}", pools[i % 2], demo=i < 2) for i in range(TENANTS)
    )
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(text)
    up = Launcher(tmp_path, gw)
    started = time.monotonic()
    await up.start(launcher_env(PASSWORD))
    try:
        await up.wait_for(r"flexhost is up", 120)
        ready = time.monotonic() - started
        listening = await up.wait_for(
            r"all 2 backend\(s\) listening after ([\d.]+) s", 5
        )
        print(
            f"{TENANTS} tenants on 2 pools: up in {ready:.1f} s "
            f"(backends listening after {listening[1]} s)"
        )
        names = re.findall(r"started (\S+) \(pid \d+\)", up.output())
        assert sorted(names) == sorted(
            [
                "redis",
                "gateway",
                f"pool:{first}",
                f"pool:{second}",
                f"pool:{first}-worker",
                f"pool:{second}-worker",
            ]
        ), names
        for number in (0, 1):  # demo tenants: seeded by the launcher
            token = await eventually_login(http, gw, f"t{number:03d}", PASSWORD, 30)
            assert token
        for name in ("t002", "t117", "t199"):
            status, body = await get_root(http, gw, name)
            assert status == 200, body
            status, answer = await login_answer(http, gw, name)
            assert status == 404, answer  # its backend looked the user up
            assert f"nobody@{name}.test" in answer
        # Migrated lazily: only the tenants asked for have a database.
        databases = sorted(p.stem for p in (tmp_path / ".flexhost").glob("*.sqlite3"))
        assert databases == ["t000", "t001", "t002", "t117", "t199"]

        count = len(up.pids())
        tenants.write_text(text + entry("late", second, demo=True))
        # Its pool serves it at once; its demo account exists once seeded.
        await up.wait_for(r"demo account created: admin@late\.test", 30)
        await eventually_login(http, gw, "late", PASSWORD, 30)
        assert len(up.pids()) == count  # served by the running pool
        assert await up.interrupt() == 0, up.output()
    finally:
        await up.kill()


async def test_up_reports_a_failing_backend_and_serves_the_rest(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A backend that cannot start (its database path is a directory) is reported
    and restarted with backoff; the stack comes up and serves the others."""
    gw, good, bad = (free_port() for _ in range(3))
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n" + entry("good", good, demo=True) + entry("bad", bad)
    )
    (tmp_path / ".flexhost" / "bad.sqlite3").mkdir(parents=True)
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    try:
        await up.wait_for(r"flexhost is up", 90)
        output = up.output()
        assert "bad exited unexpectedly" in output
        found = re.search(
            r"bad not listening on 127\.0\.0\.1:\d+ after (\d+) s", output
        )
        assert found, output
        # Named as soon as it has exited, not after the banner's whole wait.
        assert int(found[1]) < BANNER_WAIT_S, output
        assert found.start() < output.index("flexhost is up")
        await eventually_login(http, gw, "good", PASSWORD, 15)
        assert await up.interrupt() == 0, up.output()
    finally:
        await up.kill()


async def test_a_backend_waiting_for_its_database_file_starts_once_it_exists(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A dedicated tenant whose `database: file:` is not there yet is reported and
    left out; once the file is written it starts, tenants.yaml unchanged."""
    gw, good, late = (free_port() for _ in range(3))
    reference = tmp_path / "late-database.url"
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n"
        + entry("good", good, demo=True)
        + entry("late", late, demo=True)
        + f"    database: file:{reference}\n"
    )
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    try:
        await up.wait_for(r"flexhost is up", 90)
        assert re.search(r"late: database file:\S+: cannot read", up.output())
        await eventually_login(http, gw, "good", PASSWORD, 15)
        status, _ = await login_answer(http, gw, "late")
        assert status == 502  # no backend listens there
        reference.write_text(f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.sqlite3'}")
        await up.wait_for(r"started late \(pid \d+\)", 15)
        await eventually_login(http, gw, "late", PASSWORD, 30)
        assert (tmp_path / "elsewhere.sqlite3").is_file()  # its own database
        assert await up.interrupt() == 0, up.output()
    finally:
        await up.kill()


async def test_a_second_tenant_on_an_address_turns_it_into_a_pool(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A dedicated backend's address shared by a new tenant: the pool takes over,
    with the first tenant's data (the same database file)."""
    gw, port = free_port(), free_port()
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("tenants:\n" + entry("first", port, demo=True))
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    try:
        await up.wait_for(r"flexhost is up", 90)
        await eventually_login(http, gw, "first", PASSWORD, 15)
        tenants.write_text(
            "tenants:\n" + entry("first", port, demo=True) + entry("second", port)
        )
        await up.wait_for(rf"started pool:{port} \(pid \d+\)", 30)
        await up.wait_for(rf"started pool:{port}-worker \(pid \d+\)", 5)
        assert "stopping backend first" in up.output()
        await eventually_login(http, gw, "first", PASSWORD, 30)
        status, answer = await login_answer(http, gw, "second")
        assert status == 404, answer  # the pool serves the new tenant too
        assert await up.interrupt() == 0, up.output()
    finally:
        await up.kill()


async def test_a_tenant_added_while_the_stack_starts_is_served(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A tenant appended after `flexhost up` read the file, before the gateway
    started: the gateway follows the checked copy, so it never looks for a secret
    not made yet (it exited on "no secret" and the start gave up)."""
    gw, first, late = (free_port() for _ in range(3))
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("tenants:\n" + entry("first", first, demo=True))
    up = Launcher(tmp_path, gw)
    await up.start(launcher_env(PASSWORD))
    try:
        # Logged while the file is read, before Redis and the gateway start.
        await up.wait_for(r"generated secret \S+first", 30)
        with tenants.open("a") as file:
            file.write(entry("late", late, demo=True))
        await up.wait_for(r"flexhost is up", 90)
        await up.wait_for(r"demo account created: admin@late\.test", 60)
        await eventually_login(http, gw, "late", PASSWORD, 30)
        await eventually_login(http, gw, "first", PASSWORD, 30)
        assert "gateway exited unexpectedly" not in up.output(), up.output()
        assert await up.interrupt() == 0, up.output()
    finally:
        await up.kill()
