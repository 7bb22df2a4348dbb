"""The gateway at 10,000 tenants: reloads, request stalls, /metrics, idle CPU.

Run: `.venv/bin/python -m bench.gateway_scale [--tenants 10000] [--pools 10]
[--workers 2] [--rounds 3]`. Writes a tenants.yaml of that many tenants (each with
its own secret file) on `--pools` backend addresses, served by one small stub
process of ours on loopback (it answers every request with a small JSON and counts
the probes), and starts the real gateway (`python -m gateway`) twice: metrics by
pool (the default) and per tenant (GATEWAY_METRICS_PER_TENANT=true). For each it
prints, side by side:

- the reload: the gateway's own time to read, parse and index the file (its log),
  and from the file's write until every worker has swapped it in;
- the worst request stall: a client sends GET /api/v3_0/health/ready (proxied to
  the stub) every few milliseconds, open loop, each timed from its planned start;
  the worst and p99 latency of the requests started while a reload runs, against a
  window as long just before it;
- /metrics after one request to every tenant: bytes, series, scrape time;
- idle CPU of the gateway's processes over `--idle` seconds, and the probes the
  stub got per round (one per address and worker, whatever the tenants).

Loopback only; every child is stopped at the end (or on Ctrl-C/SIGTERM). Medians
over `--rounds` reloads and scrapes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import web

from bench._harness import (
    PYTHON,
    Processes,
    free_port,
    load_average,
    local_redis,
    new_secret,
    wait_port,
)

# The gateway's log line of a swapped-in reload (gateway/tenants.py).
RELOADED_RE: Final = re.compile(rb"tenants config reloaded in ([0-9.]+) s")
PROBE_PATH: Final = "/readyz"
PROXIED: Final = "/api/v3_0/health/ready"  # public: proxied without a token
PACED: Final = {"Host": "t00000.localhost"}  # the tenant of the paced requests
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


# --- the stub backend (a child process: `--stub PORT,PORT,...`) -------------------


def serve_stub(ports: list[int]) -> None:
    """Answer every request with a small JSON on each port; count the probes."""
    probes = dict.fromkeys(ports, 0)

    def app_for(port: int) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            if request.path == PROBE_PATH:
                probes[port] += 1
            if request.path == "/_probes":
                return web.json_response(probes)
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        return app

    async def main() -> None:
        runners = []
        for port in ports:
            runner = web.AppRunner(app_for(port), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        try:
            await asyncio.Event().wait()
        finally:
            for runner in runners:
                await runner.cleanup()

    asyncio.run(main())


# --- setup ------------------------------------------------------------------------


def write_tenants(path: Path, names: list[str], pools: list[str], extra: int) -> None:
    """tenants.yaml: `names` spread over `pools`, then tenant `extra-<extra>`."""
    lines = ["tenants:"]
    for i, name in enumerate([*names, f"extra-{extra}"]):
        lines += [
            f"  - subdomain: {name}",
            f"    name: Tenant {i}",
            f'    backends: ["{pools[i % len(pools)]}"]',
        ]
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True, slots=True)
class Gateway:
    """A running gateway of the bench."""

    url: str
    pid: int
    reloads: ReloadLog


def gateway_env(
    port: int, workdir: Path, redis_url: str, workers: int, per_tenant: bool
) -> dict[str, str]:
    return {
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": str(workers),
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_KEY_PREFIX": f"bench{new_secret()[:6].replace('-', 'x')}",
        "GATEWAY_TENANTS_PATH": str(workdir / "tenants.yaml"),
        "GATEWAY_SECRETS_DIR": str(workdir / "secrets"),
        "GATEWAY_METRICS_PER_TENANT": "true" if per_tenant else "false",
        "GATEWAY_SHUTDOWN_GRACE": "1",
    }


# --- measuring ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children, now (from /proc)."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        todo += [int(child) for child in children.split()]
    return total / CLOCK_TICKS


class ReloadLog:
    """The reload times the gateway's workers log, read as the log grows."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0
        self.pending = b""
        self.times: list[float] = []

    def read(self) -> list[float]:
        """Every reload time logged so far."""
        with self.log.open("rb") as f:
            f.seek(self.offset)
            more = f.read()
        self.offset += len(more)
        lines = (self.pending + more).split(b"\n")
        self.pending = lines.pop()
        for line in lines:
            found = RELOADED_RE.search(line)
            if found:
                self.times.append(float(found[1]))
        return self.times


async def traffic(session: aiohttp.ClientSession, url: str, names: list[str]) -> float:
    """One proxied request to each tenant (16 at once); the seconds it took."""
    started = time.perf_counter()
    queue = list(reversed(names))

    async def worker() -> None:
        while queue:
            name = queue.pop()
            headers = {"Host": f"{name}.localhost"}
            async with session.get(url + PROXIED, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{name}: {response.status} from the gateway")

    await asyncio.gather(*(worker() for _ in range(16)))
    return time.perf_counter() - started


async def scrape(session: aiohttp.ClientSession, url: str) -> tuple[float, int, int]:
    """(seconds, bytes, series) of one GET /metrics."""
    started = time.perf_counter()
    async with session.get(url + "/metrics") as response:
        body = await response.read()
    seconds = time.perf_counter() - started
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return seconds, len(body), series


class Pacer:
    """Open-loop requests every `every` seconds; each latency from its planned start."""

    def __init__(self, session: aiohttp.ClientSession, url: str, every: float) -> None:
        self.session = session
        self.url = url + PROXIED
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (planned start, latency)
        # This process's own event loop lag (ms), to tell its stalls from the
        # gateway's: (when, how late a 1 ms sleep woke up).
        self.lags: list[tuple[float, float]] = []
        self.failures = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self, planned: float) -> None:
        try:
            async with self.session.get(self.url, headers=PACED) as response:
                await response.read()
                ok = response.status == 200
        except aiohttp.ClientError:
            ok = False
        if not ok:
            self.failures += 1
        self.samples.append((planned, time.perf_counter() - planned))

    async def _tick(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.lags.append((before, 1000 * (now - before - 0.001)))

    async def run(self, stop: asyncio.Event) -> None:
        ticker = asyncio.create_task(self._tick(stop))
        planned = time.perf_counter()
        while not stop.is_set():
            task = asyncio.create_task(self._one(planned))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            planned += self.every
            await asyncio.sleep(max(0.0, planned - time.perf_counter()))
        await asyncio.gather(*self._tasks, ticker)

    def lag(self, start: float, end: float) -> float:
        """The worst lag (ms) of this process's loop within [start, end)."""
        return max((lag for at, lag in self.lags if start <= at < end), default=0.0)

    def window(self, start: float, end: float) -> list[float]:
        """Latencies (ms) of the requests planned within [start, end)."""
        return sorted(1000 * lat for at, lat in self.samples if start <= at < end)


@dataclass(frozen=True, slots=True)
class Reload:
    """One reload under load."""

    logged_s: float  # the slowest worker's own read + parse + index time
    swapped_s: float  # from the file's write until every worker swapped it in
    worst_ms: float
    p99_ms: float
    calm_worst_ms: float
    calm_p99_ms: float
    client_lag_ms: float  # the bench's own worst loop lag during the reload
    requests: int
    failures: int


def p99(latencies: list[float]) -> float:
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


async def reload_under_load(
    session: aiohttp.ClientSession,
    gateway: Gateway,
    path: Path,
    names: list[str],
    pools: list[str],
    round_no: int,
    workers: int,
    every: float,
) -> Reload:
    """Rewrite tenants.yaml (its last tenant renamed) while requests flow; time it."""
    pacer = Pacer(session, gateway.url, every)
    stop = asyncio.Event()
    before = len(gateway.reloads.read())
    runner = asyncio.create_task(pacer.run(stop))
    await asyncio.sleep(2.0)  # a calm window first
    written = time.perf_counter()
    write_tenants(path, names, pools, round_no)
    deadline = written + 120
    while len(gateway.reloads.read()) < before + workers:
        if time.perf_counter() > deadline:
            raise SystemExit("the gateway did not reload within 120 s")
        await asyncio.sleep(0.01)
    swapped = time.perf_counter()
    await asyncio.sleep(0.3)
    stop.set()
    await runner
    took = swapped - written
    during = pacer.window(written, swapped)
    calm = pacer.window(written - took, written) or pacer.window(0, written)
    logged = gateway.reloads.read()[before:]
    return Reload(
        max(logged),
        took,
        during[-1],
        p99(during),
        calm[-1],
        p99(calm),
        pacer.lag(written, swapped),
        len(pacer.samples),
        pacer.failures,
    )


@dataclass(frozen=True, slots=True)
class Figures:
    """What one gateway (one metrics mode) showed."""

    start_s: float
    traffic_s: float
    scrape_s: float
    scrape_bytes: int
    series: int
    idle_cpu: float  # share of one CPU
    probes: int  # in the idle window
    probes_per_round: float  # per worker
    reloads: list[Reload]


async def measure(
    args: argparse.Namespace,
    processes: Processes,
    workdir: Path,
    redis_url: str,
    names: list[str],
    pools: list[str],
    stub_url: str,
    per_tenant: bool,
) -> Figures:
    port = free_port()
    log = workdir / f"gateway-{'tenant' if per_tenant else 'pool'}.log"
    path = workdir / "tenants.yaml"
    write_tenants(path, names, pools, 0)
    started = time.perf_counter()
    child = processes.start(
        [PYTHON, "-m", "gateway"],
        gateway_env(port, workdir, redis_url, args.workers, per_tenant),
        log=log,
    )
    wait_port(port, seconds=300)
    url = f"http://127.0.0.1:{port}"
    gateway = Gateway(url, child.pid, ReloadLog(log))
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout
        ) as session:
            while True:  # every worker serves (each loads the file at its start)
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
            start_s = time.perf_counter() - started
            traffic_s = await traffic(session, url, [*names, "extra-0"])
            scrapes = [await scrape(session, url) for _ in range(args.rounds)]
            # Idle: no requests, only the gateway's own polls and probes.
            await asyncio.sleep(1.0)
            async with session.get(stub_url + "/_probes") as response:
                probes_before = sum((await response.json()).values())
            cpu_before, wall_before = cpu_seconds(gateway.pid), time.perf_counter()
            await asyncio.sleep(args.idle)
            cpu = cpu_seconds(gateway.pid) - cpu_before
            wall = time.perf_counter() - wall_before
            async with session.get(stub_url + "/_probes") as response:
                probes = sum((await response.json()).values()) - probes_before
            rounds_seen = args.workers * wall / args.health_interval
            reloads = []
            for round_no in range(1, args.rounds + 1):
                reloads.append(
                    await reload_under_load(
                        session,
                        gateway,
                        path,
                        names,
                        pools,
                        round_no,
                        args.workers,
                        args.every / 1000,
                    )
                )
    finally:
        child.terminate()
        child.wait(30)
    return Figures(
        start_s,
        traffic_s,
        statistics.median(s[0] for s in scrapes),
        scrapes[-1][1],
        scrapes[-1][2],
        cpu / wall,
        probes,
        probes / rounds_seen,
        reloads,
    )


def _row(label: str, values: list[str]) -> str:
    return f"{label:<52}" + "".join(f"{v:>18}" for v in values)


def report(args: argparse.Namespace, by_mode: dict[str, Figures]) -> None:
    modes = list(by_mode.values())

    def med(pick: str) -> list[float]:
        return [
            statistics.median(getattr(r, pick) for r in figures.reloads)
            for figures in modes
        ]

    def med_max(pick: str) -> list[str]:
        """Median of the rounds (and the worst one)."""
        return [
            f"{statistics.median(values):.1f} ({max(values):.0f})"
            for values in (
                [getattr(r, pick) for r in figures.reloads] for figures in modes
            )
        ]

    print(
        f"\nflexhost gateway at {args.tenants} tenants on {args.pools} pool addresses, "
        f"{args.workers} worker(s); medians of {args.rounds} reloads and scrapes "
        "(the worst round in brackets)"
    )
    print(_row("", list(by_mode)))
    rows: list[tuple[str, list[str]]] = [
        ("start until serving (s)", [f"{f.start_s:.1f}" for f in modes]),
        (
            f"one request to each of {args.tenants + 1} tenants (s)",
            [f"{f.traffic_s:.1f}" for f in modes],
        ),
        (
            "reload: parse + index in a thread, slowest worker (s)",
            [f"{v:.2f}" for v in med("logged_s")],
        ),
        (
            "reload: file written -> every worker swapped (s)",
            [f"{v:.2f}" for v in med("swapped_s")],
        ),
        (
            f"worst request during reload (ms; one per {args.every:g} ms)",
            med_max("worst_ms"),
        ),
        ("p99 request during reload (ms)", [f"{v:.1f}" for v in med("p99_ms")]),
        (
            "worst request, as long before it (ms)",
            med_max("calm_worst_ms"),
        ),
        (
            "p99 request, as long before it (ms)",
            [f"{v:.1f}" for v in med("calm_p99_ms")],
        ),
        (
            "the bench's own worst loop lag in reload (ms)",
            med_max("client_lag_ms"),
        ),
        ("/metrics scrape (ms)", [f"{1000 * f.scrape_s:.1f}" for f in modes]),
        ("/metrics size (bytes)", [f"{f.scrape_bytes:,}" for f in modes]),
        ("/metrics series", [f"{f.series:,}" for f in modes]),
        (
            f"idle CPU over {args.idle:g} s (% of one CPU)",
            [f"{100 * f.idle_cpu:.1f}" for f in modes],
        ),
        (
            f"probes in those {args.idle:g} s (a round per {args.health_interval:g} s)",
            [f"{f.probes}" for f in modes],
        ),
        (
            "probes per round and worker",
            [f"{f.probes_per_round:.1f}" for f in modes],
        ),
    ]
    for label, values in rows:
        print(_row(label, values))
    failures = sum(r.failures for f in modes for r in f.reloads)
    worst = max(r.worst_ms for f in modes for r in f.reloads)
    print(
        f"\nworst request of any reload: {worst:.1f} ms (goal: no stall over 50 ms); "
        f"failed requests: {failures}"
    )
    for mode, figures in by_mode.items():
        rounds = ", ".join(f"{r.worst_ms:.1f}" for r in figures.reloads)
        print(f"worst request of each reload, {mode} (ms): {rounds}")
    scrape_ms = 1000 * by_mode["by pool"].scrape_s
    print(f"default scrape: {scrape_ms:.1f} ms (goal: under 1 s)")
    print(
        f"probes expected per round and worker: {args.pools} (one per address), "
        "whatever the number of tenants"
    )
    print(f"load average: {load_average()} (on {os.cpu_count()} CPUs)")


async def run(args: argparse.Namespace) -> None:
    print(f"load average at start: {load_average()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="flexhost-scale-"))
    processes = Processes()
    try:
        redis_url = local_redis(processes)
        secrets_dir = workdir / "secrets"
        secrets_dir.mkdir(mode=0o700)
        names = [f"t{i:05d}" for i in range(args.tenants)]
        for name in [*names, *(f"extra-{i}" for i in range(args.rounds + 1))]:
            (secrets_dir / name).write_text(new_secret())
        ports = [free_port() for _ in range(args.pools)]
        pools = [f"http://127.0.0.1:{port}" for port in ports]
        processes.start(
            [PYTHON, "-m", "bench.gateway_scale", "--stub", ",".join(map(str, ports))],
            {},
        )
        for port in ports:
            wait_port(port)
        by_mode: dict[str, Figures] = {}
        for label, per_tenant in (("by pool", False), ("per tenant", True)):
            print(f"measuring the gateway with metrics {label} ...", flush=True)
            by_mode[label] = await measure(
                args,
                processes,
                workdir,
                redis_url,
                names,
                pools,
                pools[0],
                per_tenant,
            )
        report(args, by_mode)
    finally:
        processes.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--pools", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--every", type=float, default=5.0, help="ms between paced requests"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU")
    parser.add_argument("--stub", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        serve_stub([int(port) for port in args.stub.split(",")])
        return
    args.health_interval = 5.0  # GATEWAY_HEALTH_INTERVAL's default
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
