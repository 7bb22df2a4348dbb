"""The scheduling job function: compute and store one schedule.

RQ runs `run_schedule_job` in a worker process (worker.py), which sets RUNTIME: its
one event loop and the tenants it serves, and JOB_TENANT per job: the tenant whose
queue the job was taken from. A job works on that tenant's database only. It reads
the sensors and series its flex-model and flex-context name (as of its belief
time), solves the linear program and stores each device's power as beliefs of its
power sensor under the scheduler data source, in one transaction. Failures keep their
reason in the job's meta (`exception`), which the API reports as FlexMeasures does.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from rq import get_current_job
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenant_service.beliefs import Belief, reindex_columns
from tenant_service.scheduling import flexmodel, grid
from tenant_service.scheduling.problem import InfeasibleError
from tenant_service.scheduling.storage import solve
from tenant_service.store import beliefs as belief_store
from tenant_service.store import sources as source_store
from tenant_service.store.sensors import SensorRecord, get_sensor
from tenant_service.units import conversion

if TYPE_CHECKING:  # the directory's module serves requests too (aiohttp)
    from tenant_service.tenancy import Directory

logger = logging.getLogger(__name__)

SCHEDULER_NAME: Final = "flexhost"
SCHEDULER_MODEL: Final = "StorageScheduler"
SCHEDULER_VERSION: Final = "1"


@dataclass(frozen=True, slots=True)
class Runtime:
    """What jobs of this worker process share: its event loop, and the tenants it
    serves with their lazily opened engines (one tenant, or a pool's)."""

    loop: asyncio.AbstractEventLoop
    directory: Directory


RUNTIME: Final[contextvars.ContextVar[Runtime]] = contextvars.ContextVar("runtime")
# The tenant whose queue the running job was taken from, set by the worker around
# each job: it alone chooses the database (never the job's arguments).
JOB_TENANT: Final[contextvars.ContextVar[str]] = contextvars.ContextVar("job_tenant")

Compute = Callable[[AsyncEngine, dict[str, Any]], Awaitable[dict[str, Any]]]


class SchedulingError(Exception):
    """The schedule cannot be made; the message says why (shown to the API user)."""


def run_schedule_job(request: dict[str, Any]) -> dict[str, Any]:
    """The job function: compute and store one schedule (see the module docstring)."""
    try:
        return run_for_tenant(compute, request)
    except (SchedulingError, InfeasibleError) as err:
        # The same inputs would fail again: no retry.
        remember_failure(err, retry=False)
        raise
    except Exception as err:
        remember_failure(err, retry=True)
        raise


def run_for_tenant(work: Compute, request: dict[str, Any]) -> dict[str, Any]:
    """Run `work` on the engine of the job's tenant (JOB_TENANT) in the worker's
    event loop."""
    runtime = RUNTIME.get()
    return runtime.loop.run_until_complete(
        _with_engine(runtime.directory, JOB_TENANT.get(), work, request)
    )


async def _with_engine(
    directory: Directory, tenant: str, work: Compute, request: dict[str, Any]
) -> dict[str, Any]:
    state = directory.get(tenant)
    if state is None:  # removed from the pool since its job was taken: retried
        raise LookupError(f"tenant {tenant} is not served by this worker")
    async with directory.using(state) as used:
        return await work(used.engine, request)


def remember_failure(err: Exception, *, retry: bool) -> None:
    """Keep a failure's type and message in the job's meta (what the API reports)."""
    job = get_current_job()
    if job is None:
        return
    job.meta["exception"] = {"type": type(err).__name__, "message": str(err)}
    job.save_meta()  # type: ignore[no-untyped-call]  # untyped in rq
    if not retry:
        job.retries_left = 0


async def compute(engine: AsyncEngine, request: dict[str, Any]) -> dict[str, Any]:
    """Read inputs, solve, store the schedule; what the job result says."""
    started = time.perf_counter()
    start_ms, step_ms, steps = (
        int(request["start_ms"]),
        int(request["step_ms"]),
        int(request["steps"]),
    )
    belief_ms = int(request["belief_time_ms"])
    async with engine.connect() as conn:
        power_sensors = [int(s) for s in request["sensors"]]
        records: dict[int, SensorRecord] = {}

        async def load(sensor_ids: Iterable[int]) -> None:
            for sensor_id in sensor_ids:
                if sensor_id in records:
                    continue
                record = await get_sensor(conn, sensor_id)
                if record is None:
                    raise SchedulingError(f"Sensor {sensor_id} no longer exists.")
                records[sensor_id] = record

        await load(power_sensors)
        units = {i: records[i].unit for i in power_sensors}
        try:
            models = flexmodel.parse_flex_model(
                request["flex_model"], sensor_units=units
            )
            context = flexmodel.parse_flex_context(request["flex_context"])
        except flexmodel.FlexModelError as err:
            raise SchedulingError(str(err)) from err
        await load(sorted(flexmodel.sensor_ids(models, context)))

        async def fetch(
            sensor_id: int, first_ms: int, end_ms: int, grid_ms: int
        ) -> list[float | None]:
            record = records[sensor_id]
            read = belief_store.ReadFilter(prior_ms=belief_ms)
            return await read_series(conn, record, first_ms, end_ms, grid_ms, read)

        try:
            problem = await grid.build_problem(
                models,
                context,
                start_ms=start_ms,
                step_ms=step_ms,
                steps=steps,
                fetch=fetch,
                sensor_units={i: r.unit for i, r in records.items()},
                consumption_positive={
                    i for i, r in records.items() if _consumption_positive(r)
                },
            )
        except flexmodel.FlexModelError as err:
            raise SchedulingError(str(err)) from err
        built = time.perf_counter()
        try:
            solution = solve(problem, time_limit=float(request.get("time_limit", 60)))
        except ValueError as err:  # e.g. feed-in dearer than consumption
            raise SchedulingError(str(err)) from err
        solved = time.perf_counter()
        source_id = await source_store.named_source_id(
            conn, SCHEDULER_NAME, "scheduler", SCHEDULER_MODEL, SCHEDULER_VERSION
        )
        for sensor_id, power in zip(power_sensors, solution.power, strict=True):
            await _store(
                conn,
                records[sensor_id],
                source_id,
                power,
                start_ms=start_ms,
                step_ms=step_ms,
                belief_ms=belief_ms,
            )
        await conn.commit()
    stored = time.perf_counter()
    timings = {
        "read_ms": round((built - started) * 1000, 2),
        "solve_ms": round((solved - built) * 1000, 2),
        "store_ms": round((stored - solved) * 1000, 2),
    }
    logger.info("schedule computed", extra=timings)
    return {
        "source_id": source_id,
        "sensors": power_sensors,
        "start_ms": start_ms,
        "end_ms": start_ms + steps * step_ms,
        "belief_time_ms": belief_ms,
        "cost": solution.cost,
        "commitment_costs": solution.commitment_costs,
        **timings,
    }


async def _store(
    conn: AsyncConnection,
    sensor: SensorRecord,
    source_id: int,
    power_mw: Any,
    *,
    start_ms: int,
    step_ms: int,
    belief_ms: int,
) -> None:
    """One device's schedule as beliefs of its power sensor, in its unit and sign."""
    resolution = sensor.event_resolution_ms or step_ms
    factor, offset = conversion("MW", sensor.unit, resolution)
    # FlexMeasures stores power production-positive unless the sensor says otherwise.
    sign = 1.0 if _consumption_positive(sensor) else -1.0
    repeat = max(1, step_ms // resolution)
    values = np.repeat(np.asarray(power_mw, dtype=float), repeat)
    beliefs = [
        Belief(
            event_start=start_ms + index * resolution,
            belief_horizon=start_ms + (index + 1) * resolution - belief_ms,
            value=float(sign * value * factor + offset) + 0.0,
        )
        for index, value in enumerate(values.tolist())
    ]
    await belief_store.save_beliefs(
        conn, sensor.id, source_id, beliefs, allow_overwrite=True
    )


async def read_series(
    conn: AsyncConnection,
    sensor: SensorRecord,
    first_ms: int,
    end_ms: int,
    grid_ms: int,
    read: belief_store.ReadFilter,
) -> list[float | None]:
    """A sensor's latest values (as `read` selects) on a grid, in its own unit.

    A sensor coarser than the grid is read at its own resolution and each value
    repeated over the grid steps it covers (a price per hour holds for each quarter
    of it); a finer one is averaged per grid step.
    """
    resolution = sensor.event_resolution_ms
    if resolution <= grid_ms:
        starts, values = await belief_store.latest_values(
            conn, sensor.id, first_ms, end_ms, resolution, read, step_ms=grid_ms
        )
        return reindex_columns(starts, values, first_ms, end_ms - first_ms, grid_ms)
    low = first_ms - first_ms % resolution
    high = end_ms + (-end_ms % resolution)
    starts, values = await belief_store.latest_values(
        conn, sensor.id, low, high, resolution, read, step_ms=resolution
    )
    coarse = reindex_columns(starts, values, low, high - low, resolution)
    return [
        coarse[(moment - low) // resolution]
        for moment in range(first_ms, end_ms, grid_ms)
    ]


def _consumption_positive(sensor: SensorRecord) -> bool:
    """Whether the sensor's attributes say consumption is stored positive."""
    try:
        attributes = json.loads(sensor.attributes or "{}")
    except (ValueError, RecursionError):  # stored before bodies were depth-bounded
        return False
    return isinstance(attributes, dict) and bool(
        attributes.get("consumption_is_positive")
    )
