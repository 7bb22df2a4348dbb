"""An attacker and a well-behaved neighbour of the same tenant, on real processes.

`start_abuse_stack` starts Redis, one SQLite backend of the company tenant
(`python -m tenant_service`) and one gateway (`python -m gateway`), seeded with two
accounts (A: ADMIN account-admin and VICTIM; B: OTHER account-admin), each with an
asset and a MW/PT15M sensor. A `Neighbour` measures its own requests without the
attack (`baseline`), then beside it (`beside`); `report` prints one line and
asserts that none of the neighbour's requests failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import aiohttp

from gateway.config import Settings as GatewaySettings
from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine, migrate
from tests.faults.conftest import (
    HIGH_RATE,
    PASSWORD,
    TENANT,
    RedisServer,
    Service,
    Stack,
    host,
    tenant_entry,
    wait_ok,
)
from tests.helpers.net import free_port

GATEWAY_DEFAULTS: Final = {f.name: f.default for f in fields(GatewaySettings)}

ADMIN: Final = "admin@company.test"
VICTIM: Final = "victim@company.test"
OTHER: Final = "other@company.test"
# A neighbour's request with no answer after this long has failed.
NEIGHBOUR_TIMEOUT: Final = 10.0
START: Final = "2026-01-01T00:00:00+00:00"

__all__ = [
    "ADMIN",
    "HIGH_RATE",
    "OTHER",
    "PASSWORD",
    "START",
    "TENANT",
    "VICTIM",
    "AbuseDb",
    "AbuseStack",
    "Neighbour",
    "seed_abuse_db",
    "start_abuse_stack",
]


@dataclass(frozen=True, slots=True)
class AbuseDb:
    """A migrated SQLite file: accounts A and B with their users."""

    url: str
    account_a: int
    account_b: int
    admin_id: int
    victim_id: int
    other_id: int

    def copy_to(self, directory: Path) -> AbuseDb:
        """This database copied into `directory` (for one test)."""
        source = Path(self.url.removeprefix("sqlite+aiosqlite:///"))
        target = directory / "company.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{source}{suffix}").exists():
                shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
        return AbuseDb(
            f"sqlite+aiosqlite:///{target}",
            self.account_a,
            self.account_b,
            self.admin_id,
            self.victim_id,
            self.other_id,
        )


async def seed_abuse_db(path: Path) -> AbuseDb:
    """Migrate `path` and add accounts A and B with their users."""
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url)
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            account_a = await account_store.create_account(conn, name="Company")
            account_b = await account_store.create_account(conn, name="Other")
            ids = []
            for email, account, roles in (
                (ADMIN, account_a, ["account-admin"]),
                (VICTIM, account_a, []),
                (OTHER, account_b, ["account-admin"]),
            ):
                ids.append(
                    await user_store.create_user(
                        conn,
                        email=email,
                        username=email.split("@")[0],
                        account_id=account,
                        password_hash=password_hash,
                        role_names=roles,
                    )
                )
    finally:
        await engine.dispose()
    return AbuseDb(url, account_a, account_b, *ids)


@dataclass(slots=True)
class AbuseStack:
    """Redis, the company backend and a gateway, with a sensor per account."""

    stack: Stack
    redis: RedisServer
    backend: Service
    gateway: Service
    db: AbuseDb
    session: aiohttp.ClientSession
    sensor_a: int = 0
    sensor_b: int = 0
    asset_a: int = 0
    asset_b: int = 0

    @property
    def headers(self) -> dict[str, str]:
        """The Host header of the company tenant at the gateway."""
        return {"Host": host(TENANT, self.gateway.port)}

    def url(self, path: str) -> str:
        """`path` at the gateway."""
        return f"{self.gateway.url}{path}"

    def auth(self, token: str) -> dict[str, str]:
        """Headers of an API request with `token`."""
        return {**self.headers, "Authorization": token}

    async def login(self, email: str) -> str:
        """A fresh API token of `email` (fails the test if refused)."""
        async with self.session.post(
            self.url("/api/requestAuthToken"),
            json={"email": email, "password": PASSWORD},
            headers=self.headers,
        ) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                raise AssertionError(f"login of {email}: {response.status} {body}")
            return str(body["auth_token"])

    async def call(
        self, token: str, method: str, path: str, body: object = None
    ) -> tuple[int, Any]:
        """One API request through the gateway; (status, JSON body or text)."""
        async with self.session.request(
            method,
            self.url(f"/api/v3_0{path}"),
            json=body,
            headers=self.auth(token),
            timeout=aiohttp.ClientTimeout(total=NEIGHBOUR_TIMEOUT),
        ) as response:
            raw = await response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw.decode(errors="replace")

    async def _asset_with_sensor(self, token: str, account: int) -> tuple[int, int]:
        status, types = await self.call(token, "GET", "/assets/types")
        if status != 200:
            raise AssertionError(f"asset types: {status} {types}")
        battery = next(t["id"] for t in types if t["name"] == "battery")
        status, asset = await self.call(
            token,
            "POST",
            "/assets",
            {
                "name": f"Battery of {account}",
                "generic_asset_type_id": battery,
                "account_id": account,
                "latitude": 52.37,
                "longitude": 4.89,
            },
        )
        if status != 201:
            raise AssertionError(f"asset: {status} {asset}")
        status, sensor = await self.call(
            token,
            "POST",
            "/sensors",
            {
                "name": "power",
                "unit": "MW",
                "event_resolution": "PT15M",
                "generic_asset_id": asset["id"],
                "timezone": "Europe/Amsterdam",
            },
        )
        if status != 201:
            raise AssertionError(f"sensor: {status} {sensor}")
        return int(asset["id"]), int(sensor["id"])


async def start_abuse_stack(
    stack: Stack,
    template: AbuseDb,
    session: aiohttp.ClientSession,
    *,
    tenant: dict[str, Any] | None = None,
    backend_env: dict[str, str] | None = None,
    gateway_env: dict[str, str] | None = None,
) -> AbuseStack:
    """Start Redis, the company backend and a gateway on a copy of `template`.

    `tenant` adds to the company's tenants.yaml entry (default: a per-token rate
    limit no test reaches), `backend_env` to the backend's TENANT_* variables
    (without the prefix: {"MAX_ROWS": "10"}), `gateway_env` to the gateway's.
    """
    db = template.copy_to(stack.dir)
    redis = await stack.redis()
    env = {f"TENANT_{key}": value for key, value in (backend_env or {}).items()}
    backend = stack.start_backend("backend", db, free_port(), **env)
    await wait_ok(f"{backend.url}/readyz", backend.proc)
    stack.write_tenants(
        [tenant_entry(TENANT, [backend.url], **{**(tenant or {})})],
    )
    # The gateway's own timeouts, not the fault stack's short ones (0.5 s for
    # Redis, 1 s to connect, made to find faults fast): these tests count what
    # the limits answer. On a machine loaded far past its cores, 119 of 150
    # concurrent logins once got 503 (Redis) and a flood at the backend 502
    # (connect) where the limits' 429 and 503 were counted.
    gateway_env = {
        "REDIS_TIMEOUT": str(GATEWAY_DEFAULTS["redis_timeout"]),
        "CONNECT_TIMEOUT": str(GATEWAY_DEFAULTS["connect_timeout"]),
        **(gateway_env or {}),
    }
    gateway = await stack.gateway("gateway", redis.url, **gateway_env)
    abuse = AbuseStack(stack, redis, backend, gateway, db, session)
    admin = await abuse.login(ADMIN)
    other = await abuse.login(OTHER)
    abuse.asset_a, abuse.sensor_a = await abuse._asset_with_sensor(admin, db.account_a)
    abuse.asset_b, abuse.sensor_b = await abuse._asset_with_sensor(other, db.account_b)
    return abuse


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# A step of the neighbour: None when its answer was right, else what was wrong.
Step = Callable[[], Awaitable[str | None]]


@dataclass(slots=True)
class _Phase:
    seconds: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.seconds) + sum(self.failures.values())


class Neighbour:
    """A well-behaved client: `workers` loops of `step`, timed, failures counted."""

    def __init__(self, step: Step, *, workers: int = 1, pause: float = 0.02) -> None:
        self.step = step
        self.workers = workers
        self.pause = pause
        self.quiet = _Phase()
        self.during = _Phase()

    async def _one(self, phase: _Phase) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(NEIGHBOUR_TIMEOUT):
                problem = await self.step()
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            problem = f"{type(err).__name__}: {err}"[:120]
        if problem is None:
            phase.seconds.append(time.monotonic() - started)
        else:
            phase.failures[problem] += 1

    async def _loop(self, phase: _Phase, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._one(phase)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.pause)

    async def _run(self, phase: _Phase, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._loop(phase, stop) for _ in range(self.workers)))

    async def baseline(self, seconds: float = 2.0) -> None:
        """Measure the neighbour alone for `seconds`."""
        stop = asyncio.Event()
        task = asyncio.create_task(self._run(self.quiet, stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task

    @contextlib.asynccontextmanager
    async def beside(self) -> AsyncIterator[None]:
        """Run the neighbour while the body of the `async with` attacks."""
        stop = asyncio.Event()
        task = asyncio.create_task(self._run(self.during, stop))
        try:
            yield
        finally:
            stop.set()
            await task

    def report(self, attack: str, attacker_requests: int, extra: str = "") -> str:
        """Print the attack's line; fail if a neighbour request failed."""
        quiet, during = self.quiet, self.during
        line = (
            f"ABUSE {attack}: attacker requests={attacker_requests} "
            f"neighbour requests={during.requests} "
            f"neighbour failures={sum(during.failures.values())} "
            f"neighbour p99 during={_quantile(during.seconds, 0.99) * 1000:.1f} ms "
            f"without={_quantile(quiet.seconds, 0.99) * 1000:.1f} ms"
            f" (p50 {_quantile(during.seconds, 0.5) * 1000:.1f} / "
            f"{_quantile(quiet.seconds, 0.5) * 1000:.1f} ms)"
        )
        if extra:
            line += f"; {extra}"
        if during.failures:
            line += f"; failures: {dict(during.failures.most_common(5))}"
        print(line)
        assert quiet.failures == Counter(), f"neighbour failed alone: {line}"
        assert during.requests > 0, f"the neighbour never ran: {line}"
        assert not during.failures, line
        return line
