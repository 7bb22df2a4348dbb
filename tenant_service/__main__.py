"""Run one tenant backend: `python -m tenant_service` (settings from TENANT_*)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from aiohttp import web

from tenant_service.app import create_app
from tenant_service.config import ConfigError, load_settings
from tenant_service.logs import setup_logging
from tenant_service.store.db import migrate

logger = logging.getLogger("tenant_service")


def main() -> int:
    """Load settings, migrate the schema and serve until interrupted."""
    setup_logging()
    try:
        settings = load_settings(os.environ)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(migrate(settings.database_url))
    logger.info(
        "serving tenant %s on %s:%s", settings.name, settings.host, settings.port
    )
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        loop=loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
