"""A process's drain on SIGTERM, and the serve-until-signalled loop around it.

Both services shut down the same way: on SIGTERM (or SIGINT) answers get
`Connection: close` (keep-alive clients, a load balancer or the gateway's pool,
reconnect elsewhere instead of reusing a connection about to close) and /readyz
503; the listening socket closes (new connections are refused, or go to another
worker or replica); the requests in flight get the grace to finish; then
aiohttp's shutdown closes idle keep-alive connections, cancels what is left, and
the app's resources close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

# What aiohttp's own shutdown, after the drain, gives a request that came in on a
# keep-alive connection just as the drain ended (the runners' shutdown_timeout).
LATE_GRACE_S: Final = 1.0
SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
# Connections the kernel queues for accept(). aiohttp's default of 128 is below
# what one gateway process may open to a replica at once (256 by default): in a
# login burst a backend busy hashing passwords dropped SYNs past it, and the
# gateway's 1-3 s connect deadline turned the SYN retransmit into 502s.
LISTEN_BACKLOG: Final = 2048


class Drain:
    """This process's shutdown state, and how many requests it is handling.

    aiohttp stops reading from every connection once its own shutdown begins, so
    a request whose body is still arriving must finish before that
    (aio-libs/aiohttp#2298): `settle` waits for them while the runner still runs.
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


async def serve(
    app: web.Application,
    drain: Drain,
    *,
    runner: Callable[..., web.AppRunner] = web.AppRunner,
    name: str,
    host: str,
    port: int,
    grace: float,
    logger: logging.Logger,
    reuse_port: bool = False,
) -> None:
    """Serve `app` on host:port until SIGTERM/SIGINT, then drain within `grace`.

    `runner` is the service's AppRunner class (its protocol). `name` ("gateway
    process 12", "tenant acme") starts each lifecycle line; the drain line's
    "draining: <n> request(s)" is what `flexhost up` reads to say what it is
    waiting for.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    serving = runner(
        app,
        handle_signals=False,  # ours, below
        access_log=None,  # each service writes its own access line
        shutdown_timeout=LATE_GRACE_S,
    )
    await serving.setup()
    try:
        site = web.TCPSite(
            serving,
            host,
            port,
            backlog=LISTEN_BACKLOG,
            reuse_port=reuse_port or None,
        )
        await site.start()
        logger.info("%s listening on http://%s:%d", name, host, port)
        for signum in SIGNALS:
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await drain_runner(serving, drain, grace, name=name, logger=logger)
    finally:
        try:
            await serving.cleanup()
        finally:
            # Only now: a second signal during the cleanup must not interrupt it.
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)
    logger.info("%s stopped", name)


async def drain_runner(
    runner: web.AppRunner,
    drain: Drain,
    grace: float,
    *,
    name: str,
    logger: logging.Logger,
) -> None:
    """Close the listener, then wait for the requests in flight (at most `grace`)."""
    drain.start()
    for site in list(runner.sites):
        await site.stop()
    logger.info(
        "%s draining: %d request(s) in flight, grace %.0f s",
        name,
        drain.in_flight,
        grace,
    )
    try:
        async with asyncio.timeout(grace):
            await drain.settle()
    except TimeoutError:
        logger.warning(
            "%s: grace over, cancelling %d request(s)", name, drain.in_flight
        )


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to its end on uvloop where installed, else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main)
