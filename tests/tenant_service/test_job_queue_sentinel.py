"""The scheduling job queue on a Sentinel-managed master: backend and worker."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from rq import Queue

from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.scheduling import jobs
from tests.helpers.schedules import (
    battery,
    make_site,
    trigger,
    wait_for_job,
)
from tests.redis_servers import SentinelSetup, sentinel_setup
from tests.tenant_service.conftest import SECRET, TENANT, ClientFactory, World

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(sqlite_database_url: str) -> str:
    """SQLite only: the queue is what is under test here."""
    return sqlite_database_url


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with sentinel_setup(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@pytest.fixture
def sentinel_settings(
    settings: Settings, sentinel: SentinelSetup, redis_prefix: str
) -> Settings:
    return dataclasses.replace(
        settings,
        redis_sentinels=sentinel.sentinels,
        redis_sentinel_master=sentinel.master_name,
        redis_prefix=redis_prefix,
        job_timeout=20,
    )


@pytest.fixture
def sentinel_worker(
    sentinel: SentinelSetup, sentinel_settings: Settings, world: World
) -> Iterator[subprocess.Popen[bytes]]:
    """A scheduling worker process that finds its Redis through the sentinel."""
    del world  # the database is migrated and seeded first
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TENANT_")},
        "TENANT_NAME": TENANT,
        "TENANT_SECRET": SECRET,
        "TENANT_DATABASE_URL": sentinel_settings.database_url,
        "TENANT_REDIS_SENTINELS": f"127.0.0.1:{sentinel.sentinel_port}",
        "TENANT_REDIS_SENTINEL_MASTER": sentinel.master_name,
        "TENANT_REDIS_PREFIX": sentinel_settings.redis_prefix,
        "TENANT_JOB_TIMEOUT": "20",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenant_service.scheduling.worker"], env=env
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def test_schedule_job_runs_through_the_sentinels_master(
    aiohttp_client: ClientFactory,
    sentinel: SentinelSetup,
    sentinel_settings: Settings,
    world: World,
    sentinel_worker: subprocess.Popen[bytes],
) -> None:
    client = await aiohttp_client(create_app(sentinel_settings))
    site = await make_site(client, world)
    status, body = await trigger(client, world.member, site.power, battery(site))
    assert status == 202, body
    master = redis.Redis.from_url(sentinel.master_url)
    try:
        job = jobs.fetch(master, sentinel_settings, body["job"])
        assert job is not None  # on the master the sentinel names
    finally:
        master.close()
    status, state = await wait_for_job(client, world.member, body["job"])
    assert status == 200, state
    assert state["status"] == "FINISHED"


def test_job_queue_connects_to_the_sentinels_master(
    sentinel: SentinelSetup, sentinel_settings: Settings
) -> None:
    connection = jobs.connect(sentinel_settings)
    try:
        assert connection.ping()
        accepted = jobs.accept_trigger(
            connection,
            sentinel_settings,
            cache_request={"a": 1},
            job_kwargs={},
            meta={},
            account_id=1,
            force_new=False,
        )
        assert accepted.new
        queue = jobs.queue(connection, sentinel_settings)
        assert queue.job_ids == [accepted.job_id]
    finally:
        Queue(sentinel_settings.queue_name, connection=connection).delete(
            delete_jobs=True
        )
        jobs.close(connection)
    master = redis.Redis.from_url(sentinel.master_url)
    try:
        assert master.exists(f"{sentinel_settings.redis_prefix}:{TENANT}:triggers:1")
    finally:
        master.close()
