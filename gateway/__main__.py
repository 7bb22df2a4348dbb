"""`python -m gateway`: serve the gateway with settings from the environment.

With GATEWAY_WORKERS > 1 (default: one per CPU) that many worker processes share the
port through SO_REUSEPORT, as nginx's worker_processes do: the gateway keeps no
state of its own, so workers need no coordination. The parent only supervises.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from types import FrameType

from aiohttp import web

from .app import create_app
from .config import ConfigError, Settings, load_settings, load_tenants
from .logs import setup_logging

logger = logging.getLogger("gateway")


def serve(settings: Settings, reuse_port: bool) -> None:
    """Run one gateway process until SIGINT/SIGTERM."""
    setup_logging()
    try:
        app = create_app(settings)
    except ConfigError as err:
        for problem in err.problems:
            print(f"config error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        import uvloop
    except ImportError:
        loop = None
    else:
        loop = uvloop.new_event_loop()
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port or None,
        access_log=None,
        print=None,
        shutdown_timeout=10,
        handle_signals=True,
        loop=loop,
    )


def supervise(settings: Settings) -> int:
    """Start the workers, restart any that dies, stop them all on SIGINT/SIGTERM."""
    context = multiprocessing.get_context("fork")
    workers: list[multiprocessing.process.BaseProcess] = []
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        worker = context.Process(target=serve, args=(settings, True), daemon=False)
        worker.start()
        return worker

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers.extend(start() for _ in range(settings.workers))
    logger.info(
        "gateway listening on http://%s:%d with %d workers",
        settings.host,
        settings.port,
        settings.workers,
    )
    while not stopping:
        time.sleep(0.2)
        for i, worker in enumerate(workers):
            if not worker.is_alive() and not stopping:
                if worker.exitcode == 2:  # a config error: restarting cannot help
                    stop(signal.SIGTERM, None)
                    return 2
                logger.error(
                    "worker %s exited with %s; restarting", worker.pid, worker.exitcode
                )
                workers[i] = start()
    for worker in workers:
        worker.join(15)
    return 0


def main() -> int:
    """Validate the configuration, then serve (exit 2 on a configuration problem)."""
    setup_logging()
    try:
        settings = load_settings(os.environ)
        # tenants.yaml and its secrets are checked once here, before any worker forks
        load_tenants(settings.tenants_path, secrets_dir=settings.secrets_dir)
    except ConfigError as err:
        for problem in err.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    if settings.workers == 1:
        logger.info("gateway listening on http://%s:%d", settings.host, settings.port)
        serve(settings, reuse_port=False)
        return 0
    return supervise(settings)


if __name__ == "__main__":
    sys.exit(main())
