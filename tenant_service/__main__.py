"""Run one tenant backend: `python -m tenant_service` (settings from TENANT_*)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Final

from contract.config import ConfigError
from contract.drain import run
from contract.drain import serve as serve_and_drain
from contract.logs import setup_logging
from tenant_service import keys
from tenant_service.app import create_app
from tenant_service.config import Settings, load_settings
from tenant_service.server import QuietRunner
from tenant_service.store.db import migrate

logger = logging.getLogger("tenant_service")

# How long a thread holding the GIL keeps it before one waiting may take it
# (CPython's default: 5 ms). aiosqlite runs each SQLite connection's queries in
# a thread of its own, and the event loop, woken for another tenant's request,
# waited up to that long behind such a thread each time: in a pool, a tenant at
# full load then doubled a neighbour's p50 in one run of two (bench.tenant_scale,
# noisy neighbour on SQLite: 2.2-2.6x; with 0.5 ms: 1.2-1.6x in every run).
SWITCH_INTERVAL: Final = 0.0005


async def serve(settings: Settings) -> None:
    """Migrate (a dedicated backend; a pool migrates each tenant's database on its
    first request), serve until SIGTERM/SIGINT, then drain within the grace.

    The drain (contract.drain): answers get `Connection: close` and /readyz 503,
    the listening socket closes (so the gateway tries another replica), requests
    in flight get TENANT_SHUTDOWN_GRACE seconds, then the database pool and the
    other resources close.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    if not settings.pooled:
        await migrate(settings.database_url)
    app = create_app(settings)
    await serve_and_drain(
        app,
        app[keys.DRAIN],
        runner=QuietRunner,  # parser errors as JSON, no request bytes in the log
        name=f"pool {settings.address}"
        if settings.pooled
        else f"tenant {settings.name}",
        host=settings.host,
        port=settings.port,
        grace=settings.shutdown_grace,
        logger=logger,
    )


def main() -> int:
    """Load settings, migrate the schema and serve until SIGTERM/SIGINT (exit 0).

    A bad configuration, or a pool's unusable tenants file at start, exits 2.
    """
    setup_logging()
    try:
        settings = load_settings(os.environ)
        run(serve(settings))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
