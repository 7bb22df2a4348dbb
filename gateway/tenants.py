"""Host -> tenant over a config snapshot that a reload swaps atomically."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from yarl import URL

from contract.background import in_background
from contract.config import ConfigError
from contract.tenants_file import TenantConfig, TenantsConfig, parse_tenants

from .metrics import Metrics

logger = logging.getLogger(__name__)


def normalize_host(raw: str) -> str:
    """Lower-case host without port and trailing dot ('' when there is none)."""
    host = raw.strip().lower()
    if host.startswith("["):  # IPv6 literal, maybe with a port
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


AUTHORITY_RE: Final = re.compile(
    r"(?P<host>[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# A rejected file is checked again after this many times its check took.
RETRY_FACTOR: Final = 10.0
# Seconds between GIL hand-overs while a reload runs in its thread (default 0.005).
RELOAD_SWITCH_INTERVAL: Final = 0.0005
_PROCESS_SETTINGS: Final = threading.Lock()
# Tenant names a reload's log line lists (added, removed) at most.
LOGGED_NAMES: Final = 50


def public_authority(raw: str, scheme: str, port: str | None = None) -> str:
    """The host and port clients use, for URLs and origins (`company.localhost:8080`).

    Lower-case, no trailing dot, the port dropped when it is the scheme's default
    (80, 443); `port` (X-Forwarded-Port) when `raw` names none. A malformed host or
    port leaves the bare host (normalize_host; IPv6 in brackets).
    """
    match = AUTHORITY_RE.fullmatch(raw.strip().lower())
    if match is None:
        host = normalize_host(raw)
        return f"[{host}]" if ":" in host else host
    host = match["host"].rstrip(".")
    given = match["port"] or (port or "").strip()
    if not given.isascii() or not given.isdigit() or len(given) > 5:
        return host
    number = int(given)
    if not 0 < number < 65536 or number == DEFAULT_PORTS.get(scheme):
        return host
    return f"{host}:{number}"


def pool_label(backends: tuple[str, ...]) -> str:
    """The metrics label of the backend addresses a tenant names (its pool).

    Tenants naming the same addresses share it; a password in a URL is left out.
    """
    return ",".join(str(URL(b).with_user(None)) if "@" in b else b for b in backends)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One validated config with its host index, its addresses and pools."""

    config: TenantsConfig
    by_host: dict[str, TenantConfig] = field(default_factory=dict)
    by_subdomain: dict[str, TenantConfig] = field(default_factory=dict)
    # Every distinct backend address (probed once each, whatever the tenants there).
    backends: frozenset[str] = frozenset()
    # Subdomain -> pool_label of its backends.
    pools: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, config: TenantsConfig) -> Snapshot:
        """Index every `<subdomain>.<base domain>` and alias host."""
        by_host: dict[str, TenantConfig] = {}
        for tenant in config.tenants:
            for domain in config.base_domains:
                by_host[f"{tenant.subdomain}.{domain}"] = tenant
        for tenant in config.tenants:
            for alias in tenant.aliases:
                by_host[alias] = tenant
        labels: dict[tuple[str, ...], str] = {}
        pools: dict[str, str] = {}
        for tenant in config.tenants:
            label = labels.get(tenant.backends)
            if label is None:
                label = labels[tenant.backends] = pool_label(tenant.backends)
            pools[tenant.subdomain] = label
        return cls(
            config,
            by_host,
            {t.subdomain: t for t in config.tenants},
            frozenset(b for backends in labels for b in backends),
            pools,
        )


class TenantRegistry:
    """The tenants in force; `resolve` is a dict lookup, `swap` replaces all at once."""

    def __init__(self, config: TenantsConfig) -> None:
        self._snapshot = Snapshot.build(config)

    @property
    def config(self) -> TenantsConfig:
        return self._snapshot.config

    @property
    def backends(self) -> frozenset[str]:
        """Every distinct backend address of the tenants in force."""
        return self._snapshot.backends

    def resolve(self, host: str) -> TenantConfig | None:
        """The tenant for a (normalized) host, or None."""
        return self._snapshot.by_host.get(host)

    def get(self, subdomain: str) -> TenantConfig | None:
        return self._snapshot.by_subdomain.get(subdomain)

    def pool(self, subdomain: str) -> str | None:
        """The pool label of a tenant in force (None: no such tenant)."""
        return self._snapshot.pools.get(subdomain)

    def swap(self, snapshot: Snapshot) -> Snapshot:
        """Put `snapshot` in force (built off the event loop); the one it replaces."""
        old, self._snapshot = self._snapshot, snapshot
        return old


@dataclass(frozen=True, slots=True)
class Look:
    """What a look at a changed tenants file found (made in a worker thread)."""

    digest: str | None
    snapshot: Snapshot | None = None
    problems: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    seconds: float = 0.0  # how long reading and checking it took


@contextmanager
def _yielding(*, freeze: bool = True) -> Iterator[None]:
    """Run a long computation in a thread so that the event loop barely notices.

    The cyclic garbage collector is paused (parsing makes no cycles): a big file
    makes millions of short-lived objects, which set off full collections, each
    walking every object of the process while holding the GIL (about 100 ms at
    10,000 tenants). With `freeze`, the objects alive at the end (the new
    snapshot) are then moved out of the collector's sight (gc.freeze, as at the
    start in gateway/__main__): its first collection after the pause walked the
    new snapshot's objects holding the GIL for 10-18 ms, and later ones again.
    They are freed by reference counting as before; objects of requests in
    flight frozen with them are freed so too unless they end in a reference
    cycle (none found: 5 reloads beside proxied, 404 and 401 requests froze no
    garbage). And the GIL changes hands every RELOAD_SWITCH_INTERVAL instead of
    every 5 ms, as each wake-up of the loop (a request's bytes, a backend's
    answer) waits that long for it.
    """
    # Both are the process's: only one reload at a time changes them (several
    # gateway apps in one process, as in tests, may reload at once).
    if not _PROCESS_SETTINGS.acquire(blocking=False):
        yield
        return
    enabled = gc.isenabled()
    interval = sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, RELOAD_SWITCH_INTERVAL))
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        sys.setswitchinterval(interval)
        if enabled:
            gc.enable()
        _PROCESS_SETTINGS.release()


def _release(holder: list[Snapshot]) -> None:
    """Free a replaced snapshot, its only reference in `holder`, in small pieces
    (run in a worker thread): freed at once, 10,000 tenants' objects held the GIL
    about 15 ms, on the event loop. The containers go first, then the tenants one
    by one, each a few objects, the GIL free to change hands in between."""
    with _yielding(freeze=False):
        tenants = list(holder.pop().config.tenants)
        tenants.reverse()
        while tenants:
            tenants.pop()


class ConfigWatcher:
    """Polls tenants.yaml: a valid change is swapped in, a broken one only logged.

    Only a stat of the file happens on the event loop; reading, hashing and
    parsing a changed file and indexing the new config run in a worker thread,
    and the new snapshot is swapped in at once (`check`). The first load (at start,
    in create_app) is synchronous.
    """

    def __init__(
        self,
        registry: TenantRegistry,
        path: Path,
        secrets_dir: Path,
        interval: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.path = path
        self.secrets_dir = secrets_dir
        self.interval = interval
        self._stamp: tuple[int, int, int] | None = self._stat()
        self._digest = self._hash()
        self._rejected: tuple[str, ...] = ()
        self._retry_at = 0.0
        self.reloads = 0
        self.failures = 0
        self.last_reload_seconds = 0.0

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _hash(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def look(self) -> Look:
        """Read the file; parse and index it unless it is the config in force.

        Runs in a worker thread: it reads only what the event loop does not change
        while it runs (`check` awaits it).
        """
        started = time.perf_counter()
        try:
            data = self.path.read_bytes()
        except OSError as err:
            return Look(None, problems=(f"{self.path}: cannot read: {err}",))
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return Look(digest)
        with _yielding():
            try:
                config = parse_tenants(
                    data.decode("utf-8"),
                    source=str(self.path),
                    secrets_dir=self.secrets_dir,
                )
            except UnicodeDecodeError as err:
                problems = (f"{self.path}: cannot read: {err}",)
                return Look(digest, problems=problems)
            except ConfigError as err:
                seconds = time.perf_counter() - started
                return Look(digest, problems=tuple(err.problems), seconds=seconds)
            snapshot = Snapshot.build(config)
        new = snapshot.pools.keys()
        old = {t.subdomain for t in self.registry.config.tenants}
        return Look(
            digest,
            snapshot,
            added=tuple(name for name in new if name not in old),
            removed=tuple(sorted(old - new)),
            seconds=time.perf_counter() - started,
        )

    async def check(self) -> bool:
        """Reload when the file changed; True when a new config was swapped in.

        A rejected file is tried again at every poll (a secret it names may appear
        later), but its problems are logged only when they change; a file that takes
        long to check is tried again only after ten times as long as it took (a
        tenth of a CPU at most).
        """
        loop = asyncio.get_running_loop()
        stamp = self._stat()
        if stamp == self._stamp and not (
            self._rejected and loop.time() >= self._retry_at
        ):
            return False
        self._stamp = stamp
        if stamp is None:
            self._reject([f"{self.path}: the file is gone"])
            return False
        found = await in_background(self.look)
        if found.problems:
            self._retry_at = loop.time() + RETRY_FACTOR * found.seconds
            self._reject(list(found.problems))
            return False
        if found.snapshot is None:  # the config in force
            if self._rejected:
                logger.info("tenants file %s is back to the config in force", self.path)
                self._rejected = ()
                if self.metrics is not None:
                    self.metrics.config_restored()
            return False
        self._digest = found.digest
        self._rejected = ()
        replaced = [self.registry.swap(found.snapshot)]
        await in_background(_release, replaced)
        self.reloads += 1
        self.last_reload_seconds = found.seconds
        if self.metrics is not None:
            self.metrics.config_reloaded()
        logger.info(
            "tenants config reloaded in %.2f s: %d tenant(s), %d added, %d removed",
            found.seconds,
            len(found.snapshot.config.tenants),
            len(found.added),
            len(found.removed),
            extra={
                "added": list(found.added[:LOGGED_NAMES]),
                "removed": list(found.removed[:LOGGED_NAMES]),
            },
        )
        return True

    def _reject(self, problems: list[str]) -> None:
        if tuple(problems) == self._rejected:
            return
        self._rejected = tuple(problems)
        self.failures += 1
        if self.metrics is not None:
            self.metrics.config_rejected()
        for problem in problems:
            logger.error("tenants config rejected: %s", problem)
        logger.error(
            "tenants file %s rejected with %d problem(s); the last good config "
            "stays in force",
            self.path,
            len(problems),
        )

    async def run(self) -> None:
        """Check forever, every `interval` seconds."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                logger.exception("tenants reload failed unexpectedly")
