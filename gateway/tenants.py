"""Host -> tenant over a config snapshot that a reload swaps atomically."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from contract.config import ConfigError

from .metrics import Metrics
from .tenants_file import TenantConfig, TenantsConfig, load_tenants

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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One validated config with its host index."""

    config: TenantsConfig
    by_host: dict[str, TenantConfig] = field(default_factory=dict)
    by_subdomain: dict[str, TenantConfig] = field(default_factory=dict)

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
        return cls(config, by_host, {t.subdomain: t for t in config.tenants})


class TenantRegistry:
    """The tenants in force; `resolve` is a dict lookup, `swap` replaces all at once."""

    def __init__(self, config: TenantsConfig) -> None:
        self._snapshot = Snapshot.build(config)

    @property
    def config(self) -> TenantsConfig:
        return self._snapshot.config

    def resolve(self, host: str) -> TenantConfig | None:
        """The tenant for a (normalized) host, or None."""
        return self._snapshot.by_host.get(host)

    def get(self, subdomain: str) -> TenantConfig | None:
        return self._snapshot.by_subdomain.get(subdomain)

    def swap(self, config: TenantsConfig) -> None:
        self._snapshot = Snapshot.build(config)


class ConfigWatcher:
    """Polls tenants.yaml: a valid change is swapped in, a broken one only logged."""

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
        self.reloads = 0
        self.failures = 0

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

    def check(self) -> bool:
        """Reload when the file changed; True when a new config was swapped in.

        A rejected file is tried again at every poll (a secret it names may appear
        later), but its problems are logged only when they change.
        """
        stamp = self._stat()
        if stamp == self._stamp and not self._rejected:
            return False
        self._stamp = stamp
        if stamp is None:
            self._reject([f"{self.path}: the file is gone"])
            return False
        digest = self._hash()
        if digest == self._digest:
            if self._rejected:
                logger.info("tenants file %s is back to the config in force", self.path)
                self._rejected = ()
                if self.metrics is not None:
                    self.metrics.config_restored()
            return False
        try:
            config = load_tenants(self.path, secrets_dir=self.secrets_dir)
        except ConfigError as err:
            self._reject(err.problems)
            return False
        self._digest = digest
        self._rejected = ()
        self.registry.swap(config)
        self.reloads += 1
        if self.metrics is not None:
            self.metrics.config_reloaded()
        logger.info(
            "tenants config reloaded: %d tenant(s)",
            len(config.tenants),
            extra={"tenants": [t.subdomain for t in config.tenants]},
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
                self.check()
            except Exception:
                logger.exception("tenants reload failed unexpectedly")
