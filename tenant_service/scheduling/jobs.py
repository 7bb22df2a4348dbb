"""Scheduling jobs on Redis with RQ: enqueue, deduplicate, rate-limit, look up.

Each tenant has its own RQ queue (`Settings.queue_name`); its workers
(`tenant_service.scheduling.worker`) run `job.run_schedule_job` and forecasting
jobs (`tenant_service.forecasting.job.run_forecast_job`) alike. Jobs and their
results are JSON (RQ's JSONSerializer: nothing is unpickled from Redis). The job id
is the schedule id FlexMeasures answers (`job` and `schedule`).

RQ talks to Redis with blocking redis-py calls; the API runs every call of one
request in one worker thread (`asyncio.to_thread`), never on the event loop. The
Redis is one server or a Sentinel-managed master: RQ does not support Redis Cluster
(its transactions span keys of many slots; rq/rq#1942).

- Identical triggers (same target, window, prior as sent, merged flex-model and
  flex-context) within `job_cache_ttl` return the same job, as FlexMeasures'
  job cache, unless `force-new-job-creation`; a failed or expired job is not reused.
- Accepted new jobs count against the account's trigger limit (a sliding window in a
  Redis sorted set, checked and taken in one Lua script, so concurrent triggers
  cannot overshoot); rejected triggers and cache hits cost nothing.
- A job whose worker died mid-job is retried (RQ's abandoned-job retry) once its
  heartbeat expires; `Retry(max=2)`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer

from contract import redis as contract_redis
from tenant_service.config import Settings

# Shown to API users as a job's func-name; worker.py re-exports it from job.py.
JOB_FUNCTION: Final = "tenant_service.scheduling.worker.run_schedule_job"
# A forecasting job's (tenant_service.forecasting.job), named here so that the API
# enqueues it without importing the worker's libraries.
FORECAST_FUNCTION: Final = "tenant_service.forecasting.job.run_forecast_job"
RETRIES: Final = 2
# Jobs nobody picked up within a day are dropped (FlexMeasures' queue TTL).
QUEUE_TTL: Final = 24 * 3600

# KEYS[1] the account's zset of accepted triggers; ARGV: now (ms), window (ms),
# limit, member. Returns 0 when taken, else the ms until the oldest entry leaves.
_TAKE_SLOT: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + ARGV[2] - ARGV[1])
"""


class RateLimitedError(Exception):
    """The account used its trigger budget; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int, limit: int, period: int) -> None:
        self.retry_after = retry_after
        self.limit = limit
        self.period = period
        super().__init__(f"{limit} per {period} seconds")


@dataclass(frozen=True, slots=True)
class Accepted:
    """A trigger's job, new or from the job cache."""

    job_id: str
    new: bool


def connect(settings: Settings) -> redis.Redis:
    """A blocking Redis client for RQ (bounded timeouts: never hang a request).

    The master the sentinels name when they are set, else settings.redis_url;
    no I/O here. ValueError when neither is set.
    """
    if not settings.job_queue:
        raise ValueError("no job queue configured")
    return contract_redis.connect(settings.redis)


def close(connection: redis.Redis) -> None:
    """Close a client of connect(), and the sentinels' clients behind it."""
    contract_redis.close(connection)


def queue(connection: redis.Redis, settings: Settings) -> Queue:
    """The tenant's scheduling queue."""
    return Queue(
        settings.queue_name,
        connection=connection,
        serializer=JSONSerializer,
        default_timeout=settings.job_timeout,
    )


def cache_key(settings: Settings, request: dict[str, Any]) -> str:
    """The job-cache key of a trigger (its canonical JSON, hashed)."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{settings.redis_prefix}:{settings.name}:jobcache:{digest}"


def accept_trigger(
    connection: redis.Redis,
    settings: Settings,
    *,
    cache_request: dict[str, Any] | None,
    job_kwargs: dict[str, Any],
    meta: dict[str, Any],
    account_id: int,
    force_new: bool,
    function: str = JOB_FUNCTION,
    description: str | None = None,
) -> Accepted:
    """The cached job of an identical trigger, or a new job within the limit.

    Without `cache_request` every trigger is a new job (forecasts, as in
    FlexMeasures). All triggers of an account share one limit.
    """
    key = None if cache_request is None else cache_key(settings, cache_request)
    if key is not None and not force_new:
        cached = connection.get(key)
        if cached is not None:
            text = cached.decode() if isinstance(cached, bytes) else str(cached)
            job = fetch(connection, settings, text)
            if job is not None and job.get_status(refresh=False) not in (
                JobStatus.FAILED,
                JobStatus.CANCELED,
                JobStatus.STOPPED,
            ):
                return Accepted(job.id, new=False)
    job_id = str(uuid.uuid4())
    limited = settings.trigger_period > 0
    slots = f"{settings.redis_prefix}:{settings.name}:triggers:{account_id}"
    if limited:
        wait_ms = int(
            connection.eval(
                _TAKE_SLOT,
                1,
                slots,
                int(time.time() * 1000),
                settings.trigger_period * 1000,
                settings.trigger_limit,
                job_id,
            )
        )
        if wait_ms:
            raise RateLimitedError(
                -(-wait_ms // 1000), settings.trigger_limit, settings.trigger_period
            )
    try:
        queue(connection, settings).enqueue(
            function,
            kwargs={"request": job_kwargs},
            job_id=job_id,
            job_timeout=settings.job_timeout,
            result_ttl=settings.planning_ttl,
            failure_ttl=settings.planning_ttl,
            ttl=QUEUE_TTL,
            retry=Retry(max=RETRIES),
            meta=meta,
            description=description or f"schedule for {meta.get('target', '?')}",
        )
    except BaseException:
        if limited:
            connection.zrem(slots, job_id)  # not accepted: give the slot back
        raise
    if key is not None:
        connection.set(key, job_id, ex=settings.job_cache_ttl)
    return Accepted(job_id, new=True)


def fetch(connection: redis.Redis, settings: Settings, job_id: str) -> Job | None:
    """This tenant's job with that id (another tenant's or an unknown id: None)."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    try:
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None
    if job.origin != settings.queue_name:
        return None
    return job


# At most this many jobs of the queue are looked at per listing (newest first per
# registry); jobs expire (planning_ttl), so a queue rarely holds more.
MAX_LISTED: Final = 2000


@dataclass(frozen=True, slots=True)
class EntityJob:
    """A job of an asset or of one of its sensors (FlexMeasures' job cache entry)."""

    job: Job
    queue: str  # "scheduling" or "forecasting"
    kind: str  # "asset" or "sensor"
    entity_id: int


def _kind_of(job: Job) -> str:
    """A job's FlexMeasures queue: its meta's `origin` (or `queue`), else by its
    function."""
    for key in ("origin", "queue"):
        named = job.meta.get(key)
        if isinstance(named, str):
            return named
    return "forecasting" if "forecast" in (job.func_name or "") else "scheduling"


def _entity(
    job: Job, asset_ids: set[int], sensor_ids: set[int]
) -> tuple[str, int] | None:
    """Whose job this is, by its meta: `target` ("asset 3", "sensor 5": what was
    triggered), else `asset_id`, `sensor_id`, or the first of `sensors` that is
    one of `sensor_ids`; None unless that asset or sensor is one of those given."""
    meta = job.meta
    target = meta.get("target")
    if isinstance(target, str) and " " in target:
        kind, _, number = target.partition(" ")
        if kind in ("asset", "sensor") and number.isdecimal():
            wanted = int(number)
            if (kind == "asset" and wanted in asset_ids) or (
                kind == "sensor" and wanted in sensor_ids
            ):
                return kind, wanted
            return None
    asset = meta.get("asset_id")
    if asset is not None:
        return (
            ("asset", asset) if isinstance(asset, int) and asset in asset_ids else None
        )
    sensor = meta.get("sensor_id")
    if isinstance(sensor, int):
        return ("sensor", sensor) if sensor in sensor_ids else None
    for listed in meta.get("sensors") or ():
        if isinstance(listed, int) and listed in sensor_ids:
            return ("sensor", listed)
    return None


def _queue_jobs(connection: redis.Redis, settings: Settings) -> list[Job]:
    """The tenant queue's jobs: queued, then per registry (MAX_LISTED at most)."""
    tenant_queue = queue(connection, settings)
    registries = (
        StartedJobRegistry,
        FinishedJobRegistry,
        FailedJobRegistry,
        DeferredJobRegistry,
        ScheduledJobRegistry,
        CanceledJobRegistry,
    )
    ids = list(tenant_queue.get_job_ids(0, MAX_LISTED - 1))
    for registry in registries:
        found = registry(queue=tenant_queue).get_job_ids(0, MAX_LISTED - 1)
        ids += found
    unique = list(dict.fromkeys(ids))[:MAX_LISTED]
    return [
        job
        for job in Job.fetch_many(
            unique, connection=connection, serializer=JSONSerializer
        )
        if job is not None and job.origin == settings.queue_name
    ]


def jobs_of(
    connection: redis.Redis,
    settings: Settings,
    asset_ids: set[int],
    sensor_ids: set[int],
) -> list[EntityJob]:
    """Jobs of the tenant's queue (any kind) about any of these assets or sensors,
    newest enqueued first."""
    listed: list[EntityJob] = []
    for job in _queue_jobs(connection, settings):
        entity = _entity(job, asset_ids, sensor_ids)
        if entity is not None:
            listed.append(EntityJob(job, _kind_of(job), *entity))
    listed.sort(
        key=lambda e: (
            e.job.enqueued_at.timestamp() if e.job.enqueued_at else 0.0,
            e.job.id,
        ),
        reverse=True,
    )
    return listed


def entity_jobs(
    connection: redis.Redis, settings: Settings, asset_id: int, sensor_ids: set[int]
) -> list[EntityJob]:
    """Jobs of the tenant's queue (any kind) about an asset or its sensors.

    Generic by job meta, so every job type that records `target`, `asset_id`,
    `sensor_id` or `sensors` (schedules, forecasts) is listed: the asset's jobs
    first, then per sensor, oldest enqueued first.
    """
    listed: list[EntityJob] = []
    for job in _queue_jobs(connection, settings):
        entity = _entity(job, {asset_id}, sensor_ids)
        if entity is not None:
            listed.append(EntityJob(job, _kind_of(job), *entity))
    order = {"asset": 0, "sensor": 1}
    listed.sort(
        key=lambda e: (
            order[e.kind],
            e.entity_id,
            e.job.enqueued_at.timestamp() if e.job.enqueued_at else 0.0,
            e.job.id,
        )
    )
    return listed
