"""Scheduling faults with real Redis and real worker processes: kills and failures."""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from rq import Worker
from rq.job import Job

from contract.config import ConfigError
from tenant_service.app import create_app
from tenant_service.config import Settings, load_settings
from tenant_service.scheduling import jobs
from tenant_service.scheduling.worker import make_worker
from tests.helpers.schedules import (
    DAY,
    STEPS,
    batteries_trigger,
    battery,
    make_batteries,
    make_site,
    trigger,
    wait_for_job,
)
from tests.helpers.wait import until
from tests.tenant_service.conftest import (
    SECRET,
    TENANT,
    Client,
    ClientFactory,
    World,
    identity,
)

# Short, so an abandoned job's heartbeat lapses soon; the solver gets 5 s less
# (at least 1 s). The job below takes about 1 s (0.7 s of it solving) on a quiet
# machine; under the full suite on 2 cores its solve once took over 3 s, so the
# solver gets 7 s (10 times its quiet need).
JOB_TIMEOUT: Final = 12
# An abandoned job's heartbeat lapses this long past the job timeout, and workers
# sweep for such jobs this often (shorter than the defaults, 10 s and 15 s, which
# would make a test of recovery wait half a minute).
HEARTBEAT_GRACE: Final = 2
SWEEP_INTERVAL: Final = 3
# The worst case: the heartbeat lapses (timeout + grace after the job started), the
# next sweep retries the job, a worker runs it; plus slack for starting.
RECOVERY_BOUND: Final = JOB_TIMEOUT + HEARTBEAT_GRACE + SWEEP_INTERVAL + 15


@pytest.fixture
def fault_settings(settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    """The backend's settings with a short job timeout and no trigger limit."""
    return dataclasses.replace(
        settings,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        job_timeout=JOB_TIMEOUT,
        job_heartbeat_grace=HEARTBEAT_GRACE,
        job_sweep_interval=SWEEP_INTERVAL,
        trigger_period=0,
    )


@pytest.fixture
def workers(world: World) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes started by the test, stopped afterwards."""
    del world  # the database is migrated and seeded first
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_worker(
    procs: list[subprocess.Popen[bytes]], settings: Settings
) -> subprocess.Popen[bytes]:
    """A real scheduling worker process on the tenant's queue."""
    env = {
        **os.environ,
        "TENANT_NAME": TENANT,
        "TENANT_SECRET": SECRET,
        "TENANT_DATABASE_URL": settings.database_url,
        "TENANT_REDIS_URL": settings.redis_url or "",
        "TENANT_REDIS_PREFIX": settings.redis_prefix,
        "TENANT_JOB_TIMEOUT": str(settings.job_timeout),
        "TENANT_JOB_HEARTBEAT_GRACE": str(settings.job_heartbeat_grace),
        "TENANT_JOB_SWEEP_INTERVAL": str(settings.job_sweep_interval),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenant_service.scheduling.worker"], env=env
    )
    procs.append(proc)
    return proc


async def job_status(client: Client, user: int, job: str) -> str:
    response = await client.get(f"/api/v3_0/jobs/{job}", headers=identity(user))
    body = await response.json()
    assert response.status in (200, 202, 422), body
    status: str = body["status"]
    return status


async def wait_for_status(
    client: Client, user: int, job: str, wanted: set[str], seconds: float
) -> str:
    """Poll the job until its status is one of `wanted` or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        status = await job_status(client, user, job)
        if status in wanted or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


def job_and_worker_counts(
    settings: Settings, job_id: str
) -> tuple[int | None, list[tuple[int, int]]]:
    """The job's retries left and each worker's (failed, successful) job counts."""
    connection = jobs.connect(settings)
    try:
        job = jobs.fetch(connection, settings, job_id)
        assert job is not None
        queue = jobs.queue(connection, settings)
        counts = [
            (worker.failed_job_count, worker.successful_job_count)
            for worker in Worker.all(queue=queue)
        ]
        return job.retries_left, counts
    finally:
        connection.close()


def worker_states(settings: Settings) -> list[str]:
    """The state each worker of the tenant's queue last registered."""
    connection = jobs.connect(settings)
    try:
        queue = jobs.queue(connection, settings)
        return [worker.get_state() for worker in Worker.all(queue=queue)]
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_worker_killed_mid_job_does_not_lose_the_job(
    aiohttp_client: ClientFactory,
    fault_settings: Settings,
    world: World,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    client = await aiohttp_client(create_app(fault_settings))
    site, power = await make_batteries(client, world)
    first = start_worker(workers, fault_settings)
    response = await client.post(
        f"/api/v3_0/assets/{site.asset}/schedules/trigger",
        json=batteries_trigger(site, power),
        headers=identity(world.member),
    )
    answer = await response.json()
    assert response.status == 202, answer
    job = answer["job"]
    status = await wait_for_status(
        client, world.member, job, {"STARTED", "FINISHED", "FAILED"}, 30
    )
    assert status == "STARTED", status

    first.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.wait, 5)
    killed = time.monotonic()
    # Else the job finished before the kill and this test proves nothing.
    assert await job_status(client, world.member, job) == "STARTED"
    start_worker(workers, fault_settings)  # as a supervisor restarts it
    status = await wait_for_status(
        client, world.member, job, {"FINISHED", "FAILED"}, RECOVERY_BOUND
    )
    recovery = time.monotonic() - killed
    print(f"job {status} {recovery:.1f} s after its worker was killed")
    assert status == "FINISHED", f"{status} {recovery:.1f} s after the kill"

    retries_left, _counts = await asyncio.to_thread(
        job_and_worker_counts, fault_settings, job
    )
    assert retries_left == jobs.RETRIES - 1  # one retry: the abandoned run
    for sensor in (power[0], power[-1]):
        response = await client.get(
            f"/api/v3_0/sensors/{sensor}/schedules/{job}",
            params={"duration": f"PT{STEPS // 4}H"},
            headers=identity(world.member),
        )
        schedule = await response.json()
        assert response.status == 200, schedule
        assert schedule["start"] == DAY
        assert len(schedule["values"]) == STEPS
        assert None not in schedule["values"]


async def test_job_failing_for_its_inputs_is_not_retried(
    aiohttp_client: ClientFactory,
    fault_settings: Settings,
    world: World,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    client = await aiohttp_client(create_app(fault_settings))
    site = await make_site(client, world)
    start_worker(workers, fault_settings)
    body = {**battery(site), "start": "2026-05-01T00:00:00+00:00"}  # no prices then
    status, answer = await trigger(client, world.member, site.power, body)
    assert status == 202, answer
    status, state = await wait_for_job(client, world.member, answer["job"])
    assert status == 422, state
    assert state["status"] == "FAILED"
    assert state["message"].startswith("Scheduling job failed with SchedulingError: ")
    retries_left, counts = await asyncio.to_thread(
        job_and_worker_counts, fault_settings, answer["job"]
    )
    assert retries_left == 0
    assert counts == [(1, 0)]  # one worker, one attempt


def test_worker_stop_does_not_wait_for_a_pending_blocking_pop(
    fault_settings: Settings,
) -> None:
    """A SIGTERM between sending BLPOP and reading it leaves the pop pending on a
    pooled connection; the worker's teardown must not queue behind it."""
    worker = make_worker(fault_settings)
    pool = worker.connection.connection_pool
    never = f"{fault_settings.redis_prefix}:never"
    try:
        worker.register_birth()  # type: ignore[no-untyped-call]  # RQ untyped
        conn = pool.get_connection()
        # blocks in Redis until `never` fills
        conn.send_command("BLPOP", never, 0)  # type: ignore[no-untyped-call]
        pool.release(conn)
        done = threading.Event()

        def stop() -> None:
            worker.teardown()
            done.set()

        threading.Thread(target=stop, daemon=True).start()
        assert done.wait(5), "the worker's teardown waited for the pending BLPOP"
        assert worker.connection.hget(worker.key, "death")  # unregistered
    finally:
        jobs.connect(fault_settings).lpush(never, "free")  # free a stuck pop
        pool.disconnect()


TGKILL: Final = {"x86_64": 234, "aarch64": 131}  # syscall numbers


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() not in TGKILL,
    reason="directs a signal at one thread with Linux's tgkill",
)
async def test_idle_worker_stops_at_once_when_another_thread_gets_the_sigterm(
    fault_settings: Settings, workers: list[subprocess.Popen[bytes]]
) -> None:
    """A process-wide SIGTERM may land on any thread (RQ's pub/sub listener, a
    database driver's); Python runs the handler only once the main thread runs
    again, so a worker waiting on an empty queue must not wait long."""
    proc = start_worker(workers, fault_settings)
    tasks = Path(f"/proc/{proc.pid}/task")

    def others() -> list[int]:
        return [int(t.name) for t in tasks.iterdir() if int(t.name) != proc.pid]

    await until(lambda: bool(others()), 20, "the worker's pub/sub thread")

    def idle() -> bool:
        return worker_states(fault_settings) == ["idle"]

    # idle: its main thread waits on the empty queue, RQ's handlers installed
    await until(lambda: asyncio.to_thread(idle), 20, "the worker waiting for jobs")
    await asyncio.sleep(0.2)
    libc = ctypes.CDLL(None, use_errno=True)
    tid = others()[0]
    assert libc.syscall(TGKILL[platform.machine()], proc.pid, tid, signal.SIGTERM) == 0
    started = time.monotonic()
    code = await asyncio.to_thread(proc.wait, 60)
    took = time.monotonic() - started
    assert code == 0
    # Its wait on the queue ends every DEQUEUE_WAIT (2 s); without that bound RQ's
    # BLPOP would hold the main thread for minutes. 30 s tells the two apart on a
    # loaded machine (5 s did not: 5.1 s seen at load average 9).
    print(f"stopped {took:.1f} s after the SIGTERM")
    assert took < 30, f"stopped {took:.1f} s after the SIGTERM"


def test_worker_stop_does_not_wait_for_its_command_listener(
    fault_settings: Settings,
) -> None:
    """RQ's command listener back in get_message after an unsubscribe would hold
    a stop for its 60 s wait."""
    worker = make_worker(fault_settings)
    try:
        worker.register_birth()  # type: ignore[no-untyped-call]  # RQ untyped
        worker.subscribe()  # type: ignore[no-untyped-call]
        pubsub = worker.pubsub
        assert pubsub is not None
        deadline = time.monotonic() + 5
        while not pubsub.subscribed and time.monotonic() < deadline:
            time.sleep(0.02)
        pubsub.unsubscribe()  # type: ignore[no-untyped-call]  # redis-py untyped
        while pubsub.subscribed and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # the listener is back in get_message, waiting
        done = threading.Event()

        def stop() -> None:
            worker.teardown()
            done.set()

        threading.Thread(target=stop, daemon=True).start()
        assert done.wait(5), "the worker's stop waited for its command listener"
    finally:
        worker.connection.connection_pool.disconnect()


def test_abandoned_job_settings() -> None:
    base = {"TENANT_NAME": TENANT, "TENANT_SECRET": SECRET}
    defaults = load_settings(base)
    assert (defaults.job_heartbeat_grace, defaults.job_sweep_interval) == (10, 15)
    given = load_settings(
        {**base, "TENANT_JOB_HEARTBEAT_GRACE": "2", "TENANT_JOB_SWEEP_INTERVAL": "3"}
    )
    assert (given.job_heartbeat_grace, given.job_sweep_interval) == (2, 3)
    for name, value in (
        ("JOB_HEARTBEAT_GRACE", "0"),
        ("JOB_HEARTBEAT_GRACE", "soon"),
        ("JOB_SWEEP_INTERVAL", "0"),
        ("JOB_SWEEP_INTERVAL", "1.5"),
    ):
        with pytest.raises(ConfigError) as err:
            load_settings({**base, f"TENANT_{name}": value})
        assert any(p.startswith(f"TENANT_{name}:") for p in err.value.problems), value


def test_a_worker_takes_its_abandoned_job_settings(fault_settings: Settings) -> None:
    worker = make_worker(fault_settings)
    try:
        assert worker.maintenance_interval == SWEEP_INTERVAL
        job = Job.create(print, connection=worker.connection, timeout=JOB_TIMEOUT)
        assert worker.get_heartbeat_ttl(job) == JOB_TIMEOUT + HEARTBEAT_GRACE
    finally:
        worker.connection.close()
