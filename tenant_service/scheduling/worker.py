"""The scheduling worker process: an RQ worker on one tenant's queue.

Run: `python -m tenant_service.scheduling.worker` with the backend's `TENANT_*`
environment (`TENANT_REDIS_URL` or `TENANT_REDIS_SENTINELS` required). `flexhost up`
starts one per tenant. It runs scheduling jobs (`job.run_schedule_job`) and
forecasting jobs (`tenant_service.forecasting.job.run_forecast_job`) alike.

The worker does not fork per job (RQ's SimpleWorker): it keeps one event loop and
one database engine for its life (`job.RUNTIME`), so a job pays no process start or
database connection.

A worker killed mid-job leaves the job "started"; its heartbeat lapses after the job
timeout plus `TENANT_JOB_HEARTBEAT_GRACE` (10 s), and the next sweep of any worker of
the queue (every `TENANT_JOB_SWEEP_INTERVAL`, 15 s, idle or not) retries it: with an
8 s job timeout and the defaults a killed job finishes about 32 s after the kill.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Sequence
from types import FrameType
from typing import Any, Final

from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from contract.config import ConfigError
from contract.logs import setup_logging
from tenant_service.config import Settings, load_settings
from tenant_service.scheduling import jobs
from tenant_service.scheduling.job import RUNTIME, Runtime

# Jobs name their function by this module's path (jobs.JOB_FUNCTION, shown to API
# users as the job's func-name), so the job function is importable from here too.
from tenant_service.scheduling.job import run_schedule_job as run_schedule_job
from tenant_service.store.db import create_engine

logger = logging.getLogger(__name__)

# Longest wait on an empty queue. A SIGTERM sent to the process may be taken by
# any of its threads (RQ's pub/sub listener, a database driver's); Python runs the
# handler only when the main thread next runs Python code, so a stop waits for
# the main thread's BLPOP to end. One idle BLPOP per 2 s is nothing to Redis.
DEQUEUE_WAIT: Final = 2


class ScheduleWorker(SimpleWorker):
    """A SimpleWorker whose started jobs are abandoned soon after their timeout."""

    def __init__(self, *args: Any, heartbeat_grace: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_grace = heartbeat_grace

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """The job timeout plus a short grace (RQ adds a minute)."""
        timeout = job.timeout if job.timeout and job.timeout > 0 else 180
        return int(timeout) + self.heartbeat_grace

    @property
    def dequeue_timeout(self) -> int:
        """Wake from an empty queue every DEQUEUE_WAIT seconds.

        RQ waits on an empty queue for its worker TTL less 15 s (405 s), sweeps
        abandoned jobs only between waits (an idle worker would retry a dead
        worker's job minutes late) and runs a stop request only once the wait ends.
        """
        return max(1, min(super().dequeue_timeout, DEQUEUE_WAIT))

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        """Take stop signals before RQ's bootstrap starts its listener thread.

        RQ installs its handlers only after bootstrap, whose subscribe() starts
        the pub/sub thread: a SIGTERM meanwhile (a stop during start, taken by
        that thread) met the default action and killed the worker registered
        but not unregistered (seen in CI: exit -15). Until RQ's handlers take
        over, a stop only sets the flag the work loop checks before its first pop.
        """
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop_at_first_turn)
        super().bootstrap(*args, **kwargs)

    def _stop_at_first_turn(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._stop_requested = True

    def teardown(self) -> None:
        """Drop idle pooled connections, then unregister as RQ does.

        RQ stops an idle worker by raising from its SIGTERM handler. Raised after
        BLPOP was sent but before its answer was read, the connection goes back to
        the pool with the pop still blocking in Redis, and unregistering on it
        would wait for the pop's timeout (seen in CI: a stop taking over 10 s).
        """
        self.connection.connection_pool.disconnect(inuse_connections=False)
        super().teardown()  # type: ignore[no-untyped-call]  # RQ is untyped here

    def unsubscribe(self) -> None:
        """Leave the command channel without waiting up to a minute for its thread.

        RQ unsubscribes, then calls the listener thread's stop(), which in redis-py
        8 joins the thread without a bound; a thread already back in get_message
        waits there up to RQ's 60 s sleep_time (seen in CI: stops over 10 s).
        Clear its running flag first, then wait for it at most one second.
        """
        thread = self.pubsub_thread
        if thread is None or self.pubsub is None:
            return
        thread.stop(timeout=0)  # only clears its running flag
        self.pubsub.unsubscribe()  # the answer wakes a thread reading the socket
        thread.join(timeout=1)
        self.pubsub.close()


def make_worker(settings: Settings) -> ScheduleWorker:
    """A worker on the tenant's queue (a Redis URL or sentinels must be set)."""
    if not settings.job_queue:
        raise ConfigError(
            [
                "TENANT_REDIS_URL or TENANT_REDIS_SENTINELS: required for the "
                "scheduling worker"
            ]
        )
    connection = jobs.connect(settings)
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    return ScheduleWorker(
        [queue],
        connection=connection,
        serializer=JSONSerializer,
        name=f"{settings.queue_name}:{uuid.uuid4().hex[:12]}",
        maintenance_interval=settings.job_sweep_interval,
        heartbeat_grace=settings.job_heartbeat_grace,
    )


def _preload() -> None:
    """Import the forecasting model's libraries (LightGBM, ~0.3 s) off the main thread.

    A forecasting job that starts meanwhile waits for the import (Python's import
    lock) instead of starting its own; the first forecast no longer pays for it.
    """
    try:
        importlib.import_module("tenant_service.forecasting.job")
        model = importlib.import_module("tenant_service.forecasting.model")
        model.preload()
    except ImportError:  # pragma: no cover - lightgbm is a dependency
        logger.warning("forecasting libraries not importable; forecasts will fail")


def _exit_before_work(signum: int, frame: FrameType | None) -> None:
    del frame
    raise SystemExit(0 if signum == signal.SIGTERM else 130)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT (RQ finishes the job at hand first)."""
    del argv
    for signum in (signal.SIGTERM, signal.SIGINT):  # nothing to undo yet
        signal.signal(signum, _exit_before_work)
    setup_logging()
    try:
        settings = load_settings(os.environ)
        worker = make_worker(settings)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        loop = asyncio.new_event_loop()
    engine = create_engine(settings.database_url)
    RUNTIME.set(Runtime(loop, engine, settings))
    logger.info("scheduling worker on %s", settings.queue_name)
    threading.Thread(target=_preload, name="preload", daemon=True).start()
    try:
        worker.work(with_scheduler=False, logging_level="WARNING")
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
