"""`flexhost up` (python -m deploy.cli up) as a real process, and calls to its gateway."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.wait import INTERVAL

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "demo-password-for-tests"


def tenant_entry(subdomain: str, port: int) -> str:
    """One demo tenant of a tenants file."""
    return (
        f"  - subdomain: {subdomain}\n"
        f'    backends: ["http://127.0.0.1:{port}"]\n'
        "    demo: true\n"
    )


class Launcher:
    """A running `python -m deploy.cli up` with its output in a file."""

    def __init__(self, workdir: Path, gateway_port: int) -> None:
        self.workdir = workdir
        self.gateway_port = gateway_port
        self.log = workdir / f"up-{time.monotonic_ns()}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, env: dict[str, str], options: Sequence[str] = ()) -> None:
        """Start the launcher on tenants.yaml in the work dir (more `options`)."""
        argv = [sys.executable, "-m", "deploy.cli", "up"]
        argv += ["--tenants", "tenants.yaml", "--port", str(self.gateway_port)]
        argv += options
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    def output(self) -> str:
        """Everything the launcher and its children printed so far."""
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str, seconds: float) -> re.Match[str]:
        """The first match of `pattern` in the output, waiting up to `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output())
            if found:
                return found
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(INTERVAL)
        pytest.fail(f"no {pattern!r} in the output:\n{self.output()}")

    def pids(self) -> set[int]:
        """The pids of every child the launcher started."""
        return {int(m) for m in re.findall(r"started \S+ \(pid (\d+)\)", self.output())}

    async def interrupt(self) -> int:
        """Ctrl-C: the launcher's exit code."""
        if self.proc is None:
            pytest.fail("not started")
        self.proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(40):
                return await self.proc.wait()
        except TimeoutError:
            pytest.fail(f"no exit 40 s after SIGINT:\n{self.output()}")

    async def kill(self) -> None:
        """Stop it whatever state it is in (test cleanup)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(30):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def launcher_env(password: str | None) -> dict[str, str]:
    """The test's environment without outside Redis, with the demo password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEXHOST_")}
    paths = [os.environ.get("PYTHONPATH", ""), str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    if password is not None:
        env["FLEXHOST_DEMO_PASSWORD"] = password
    return env


async def get_root(
    http: aiohttp.ClientSession, port: int, tenant: str
) -> tuple[int, Any]:
    """GET /api/ of `tenant` through the gateway: status and JSON (None if not)."""
    url = f"http://127.0.0.1:{port}/api/"
    async with http.get(url, headers={"Host": f"{tenant}.localhost:{port}"}) as resp:
        body = await resp.json(content_type=None) if resp.status == 200 else None
        return resp.status, body


async def login(
    http: aiohttp.ClientSession, port: int, tenant: str, password: str
) -> tuple[int, Any]:
    """POST /api/requestAuthToken as the tenant's demo admin."""
    url = f"http://127.0.0.1:{port}/api/requestAuthToken"
    body = {"email": f"admin@{tenant}.test", "password": password}
    headers = {"Host": f"{tenant}.localhost:{port}"}
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def login_answer(
    http: aiohttp.ClientSession, port: int, tenant: str
) -> tuple[int, str]:
    """A login of an unknown user: the tenant's backend answers it (404 when it
    looked the user up in the tenant's database)."""
    url = f"http://127.0.0.1:{port}/api/requestAuthToken"
    body = {"email": f"nobody@{tenant}.test", "password": "not-a-password"}
    headers = {"Host": f"{tenant}.localhost:{port}"}
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.text()


async def eventually_login(
    http: aiohttp.ClientSession, port: int, tenant: str, password: str, seconds: float
) -> str:
    """A token for the tenant's demo admin, retrying until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    last: tuple[int, Any] = (0, None)
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            last = await login(http, port, tenant, password)
            if last[0] == 200:
                token: str = last[1]["auth_token"]
                return token
        await asyncio.sleep(0.2)  # slower than INTERVAL: logins are throttled
    pytest.fail(f"no login on {tenant} within {seconds} s; last answer {last}")
