"""How many backend connections this gateway process uses, and who holds them.

Each replica gets at most `per_replica` connections from this process; a request
that finds them all busy waits its turn up to `wait` seconds, then gets 503
UPSTREAM_BUSY. That wait is never a replica failure (the replica is healthy, only
busy), so it is kept out of aiohttp's connect timeout, which would count it as one.

One token, and one client address, may hold at most a share of a replica's
connections at once (requests being sent, waiting for, or receiving a backend's
answer); beyond it a fast 429: a single client, however slow its requests, can
never occupy all of a tenant's connections. Counted per process, as nginx's
limit_conn is per worker: no Redis call on the hot path.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import UpstreamBusyError, UpstreamShareError


class Capacity:
    """This process's backend connections per replica and their holders."""

    def __init__(
        self,
        per_replica: int,
        token_share: float,
        address_share: float,
        wait: float,
    ) -> None:
        self.per_replica = per_replica
        self.per_token = max(1, math.floor(per_replica * token_share))
        self.per_address = max(1, math.floor(per_replica * address_share))
        self.wait = wait
        self._held: dict[tuple[str, str], int] = {}
        self._replicas: dict[str, asyncio.Semaphore] = {}

    def held(self, tenant: str, holder: str) -> int:
        """Requests in flight of `holder` ("token:..." or "address:...") at `tenant`."""
        return self._held.get((tenant, holder), 0)

    @contextmanager
    def share(self, tenant: str, token: str | None, address: str) -> Iterator[None]:
        """Count a request of `token` (None: public) from `address` while it runs.

        UpstreamShareError (429) when either already holds its share. The check and
        the count are one step (no await between them).
        """
        held = self._held
        by_address = (tenant, "address:" + address)
        by_token = (tenant, "token:" + token) if token is not None else None
        if held.get(by_address, 0) >= self.per_address:
            raise UpstreamShareError(
                f"Too many requests from your address are in progress at once "
                f"(at most {self.per_address}); please wait for some to finish."
            )
        if by_token is not None and held.get(by_token, 0) >= self.per_token:
            raise UpstreamShareError(
                f"Too many requests with this token are in progress at once "
                f"(at most {self.per_token}); please wait for some to finish."
            )
        held[by_address] = held.get(by_address, 0) + 1
        if by_token is not None:
            held[by_token] = held.get(by_token, 0) + 1
        try:
            yield
        finally:
            for key in (by_address, by_token):
                if key is not None:
                    left = held[key] - 1
                    if left:
                        held[key] = left
                    else:
                        del held[key]

    def _slots(self, backend: str) -> asyncio.Semaphore:
        slots = self._replicas.get(backend)
        if slots is None:
            slots = self._replicas[backend] = asyncio.Semaphore(self.per_replica)
        return slots

    def free(self, backend: str) -> bool:
        """Whether `backend` has a free connection now."""
        return not self._slots(backend).locked()

    async def connection(self, backend: str, tenant: str) -> asyncio.Semaphore:
        """Take one of `backend`'s connections (wait up to `wait` s); release it.

        UpstreamBusyError (503) when none came free in time.
        """
        slots = self._slots(backend)
        if not slots.locked():
            await slots.acquire()  # returns at once: no suspension
            return slots
        try:
            async with asyncio.timeout(self.wait):
                await slots.acquire()
        except TimeoutError as err:
            raise UpstreamBusyError(
                f"The backend of tenant '{tenant}' is busy; please retry shortly."
            ) from err
        return slots
