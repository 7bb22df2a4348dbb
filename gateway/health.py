"""Replica health: passive ejection and active probes.

Each gateway process keeps its own view, as nginx workers and Envoy's outlier
detection do: nothing is shared, so a worker learns of a dead replica from its own
first failure or its next probe. A replica is skipped while it is ejected, but
when every replica of a tenant is ejected they are all tried anyway: the gateway
never answers 502 without having tried. A replica is a backend address: the
tenants that name the same address (a pool) share its probe and its state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import aiohttp

from .tenants import TenantRegistry

logger = logging.getLogger(__name__)

# The backend's readiness route: no identity needed; 503 when its database is down
# or it is draining. Any answer below 500 counts as up (the process serves HTTP).
PROBE_PATH: Final = "/readyz"
PROBE_TIMEOUT_S: Final = 2.0
PROBE_CONCURRENCY: Final = 32
FIRST_EJECTION_S: Final = 1.0
LONGEST_EJECTION_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Ejection:
    """Why and how long a replica is skipped."""

    until: float  # passive: skipped until this clock time...
    backoff: float  # ...after an ejection this long; the next failure doubles it
    probed_down: bool = False  # the last probe failed: skipped until one succeeds


class ReplicaHealth:
    """Which replicas (base URLs) this process skips, and in which order to try."""

    def __init__(
        self,
        first: float = FIRST_EJECTION_S,
        longest: float = LONGEST_EJECTION_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first = first
        self.longest = longest
        self.clock = clock
        self._ejected: dict[str, Ejection] = {}

    def is_up(self, backend: str) -> bool:
        """Whether `backend` is tried in its round-robin turn."""
        ejection = self._ejected.get(backend)
        return ejection is None or (
            not ejection.probed_down and self.clock() >= ejection.until
        )

    def order(self, backends: list[str]) -> list[str]:
        """`backends` with the skipped ones moved last, the soonest back first."""
        if not self._ejected:
            return backends
        now = self.clock()
        up: list[str] = []
        down: list[tuple[bool, float, str]] = []
        for backend in backends:
            ejection = self._ejected.get(backend)
            if ejection is None or (not ejection.probed_down and now >= ejection.until):
                up.append(backend)
            else:
                down.append((ejection.probed_down, ejection.until, backend))
        if not down:
            return backends
        down.sort()
        return up + [backend for _, _, backend in down]

    def failed(self, backend: str, reason: str) -> None:
        """A request could not reach `backend` (refused, reset, timed out)."""
        now = self.clock()
        old = self._ejected.get(backend)
        if old is not None and now < old.until:
            return  # one outage seen by several requests at once counts once
        backoff = (
            self.first
            if old is None or old.backoff == 0
            else min(old.backoff * 2, self.longest)
        )
        self._ejected[backend] = Ejection(
            now + backoff, backoff, old is not None and old.probed_down
        )
        logger.warning(
            "replica %s ejected for %.0f s: %s",
            backend,
            backoff,
            reason,
            extra={"upstream": backend},
        )

    def passed(self, backend: str) -> None:
        """A request to `backend` got an answer: a trial after ejection ends it.

        An answer that arrives while the ejection is still in force (a request sent
        before the failure, finishing during a backend's drain) does not end it.
        """
        if not self._ejected:
            return
        ejection = self._ejected.get(backend)
        if (
            ejection is not None
            and not ejection.probed_down
            and self.clock() >= ejection.until
        ):
            del self._ejected[backend]
            logger.info("replica %s is back", backend, extra={"upstream": backend})

    def probed(self, backend: str, ok: bool, detail: str) -> None:
        """The outcome of an active probe: success puts a replica back at once."""
        old = self._ejected.get(backend)
        if ok:
            if old is not None:
                del self._ejected[backend]
                logger.info(
                    "replica %s is back (probe)", backend, extra={"upstream": backend}
                )
            return
        if old is None:
            self._ejected[backend] = Ejection(self.clock(), 0.0, probed_down=True)
        elif not old.probed_down:
            self._ejected[backend] = Ejection(old.until, old.backoff, probed_down=True)
        else:
            return
        logger.warning(
            "replica %s is down (probe): %s",
            backend,
            detail,
            extra={"upstream": backend},
        )

    def retain(self, backends: Iterable[str]) -> None:
        """Forget replicas no longer configured (tenants.yaml reloaded)."""
        keep = set(backends)
        for backend in [b for b in self._ejected if b not in keep]:
            del self._ejected[backend]

    def ejected(self) -> dict[str, Ejection]:
        """The replicas skipped now or recently, by base URL (a copy)."""
        return dict(self._ejected)


async def probe(
    session: aiohttp.ClientSession,
    health: ReplicaHealth,
    backend: str,
    slots: asyncio.Semaphore,
) -> None:
    """GET the replica's readiness route once; record the outcome."""
    try:
        async with (
            slots,
            session.get(
                backend + PROBE_PATH, allow_redirects=False, headers={"Accept": "*/*"}
            ) as response,
        ):
            await response.read()
            ok = response.status < 500
            detail = f"answered {response.status}"
    except (aiohttp.ClientError, TimeoutError) as err:
        ok = False
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    health.probed(backend, ok, detail)


async def probe_forever(
    registry: TenantRegistry, health: ReplicaHealth, interval: float
) -> None:
    """Probe every distinct backend address every `interval` seconds.

    One probe per address, however many tenants name it (a pool): its outcome is
    the state of that replica for all of them. The first round comes after one
    interval (until then failed requests eject replicas). The addresses are read
    from the registry each round, so a reloaded tenants.yaml is followed. Probes
    use fresh connections: a replica whose listener is closed fails even while old
    keep-alive connections still answer.
    """
    timeout = aiohttp.ClientTimeout(total=min(interval, PROBE_TIMEOUT_S))
    # The semaphore, not the connector, bounds the probes: a probe's timeout then
    # never includes waiting for a turn.
    slots = asyncio.Semaphore(PROBE_CONCURRENCY)
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "flexhost-gateway-probe"},
    ) as session:
        while True:
            await asyncio.sleep(interval)
            backends = registry.backends
            health.retain(backends)
            try:
                await asyncio.gather(
                    *(probe(session, health, b, slots) for b in backends)
                )
            except Exception:  # a bug here must not stop the probing
                logger.exception("replica probes failed unexpectedly")
