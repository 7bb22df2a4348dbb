"""A pool's scheduling worker: every tenant's queue, round-robin, each job on its
own tenant's database, tenants added to the file served without a restart.

Two tenants (acme, beta) share a pool backend app (on loopback, for the triggers)
and one real worker process started with the pool's environment. Beta's database is
a copy of acme's taken after acme's battery site was made, so the same sensor ids
exist in both: only the queue a job came from can tell the worker whose it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from contract.config import Secret
from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.scheduling import jobs
from tenant_service.scheduling.worker import queue_tenant
from tenant_service.store.db import create_engine
from tenant_service.store.tables import timed_beliefs
from tests.helpers.databases import Template, Templates
from tests.helpers.schedules import (
    Site,
    batteries_trigger,
    battery,
    make_batteries,
    worker_process,
)
from tests.helpers.wait import until
from tests.tenant_service.conftest import (
    QUARTER,
    SECRET,
    Client,
    ClientFactory,
    World,
    identity,
)

ADDRESS: Final = "http://127.0.0.1:8301"
# Short, so that a killed worker's job is retried soon; long enough that the
# solver's limit (the job timeout less 5 s) holds the six-battery job on a busy
# machine (3 s did not, at load average 8).
JOB_TIMEOUT: Final = 15
HEARTBEAT_GRACE: Final = 2
SWEEP_INTERVAL: Final = 3
SECRET_B: Final = "beta-secret-0123456789abcdef-0123456789"
BURST: Final = 20


def tenants_yaml(*tenants: str) -> str:
    """A tenants file with these tenants on the pool's address."""
    lines = ["tenants:"]
    for tenant in tenants:
        lines += [f"  - subdomain: {tenant}", f'    backends: ["{ADDRESS}"]']
    return "\n".join(lines) + "\n"


def sqlite_file(url: str) -> str:
    """The path of a sqlite+aiosqlite URL."""
    return url.removeprefix("sqlite+aiosqlite:///")


def copy_database(source: str, target: str) -> None:
    """A consistent copy of a SQLite database (its WAL included)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


@dataclasses.dataclass(frozen=True, slots=True)
class Pool:
    """The pool app, its settings and the battery site both tenants have."""

    client: Client
    settings: Settings
    tenants_file: Path
    site: Site
    batteries: list[int]  # power sensors of the site (the first: site.power)
    world: World


@pytest.fixture
async def pool(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    templates: Templates,
    world_template: Template[World],
    redis_url: str,
    redis_prefix: str,
) -> Pool:
    """A pool app over acme's and beta's databases (same site, same ids); the
    tenants file lists acme only until a test adds beta."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acme").write_text(SECRET)
    (secrets / "beta").write_text(SECRET_B)
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(tenants_yaml("acme"))
    template = f"sqlite+aiosqlite:///{tmp_path}/{{tenant}}.sqlite3"
    acme_url = template.replace("{tenant}", "acme")
    world = await templates.copy_sqlite(world_template, acme_url)
    settings = Settings(
        name="",
        database_url=template,
        secret=Secret(""),
        tenants_file=tenants_file,
        address=ADDRESS,
        secrets_dir=secrets,
        reload_interval=0.2,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        job_timeout=JOB_TIMEOUT,
        job_heartbeat_grace=HEARTBEAT_GRACE,
        job_sweep_interval=SWEEP_INTERVAL,
        trigger_limit=BURST + 5,
        trigger_period=300,
    )
    client = await aiohttp_client(create_app(settings))
    site, power = await make_batteries(client, world)  # a site and more batteries
    await asyncio.to_thread(
        copy_database,
        sqlite_file(acme_url),
        sqlite_file(template.replace("{tenant}", "beta")),
    )
    return Pool(client, settings, tenants_file, site, power, world)


def as_tenant(tenant: str, user: int) -> dict[str, str]:
    """Identity headers of a user of acme or beta."""
    secret = SECRET if tenant == "acme" else SECRET_B
    return identity(user, tenant=tenant, secret=secret)


async def trigger(pool: Pool, tenant: str) -> str:
    """A new schedule job of the tenant's battery (never the cached one): its id."""
    body = {**battery(pool.site), "force-new-job-creation": True}
    response = await pool.client.post(
        f"/api/v3_0/sensors/{pool.site.power}/schedules/trigger",
        json=body,
        headers=as_tenant(tenant, pool.world.member),
    )
    answer = await response.json()
    assert response.status == 202, answer
    job: str = answer["job"]
    return job


def fetch_jobs(settings: Settings, ids: Sequence[str]) -> list[Job]:
    """RQ's records of these jobs."""
    connection = jobs.connect(settings)
    try:
        found = Job.fetch_many(
            list(ids), connection=connection, serializer=JSONSerializer
        )
        return [job for job in found if job is not None]
    finally:
        jobs.close(connection)


async def ended(settings: Settings, ids: Sequence[str], seconds: float) -> list[Job]:
    """The jobs once every one has ended (failing the test after `seconds`)."""
    records: list[Job] = []

    async def all_ended() -> bool:
        nonlocal records
        records = await asyncio.to_thread(fetch_jobs, settings, ids)
        return len(records) == len(ids) and all(
            job.get_status(refresh=False) in (JobStatus.FINISHED, JobStatus.FAILED)
            for job in records
        )

    await until(all_ended, seconds, f"{len(ids)} jobs ended", interval=0.2)
    return records


async def belief_times(url: str, sensor: int) -> set[int]:
    """The belief times (ms) of the stored schedules of a power sensor."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(
                    timed_beliefs.c.event_start, timed_beliefs.c.belief_horizon
                ).where(timed_beliefs.c.sensor_id == sensor)
            )
            # The power sensor's resolution is a quarter: knowledge time = event end.
            return {start + QUARTER - horizon for start, horizon in rows}
    finally:
        await engine.dispose()


async def beliefs_of(url: str, sensor: int, source: int) -> int:
    """How many beliefs of a sensor a data source has."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                select(func.count()).where(
                    timed_beliefs.c.sensor_id == sensor,
                    timed_beliefs.c.source_id == source,
                )
            )
            return int(found.scalar_one())
    finally:
        await engine.dispose()


def database(pool: Pool, tenant: str) -> str:
    """A tenant's database URL in the pool."""
    return pool.settings.database_url.replace("{tenant}", tenant)


def result_times(records: list[Job]) -> set[int]:
    """The belief times the jobs say they stored their schedules at."""
    results: list[Any] = [job.return_value() for job in records]
    return {int(result["belief_time_ms"]) for result in results}


async def test_pool_worker_takes_tenants_round_robin_each_on_its_own_database(
    pool: Pool,
) -> None:
    """Acme's burst of 20 jobs, then beta's one: beta's finishes after one or two
    of acme's, not after all of them; each schedule is in its tenant's database."""
    pool.tenants_file.write_text(tenants_yaml("acme", "beta"))
    burst = [await trigger(pool, "acme") for _ in range(BURST)]
    single = await trigger(pool, "beta")
    started = time.monotonic()
    with worker_process(pool.settings):
        records = await ended(pool.settings, [*burst, single], 180)
    took = time.monotonic() - started
    by_id = {job.id: job for job in records}
    assert all(job.get_status(refresh=False) == JobStatus.FINISHED for job in records)
    order = sorted(records, key=lambda job: job.ended_at or 0)
    names = ["beta" if job.id == single else "acme" for job in order]
    print(f"{len(order)} jobs in {took:.1f} s; finish order: {' '.join(names)}")
    acme_before = names.index("beta")
    assert acme_before <= 2, names  # FIFO over queues would make it 20
    # Each tenant's database holds schedules of its own jobs only (a re-stored
    # schedule replaces the one before: the latest job's stays). Acme's jobs ran
    # before and after beta's, so a write to the wrong database would show.
    acme_times = result_times([by_id[i] for i in burst])
    beta_times = result_times([by_id[single]])
    assert len(acme_times) == BURST
    in_acme = await belief_times(database(pool, "acme"), pool.site.power)
    assert in_acme
    assert in_acme <= acme_times
    assert await belief_times(database(pool, "beta"), pool.site.power) == beta_times


async def test_pool_worker_serves_a_tenant_added_to_the_file(pool: Pool) -> None:
    """A running worker takes jobs of a tenant added to the tenants file."""
    with worker_process(pool.settings) as proc:
        first = await trigger(pool, "acme")
        await ended(pool.settings, [first], 60)
        pool.tenants_file.write_text(tenants_yaml("acme", "beta"))
        added = await trigger(pool, "beta")  # the app re-reads the file for beta
        [record] = await ended(pool.settings, [added], 60)
        assert record.get_status(refresh=False) == JobStatus.FINISHED
        assert proc.poll() is None  # the same process
    assert await belief_times(database(pool, "beta"), pool.site.power) == (
        result_times([record])
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_pool_worker_killed_mid_job_does_not_lose_the_job(pool: Pool) -> None:
    """RQ's sweep of abandoned jobs (skipped for queues that never had a job)
    still retries a job of a pool's queue whose worker was killed."""
    pool.tenants_file.write_text(tenants_yaml("acme", "beta"))  # two queues
    site, power = pool.site, pool.batteries
    response = await pool.client.post(
        f"/api/v3_0/assets/{site.asset}/schedules/trigger",
        json=batteries_trigger(site, power),
        headers=as_tenant("acme", pool.world.member),
    )
    answer = await response.json()
    assert response.status == 202, answer
    job_id = answer["job"]

    async def status() -> JobStatus | None:
        found = await asyncio.to_thread(fetch_jobs, pool.settings, [job_id])
        return found[0].get_status(refresh=False) if found else None

    with worker_process(pool.settings) as first:

        async def started() -> bool:
            return await status() == JobStatus.STARTED

        await until(started, 30, "the job started")
        first.kill()
        await asyncio.to_thread(first.wait, 5)
    killed = time.monotonic()
    assert await status() == JobStatus.STARTED  # else this proves nothing
    with worker_process(pool.settings):  # as a supervisor restarts it
        [record] = await ended(pool.settings, [job_id], 60)
    print(f"job {record.get_status()} {time.monotonic() - killed:.1f} s after the kill")
    assert record.get_status(refresh=False) == JobStatus.FINISHED
    assert record.retries_left == jobs.RETRIES - 1


async def test_pool_worker_runs_a_forecast_on_its_tenant_s_database(
    pool: Pool,
) -> None:
    """Forecasting jobs share the queues: beta's forecast is stored in beta's
    database only (acme's has the same sensor, and no forecast)."""
    pool.tenants_file.write_text(tenants_yaml("acme", "beta"))
    response = await pool.client.post(
        f"/api/v3_0/sensors/{pool.site.price}/forecasts/trigger",
        json={
            "start": "2026-03-20T00:00:00+00:00",
            "duration": "P1D",
            "prior": "2027-01-01T00:00:00+00:00",  # after the prices were posted
            "config": {"train-period": "P13D"},
        },
        headers=as_tenant("beta", pool.world.member),
    )
    answer = await response.json()
    assert response.status == 202, answer
    with worker_process(pool.settings):
        [record] = await ended(pool.settings, [answer["job"]], 90)
    assert record.get_status(refresh=False) == JobStatus.FINISHED, record.meta
    result: Any = record.return_value()
    stored = [
        await beliefs_of(database(pool, tenant), pool.site.price, result["source_id"])
        for tenant in ("beta", "acme")
    ]
    assert stored == [result["num-beliefs"], 0]


@pytest.mark.parametrize(
    ("queue", "tenant"),
    [
        ("flexhost:acme:scheduling", "acme"),
        ("flexhost:xn--caf-dma:scheduling", "xn--caf-dma"),
        ("flexhost:acme:forecasting", None),
        ("other:acme:scheduling", None),
        ("flexhost:a:b:scheduling", None),
        ("flexhost::scheduling", None),
    ],
)
def test_a_job_s_tenant_is_its_queue_s(queue: str, tenant: str | None) -> None:
    settings = Settings(
        name="", database_url="sqlite+aiosqlite:///x", secret=Secret("")
    )
    assert queue_tenant(settings, queue) == tenant
