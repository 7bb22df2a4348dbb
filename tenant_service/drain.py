"""This process's drain state: set on SIGTERM, read by answers and readiness."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


class Drain:
    """This process's shutdown state, and how many requests it is handling.

    On SIGTERM, `__main__` starts the drain: answers get `Connection: close` (so
    the gateway's pool reconnects, to a replica that stays, instead of reusing a
    connection about to close) and /readyz 503, the listener closes, and `settle`
    waits for the requests in flight. aiohttp stops reading from every connection
    once its own shutdown begins, so a request whose body is still arriving must
    finish before that (aio-libs/aiohttp#2298).
    """

    def __init__(self) -> None:
        self.started = False
        self.in_flight = 0
        self._idle: asyncio.Event | None = None  # set by `settle`, while it waits

    def start(self) -> None:
        """Enter the drain (once the process got SIGTERM)."""
        self.started = True

    def middleware(self) -> Middleware:
        """The outermost middleware: counts requests; while draining, closes."""

        @web.middleware
        async def count_in_flight(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            self.in_flight += 1
            try:
                response = await handler(request)
            finally:
                self.in_flight -= 1
                if not self.in_flight and self._idle is not None:
                    self._idle.set()
            if self.started and not response.prepared:
                response.force_close()  # `Connection: close`: go elsewhere next
            return response

        return count_in_flight

    async def settle(self) -> None:
        """Return once no request is in flight (the caller bounds the wait)."""
        if self.in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()
