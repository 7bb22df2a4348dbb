"""CSV upload of sensor data (`POST /sensors/<id>/data/upload`) on SQLite and
PostgreSQL. Expected answers and read-back values are FlexMeasures 1.0.1's, seen
side by side with the same files (where it answers 500, ours is a 422)."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Final

import pytest
from sqlalchemy import select

from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.store.db import create_engine
from tenant_service.store.tables import timed_beliefs
from tests.tenant_service.conftest import (
    FORBIDDEN,
    Client,
    ClientFactory,
    Sensors,
    World,
    count_beliefs,
    identity,
)

UPLOAD: Final = "/api/v3_0/sensors/{}/data/upload"
DAY: Final = "2026-02-01"
PROCESSED: Final = {"message": "Request has been processed.", "status": "PROCESSED"}
ALREADY: Final = {
    "message": "Some of the data has already been received and successfully processed.",
    "results": "PROCESSED",
    "status": "ALREADY_RECEIVED_AND_SUCCESSFULLY_PROCESSED",
}
CSV: Final = "text/csv"
Part = tuple[str, str | None, str | None, bytes]  # name, filename, type, content


def multipart(parts: list[Part]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = secrets.token_hex(8)
    out = b""
    for name, filename, content_type, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def csv_file(text: str, name: str = "d.csv", content_type: str = CSV) -> Part:
    return ("uploaded-files", name, content_type, text.encode())


def field(name: str, value: str) -> Part:
    return (name, None, None, value.encode())


def quarters(hour: int, values: tuple[Any, ...] = (1, 2, 3, 4)) -> str:
    """Rows of one hour of quarter-hourly values (UTC), with a header."""
    rows = "".join(
        f"{DAY}T{hour:02d}:{15 * i:02d}:00+00:00,{v}\n" for i, v in enumerate(values)
    )
    return "event_start,event_value\n" + rows


async def upload(
    client: Client, sensor: int, user: int, parts: list[Part]
) -> tuple[int, Any]:
    body, content_type = multipart(parts)
    response = await client.post(
        UPLOAD.format(sensor),
        data=body,
        headers={**identity(user), "Content-Type": content_type},
    )
    return response.status, await response.json()


async def values(
    client: Client, sensor: int, user: int, start: str, duration: str = "PT1H"
) -> list[float | None]:
    response = await client.get(
        f"/api/v3_0/sensors/{sensor}/data",
        params={"start": start, "duration": duration, "unit": "kW"},
        headers=identity(user),
    )
    answer = await response.json()
    assert response.status == 200, answer
    result: list[float | None] = answer["values"]
    return result


def refused(errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": {"combined_sensor_data_upload": errors},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_sensor_upload_stores_and_reads_back(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    parts = [
        csv_file(quarters(0, (1, 2, 3, ""))),
        field("belief-time-measured-instantly", "False"),
    ]
    assert await upload(client, data_sensors.power, world.member, parts) == (
        200,
        PROCESSED,
    )
    assert await upload(client, data_sensors.power, world.member, parts) == (
        200,
        ALREADY,
    )
    start = f"{DAY}T00:00:00+00:00"
    assert await values(client, data_sensors.power, world.member, start) == [
        1.0,
        2.0,
        3.0,
        None,
    ]
    # One changed value, the others unchanged: "already received", as FlexMeasures
    parts = [csv_file(quarters(0, (9, 2, 3, "")))]
    assert await upload(client, data_sensors.power, world.member, parts) == (
        200,
        ALREADY,
    )
    assert (await values(client, data_sensors.power, world.member, start))[0] == 9.0


@pytest.mark.parametrize(
    ("rows", "unit", "expected"),
    [
        # (first hour of the file, unit field, values read back in kW over PT1H)
        (quarters(1), "MW", [1000.0, 2000.0, 3000.0, 4000.0]),
        (quarters(1), "kWh", [4.0, 8.0, 12.0, 16.0]),  # kWh per 15 min
        (
            "a,b\n"
            + "".join(f"{DAY}T01:{m:02d}:00+00:00,{m}\n" for m in range(0, 60, 5)),
            None,
            [5.0, 20.0, 35.0, 50.0],  # 5-minute data averaged per quarter
        ),
        (
            "a,b\n"
            + "".join(f"{DAY}T01:{m:02d}:00+00:00,{m}\n" for m in range(0, 60, 5)),
            "kWh",
            [60.0, 240.0, 420.0, 600.0],
        ),
        (
            f"a,b\n{DAY}T01:00:00+00:00,6\n{DAY}T02:00:00+00:00,7\n",
            "kWh",
            [6.0, 6.0, 6.0, 6.0],  # hourly energy repeated as power
        ),
        (
            # naive times are the sensor's (Europe/Amsterdam): 02:00 there is 01:00 UTC
            f"a,b\n{DAY}T02:00:00,1\n{DAY}T02:15:00,2\n{DAY}T02:30:00,3\n",
            None,
            [1.0, 2.0, 3.0, None],
        ),
        (
            # unaligned starts are floored to the data's frequency
            f"a,b\n{DAY}T01:07:00+00:00,1\n{DAY}T01:22:00+00:00,2\n"
            f"{DAY}T01:37:00+00:00,3\n",
            None,
            [1.0, 2.0, 3.0, None],
        ),
    ],
)
async def test_sensor_upload_converts_and_resamples(
    client: Client,
    world: World,
    data_sensors: Sensors,
    rows: str,
    unit: str | None,
    expected: list[float | None],
) -> None:
    parts = [csv_file(rows)] + ([field("unit", unit)] if unit else [])
    status, answer = await upload(client, data_sensors.power, world.member, parts)
    assert (status, answer) == (200, PROCESSED)
    start = f"{DAY}T01:00:00+00:00"
    assert await values(client, data_sensors.power, world.member, start) == expected


async def belief_horizons(database_url: str) -> set[int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(timed_beliefs.c.belief_horizon))
            return {int(row[0]) for row in rows}
    finally:
        await engine.dispose()


async def test_sensor_upload_belief_times(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    """Three columns: the file's belief times (FlexMeasures overwrites them)."""
    rows = "".join(
        f"{DAY}T13:{m:02d}:00+00:00,{DAY}T12:00:00+00:00,{m}\n" for m in (0, 15, 30, 45)
    )
    parts = [csv_file("event_start,belief_time,event_value\n" + rows)]
    assert (await upload(client, data_sensors.power, world.member, parts))[0] == 200
    quarter = 15 * 60_000
    assert await belief_horizons(database_url) == {
        3_600_000 + m * 60_000 + quarter for m in (0, 15, 30, 45)
    }
    status, answer = await upload(
        client,
        data_sensors.power,
        world.member,
        [*parts, field("belief-time-measured-instantly", "True")],
    )
    assert status == 422
    assert (
        "belief-time-measured-instantly"
        in answer["message"]["combined_sensor_data_upload"]["uploaded-files"]["0"][0]
    )


async def test_sensor_upload_measured_instantly(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    parts = [csv_file(quarters(3)), field("belief-time-measured-instantly", "on")]
    assert (await upload(client, data_sensors.power, world.member, parts))[0] == 200
    assert await belief_horizons(database_url) == {0}


async def test_sensor_upload_refuses_rows_and_stores_nothing(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    good = csv_file(quarters(5))
    bad = csv_file(
        f"a,b\n{DAY}T06:00:00+00:00,x\nnot-a-date,1\n{DAY}T06:30:00+00:00,inf\n",
        name="e.csv",
    )
    status, answer = await upload(client, data_sensors.power, world.member, [good, bad])
    prefix = "Invalid content in file: e.csv. Failed with: "
    assert (status, answer) == (
        422,
        refused(
            {
                "uploaded-files": {
                    "1": [
                        prefix + "Line 2: 'x' is not a number.",
                        prefix + "Line 3: 'not-a-date' is not an ISO 8601 datetime.",
                        prefix + "Line 4: 'inf' is not a number.",
                    ]
                }
            }
        ),
    )
    assert await count_beliefs(database_url) == 0


@pytest.mark.parametrize(
    ("parts", "errors"),
    [
        (
            [csv_file("a,b\n", name="d.txt", content_type="text/plain")],
            {
                "uploaded-files": {
                    "0": [
                        "Invalid filename: d.txt. Only CSV or Excel files are accepted."
                    ]
                }
            },
        ),
        (
            [csv_file("a,b\n", content_type="application/json")],
            {
                "uploaded-files": {
                    "0": [
                        "Invalid content type: application/json. Only the following "
                        "content types are accepted: {'application/vnd.openxmlformats-"
                        "officedocument.spreadsheetml.sheet', 'text/csv', 'text/x-csv', "
                        "'text/plain', 'application/vnd.ms-excel'}."
                    ]
                }
            },
        ),
        (
            [csv_file("a,b\n", name="")],
            {"uploaded-files": {"0": ["Filename is missing."]}},
        ),
        (
            [csv_file("a,b\n"), field("belief-time-measured-instantly", "maybe")],
            {"belief-time-measured-instantly": ["Not a valid boolean."]},
        ),
        (
            [field("belief-time-measured-instantly", "False")],
            {"uploaded-files": ["Missing data for required field."]},
        ),
        (
            [("file", "d.csv", CSV, b"a,b\n"), csv_file("a,b\n")],
            {"file": ["Unknown field."]},
        ),
        (
            [csv_file(quarters(0)), field("unit", "EUR")],
            {"_schema": ["Provided unit 'EUR' is not convertible to sensor unit 'kW'"]},
        ),
        (
            [csv_file("")],
            {
                "uploaded-files": {
                    "0": [
                        "Invalid content in file: d.csv. Failed with: No columns to "
                        "parse from file"
                    ]
                }
            },
        ),
    ],
)
async def test_sensor_upload_form_errors(
    client: Client,
    world: World,
    data_sensors: Sensors,
    parts: list[Part],
    errors: dict[str, Any],
) -> None:
    assert await upload(client, data_sensors.power, world.member, parts) == (
        422,
        refused(errors),
    )


async def test_sensor_upload_sensor_and_access(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    parts = [csv_file(quarters(0))]
    assert await upload(client, 999999, world.member, parts) == (
        422,
        refused({"id": ["No sensor found with ID 999999."]}),
    )
    assert await upload(client, data_sensors.foreign, world.member, parts) == (
        403,
        FORBIDDEN,
    )
    response = await client.post(
        "/api/v3_0/sensors/abc/data/upload", data=b"", headers=identity(world.member)
    )
    assert (response.status, await response.json()) == (
        422,
        refused({"id": ["Not a valid integer."]}),
    )


async def test_sensor_upload_row_bound(
    aiohttp_client: ClientFactory,
    settings: Settings,
    world: World,
    data_sensors: Sensors,
    database_url: str,
) -> None:
    limited = dataclasses.replace(settings, max_beliefs_per_request=4)
    client = await aiohttp_client(create_app(limited))
    assert (
        await upload(client, data_sensors.power, world.member, [csv_file(quarters(0))])
    )[0] == 200
    # two hourly values are eight quarter-hours: refused before any row is built
    hourly = f"a,b\n{DAY}T01:00:00+00:00,1\n{DAY}T02:00:00+00:00,2\n"
    status, answer = await upload(
        client, data_sensors.power, world.member, [csv_file(hourly)]
    )
    assert status == 422
    assert answer["message"]["combined_sensor_data_upload"]["_schema"] == [
        "This request would store 8 values at the sensor's resolution of 0:15:00; "
        "this server stores at most 4 values per request. Send the data in smaller "
        "parts."
    ]
    assert await count_beliefs(database_url) == 4


def padded_body(size: int) -> tuple[bytes, str]:
    """A valid upload body of exactly `size` bytes (padding in the header row)."""
    rows = quarters(0).split("\n", 1)[1]
    base, _ = multipart([csv_file("event_start,v\n" + rows)])
    pad = size - len(base)
    assert pad >= 0
    return multipart([csv_file("event_start" + " " * pad + ",v\n" + rows)])


@pytest.mark.parametrize("chunked", [False, True])
async def test_sensor_upload_body_limit(
    aiohttp_client: ClientFactory,
    settings: Settings,
    world: World,
    data_sensors: Sensors,
    chunked: bool,
) -> None:
    """max_data_bytes counts the whole multipart body, as the gateway does."""
    limit = 4096
    client = await aiohttp_client(
        create_app(dataclasses.replace(settings, max_data_bytes=limit))
    )
    for size, expected in ((limit, 200), (limit + 1, 413)):
        body, content_type = padded_body(size)
        assert len(body) == size

        async def chunks(data: bytes = body) -> Any:
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        response = await client.post(
            UPLOAD.format(data_sensors.power),
            data=chunks() if chunked else body,
            headers={**identity(world.member), "Content-Type": content_type},
        )
        answer = await response.json()
        assert response.status == expected, answer
        if expected == 413:
            assert answer == {
                "message": f"Request body exceeds the configured limit of {limit} "
                "bytes.",
                "result": "Rejected",
                "status": "PAYLOAD_TOO_LARGE",
            }


async def test_sensor_upload_unreadable_csv(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    """A cell beyond the csv module's field limit, or bytes that are no UTF-8."""
    huge = csv_file("a,b\n" + "x" * 200_000 + ",1\n")
    status, answer = await upload(client, data_sensors.power, world.member, [huge])
    assert status == 422
    [message] = answer["message"]["combined_sensor_data_upload"]["uploaded-files"]["0"]
    assert message.startswith(
        "Invalid content in file: d.csv. Failed with: Line 2: field larger than"
    )
    latin = (
        "uploaded-files",
        "d.csv",
        CSV,
        "a,b\n2026-02-01T00:00:00Z,é\n".encode("latin-1"),
    )
    status, answer = await upload(client, data_sensors.power, world.member, [latin])
    assert (status, answer) == (
        422,
        refused(
            {
                "uploaded-files": {
                    "0": [
                        "Invalid content in file: d.csv. Failed with: Not UTF-8 text "
                        "(byte 26)."
                    ]
                }
            }
        ),
    )


async def test_sensor_upload_files_disagree(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    first = csv_file(quarters(0), content_type="text/plain")
    second = csv_file(quarters(0, (1, 2, 3, 5)), name="e.csv")
    status, answer = await upload(
        client, data_sensors.power, world.member, [first, second]
    )
    assert (status, answer) == (
        422,
        refused(
            {
                "uploaded-files": {
                    "1": [
                        "Invalid content in file: e.csv. Failed with: The event "
                        f"starting {DAY}T00:45:00+00:00 has another value in file 0."
                    ]
                }
            }
        ),
    )
    assert await count_beliefs(database_url) == 0


async def test_sensor_upload_instantaneous_sensor_keeps_the_times(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    """An instantaneous sensor (°C) stores each row at its own time, unresampled."""
    rows = f"t,°C\n{DAY}T00:00:00+00:00,20.5\n{DAY}T00:07:00+00:00,21\n"
    assert await upload(
        client, data_sensors.instant, world.member, [csv_file(rows)]
    ) == (200, PROCESSED)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            stored = sorted(
                (int(start) % 3_600_000, value)
                for start, value in await conn.execute(
                    select(timed_beliefs.c.event_start, timed_beliefs.c.event_value)
                )
            )
    finally:
        await engine.dispose()
    assert stored == [(0, 20.5), (7 * 60_000, 21.0)]
