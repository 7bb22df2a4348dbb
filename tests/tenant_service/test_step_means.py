"""Reads coarser than the data are averaged in the database (store.beliefs.step_means):
the same values as reading every event and averaging in Python."""

from __future__ import annotations

import random

from sqlalchemy import insert

from tenant_service.beliefs import reindex_columns
from tenant_service.store.beliefs import ReadFilter, latest_values, step_means
from tenant_service.store.db import create_engine
from tenant_service.store.tables import data_sources, timed_beliefs
from tests.tenant_service.conftest import HOUR, QUARTER, Sensors, World

START = 1_767_225_600_000  # 2026-01-01T00:00Z


async def test_step_means_equal_python_means_with_sources_horizons_and_gaps(
    database_url: str, world: World, data_sensors: Sensors
) -> None:
    rng = random.Random(13)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            sources = [
                (
                    await conn.execute(
                        insert(data_sources)
                        .values(name=name, type=kind, key=f"{name}|means")
                        .returning(data_sources.c.id)
                    )
                ).scalar_one()
                for name, kind in (("meter", "user"), ("model", "forecaster"))
            ]
            rows = []
            for i in range(4 * 96):
                if rng.random() < 0.1:
                    continue  # a gap
                for source in sources:
                    for horizon in (0, HOUR):  # two beliefs: the latest counts
                        rows.append(
                            {
                                "sensor_id": data_sensors.power,
                                "event_start": START + i * QUARTER,
                                "source_id": source,
                                "belief_horizon": horizon,
                                "cumulative_probability": 0.5,
                                "event_value": round(rng.uniform(-50, 50), 3),
                            }
                        )
            await conn.execute(insert(timed_beliefs), rows)
            for read in (
                ReadFilter(),
                ReadFilter(source_id=sources[0]),
                ReadFilter(source_id=sources[1]),
            ):
                for step in (HOUR, 6 * HOUR, 24 * HOUR):
                    start, duration = START + QUARTER, 3 * 24 * HOUR
                    end = start + duration
                    starts, values = await latest_values(
                        conn, data_sensors.power, start, end, QUARTER, read
                    )
                    expected = reindex_columns(starts, values, start, duration, step)
                    steps, means = await step_means(
                        conn, data_sensors.power, start, end, QUARTER, read, step
                    )
                    got: list[float | None] = [None] * len(expected)
                    for index, mean in zip(steps, means, strict=True):
                        got[index] = mean
                    assert len(got) == len(expected)
                    for a, b in zip(got, expected, strict=True):
                        assert (a is None) == (b is None)
                        if a is not None and b is not None:
                            assert abs(a - b) < 1e-9
            await conn.rollback()
    finally:
        await engine.dispose()
