"""Sensor data endpoints on SQLite and PostgreSQL (checklist items 27-44)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import insert

from tenant_service import keys
from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.store.beliefs import ReadFilter, latest_values
from tenant_service.store.db import create_engine
from tenant_service.store.tables import (
    data_sources,
    timed_beliefs,
)
from tests.tenant_service.conftest import (
    HOUR,
    QUARTER,
    Client,
    ClientFactory,
    Sensors,
    World,
    count_beliefs,
    identity,
)

DATA = "/api/v3_0/sensors/{}/data"
START = "2026-01-01T00:00:00+00:00"


def body(
    values: Any = (1.0, 2.0, 3.0, 4.0),
    *,
    start: str = START,
    duration: str = "PT1H",
    unit: Any = "kW",
    **extra: Any,
) -> dict[str, Any]:
    """A POST body."""
    return {
        "values": list(values) if isinstance(values, tuple) else values,
        "start": start,
        "duration": duration,
        "unit": unit,
        **extra,
    }


async def post(
    client: Client, sensor: int, payload: Any, user: int, **kw: Any
) -> tuple[int, Any]:
    response = await client.post(
        DATA.format(sensor), json=payload, headers=identity(user), **kw
    )
    text = await response.text()
    return response.status, json.loads(text) if text else None


async def get(client: Client, sensor: int, user: int, **params: str) -> tuple[int, Any]:
    query = {"start": START, "duration": "PT1H", "unit": "kW", **params}
    response = await client.get(
        DATA.format(sensor), params=query, headers=identity(user)
    )
    return response.status, await response.json()


PROCESSED = {"message": "Request has been processed.", "status": "PROCESSED"}
ALREADY = {
    "message": "Some of the data has already been received and successfully processed.",
    "results": "PROCESSED",
    "status": "ALREADY_RECEIVED_AND_SUCCESSFULLY_PROCESSED",
}


async def test_sensor_data_post_and_read_back(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    assert await post(client, data_sensors.power, body(), world.member) == (
        200,
        PROCESSED,
    )
    status, answer = await get(client, data_sensors.power, world.member)
    assert status == 200
    assert answer == {
        "values": [1.0, 2.0, 3.0, 4.0],
        "start": START,
        "duration": "PT1H",
        "unit": "kW",
        "resolution": "PT15M",
        "message": "Request has been processed.",
        "status": "PROCESSED",
    }


async def test_sensor_data_client_formats(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    payload = body([float(i) for i in range(96)], duration="P1DT0H0M0S")
    assert (await post(client, data_sensors.power, payload, world.member))[0] == 200
    status, answer = await get(client, data_sensors.power, world.member, duration="P1D")
    assert status == 200
    assert answer["duration"] == "PT24H"
    assert answer["values"] == [float(i) for i in range(96)]


async def test_sensor_data_offset_start_is_echoed(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    payload = body(start="2026-01-01T01:00:00+01:00")
    assert (await post(client, data_sensors.power, payload, world.member))[0] == 200
    status, answer = await get(
        client, data_sensors.power, world.member, start="2026-01-01T01:00:00+01:00"
    )
    assert status == 200
    assert answer["start"] == "2026-01-01T01:00:00+01:00"
    assert answer["values"] == [1.0, 2.0, 3.0, 4.0]


async def test_sensor_data_identical_repost_and_replacement(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    prior = "2026-01-02T00:00:00+00:00"
    assert await post(client, data_sensors.power, body(prior=prior), world.member) == (
        200,
        PROCESSED,
    )
    assert await post(client, data_sensors.power, body(prior=prior), world.member) == (
        200,
        ALREADY,
    )
    status, answer = await post(
        client,
        data_sensors.power,
        body((1.0, 2.0, 3.0, 5.0), prior=prior),
        world.member,
    )
    assert status == 403
    assert answer["status"] == "INVALID_REPLACEMENT"
    assert answer["result"] == "Rejected"
    assert await count_beliefs(database_url) == 4
    # without a prior, a new value is a newer belief (as FlexMeasures 1.0.1 answers)
    assert await post(
        client, data_sensors.power, body((1.0, 2.0, 3.0, 5.0)), world.member
    ) == (200, PROCESSED)
    assert (await get(client, data_sensors.power, world.member))[1]["values"] == [
        1.0,
        2.0,
        3.0,
        5.0,
    ]


async def test_sensor_data_overwrite_allowed(
    aiohttp_client: ClientFactory,
    settings: Settings,
    world: World,
    data_sensors: Sensors,
) -> None:
    client = await aiohttp_client(
        create_app(dataclasses.replace(settings, allow_data_overwrite=True))
    )
    prior = "2026-01-02T00:00:00+00:00"
    await post(client, data_sensors.power, body(prior=prior), world.member)
    assert await post(
        client,
        data_sensors.power,
        body((9.0, 9.0, 9.0, 9.0), prior=prior),
        world.member,
    ) == (200, PROCESSED)
    assert (await get(client, data_sensors.power, world.member))[1]["values"] == [
        9.0
    ] * 4


async def test_sensor_data_upsampling_and_downsampling(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    assert (await post(client, data_sensors.power, body((1.0, 3.0)), world.member))[
        0
    ] == 200
    assert (await get(client, data_sensors.power, world.member))[1]["values"] == [
        1.0,
        1.0,
        3.0,
        3.0,
    ]
    eight = body(tuple(float(i) for i in range(8)), start="2026-01-01T01:00:00+00:00")
    assert (await post(client, data_sensors.power, eight, world.member))[0] == 200
    _status, answer = await get(
        client, data_sensors.power, world.member, start="2026-01-01T01:00:00+00:00"
    )
    assert answer["values"] == [0.5, 2.5, 4.5, 6.5]


async def test_sensor_data_incompatible_resolution(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    status, answer = await post(
        client, data_sensors.power, body(tuple(range(7))), world.member
    )
    assert status == 422
    (message,) = answer["message"]["combined_sensor_data_description"]["_schema"]
    assert "incompatible" in message
    assert message.startswith("Resolution of 0:08:34.285714 ")
    assert await count_beliefs(database_url) == 0


async def test_sensor_data_units(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    status, answer = await post(
        client, data_sensors.power, body(unit="°C"), world.member
    )
    assert status == 422
    assert answer["message"]["combined_sensor_data_description"] == {
        "_schema": ["Required unit for this sensor is kW, got incompatible unit: °C"]
    }
    assert (
        await post(
            client, data_sensors.power, body((0.001,) * 4, unit="MW"), world.member
        )
    )[0] == 200
    assert (await get(client, data_sensors.power, world.member))[1]["values"] == [
        1.0
    ] * 4
    kwh = body((1.0, 2.0, 3.0, 4.0), unit="kWh", start="2026-01-01T02:00:00+00:00")
    assert (await post(client, data_sensors.power, kwh, world.member))[0] == 200
    status, answer = await get(
        client, data_sensors.power, world.member, start="2026-01-01T02:00:00+00:00"
    )
    assert answer["values"] == [4.0, 8.0, 12.0, 16.0]
    status, answer = await get(
        client,
        data_sensors.power,
        world.member,
        start="2026-01-01T02:00:00+00:00",
        unit="MW",
    )
    assert answer["values"] == [0.004, 0.008, 0.012, 0.016]
    assert answer["unit"] == "MW"


async def test_sensor_data_prices(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    prices = body(tuple(float(i) for i in range(24)), duration="PT24H", unit="EUR/MWh")
    assert (await post(client, data_sensors.price, prices, world.member))[0] == 200
    status, answer = await get(
        client,
        data_sensors.price,
        world.member,
        duration="PT3H",
        unit="EUR/kWh",
    )
    assert status == 200
    assert answer["resolution"] == "PT1H"
    assert answer["values"] == [0.0, 0.001, 0.002]


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (body(start="2026-01-01T00:00:00"), "start", "Not a valid aware datetime."),
        (body(start="yesterday"), "start", "Not a valid datetime."),
        (body(duration="soon"), "duration", "Cannot parse soon as ISO8601 duration."),
        (body(duration="-PT1H"), "duration", None),
        (body(duration="PT0H"), "duration", None),
        (body(values="abc"), "values", "Not a valid number."),
        (body(values=[1, "2", 3, 4]), "values", "Not a valid number."),
        (body(values=[True, 2, 3, 4]), "values", "Not a valid number."),
        (body(unit=5), "unit", "Not a valid string."),
        (body(wrong=1), "wrong", "Unknown field."),
        ({"values": [1]}, "start", "Missing data for required field."),
        (body(values=[]), "values", None),
        (body(type="PostNonsense"), "type", None),
    ],
)
async def test_sensor_data_bad_input(
    client: Client,
    world: World,
    data_sensors: Sensors,
    database_url: str,
    payload: dict[str, Any],
    field: str,
    message: str | None,
) -> None:
    status, answer = await post(client, data_sensors.power, payload, world.member)
    assert status == 422
    assert answer["status"] == "UNPROCESSABLE_ENTITY"
    assert answer["result"] == "Rejected"
    errors = answer["message"]["combined_sensor_data_description"]
    assert field in errors
    if message is not None:
        assert errors[field] == [message]
    assert await count_beliefs(database_url) == 0


@pytest.mark.parametrize(
    "raw",
    [
        b'{"values": [NaN, 1, 2, 3], "start": "2026-01-01T00:00:00+00:00", '
        b'"duration": "PT1H", "unit": "kW"}',
        b'{"values": [Infinity, 1, 2, 3], "start": "2026-01-01T00:00:00+00:00", '
        b'"duration": "PT1H", "unit": "kW"}',
        b'{"values": [1e400, 1, 2, 3], "start": "2026-01-01T00:00:00+00:00", '
        b'"duration": "PT1H", "unit": "kW"}',
    ],
)
async def test_sensor_data_rejects_non_finite(
    client: Client, world: World, data_sensors: Sensors, raw: bytes
) -> None:
    response = await client.post(
        DATA.format(data_sensors.power),
        data=raw,
        headers={**identity(world.member), "Content-Type": "application/json"},
    )
    assert response.status == 422
    answer = await response.json()
    assert answer["message"]["combined_sensor_data_description"] == {
        "values": ["Not a valid number."]
    }


async def test_sensor_data_malformed_json_names_missing_fields(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    response = await client.post(
        DATA.format(data_sensors.power),
        data=b'{"values": [1, 2, 3], "start": ',
        headers={**identity(world.member), "Content-Type": "application/json"},
    )
    assert response.status == 422
    errors = (await response.json())["message"]["combined_sensor_data_description"]
    assert set(errors) == {"start", "duration", "unit", "values"}


async def test_sensor_data_nulls_and_bare_number(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    payload = body([1.0, None, 3.0, None])
    assert (await post(client, data_sensors.power, payload, world.member))[0] == 200
    assert await count_beliefs(database_url) == 2
    assert (await get(client, data_sensors.power, world.member))[1]["values"] == [
        1.0,
        None,
        3.0,
        None,
    ]
    bare = body(7, duration="PT15M", start="2026-01-01T01:00:00+00:00")
    assert (await post(client, data_sensors.power, bare, world.member))[0] == 200
    _status, answer = await get(
        client,
        data_sensors.power,
        world.member,
        start="2026-01-01T01:00:00+00:00",
        duration="PT15M",
    )
    assert answer["values"] == [7.0]


async def test_sensor_data_payload_too_large(
    aiohttp_client: ClientFactory,
    settings: Settings,
    world: World,
    data_sensors: Sensors,
    database_url: str,
) -> None:
    client = await aiohttp_client(
        create_app(dataclasses.replace(settings, max_data_bytes=1000))
    )
    payload = body(tuple(float(i) for i in range(400)), duration="PT100H")
    status, answer = await post(client, data_sensors.power, payload, world.member)
    assert status == 413
    assert answer == {
        "message": "Request body exceeds the configured limit of 1000 bytes.",
        "result": "Rejected",
        "status": "PAYLOAD_TOO_LARGE",
    }

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        raw = json.dumps(payload).encode()
        for i in range(0, len(raw), 100):
            yield raw[i : i + 100]

    response = await client.post(
        DATA.format(data_sensors.power),
        data=chunks(),
        headers={**identity(world.member), "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert await count_beliefs(database_url) == 0


async def test_sensor_data_huge_list(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    # below the byte limit, above the value limit
    raw = b'{"values": [' + b",".join([b"0"] * 1_000_001) + b"]"
    raw += b', "start": "2026-01-01T00:00:00+00:00", "duration": "PT1H", "unit": "kW"}'
    response = await client.post(
        DATA.format(data_sensors.power),
        data=io.BytesIO(raw),
        headers={**identity(world.member), "Content-Type": "application/json"},
    )
    assert response.status == 422
    errors = (await response.json())["message"]["combined_sensor_data_description"]
    assert "values" in errors


async def test_sensor_data_access(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    forbidden = {
        "message": "You cannot be authorized for this content or functionality.",
        "result": "Rejected",
        "status": "INVALID_SENDER",
    }
    assert await post(client, data_sensors.foreign, body(), world.member) == (
        403,
        forbidden,
    )
    assert await get(client, data_sensors.foreign, world.member) == (403, forbidden)
    assert await post(client, 999999, body(), world.member) == (
        404,
        {"message": "Sensor 999999 not found", "status": 404},
    )
    assert (await get(client, 999999, world.member))[0] == 404
    response = await client.post(
        "/api/v3_0/sensors/abc/data", json=body(), headers=identity(world.member)
    )
    assert response.status == 422
    assert (await response.json())["message"] == {
        "combined_sensor_data_description": {"sensor": ["Not a valid integer."]}
    }
    # admins may post anywhere
    assert (await post(client, data_sensors.foreign, body(), world.admin))[0] == 200
    assert await count_beliefs(database_url) == 4


async def test_sensor_data_empty_window_and_resolution(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    status, answer = await get(
        client, data_sensors.power, world.member, duration="PT2H"
    )
    assert status == 200
    assert answer["values"] == [None] * 8
    await post(client, data_sensors.power, body(), world.member)
    status, answer = await get(
        client, data_sensors.power, world.member, resolution="PT30M"
    )
    assert answer["values"] == [1.5, 3.5]
    assert answer["resolution"] == "PT30M"
    status, answer = await get(
        client, data_sensors.power, world.member, resolution="PT20M"
    )
    assert status == 422
    status, answer = await get(client, data_sensors.power, world.member, unit="°C")
    assert status == 422
    assert (
        answer["message"]["combined_sensor_data_description"]["_schema"]
        == ["Required unit for this sensor is °C, got incompatible unit: kW"]
        or "_schema" in answer["message"]["combined_sensor_data_description"]
    )


async def test_sensor_data_get_missing_fields(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    response = await client.get(
        DATA.format(data_sensors.power), headers=identity(world.member)
    )
    assert response.status == 422
    assert await response.json() == {
        "message": {
            "combined_sensor_data_description": {
                "duration": ["Missing data for required field."],
                "start": ["Missing data for required field."],
                "unit": ["Missing data for required field."],
            }
        },
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_sensor_data_prior_and_horizon(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    # Forecast made a day ahead, then a measurement after the fact.
    early = body((1.0, 1.0, 1.0, 1.0), prior="2025-12-31T00:00:00+00:00")
    late = body((2.0, 2.0, 2.0, 2.0), prior="2026-01-01T06:00:00+00:00")
    assert (await post(client, data_sensors.power, early, world.member))[0] == 200
    assert (await post(client, data_sensors.power, late, world.member))[0] == 200
    assert (await get(client, data_sensors.power, world.member))[1]["values"] == [
        2.0
    ] * 4
    _, answer = await get(
        client, data_sensors.power, world.member, prior="2026-01-01T00:00:00+00:00"
    )
    assert answer["values"] == [1.0] * 4
    _, answer = await get(
        client, data_sensors.power, world.member, prior="2025-12-30T00:00:00+00:00"
    )
    assert answer["values"] == [None] * 4
    _, answer = await get(client, data_sensors.power, world.member, horizon="PT0H")
    assert answer["values"] == [1.0] * 4
    # a horizon given with the POST
    ahead = body((5.0,) * 4, horizon="PT1H", start="2026-01-02T00:00:00+00:00")
    assert (await post(client, data_sensors.power, ahead, world.member))[0] == 200
    _, answer = await get(
        client,
        data_sensors.power,
        world.member,
        start="2026-01-02T00:00:00+00:00",
        horizon="PT1H",
    )
    assert answer["values"] == [5.0] * 4
    __, answer = await get(
        client,
        data_sensors.power,
        world.member,
        start="2026-01-02T00:00:00+00:00",
        horizon="PT2H",
    )
    assert answer["values"] == [None] * 4


async def test_sensor_data_source_filter_and_sources(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    await post(client, data_sensors.power, body((1.0,) * 4), world.member)
    await post(client, data_sensors.power, body((2.0,) * 4), world.account_admin)
    response = await client.get("/api/v3_0/sources", headers=identity(world.member))
    assert response.status == 200
    listing = await response.json()
    assert listing["types"] == ["user"]
    by_name = {s["name"]: s for s in listing["sources"]}
    assert set(by_name) == {"member", "boss"}
    assert {"id", "name", "type", "description"} <= set(by_name["member"])
    member_source = by_name["member"]["id"]
    boss_source = by_name["boss"]["id"]
    for source, value in ((member_source, 1.0), (boss_source, 2.0)):
        status, answer = await get(
            client, data_sensors.power, world.member, source=str(source)
        )
        assert answer["values"] == [value] * 4
    status, answer = await get(client, data_sensors.power, world.member, source="9999")
    assert status == 422
    assert "source" in answer["message"]["combined_sensor_data_description"]
    status, answer = await get(
        client, data_sensors.power, world.member, **{"source-type": "user"}
    )
    assert status == 200
    # stats per source, keyed and named as FlexMeasures does
    response = await client.get(
        f"/api/v3_0/sensors/{data_sensors.power}/stats", headers=identity(world.member)
    )
    assert response.status == 200
    stats = await response.json()
    member = stats.pop(f"member (ID: {member_source})")
    boss = stats.pop(f"boss (ID: {boss_source})")
    assert stats == {"status": 200}
    assert list(member) == [
        "First event start",
        "Last event end",
        "Last recorded",
        "Max value",
        "Mean value",
        "Min value",
        "Number of values",
        "Sum over values",
    ]
    assert member["Number of values"] == 4
    assert member["Sum over values"] == 4.0
    assert boss["Mean value"] == 2.0
    # in the sensor's time zone (Europe/Amsterdam)
    assert member["First event start"] == "2026-01-01T01:00:00+01:00"
    assert member["Last event end"] == "2026-01-01T02:00:00+01:00"
    response = await client.get(
        f"/api/v3_0/sensors/{data_sensors.power}/stats",
        params={"event_start_time": "2026-01-01T00:30:00+00:00", "sort": "false"},
        headers=identity(world.member),
    )
    window = await response.json()
    assert window[f"boss (ID: {boss_source})"][7] == ["Number of values", 2]
    response = await client.get(
        f"/api/v3_0/sensors/{data_sensors.power}/stats",
        params={"event_end_time": "tomorrow", "sort": "maybe"},
        headers=identity(world.member),
    )
    assert response.status == 422
    assert (await response.json())["message"] == {
        "query": {
            "event_end_time": ["Not a valid datetime."],
            "sort": ["Not a valid boolean."],
        }
    }


async def test_sensor_data_get_incompatible_unit_names_sensor_unit_as_required(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    status, answer = await get(client, data_sensors.power, world.member, unit="EUR")
    assert status == 422
    assert answer["message"] == {
        "combined_sensor_data_description": {
            "_schema": [
                "Required unit for this sensor is kW, got incompatible unit: EUR"
            ]
        }
    }


async def test_sensor_data_deprecated_endpoint(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    address = f"ea1.2021-01.io.flexmeasures.acme:fm1.{data_sensors.power}"
    response = await client.post(
        "/api/v3_0/sensors/data",
        json=body(sensor=address),
        headers=identity(world.member),
    )
    assert response.status == 200
    assert await response.json() == PROCESSED
    assert "Deprecation" in response.headers
    assert f"/sensors/{data_sensors.power}/data" in response.headers["Link"]
    response = await client.get(
        "/api/v3_0/sensors/data",
        params={"sensor": address, "start": START, "duration": "PT1H", "unit": "kW"},
        headers=identity(world.member),
    )
    assert response.status == 200
    assert "Deprecation" in response.headers
    assert (
        await response.json()
        == (await get(client, data_sensors.power, world.member))[1]
    )
    response = await client.get(
        "/api/v3_0/sensors/data",
        params={"sensor": "nonsense", "start": START, "duration": "PT1H", "unit": "kW"},
        headers=identity(world.member),
    )
    assert response.status == 422


async def test_sensor_data_delete(
    client: Client, world: World, data_sensors: Sensors, database_url: str
) -> None:
    await post(client, data_sensors.power, body(), world.member)
    url = DATA.format(data_sensors.power)
    response = await client.delete(url, headers=identity(world.member))
    assert response.status == 403
    response = await client.delete(
        url,
        json={"start": "2026-01-01T00:30:00+00:00"},
        headers=identity(world.account_admin),
    )
    assert response.status == 204
    assert response.content_type == "application/json"
    assert (await get(client, data_sensors.power, world.member))[1]["values"] == [
        1.0,
        2.0,
        None,
        None,
    ]
    response = await client.delete(url, headers=identity(world.account_admin))
    assert response.status == 204
    assert await count_beliefs(database_url) == 0


async def test_sensor_data_floor_and_instantaneous(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    off_clock = body(start="2026-01-01T00:07:00+00:00")
    assert (await post(client, data_sensors.floored, off_clock, world.member))[0] == 200
    assert (await get(client, data_sensors.floored, world.member))[1]["values"] == [
        1.0,
        2.0,
        3.0,
        4.0,
    ]
    # not floored: accepted as posted (FlexMeasures 1.0.1 answers 200 too)
    assert (await post(client, data_sensors.power, off_clock, world.member))[0] == 200
    temps = body((10.0, 20.0), duration="PT2M", unit="°C")
    assert (await post(client, data_sensors.instant, temps, world.member))[0] == 200
    status, answer = await get(
        client, data_sensors.instant, world.member, unit="K", duration="PT2M"
    )
    assert status == 200
    assert answer["resolution"] == "PT1M"
    assert answer["values"] == pytest.approx([283.15, 293.15])
    several = body((1.0, 2.0), duration="PT0H", unit="°C")
    assert (await post(client, data_sensors.instant, several, world.member))[0] == 422


async def test_sensor_data_concurrent_posts_never_fail(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    payload = body(
        tuple(float(i) for i in range(96)),
        duration="P1D",
        prior="2026-01-02T00:00:00+00:00",
    )
    results = await asyncio.gather(
        *(post(client, data_sensors.power, payload, world.member) for _ in range(6))
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 6
    assert sum(answer == PROCESSED for _, answer in results) >= 1


async def test_sensor_data_concurrent_writes_of_new_days_all_stored(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    """Many writers at once (SQLite has one writer at a time): none fails."""
    payloads = [
        body(
            tuple(float(i) for i in range(96)),
            start=f"2026-02-{day:02d}T00:00:00+00:00",
            duration="P1D",
        )
        for day in range(1, 13)
    ]
    results = await asyncio.gather(
        *(post(client, data_sensors.power, p, world.member) for p in payloads)
    )
    assert [status for status, _ in results] == [200] * 12
    assert all(answer == PROCESSED for _, answer in results)


async def test_sensor_data_survives_restart(
    aiohttp_client: ClientFactory,
    settings: Settings,
    world: World,
    data_sensors: Sensors,
) -> None:
    first = await aiohttp_client(create_app(settings))
    assert (await post(first, data_sensors.power, body(), world.member))[0] == 200
    await first.close()
    second = await aiohttp_client(create_app(settings))
    assert (await get(second, data_sensors.power, world.member))[1]["values"] == [
        1.0,
        2.0,
        3.0,
        4.0,
    ]


def test_sensor_data_routes_registered(settings: Settings) -> None:
    app: web.Application = create_app(settings)
    paths = {getattr(r.resource, "canonical", None) for r in app.router.routes()}
    assert "/api/v3_0/sensors/{id}/data" in paths
    assert "/api/v3_0/sources" in paths


async def test_sensor_data_source_id_remembered_only_once_committed(
    client: Client, world: World, data_sensors: Sensors
) -> None:
    sources = client.app[keys.TENANTS].only().sources
    assert world.member not in sources._ids
    assert (await post(client, data_sensors.power, body(), world.member))[0] == 200
    assert world.member not in sources._ids  # created in that request's transaction
    second = body(start="2026-03-01T00:00:00+00:00")
    assert (await post(client, data_sensors.power, second, world.member))[0] == 200
    assert world.member in sources._ids  # found committed: remembered from now on


async def test_latest_values_grid_shortcut(
    database_url: str, world: World, data_sensors: Sensors
) -> None:
    """A window exactly on the step's grid reads the same whether or not the
    database spots it (PostgreSQL then sends no starts); gaps, off-grid events and
    events beyond the window fall back to the starts."""
    start = 1_767_225_600_000  # 2026-01-01T00:00Z
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            source = (
                await conn.execute(
                    insert(data_sources)
                    .values(name="t", type="user", key="t|grid")
                    .returning(data_sources.c.id)
                )
            ).scalar_one()

            async def put(*offsets: int) -> None:
                await conn.execute(
                    insert(timed_beliefs),
                    [
                        {
                            "sensor_id": data_sensors.power,
                            "event_start": start + o,
                            "source_id": source,
                            "belief_horizon": 0,
                            "cumulative_probability": 0.5,
                            "event_value": float(o // QUARTER),
                        }
                        for o in offsets
                    ],
                )

            await put(*(i * QUARTER for i in range(4)))

            shortcuts: list[bool] = []

            async def read(duration: int, step: int) -> tuple[list[int], list[float]]:
                starts, values = await latest_values(
                    conn,
                    data_sensors.power,
                    start,
                    start + duration,
                    QUARTER,
                    ReadFilter(),
                    step_ms=step,
                )
                shortcuts.append(isinstance(starts, range))
                return list(starts), values

            grid = [start + i * QUARTER for i in range(4)]
            assert await read(HOUR, QUARTER) == (grid, [0.0, 1.0, 2.0, 3.0])
            # Coarser step: four events, but not the two-point grid.
            assert await read(HOUR, 2 * QUARTER) == (grid, [0.0, 1.0, 2.0, 3.0])
            # A window longer than the data: a gap at the end.
            assert await read(2 * HOUR, QUARTER) == (grid, [0.0, 1.0, 2.0, 3.0])
            await put(HOUR + QUARTER // 3)  # an event off the grid
            starts, values = await read(2 * HOUR, QUARTER)
            assert starts == [*grid, start + HOUR + QUARTER // 3]
            assert values == [0.0, 1.0, 2.0, 3.0, 4.0]
            on_postgres = conn.dialect.name == "postgresql"
            assert shortcuts == [on_postgres, False, False, False]
            await conn.rollback()
    finally:
        await engine.dispose()
