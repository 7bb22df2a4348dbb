"""`python -m gateway`: serve the gateway with settings from the environment."""

from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

from .app import create_app
from .config import ConfigError, load_settings
from .logs import setup_logging


def main() -> int:
    """Run until SIGINT/SIGTERM; exit 2 on a configuration problem."""
    setup_logging()
    try:
        settings = load_settings(os.environ)
        app = create_app(settings)
    except ConfigError as err:
        for problem in err.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    logging.getLogger(__name__).info(
        "gateway listening on http://%s:%d", settings.host, settings.port
    )
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
        handle_signals=True,
        loop=loop_factory() if loop_factory else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
