"""The scheduling worker process: an RQ worker on the queues of one tenant or a pool.

Run: `python -m tenant_service.scheduling.worker` with the backend's `TENANT_*`
environment (`TENANT_REDIS_URL` or `TENANT_REDIS_SENTINELS` required). With
TENANT_NAME it serves that tenant's queue; with a pool's TENANT_TENANTS_FILE and
TENANT_ADDRESS it serves the queue of every tenant the pool's backend serves, and
follows the file between jobs (checked every TENANT_RELOAD_INTERVAL): tenants added
or removed there are served or dropped without a restart. `flexhost up` starts one
per dedicated tenant and one per pool. It runs scheduling jobs
(`job.run_schedule_job`) and forecasting jobs
(`tenant_service.forecasting.job.run_forecast_job`) alike.

Fairness: jobs are taken round-robin over the queues (RQ's ROUND_ROBIN dequeue
strategy: the queue a job came from goes to the back of the order), so a burst of one
tenant's jobs delays another tenant's job by at most one job per worker.

Isolation: a job runs on the database of the tenant whose queue it was taken from
(`job.JOB_TENANT`, from the queue's name, never from the job's arguments), opened
through the same tenant directory as the backend's (`tenant_service.tenancy`): in a
pool lazily, closed after TENANT_IDLE_CLOSE idle seconds, all engines within
TENANT_DB_CONNECTIONS.

The worker does not fork per job (RQ's SimpleWorker): it keeps one event loop and
its engines for its life (`job.RUNTIME`), so a job pays no process start or
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
import time
import uuid
from collections.abc import Sequence
from types import FrameType
from typing import Any, Final
from urllib.parse import urlsplit

from rq import Queue, SimpleWorker, worker_registration
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ReadyJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer
from rq.worker import DequeueStrategy, WorkerStatus

from contract.config import ConfigError
from contract.logs import setup_logging
from contract.names import valid_tenant_name
from tenant_service.config import Settings, load_settings
from tenant_service.scheduling import jobs
from tenant_service.scheduling.job import JOB_TENANT, RUNTIME, Runtime

# Jobs name their function by this module's path (jobs.JOB_FUNCTION, shown to API
# users as the job's func-name), so the job function is importable from here too.
from tenant_service.scheduling.job import run_schedule_job as run_schedule_job
from tenant_service.tenancy import Directory

logger = logging.getLogger(__name__)

# Longest wait on an empty queue. A SIGTERM sent to the process may be taken by
# any of its threads (RQ's pub/sub listener, a database driver's); Python runs the
# handler only when the main thread next runs Python code, so a stop waits for
# the main thread's BLPOP to end. One idle BLPOP per 2 s is nothing to Redis.
DEQUEUE_WAIT: Final = 2


def queue_tenant(settings: Settings, queue_name: str) -> str | None:
    """The tenant of a scheduling queue's name (`<prefix>:<tenant>:scheduling`)."""
    head = f"{settings.redis_prefix}:"
    tail = ":scheduling"
    if not (queue_name.startswith(head) and queue_name.endswith(tail)):
        return None
    tenant = queue_name[len(head) : -len(tail)]
    return tenant if valid_tenant_name(tenant) else None


class ScheduleWorker(SimpleWorker):
    """A SimpleWorker whose started jobs are abandoned soon after their timeout, which
    takes jobs round-robin and, in a pool, follows the pool's tenants."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.heartbeat_grace = settings.job_heartbeat_grace
        self._next_follow = 0.0

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop, taking jobs round-robin over the queues."""
        kwargs.setdefault("dequeue_strategy", DequeueStrategy.ROUND_ROBIN)
        return super().work(*args, **kwargs)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run a job as the tenant of the queue it was taken from."""
        tenant = queue_tenant(self.settings, queue.name)
        if tenant is None:  # not one of ours; RQ fails the job
            raise LookupError(f"no tenant's queue: {queue.name}")
        token = JOB_TENANT.set(tenant)
        try:
            super().execute_job(job, queue)
        finally:
            JOB_TENANT.reset(token)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """The next job; a pool's worker follows its tenants while it waits.

        RQ waits on the same queues until a job comes; a pool's worker instead
        waits at most DEQUEUE_WAIT at a time and looks at the tenants file between
        waits, so a tenant added meanwhile is served.
        """
        if not self.settings.pooled or timeout is None or max_idle_time is not None:
            self.follow_tenants()
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while True:
            self.follow_tenants()
            if not self._ordered_queues:  # no tenant (yet): nothing to wait on
                self.set_state(WorkerStatus.IDLE)
                self.heartbeat()
                time.sleep(DEQUEUE_WAIT)  # a stop request raises out of the sleep
                continue
            result = super().dequeue_job_and_maintain_ttl(timeout, timeout)
            if result is not None:
                return result

    def clean_registries(self) -> None:
        """RQ's registry upkeep (abandoned jobs retried, expired entries dropped),
        for the queues that have registries only.

        RQ cleans every queue, a dozen round trips each: 250 idle tenants' queues
        would cost a worker more than 1% of a CPU. A queue that never had a job
        has no registry; one pipelined EXISTS per queue finds the others.
        """
        if len(self.queues) <= 1:
            super().clean_registries()  # type: ignore[no-untyped-call]  # RQ
            return
        with self.connection.pipeline(transaction=False) as pipeline:
            for queue in self.queues:
                pipeline.exists(*_registry_keys(queue))
            counts = pipeline.execute()
        every = self.queues
        self.queues = [queue for queue, n in zip(every, counts, strict=True) if n]
        try:
            super().clean_registries()  # type: ignore[no-untyped-call]  # RQ
        finally:
            self.queues = every

    def follow_tenants(self) -> None:
        """A pool's worker: re-read the tenants file when due, serve its tenants'
        queues and close its idle engines."""
        if not self.settings.pooled:
            return
        now = time.monotonic()
        if now < self._next_follow:
            return
        self._next_follow = now + self.settings.reload_interval
        runtime = RUNTIME.get()
        directory = runtime.directory
        # A tenant named in the file but not served yet (its secret written after
        # the file) is looked for again at each turn, even if the file is unchanged.
        runtime.loop.run_until_complete(directory.refresh(reread=directory.waiting))
        runtime.loop.run_until_complete(directory.close_idle())
        self.serve(directory.names())

    def serve(self, tenants: Sequence[str]) -> None:
        """Take jobs from these tenants' queues (in their round-robin order so far,
        new ones last)."""
        prefix = self.settings.redis_prefix
        wanted = [f"{prefix}:{tenant}:scheduling" for tenant in sorted(tenants)]
        have = {queue.name for queue in self._ordered_queues}
        if have == set(wanted):
            return
        kept = [q for q in self._ordered_queues if q.name in set(wanted)]
        added = [_queue(self.connection, name) for name in wanted if name not in have]
        registered = self.birth_date is not None
        with self.connection.pipeline() as pipeline:
            if registered:
                worker_registration.unregister(self, pipeline)  # from the old queues
            self._ordered_queues = kept + added
            self.queues = list(self._ordered_queues)
            if registered:
                worker_registration.register(self, pipeline)
                pipeline.hset(self.key, "queues", ",".join(self.queue_names()))
            pipeline.execute()
        logger.info(
            "serving %d tenant queue(s) (%d added, %d dropped)",
            len(self.queues),
            len(added),
            len(have) - len(kept),
        )

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


_REGISTRIES: Final = (
    StartedJobRegistry,
    FinishedJobRegistry,
    FailedJobRegistry,
    DeferredJobRegistry,
    ReadyJobRegistry,
)


def _registry_keys(queue: Queue) -> list[str]:
    """The keys of a queue's registries and its intermediate list (RQ's names)."""
    keys = [registry.key_template.format(queue.name) for registry in _REGISTRIES]
    return [*keys, IntermediateQueue.get_intermediate_queue_key(queue.key)]


def _queue(connection: Any, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


def make_worker(settings: Settings) -> ScheduleWorker:
    """A worker on the tenant's queue, or (a pool) on none until `follow_tenants`
    finds the pool's tenants (a Redis URL or sentinels must be set)."""
    if not settings.job_queue:
        raise ConfigError(
            [
                "TENANT_REDIS_URL or TENANT_REDIS_SENTINELS: required for the "
                "scheduling worker"
            ]
        )
    connection = jobs.connect(settings)
    if settings.pooled:
        # No spaces: RQ gives its Redis connection this name (CLIENT SETNAME).
        where = urlsplit(settings.address).netloc
        name = f"{settings.redis_prefix}:pool@{where}"
        queues = []
    else:
        name = settings.queue_name
        queues = [_queue(connection, settings.queue_name)]
    return ScheduleWorker(
        queues,
        connection=connection,
        serializer=JSONSerializer,
        name=f"{name}:{uuid.uuid4().hex[:12]}",
        maintenance_interval=settings.job_sweep_interval,
        settings=settings,
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
    directory = Directory(settings)
    RUNTIME.set(Runtime(loop, directory))
    try:
        if settings.pooled:
            loop.run_until_complete(directory.start())  # a bad file: ConfigError
            logger.info("scheduling worker of the pool %s", settings.address)
        else:
            logger.info("scheduling worker on %s", settings.queue_name)
        threading.Thread(target=_preload, name="preload", daemon=True).start()
        worker.work(with_scheduler=False, logging_level="WARNING")
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    finally:
        loop.run_until_complete(directory.close_all())
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
