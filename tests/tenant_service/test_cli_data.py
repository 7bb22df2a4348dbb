"""`flexhost admin import-data` / `export-data`: a CSV round trip."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest
from sqlalchemy import select

from tenant_service.cli import main
from tenant_service.store.db import create_engine
from tenant_service.store.tables import asset_audit_log
from tests.tenant_service.conftest import Sensors, World, count_beliefs


def write(path: Path, rows: list[tuple[str, str]]) -> str:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["event_start", "value"])
        writer.writerows(rows)
    return str(path)


async def asset_events(url: str) -> list[str]:
    """The asset audit log's events (#12)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(asset_audit_log.c.event).order_by(asset_audit_log.c.id)
            return list((await conn.execute(query)).scalars())
    finally:
        await engine.dispose()


async def run(*args: str) -> int:
    return await asyncio.to_thread(main, list(args), {})


async def test_cli_data_round_trip(
    tmp_path: Path,
    database_url: str,
    world: World,
    data_sensors: Sensors,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = ("--database-url", database_url)
    rows = [
        (f"2026-01-01T{h:02d}:{m:02d}:00+00:00", str(h + m / 60))
        for h in range(24)
        for m in (0, 15, 30, 45)
    ]
    source = write(tmp_path / "in.csv", rows)
    sensor = str(data_sensors.power)
    assert await run(*url, "import-data", "--sensor", sensor, "--file", source) == 0
    captured = capsys.readouterr()
    assert "stored 96 beliefs" in captured.out
    assert "\r" in captured.err
    assert "96/96" in captured.err
    # identical again: nothing new
    assert await run(*url, "import-data", "--sensor", sensor, "--file", source) == 0
    assert "stored 0 beliefs" in capsys.readouterr().out
    assert await asset_events(database_url) == [
        f"Data from in.csv imported to sensor 'power': {sensor} via CLI "
        f"({n} values stored)."
        for n in (96, 0)
    ]
    out = tmp_path / "out.csv"
    assert await run(*url, "export-data", "--sensor", sensor, "--file", str(out)) == 0
    assert "exported 96 values" in capsys.readouterr().out
    with out.open(newline="") as handle:
        exported = list(csv.reader(handle))
    assert exported[0] == ["event_start", "value"]
    assert [(s, float(v)) for s, v in exported[1:]] == [(s, float(v)) for s, v in rows]
    # in MW, one hour
    assert (
        await run(
            *url,
            "export-data",
            "--sensor",
            sensor,
            "--start",
            "2026-01-01T01:00:00+00:00",
            "--end",
            "2026-01-01T02:00:00+00:00",
            "--unit",
            "MW",
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    assert float(lines[1].split(",")[1]) == pytest.approx(0.001)


async def test_cli_data_hourly_kwh_and_errors(
    tmp_path: Path,
    database_url: str,
    world: World,
    data_sensors: Sensors,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = ("--database-url", database_url)
    sensor = str(data_sensors.power)
    hourly = write(
        tmp_path / "hourly.csv",
        [("2026-01-01T00:00:00+00:00", "4"), ("2026-01-01T01:00:00+00:00", "8")],
    )
    args = ("import-data", "--sensor", sensor, "--file", hourly)
    assert await run(*url, *args, "--resolution", "PT1H", "--unit", "kWh") == 0
    assert "stored 8 beliefs" in capsys.readouterr().out
    bad = [
        [("2026-01-01T00:00:00", "1")],  # naive
        [("2026-01-01T00:00:00+00:00", "x")],
        [("2026-01-01T00:00:00+00:00", "1"), ("2026-01-01T00:07:00+00:00", "2")],
    ]
    for number, rows in enumerate(bad):
        path = write(tmp_path / f"bad{number}.csv", rows)
        assert await run(*url, "import-data", "--sensor", sensor, "--file", path) == 1
        assert "error:" in capsys.readouterr().err
    path = write(tmp_path / "ok.csv", [("2026-01-03T00:00:00+00:00", "1")])
    assert (
        await run(
            *url, "import-data", "--sensor", sensor, "--file", path, "--unit", "°C"
        )
        == 1
    )
    assert await run(*url, "import-data", "--sensor", "9999", "--file", path) == 1
    assert await count_beliefs(database_url) == 8
