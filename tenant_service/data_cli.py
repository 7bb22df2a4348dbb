"""`flexhost admin import-data` / `export-data`: sensor data from and to CSV files."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Final, TextIO

from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.beliefs import (
    SeriesError,
    to_beliefs,
    to_sensor_resolution,
)
from tenant_service.store import audit
from tenant_service.store import beliefs as belief_store
from tenant_service.store import sources as source_store
from tenant_service.store.db import create_engine
from tenant_service.store.sensors import SensorRecord, get_sensor
from tenant_service.timing import (
    TimingError,
    from_epoch_ms,
    parse_datetime,
    parse_resolution,
    to_epoch_ms,
)
from tenant_service.units import UnitError, conversion

DEFAULT_SOURCE: Final = "flexhost import"
SOURCE_TYPE: Final = "CLI script"
BATCH: Final = 5_000


class DataCliError(Exception):
    """A problem with the data, the file or the sensor (reported, exit 1)."""


def read_rows(path: str) -> list[tuple[int, float | None]]:
    """(event start ms, value) rows of a CSV with an event_start,value header."""
    rows: list[tuple[int, float | None]] = []
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"event_start", "value"} <= set(
                reader.fieldnames
            ):
                raise DataCliError(f"{path}: needs the columns event_start,value")
            for line, record in enumerate(reader, start=2):
                try:
                    start = to_epoch_ms(parse_datetime(record["event_start"] or ""))
                except TimingError as err:
                    raise DataCliError(f"{path}:{line}: event_start: {err}") from err
                text = (record["value"] or "").strip()
                try:
                    value = float(text) if text else None
                except ValueError as err:
                    raise DataCliError(f"{path}:{line}: value: not a number") from err
                if value is not None and value - value != 0.0:
                    raise DataCliError(f"{path}:{line}: value: not a finite number")
                rows.append((start, value))
    except OSError as err:
        raise DataCliError(f"{path}: {err.strerror}") from err
    return rows


def to_series(
    rows: list[tuple[int, float | None]], step: int, path: str
) -> tuple[int, list[float | None]]:
    """A contiguous series (start, values) at `step`; gaps become None."""
    rows = sorted(rows)
    start = rows[0][0]
    length = (rows[-1][0] - start) // step + 1
    values: list[float | None] = [None] * length
    seen: set[int] = set()
    for event_start, value in rows:
        offset = event_start - start
        if offset % step:
            raise DataCliError(
                f"{path}: {from_epoch_ms(event_start).isoformat()} is not on the "
                f"{step // 1000} s grid of the first row"
            )
        if offset in seen:
            raise DataCliError(
                f"{path}: {from_epoch_ms(event_start).isoformat()} appears twice"
            )
        seen.add(offset)
        values[offset // step] = value
    return start, values


def _progress(out: TextIO, done: int, total: int) -> None:
    percent = 100 * done // total if total else 100
    out.write(f"\rimporting: {done}/{total} beliefs ({percent}%)")
    out.flush()


async def import_data(
    url: str,
    *,
    sensor_id: int,
    path: str,
    unit: str | None,
    resolution: str | None,
    source_name: str,
    progress: TextIO | None = None,
) -> int:
    """Validate and store a CSV's data in one transaction; the number stored."""
    rows = read_rows(path)
    out = sys.stderr if progress is None else progress
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            sensor = await _sensor(conn, sensor_id)
            if not rows:
                return 0
            sensor_step = sensor.event_resolution_ms
            try:
                step = parse_resolution(resolution) if resolution else sensor_step
            except TimingError as err:
                raise DataCliError(f"--resolution: {err}") from err
            if step <= 0:
                raise DataCliError("--resolution is required for instantaneous sensors")
            start, values = to_series(rows, step, path)
            try:
                factor, offset = conversion(unit or sensor.unit, sensor.unit, step)
                events = to_sensor_resolution(
                    start, step * len(values), values, sensor_step
                )
            except (SeriesError, UnitError) as err:
                raise DataCliError(str(err)) from err
            events = [(s, v * factor + offset) for s, v in events]
            beliefs = to_beliefs(
                events,
                sensor_step,
                prior_ms=None,
                horizon_ms=None,
                now_ms=int(time.time() * 1000),
            )
            source_id = await source_store.named_source_id(
                conn, source_name, SOURCE_TYPE
            )
            stored = 0
            _progress(out, 0, len(beliefs))
            for i in range(0, len(beliefs), BATCH):
                try:
                    stored += await belief_store.save_beliefs(
                        conn, sensor.id, source_id, beliefs[i : i + BATCH]
                    )
                except belief_store.ReplacementError as err:
                    raise DataCliError(
                        "some rows would replace stored beliefs with other values"
                    ) from err
                _progress(out, min(i + BATCH, len(beliefs)), len(beliefs))
            out.write("\n")
            await audit.record_asset(
                conn,
                audit.CLI,
                sensor.generic_asset_id,
                f"Data from {Path(path).name} imported to sensor '{sensor.name}': "
                f"{sensor.id} via CLI ({stored} values stored).",
            )
            return stored
    finally:
        await engine.dispose()


async def _sensor(conn: AsyncConnection, sensor_id: int) -> SensorRecord:
    sensor = await get_sensor(conn, sensor_id)
    if sensor is None:
        raise DataCliError(f"no sensor {sensor_id}")
    return sensor


async def export_data(
    url: str,
    *,
    sensor_id: int,
    start: str | None,
    end: str | None,
    unit: str | None,
) -> list[tuple[int, float]]:
    """The latest belief per event (in `unit`) as (event start ms, value) rows."""
    try:
        start_ms = to_epoch_ms(parse_datetime(start)) if start else None
        end_ms = to_epoch_ms(parse_datetime(end)) if end else None
    except TimingError as err:
        raise DataCliError(f"--start/--end: {err}") from err
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            sensor = await _sensor(conn, sensor_id)
            try:
                factor, offset = conversion(
                    sensor.unit, unit or sensor.unit, sensor.event_resolution_ms
                )
            except UnitError as err:
                raise DataCliError(str(err)) from err
            starts, values = await belief_store.latest_values(
                conn,
                sensor.id,
                start_ms if start_ms is not None else -(2**62),
                end_ms if end_ms is not None else 2**62,
                sensor.event_resolution_ms,
                belief_store.ReadFilter(),
            )
    finally:
        await engine.dispose()
    return [
        (event_start, value * factor + offset)
        for event_start, value in zip(starts, values, strict=True)
    ]


def write_csv(rows: list[tuple[int, float]], out: TextIO) -> None:
    """Rows as CSV with an event_start,value header (UTC ISO 8601 starts)."""
    writer = csv.writer(out)
    writer.writerow(["event_start", "value"])
    for event_start, value in rows:
        writer.writerow([from_epoch_ms(event_start).isoformat(), repr(value)])
