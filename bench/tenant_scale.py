"""Pooled backends at 10, 100 and 1,000 tenants, on SQLite and PostgreSQL.

Run: `.venv/bin/python -m bench.tenant_scale [--sizes 10,100,1000] [--db both]
[--pools 4] [--seconds 5] [--rounds 3]`. For each database and size it writes a
tenants.yaml of demo-less tenants spread over `--pools` pool addresses and starts
what `flexhost up` starts for it (on loopback): one pool backend
(`python -m tenant_service` with TENANT_TENANTS_FILE and TENANT_ADDRESS) and one
pool worker per address, and the gateway; Redis is the local one (or one started
here). PostgreSQL databases are created for every tenant and dropped at the end
(`fhbench_<run>_<tenant>`); SQLite files live in a temporary folder. Three tenants
are prepared (migrated, one user): an active one and a noisy one in the first
pool, a cold one in the second. It prints, side by side (medians):

- PSS of the whole tree (pools, workers, gateway; /proc/<pid>/smaps_rollup) idle
  after the start and after the burst, PSS per idle tenant between sizes, the
  start time (launch until every backend and the gateway are ready and each pool
  serves its tenants);
- the cold tenant's GET /api/v3_0/users/<id> through the gateway with a token when
  its engine is closed (TENANT_IDLE_CLOSE passed) against the same request at once
  after it (warm);
- the active tenant's p50 on its pool against a dedicated backend of the same
  tenant (same database, started for this and stopped after), interleaved, at
  `--connections` and at one connection, both direct with a signed identity
  assertion (the gateway adds the same to both);
- the noisy neighbour: the active tenant's p50 (one connection) while the noisy
  tenant of the same pool runs `--noisy` closed-loop connections, against its p50
  unloaded;
- PostgreSQL connections held by the bench's databases (pg_stat_activity) idle,
  after a burst (GET /api/v3_0/health/ready through the gateway to `--burst`
  tenants, `--burst-clients` at once: each opens its tenant's engine, migrating
  its database),
  and once the engines are closed again.

Every child is stopped by pid at the end (also on Ctrl-C/SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench._harness import (
    BENCH_RATE,
    PYTHON,
    Processes,
    Result,
    free_port,
    http_json,
    load_average,
    local_redis,
    median_result,
    new_secret,
    prepare_database,
    wait_port,
    wrk,
)
from contract.identity import HEADER, Caller, sign_identity

PG_ADMIN: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL: Final = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
EMAIL: Final = "admin@bench.test"
IDLE_CLOSE_S: Final = 2.0  # TENANT_IDLE_CLOSE of the pools (default 300)
PSS_RE: Final = re.compile(r"^Pss:\s+(\d+) kB$", re.MULTILINE)


# --- pure helpers --------------------------------------------------------------------


def parse_pss(smaps_rollup: str) -> int:
    """The PSS (kB) in the text of /proc/<pid>/smaps_rollup; 0 without one."""
    found = PSS_RE.search(smaps_rollup)
    return int(found[1]) if found else 0


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    """`root` and every process below it, from a pid -> parent pid map."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found = {root}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tenant_names(count: int) -> list[str]:
    """The bench's tenant subdomains."""
    return [f"t{i:04d}" for i in range(count)]


def tenants_yaml(names: list[str], pools: list[str]) -> str:
    """A tenants.yaml of demo-less `names` spread round-robin over `pools`.

    Rate limits never refuse (the bench sends thousands of requests per second).
    """
    lines = ["tenants:"]
    for i, name in enumerate(names):
        lines += [
            f"  - subdomain: {name}",
            f'    backends: ["{pools[i % len(pools)]}"]',
            f"    rate_limits: {{per_token: {BENCH_RATE!r}, per_tenant: off}}",
        ]
    return "\n".join(lines) + "\n"


def database_name(run: str, tenant: str) -> str:
    """A bench tenant's PostgreSQL database (prefixed: never another's)."""
    return f"fhbench_{run}_{tenant}"


# --- processes ---------------------------------------------------------------------


def parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process now (from /proc)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def tree_pss_mb(roots: list[int]) -> float:
    """The PSS (MB) of `roots` and all their descendants."""
    parents = parent_pids()
    pids: set[int] = set()
    for root in roots:
        pids |= descendants(root, parents)
    total = 0
    for pid in pids:
        try:
            total += parse_pss(Path(f"/proc/{pid}/smaps_rollup").read_text())
        except OSError:
            continue
    return total / 1024


def get_json(url: str, headers: dict[str, str] | None = None) -> dict[str, object]:
    """GET a JSON object; {} when it cannot be had."""
    try:
        return http_json(url, headers=headers or {})
    except (OSError, ValueError):
        return {}


def timed_get(url: str, headers: dict[str, str]) -> float:
    """One GET's time (ms); it must answer 200."""
    started = time.perf_counter()
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise SystemExit(f"{url}: {response.status}")
    return 1000 * (time.perf_counter() - started)


# --- PostgreSQL ------------------------------------------------------------------


@asynccontextmanager
async def pg_admin() -> AsyncIterator[Any]:
    """A connection to the server's `postgres` database."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        yield conn
    finally:
        await conn.close()


async def create_databases(names: list[str]) -> None:
    async with pg_admin() as conn:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')


async def drop_databases(prefix: str) -> None:
    async with pg_admin() as conn:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE left(datname, $1) = $2",
            len(prefix),
            prefix,
        )
        for row in rows:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row[0]}" WITH (FORCE)')


async def pg_connections(prefix: str) -> int:
    """Connections to the databases whose names start with `prefix`."""
    async with pg_admin() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE left(datname, $1) = $2",
            len(prefix),
            prefix,
        )
        return count


# --- one size --------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """What one database and size showed."""

    label: str
    tenants: int
    start_s: float = 0.0
    pss_idle_mb: float = 0.0
    pss_burst_mb: float = 0.0
    cold_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    pooled: Result | None = None
    dedicated: Result | None = None
    pooled_1: Result | None = None  # at one connection
    dedicated_1: Result | None = None
    # TENANT_REQUESTS_PER_TENANT ("" = the default) -> (alone, beside, noisy)
    neighbours: dict[str, tuple[Result, Result, Result]] = field(default_factory=dict)
    burst_s: float = 0.0
    burst_tenants: int = 0
    pg_idle: int | None = None
    pg_burst: int | None = None
    pg_closed: int | None = None
    pool_connections_burst: int = 0


@dataclass(frozen=True, slots=True)
class Tenant:
    """A prepared tenant: its name, secret and user."""

    name: str
    secret: str
    url: str  # its database
    user_id: int = 0


def assertion(tenant: Tenant) -> dict[str, str]:
    """Headers of a direct request as `tenant`'s user (valid for a minute)."""
    identity = sign_identity(
        secret=tenant.secret,
        tenant=tenant.name,
        caller=Caller(tenant.user_id, None, (), int(time.time() * 1000)),
        host=f"{tenant.name}.localhost",
        scheme="http",
        request_id="bench",
    )
    return {HEADER: identity}


class Run:
    """One database and size: its processes, folders and databases."""

    def __init__(self, args: argparse.Namespace, db: str, size: int) -> None:
        self.args = args
        self.db = db
        self.size = size
        self.run = secrets.token_hex(3)
        self.prefix = f"fhbench_{self.run}_"
        self.redis_prefix = f"b{secrets.token_hex(4)}"
        self.workdir = Path(tempfile.mkdtemp(prefix="flexhost-tenant-scale-"))
        self.processes = Processes()
        self.names = tenant_names(size)
        self.ports = [free_port() for _ in range(args.pools)]
        self.pools = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.pool_pids: list[int] = []
        self.roots: list[int] = []  # the tree measured
        self.figures = Figures(
            f"{'PostgreSQL' if db == 'postgres' else 'SQLite'}", size
        )

    def database_url(self, tenant: str) -> str:
        if self.db == "postgres":
            return PG_URL.format(db=database_name(self.run, tenant))
        return f"sqlite+aiosqlite:///{self.workdir / 'data' / tenant}.sqlite3"

    def template(self) -> str:
        return self.database_url("{tenant}")

    def pg(self) -> int | None:
        if self.db != "postgres":
            return None
        return asyncio.run(pg_connections(self.prefix))

    def setup(self) -> tuple[Tenant, Tenant, Tenant]:
        """Secrets, databases, tenants.yaml; the active, noisy and cold tenants."""
        (self.workdir / "data").mkdir(mode=0o700)
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(mode=0o700)
        kept: dict[str, str] = {}
        for name in self.names:
            kept[name] = new_secret()
            (secrets_dir / name).write_text(kept[name])
        if self.db == "postgres":
            started = time.perf_counter()
            dbs = [database_name(self.run, name) for name in self.names]
            asyncio.run(create_databases(dbs))
            took = time.perf_counter() - started
            print(f"  created {len(dbs)} databases in {took:.1f} s", flush=True)
        (self.workdir / "tenants.yaml").write_text(tenants_yaml(self.names, self.pools))
        self.password = new_secret()
        active, cold, noisy = (
            self.names[0],
            self.names[1],
            self.names[len(self.pools)],
        )
        for name in (active, cold, noisy):
            asyncio.run(prepare_database(self.database_url(name), self.password, EMAIL))
        return (
            Tenant(active, kept[active], self.database_url(active)),
            Tenant(noisy, kept[noisy], self.database_url(noisy)),
            Tenant(cold, kept[cold], self.database_url(cold)),
        )

    def pool_env(self, redis_url: str) -> dict[str, str]:
        """A pool process's environment, but its address and port."""
        return {
            "TENANT_TENANTS_FILE": str(self.workdir / "tenants.yaml"),
            "TENANT_SECRETS_DIR": str(self.workdir / "secrets"),
            "TENANT_DATABASE_URL": self.template(),
            "TENANT_REDIS_URL": redis_url,
            "TENANT_REDIS_PREFIX": self.redis_prefix,
            "TENANT_IDLE_CLOSE": str(IDLE_CLOSE_S),
            "TENANT_SHUTDOWN_GRACE": "2",
        }

    def start(self, redis_url: str) -> None:
        """The pools, their workers and the gateway; until all are ready."""
        gateway_port = free_port()
        self.gateway = f"http://127.0.0.1:{gateway_port}"
        pool_env = self.pool_env(redis_url)
        logs = self.workdir / "logs"
        logs.mkdir()
        started = time.perf_counter()
        for port, address in zip(self.ports, self.pools, strict=True):
            env = {**pool_env, "TENANT_ADDRESS": address, "TENANT_PORT": str(port)}
            child = self.processes.start(
                [PYTHON, "-m", "tenant_service"], env, log=logs / f"pool-{port}.log"
            )
            self.pool_pids.append(child.pid)
            worker = self.processes.start(
                [PYTHON, "-m", "tenant_service.scheduling.worker"],
                env,
                log=logs / f"worker-{port}.log",
            )
            self.roots += [child.pid, worker.pid]
        gateway = self.processes.start(
            [PYTHON, "-m", "gateway"],
            {
                "GATEWAY_PORT": str(gateway_port),
                "GATEWAY_REDIS_URL": redis_url,
                "GATEWAY_KEY_PREFIX": f"bench{secrets.token_hex(4)}",
                "GATEWAY_TENANTS_PATH": str(self.workdir / "tenants.yaml"),
                "GATEWAY_SECRETS_DIR": str(self.workdir / "secrets"),
                "GATEWAY_SHUTDOWN_GRACE": "1",
            },
            log=logs / "gateway.log",
        )
        self.roots.append(gateway.pid)
        expected = [
            len(self.names[i :: len(self.pools)]) for i in range(len(self.pools))
        ]
        deadline = time.monotonic() + self.args.start_limit
        waiting = [*zip(self.pools, expected, strict=True), (self.gateway, -1)]
        while waiting:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"not ready after {self.args.start_limit} s: {waiting}"
                )
            url, count = waiting[0]
            answer = get_json(url + "/readyz")
            if answer.get("status") == "ok" and (
                count < 0 or answer.get("tenants") == count
            ):
                waiting.pop(0)
            else:
                time.sleep(0.05)
        self.figures.start_s = time.perf_counter() - started

    def open_engines(self, pool: int) -> int:
        answer = get_json(self.pools[pool] + "/readyz")
        engines = answer.get("open_engines")
        return engines if isinstance(engines, int) else -1

    def wait_closed(self, pool: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while self.open_engines(pool) != 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"pool {self.pools[pool]}: engines still open")
            time.sleep(0.05)

    def login(self, tenant: Tenant) -> tuple[str, Tenant]:
        answer = http_json(
            f"{self.gateway}/api/requestAuthToken",
            body={"email": EMAIL, "password": self.password},
            headers={"Host": f"{tenant.name}.localhost"},
        )
        user = int(str(answer["user_id"]))
        return str(answer["auth_token"]), Tenant(
            tenant.name, tenant.secret, tenant.url, user
        )

    def cold_and_warm(self, tenant: Tenant) -> None:
        """The cold tenant's request with its engine closed, then at once again."""
        token, tenant = self.login(tenant)
        url = f"{self.gateway}/api/v3_0/users/{tenant.user_id}"
        headers = {"Host": f"{tenant.name}.localhost", "Authorization": token}
        for _ in range(self.args.cold):
            self.wait_closed(1)
            time.sleep(0.2)
            self.figures.cold_ms.append(timed_get(url, headers))
            self.figures.warm_ms.append(timed_get(url, headers))

    def pooled_vs_dedicated(self, active: Tenant, redis_url: str) -> None:
        """The active tenant's p50 on its pool and on a dedicated backend."""
        port = free_port()
        dedicated = self.processes.start(
            [PYTHON, "-m", "tenant_service"],
            {
                "TENANT_NAME": active.name,
                "TENANT_DATABASE_URL": active.url,
                "TENANT_SECRET_FILE": str(self.workdir / "secrets" / active.name),
                "TENANT_REDIS_URL": redis_url,
                "TENANT_PORT": str(port),
                "TENANT_SHUTDOWN_GRACE": "1",
            },
            log=self.workdir / "logs" / "dedicated.log",
        )
        wait_port(port)
        path = f"/api/v3_0/users/{active.user_id}"
        runs: dict[str, list[Result]] = {}
        try:
            for _ in range(self.args.rounds):
                for label, base, connections in (
                    ("pooled", self.pools[0], self.args.connections),
                    ("dedicated", f"http://127.0.0.1:{port}", self.args.connections),
                    ("pooled_1", self.pools[0], 1),
                    ("dedicated_1", f"http://127.0.0.1:{port}", 1),
                ):
                    runs.setdefault(label, []).append(
                        wrk(
                            base + path,
                            label=label,
                            headers=assertion(active),
                            connections=connections,
                            seconds=self.args.seconds,
                        )
                    )
                    time.sleep(0.3)
        finally:
            dedicated.terminate()
            dedicated.wait(15)
            self.processes.children.remove(dedicated)
        self.figures.pooled = median_result(runs["pooled"])
        self.figures.dedicated = median_result(runs["dedicated"])
        self.figures.pooled_1 = median_result(runs["pooled_1"])
        self.figures.dedicated_1 = median_result(runs["dedicated_1"])

    def noisy_neighbour(
        self, active: Tenant, noisy: Tenant, base: str
    ) -> tuple[Result, Result, Result]:
        """The active tenant's p50 alone and beside the noisy one at full load,
        on the pool process at `base` (serving the first pool's tenants)."""
        seconds = self.args.seconds
        runs: dict[str, list[Result]] = {}

        def load(tenant: Tenant, label: str, connections: int, seconds: int) -> Result:
            return wrk(
                f"{base}/api/v3_0/users/{tenant.user_id}",
                label=label,
                headers=assertion(tenant),
                connections=connections,
                seconds=seconds,
            )

        with ThreadPoolExecutor(1) as background:
            for _ in range(self.args.rounds):
                runs.setdefault("alone", []).append(load(active, "alone", 1, seconds))
                loading = background.submit(
                    load, noisy, "noisy", self.args.noisy, seconds + 2
                )
                time.sleep(1)
                runs.setdefault("beside", []).append(load(active, "beside", 1, seconds))
                runs.setdefault("noisy", []).append(loading.result())
                time.sleep(0.3)
        return (
            median_result(runs["alone"]),
            median_result(runs["beside"]),
            median_result(runs["noisy"]),
        )

    def neighbours(self, active: Tenant, noisy: Tenant, redis_url: str) -> None:
        """The noisy-neighbour figures on the first pool (the default limit), then
        on a second process of that pool for each of `--limits` (same address and
        tenants, its own port and TENANT_REQUESTS_PER_TENANT), started and stopped
        here."""
        figures = self.figures.neighbours
        figures[""] = self.noisy_neighbour(active, noisy, self.pools[0])
        for limit in self.args.limits:
            port = free_port()
            child = self.processes.start(
                [PYTHON, "-m", "tenant_service"],
                {
                    **self.pool_env(redis_url),
                    "TENANT_ADDRESS": self.pools[0],
                    "TENANT_PORT": str(port),
                    "TENANT_REQUESTS_PER_TENANT": str(limit),
                },
                log=self.workdir / "logs" / f"limit-{limit}.log",
            )
            try:
                wait_port(port)
                base = f"http://127.0.0.1:{port}"
                figures[str(limit)] = self.noisy_neighbour(active, noisy, base)
            finally:
                child.terminate()
                child.wait(15)
                self.processes.children.remove(child)

    def burst(self) -> None:
        """GET /api/v3_0/health/ready to the first `--burst` tenants at once
        (`--burst-clients` clients over all pools): each request opens its
        tenant's engine, migrating its new database; the pools take those
        migrations one at a time while serving the rest."""
        todo = self.names[: self.args.burst]
        self.figures.burst_tenants = len(todo)
        url = f"{self.gateway}/api/v3_0/health/ready"

        def first_request(name: str) -> None:
            request = urllib.request.Request(url, headers={"Host": f"{name}.localhost"})
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
            except urllib.error.HTTPError as err:
                raise SystemExit(f"{name}: {err.code} on its first request") from err

        started = time.perf_counter()
        with ThreadPoolExecutor(self.args.burst_clients) as clients:
            list(clients.map(first_request, todo))
        self.figures.burst_s = time.perf_counter() - started
        self.figures.pg_burst = self.pg()
        held = 0
        for address in self.pools:
            value = get_json(address + "/readyz").get("database_connections")
            held += value if isinstance(value, int) else 0
        self.figures.pool_connections_burst = held
        self.figures.pss_burst_mb = tree_pss_mb(self.roots)
        for pool in range(len(self.pools)):
            self.wait_closed(pool, seconds=60)
        time.sleep(0.5)
        self.figures.pg_closed = self.pg()

    def measure(self, redis_url: str) -> Figures:
        active, noisy, cold = self.setup()
        print(f"  starting {len(self.pools)} pools for {self.size} tenants", flush=True)
        self.start(redis_url)
        time.sleep(2)  # settle: every worker and pool has read the file
        self.figures.pss_idle_mb = tree_pss_mb(self.roots)
        self.figures.pg_idle = self.pg()
        print("  cold vs warm", flush=True)
        self.cold_and_warm(cold)
        _, active = self.login(active)
        _, noisy = self.login(noisy)
        print("  pooled vs dedicated", flush=True)
        self.pooled_vs_dedicated(active, redis_url)
        print("  noisy neighbour", flush=True)
        self.neighbours(active, noisy, redis_url)
        print(f"  burst of {min(self.size, self.args.burst)} tenants", flush=True)
        self.burst()
        return self.figures

    def close(self) -> None:
        self.processes.stop()
        if self.db == "postgres":
            asyncio.run(drop_databases(self.prefix))
        if self.args.keep:
            print(f"  kept {self.workdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


# --- report ------------------------------------------------------------------------


def _row(label: str, values: list[str]) -> str:
    return f"{label:<50}" + "".join(f"{v:>16}" for v in values)


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def per_tenant_mb(figures: list[Figures]) -> list[str]:
    """PSS per idle tenant: against the previous size of the same database."""
    out = []
    for i, f in enumerate(figures):
        before = figures[i - 1] if i else None
        if before is None or before.label != f.label or before.tenants == f.tenants:
            out.append("-")
            continue
        extra = (f.pss_idle_mb - before.pss_idle_mb) / (f.tenants - before.tenants)
        out.append(f"{extra:.3f}")
    return out


def neighbour_rows(
    args: argparse.Namespace, figures: list[Figures]
) -> list[tuple[str, list[str]]]:
    """The noisy-neighbour rows, per TENANT_REQUESTS_PER_TENANT measured."""
    rows = []
    for limit in ["", *map(str, args.limits)]:
        named = f"limit {limit}" if limit else "default limit"
        runs = [f.neighbours.get(limit) for f in figures]
        rows += [
            (
                f"{named}: active p50 alone @1 (ms)",
                [f"{r[0].p50_ms:.2f}" if r else "-" for r in runs],
            ),
            (
                f"{named}: beside a noisy tenant @{args.noisy} (ms)",
                [f"{r[1].p50_ms:.2f}" if r else "-" for r in runs],
            ),
            (
                f"{named}: noisy-neighbour ratio (goal <= 2)",
                [f"{r[1].p50_ms / r[0].p50_ms:.2f}" if r else "-" for r in runs],
            ),
            (
                f"{named}: the noisy tenant's req/s",
                [f"{r[2].rps:.0f}" if r else "-" for r in runs],
            ),
        ]
    return rows


def report(args: argparse.Namespace, figures: list[Figures], loads: list[str]) -> None:
    def pg(value: int | None) -> str:
        return "-" if value is None else str(value)

    def ratio(a: Result | None, b: Result | None) -> str:
        return f"{a.p50_ms / b.p50_ms:.2f}" if a and b else "-"

    def p50(r: Result | None) -> str:
        return f"{r.p50_ms:.2f}" if r else "-"

    print(
        f"\nflexhost pooled backends: {args.pools} pool addresses (a backend and a "
        f"worker each) + gateway; medians of {args.rounds} x {args.seconds} s "
        f"(wrk), {args.cold} cold requests"
    )
    print(_row("", [f"{f.label} {f.tenants}" for f in figures]))
    rows: list[tuple[str, list[str]]] = [
        ("start: launch -> all ready (s)", [f"{f.start_s:.1f}" for f in figures]),
        ("PSS of the tree, idle (MB)", [f"{f.pss_idle_mb:.0f}" for f in figures]),
        ("PSS per idle tenant vs previous size (MB)", per_tenant_mb(figures)),
        (
            "PSS of the tree after the burst (MB)",
            [f"{f.pss_burst_mb:.0f}" for f in figures],
        ),
        (
            "cold tenant, engine closed: GET via gateway (ms)",
            [f"{_med(f.cold_ms):.1f}" for f in figures],
        ),
        ("same request, warm (ms)", [f"{_med(f.warm_ms):.1f}" for f in figures]),
        (
            "extra for a cold tenant (ms; goal < 100)",
            [f"{_med(f.cold_ms) - _med(f.warm_ms):+.1f}" for f in figures],
        ),
        (
            f"active tenant p50 on its pool @{args.connections} (ms)",
            [p50(f.pooled) for f in figures],
        ),
        (
            f"same tenant, dedicated backend @{args.connections} (ms)",
            [p50(f.dedicated) for f in figures],
        ),
        (
            "pooled / dedicated p50 (goal <= 1.10)",
            [ratio(f.pooled, f.dedicated) for f in figures],
        ),
        ("active tenant p50 on its pool @1 (ms)", [p50(f.pooled_1) for f in figures]),
        (
            "same tenant, dedicated backend @1 (ms)",
            [p50(f.dedicated_1) for f in figures],
        ),
        (
            "pooled / dedicated p50 @1 (goal <= 1.10)",
            [ratio(f.pooled_1, f.dedicated_1) for f in figures],
        ),
        (
            f"pooled / dedicated req/s @{args.connections}",
            [
                f"{f.pooled.rps / f.dedicated.rps:.2f}"
                if f.pooled and f.dedicated
                else "-"
                for f in figures
            ],
        ),
        *neighbour_rows(args, figures),
        (
            "burst: tenants, first request each (s)",
            [f"{f.burst_tenants}: {f.burst_s:.1f}" for f in figures],
        ),
        ("PostgreSQL connections idle", [pg(f.pg_idle) for f in figures]),
        ("PostgreSQL connections after the burst", [pg(f.pg_burst) for f in figures]),
        (
            "pools' own count after the burst",
            [str(f.pool_connections_burst) for f in figures],
        ),
        ("PostgreSQL connections after idle close", [pg(f.pg_closed) for f in figures]),
    ]
    for label, values in rows:
        print(_row(label, values))
    cpus = os.cpu_count()
    print(f"\nload average before: {loads[0]}, after: {loads[1]} (on {cpus} CPUs)")
    print(
        "The tree: pool backends, pool workers and the gateway (its workers); Redis "
        "and PostgreSQL are shared and not counted."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pools", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--noisy", type=int, default=16, help="noisy connections")
    parser.add_argument(
        "--limits",
        default="1",
        help="TENANT_REQUESTS_PER_TENANT values to compare with the default "
        "(comma-separated; empty: none)",
    )
    parser.add_argument("--cold", type=int, default=5, help="cold requests")
    parser.add_argument("--burst", type=int, default=100, help="tenants in the burst")
    parser.add_argument(
        "--burst-clients", type=int, default=16, help="clients of the burst at once"
    )
    parser.add_argument("--start-limit", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep logs and files")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.limits = [int(v) for v in args.limits.split(",") if v.strip()]
    if min(sizes) <= args.pools:
        raise SystemExit("every size needs more tenants than --pools")
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    loads = [load_average()]
    print(f"load average at start: {loads[0]}", flush=True)
    figures: list[Figures] = []
    helper = Processes()
    try:
        redis_url = local_redis(helper)
        for db in dbs:
            for size in sizes:
                print(f"{db}, {size} tenants ...", flush=True)
                run = Run(args, db, size)
                try:
                    figures.append(run.measure(redis_url))
                finally:
                    run.close()
    finally:
        helper.stop()
    loads.append(load_average())
    report(args, figures, loads)


if __name__ == "__main__":
    main()
