"""Run one tenant backend: `python -m tenant_service` (settings from TENANT_*)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Final

from aiohttp import web

from contract.config import ConfigError
from tenant_service import keys
from tenant_service.app import create_app
from tenant_service.config import Settings, load_settings
from tenant_service.drain import Drain
from tenant_service.logs import setup_logging
from tenant_service.server import QuietRunner
from tenant_service.store.db import migrate

logger = logging.getLogger("tenant_service")
# What aiohttp's own shutdown, after the drain, gives a request that came in on a
# keep-alive connection just as the drain ended.
LATE_GRACE_S: Final = 1.0


async def serve(settings: Settings) -> None:
    """Migrate, serve until SIGTERM/SIGINT, then drain within the grace.

    The drain, in order: answers get `Connection: close` and /readyz 503; the
    listening socket closes (new connections are refused, so the gateway tries
    another replica); requests in flight get TENANT_SHUTDOWN_GRACE seconds to
    finish; then aiohttp's shutdown closes idle keep-alive connections, cancels
    what is left, and the database pool and the other resources close.
    """
    await migrate(settings.database_url)
    app = create_app(settings)
    runner = QuietRunner(  # parser errors as JSON, no request bytes in the log
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=LATE_GRACE_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        logger.info(
            "serving tenant %s on %s:%s", settings.name, settings.host, settings.port
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await _drain(runner, app[keys.DRAIN], settings.shutdown_grace)
    finally:
        await runner.cleanup()
    logger.info("stopped")


async def _drain(runner: web.AppRunner, drain: Drain, grace: float) -> None:
    """Close the listener, then wait for the requests in flight (at most `grace`)."""
    drain.start()
    for site in list(runner.sites):
        await site.stop()
    logger.info("draining: %d request(s) in flight, grace %d s", drain.in_flight, grace)
    try:
        async with asyncio.timeout(grace):
            await drain.settle()
    except TimeoutError:
        logger.warning("grace over: cancelling %d request(s)", drain.in_flight)


def main() -> int:
    """Load settings, migrate the schema and serve until SIGTERM/SIGINT (exit 0)."""
    setup_logging()
    try:
        settings = load_settings(os.environ)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
