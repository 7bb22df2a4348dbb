"""An asset's charts page and its JSON relays: real gateway, backend and Redis."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from gateway import keys
from gateway.web.charts import sensors_to_show_groups, sensors_to_show_ids, source_kind
from gateway.web.sessions import COOKIE
from tenant_service.store import accounts as account_store
from tenant_service.store import assets as asset_store
from tenant_service.store import sensors as sensor_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.helpers.stack import ACME, COMPANY, Stack, login, seed_asset_and_sensor

START = "2026-01-15T00:00:00+00:00"
CSRF = {"X-CSRF-Token": "csrf-secret", "Origin": "http://company.flexmeasures.io"}


@pytest.fixture
def backend_options(redis_url: str, redis_prefix: str) -> dict[str, Any]:
    """Company's backend enqueues jobs on the test Redis (no worker runs them)."""
    return {"redis_url": redis_url, "redis_prefix": redis_prefix}


VALUES = [float(i) for i in range(96)]


async def session(stack: Stack, user_id: int, account_id: int) -> dict[str, str]:
    """Headers with a page session cookie (as a login would start it)."""
    session_id, _ = await stack.gateway.app[keys.TOKENS].issue(
        tenant="company",
        user_id=user_id,
        account_id=account_id,
        roles=("account-admin",),
        ttl=600,
        kind="session",
        extra={"email": "someone@company.test", "csrf": "csrf-secret"},
    )
    return {**COMPANY, "Cookie": f"{COOKIE}={session_id}"}


async def outsider(database_url: str) -> tuple[int, int]:
    """A user of another account of the same tenant: (user id, account id)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            other = await account_store.create_account(conn, name="Other Co.")
            user = await user_store.create_user(
                conn,
                email="someone@other.test",
                username="someone",
                account_id=other,
                password_hash=None,
                role_names=["account-admin"],
            )
    finally:
        await engine.dispose()
    return user, other


async def seeded(stack: Stack) -> tuple[int, int, dict[str, str]]:
    """An asset with a 15-minute sensor and a day of its data; API auth headers."""
    asset_id, sensor_id = await seed_asset_and_sensor(stack)
    auth = {**COMPANY, "Authorization": await login(stack, "admin@company.test")}
    response = await stack.gateway.post(
        f"/api/v3_0/sensors/{sensor_id}/data",
        json={"values": VALUES, "start": START, "duration": "P1D", "unit": "MW"},
        headers=auth,
    )
    assert response.status == 200, await response.text()
    return asset_id, sensor_id, auth


def test_source_kind_and_sensors_to_show() -> None:
    assert source_kind("forecaster") == "forecaster"
    assert source_kind("forecasting script") == "forecaster"
    assert source_kind("scheduler") == "scheduler"
    assert source_kind("user") == "user"
    assert source_kind("") == "other"
    assert sensors_to_show_ids('[1, [2, 3], {"title": "x", "sensor": 4}]') == [
        1,
        2,
        3,
        4,
    ]
    assert sensors_to_show_ids([{"plots": [{"sensors": [5, 5, True]}]}]) == [5]
    assert sensors_to_show_ids("not json") == []
    assert sensors_to_show_groups(
        [1, [2, 3], {"title": "Prices", "sensors": [4, 4]}, {"title": 5}, "x", []]
    ) == [
        {"title": None, "sensors": [1]},
        {"title": None, "sensors": [2, 3]},
        {"title": "Prices", "sensors": [4]},
    ]
    assert sensors_to_show_groups(
        '[{"title": "Both", "plots": [{"sensor": 6}, {"sensors": [7]}]}]'
    ) == [{"title": "Both", "sensors": [6, 7]}]


async def test_charts_page_lists_sensors(stack: Stack) -> None:
    asset_id, sensor_id, _ = await seeded(stack)
    headers = await session(stack, stack.admin_id, stack.account_id)
    response = await stack.gateway.get(f"/assets/{asset_id}/charts", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.text()
    assert f'id="sensor-chart-{sensor_id}"' in page
    assert "Charts of Battery 1" in page
    assert '"seriesUrl": "/dashboard/api/sensors/{id}/series"' in page
    assert "<script>" not in page  # no inline scripts (the data block is JSON)


async def test_charts_page_needs_a_session_and_refuses_others(
    stack: Stack, database_url: str
) -> None:
    asset_id, _, _ = await seeded(stack)
    response = await stack.gateway.get(
        f"/assets/{asset_id}/charts", headers=COMPANY, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == f"/login?next=/assets/{asset_id}/charts"
    user, account = await outsider(database_url)
    headers = await session(stack, user, account)
    response = await stack.gateway.get(f"/assets/{asset_id}/charts", headers=headers)
    assert response.status == 403
    assert "Not your asset" in await response.text()
    response = await stack.gateway.get("/assets/99999/charts", headers=headers)
    assert response.status == 404


async def test_series_per_source_downsampled(stack: Stack) -> None:
    _, sensor_id, _ = await seeded(stack)
    headers = await session(stack, stack.admin_id, stack.account_id)
    response = await stack.gateway.get(
        f"/dashboard/api/sensors/{sensor_id}/series",
        params={"start": START, "duration": "P1D", "resolution": "PT6H"},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    body: Any = await response.json()
    assert body["resolution"] == "PT6H"
    assert body["sensor"] == sensor_id
    assert body["unit"] == "MW"
    [series] = body["series"]
    assert series["source"]["type"] == "user"
    # Means of each 6 hours (24 values of 15 minutes).
    assert series["values"] == [11.5, 35.5, 59.5, 83.5]


async def test_series_and_annotations_refuse_strangers(
    stack: Stack, database_url: str
) -> None:
    asset_id, sensor_id, _ = await seeded(stack)
    query = {"start": START, "duration": "P1D"}
    url = f"/dashboard/api/sensors/{sensor_id}/series"
    response = await stack.gateway.get(url, params=query, headers=COMPANY)
    assert response.status == 401
    assert (await response.json())["status"] == "UNAUTHORIZED"
    user, account = await outsider(database_url)
    headers = await session(stack, user, account)
    response = await stack.gateway.get(url, params=query, headers=headers)
    assert response.status == 403
    response = await stack.gateway.get(
        f"/dashboard/api/assets/{asset_id}/annotations", headers=headers
    )
    assert response.status == 403
    response = await stack.gateway.get(
        url, params={"start": "yesterday", "duration": "P1D"}, headers=headers
    )
    assert response.status == 422
    assert "start" in (await response.json())["message"]["query"]
    response = await stack.gateway.post(url, params=query, headers=headers)
    assert response.status == 405


async def test_annotations_relay(stack: Stack) -> None:
    asset_id, _, auth = await seeded(stack)
    response = await stack.gateway.post(
        f"/api/v3_0/assets/{asset_id}/annotations",
        json={
            "content": "Maintenance",
            "start": "2026-01-15T06:00:00+00:00",
            "end": "2026-01-15T08:00:00+00:00",
        },
        headers=auth,
    )
    assert response.status in (200, 201), await response.text()
    headers = await session(stack, stack.admin_id, stack.account_id)
    response = await stack.gateway.get(
        f"/dashboard/api/assets/{asset_id}/annotations",
        params={"start": START, "end": "2026-01-16T00:00:00+00:00"},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    [note] = await response.json()
    assert note["content"] == ["Maintenance"]


def csv_form(text: str, name: str = "data.csv") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(
        "uploaded-files", text.encode(), filename=name, content_type="text/csv"
    )
    return form


async def test_upload_relay_stores_and_names_refused_lines(stack: Stack) -> None:
    _, sensor_id, _ = await seeded(stack)
    headers = await session(stack, stack.admin_id, stack.account_id)
    url = f"/dashboard/api/sensors/{sensor_id}/upload"
    good = "event_start,value\n2026-01-16T00:00:00+00:00,1.5\n"
    # Without the CSRF header: refused, nothing stored.
    response = await stack.gateway.post(url, data=csv_form(good), headers=headers)
    assert response.status == 403
    assert (await response.json())["status"] == "FORBIDDEN"
    response = await stack.gateway.post(
        url, data=csv_form(good), headers={**headers, **CSRF}
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "PROCESSED"
    bad = "event_start,value\n2026-01-16T00:15:00+00:00,abc\n"
    response = await stack.gateway.post(
        url, data=csv_form(bad, "bad.csv"), headers={**headers, **CSRF}
    )
    assert response.status == 422
    text = str(await response.json())
    assert "bad.csv" in text
    assert "2" in text  # the line


async def test_acting_relays_refuse_strangers(stack: Stack, database_url: str) -> None:
    _, sensor_id, _ = await seeded(stack)
    good = "event_start,value\n2026-01-16T00:00:00+00:00,1.5\n"
    url = f"/dashboard/api/sensors/{sensor_id}/upload"
    response = await stack.gateway.post(
        url, data=csv_form(good), headers={**COMPANY, **CSRF}
    )
    assert response.status == 401
    user, account = await outsider(database_url)
    headers = {**await session(stack, user, account), **CSRF}
    response = await stack.gateway.post(url, data=csv_form(good), headers=headers)
    assert response.status == 403
    response = await stack.gateway.post(
        f"/dashboard/api/sensors/{sensor_id}/forecasts/trigger",
        json={"duration": "P1D"},
        headers=headers,
    )
    assert response.status == 403
    response = await stack.gateway.get(
        "/dashboard/api/jobs/0000-not-a-job", headers=COMPANY
    )
    assert response.status == 401


async def test_forecast_trigger_and_job_status_relays(stack: Stack) -> None:
    _, sensor_id, auth = await seeded(stack)
    # Two days of history before the forecast's start (the model needs some).
    start = datetime(2026, 1, 20, tzinfo=UTC)
    response = await stack.gateway.post(
        f"/api/v3_0/sensors/{sensor_id}/data",
        json={
            "values": [float(i % 96) for i in range(4 * 96)],
            "start": (start - timedelta(days=4)).isoformat(),
            "duration": "P4D",
            "unit": "MW",
        },
        headers=auth,
    )
    assert response.status == 200, await response.text()
    headers = await session(stack, stack.admin_id, stack.account_id)
    url = f"/dashboard/api/sensors/{sensor_id}/forecasts/trigger"
    body = {
        "start": start.isoformat(),
        "duration": "P1D",
        "prior": datetime.now(UTC).isoformat(),  # the history is known by now
    }
    response = await stack.gateway.post(url, json=body, headers=headers)
    assert response.status == 403  # no CSRF header
    response = await stack.gateway.post(url, json=body, headers={**headers, **CSRF})
    assert response.status == 202, await response.text()
    job = (await response.json())["job"]
    response = await stack.gateway.get(f"/dashboard/api/jobs/{job}", headers=headers)
    assert response.status == 202, await response.text()
    assert (await response.json())["status"] == "QUEUED"
    # A trigger the backend refuses: its message comes back as it is.
    response = await stack.gateway.post(
        url, json={"duration": "soon"}, headers={**headers, **CSRF}
    )
    assert response.status == 422
    assert "duration" in str(await response.json())


async def test_schedule_trigger_relay_passes_the_apis_messages(stack: Stack) -> None:
    _, sensor_id, _ = await seeded(stack)
    headers = {**await session(stack, stack.admin_id, stack.account_id), **CSRF}
    response = await stack.gateway.post(
        f"/dashboard/api/sensors/{sensor_id}/schedules/trigger",
        json={"start": "not a time", "flex-model": {}},
        headers=headers,
    )
    assert response.status == 422, await response.text()
    body = await response.json()
    assert body["status"] == "UNPROCESSABLE_ENTITY"
    assert "start" in str(body["message"])


async def foreign_sensor(database_url: str, account_id: int) -> int:
    """A sensor on an asset of another account (inserted with SQL); its id."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            asset_id = await asset_store.create_asset(
                conn,
                {
                    "name": "Their site",
                    "account_id": account_id,
                    "generic_asset_type_id": 5,
                },
            )
            return await sensor_store.create_sensor(
                conn,
                {
                    "name": "their secret meter",
                    "unit": "kW",
                    "timezone": "UTC",
                    "event_resolution": 900_000,
                    "generic_asset_id": asset_id,
                },
            )
    finally:
        await engine.dispose()


def chart_config(page: str) -> dict[str, Any]:
    """The JSON settings block of a charts page."""
    match = re.search(
        r'<script type="application/json" id="asset-charts-config">(.*?)</script>',
        page,
        re.S,
    )
    assert match, page
    config: dict[str, Any] = json.loads(match[1])
    return config


async def test_charts_page_follows_sensors_to_show(
    stack: Stack, database_url: str
) -> None:
    asset_id, power, auth = await seeded(stack)
    more = {}
    for name, unit in (("power 2", "kW"), ("price", "EUR/MWh")):
        response = await stack.gateway.post(
            "/api/v3_0/sensors",
            json={
                "name": name,
                "unit": unit,
                "event_resolution": "PT15M",
                "generic_asset_id": asset_id,
                "timezone": "Europe/Amsterdam",
            },
            headers=auth,
        )
        assert response.status == 201, await response.text()
        more[name] = (await response.json())["id"]
    headers = await session(stack, stack.admin_id, stack.account_id)
    # Without sensors_to_show: one chart per sensor.
    response = await stack.gateway.get(f"/assets/{asset_id}/charts", headers=headers)
    assert [c["sensors"] for c in chart_config(await response.text())["charts"]] == [
        [power],
        [more["power 2"]],
        [more["price"]],
    ]
    _, account = await outsider(database_url)
    theirs = await foreign_sensor(database_url, account)
    shown = [
        [power, more["power 2"]],
        {"title": "Prices", "sensors": [more["price"], 99999, theirs]},
        theirs,
        [99999],
    ]
    response = await stack.gateway.patch(
        f"/api/v3_0/assets/{asset_id}",
        json={"sensors_to_show": json.dumps(shown)},
        headers=auth,
    )
    assert response.status == 200, await response.text()
    response = await stack.gateway.get(f"/assets/{asset_id}/charts", headers=headers)
    assert response.status == 200, await response.text()
    page = await response.text()
    config = chart_config(page)
    # The group drawn together; unknown and unreadable ids left out, no error.
    assert config["charts"] == [
        {"key": "chart-0", "sensors": [power, more["power 2"]]},
        {"key": f"sensor-chart-{more['price']}", "sensors": [more["price"]]},
    ]
    assert 'id="chart-0"' in page
    assert "power and power 2" in page
    assert "MW, kW" in page  # the group's units
    assert "Prices" in page
    assert "EUR/MWh" in page
    assert "their secret meter" not in page
    assert theirs not in [s["id"] for s in config["sensors"]]
    assert config["sensorAnnotationsUrl"] == "/dashboard/api/sensors/{id}/annotations"


async def test_sensor_annotations_route_and_relay(
    stack: Stack, database_url: str
) -> None:
    _, sensor_id, auth = await seeded(stack)
    note = {
        "content": "Meter replaced",
        "start": "2026-01-15T06:00:00+00:00",
        "end": "2026-01-15T08:00:00+00:00",
    }
    response = await stack.gateway.post(
        f"/api/v3_0/sensors/{sensor_id}/annotations", json=note, headers=auth
    )
    assert response.status == 201, await response.text()
    window = {"start": START, "end": "2026-01-16T00:00:00+00:00"}
    response = await stack.gateway.get(
        f"/api/v3_0/sensors/{sensor_id}/chart_annotations", params=window, headers=auth
    )
    assert response.status == 200, await response.text()
    assert await response.json() == [
        {
            "index": 0,
            "start": 1768456800000,
            "end": 1768464000000,
            "belief_time": None,
            "source": "admin",
            "type": "label",
            "content": ["Meter replaced"],
        }
    ]
    headers = await session(stack, stack.admin_id, stack.account_id)
    url = f"/dashboard/api/sensors/{sensor_id}/annotations"
    response = await stack.gateway.get(url, params=window, headers=headers)
    assert response.status == 200, await response.text()
    [relayed] = await response.json()
    assert relayed["content"] == ["Meter replaced"]
    # Another account's user: FlexMeasures' 403; no session: 401.
    user, account = await outsider(database_url)
    response = await stack.gateway.get(
        url, params=window, headers=await session(stack, user, account)
    )
    assert response.status == 403
    assert (await response.json())["status"] == "INVALID_SENDER"
    response = await stack.gateway.get(url, headers=COMPANY)
    assert response.status == 401
    # Unknown here, and in another tenant (its own database): 404.
    response = await stack.gateway.get(
        "/api/v3_0/sensors/99999/chart_annotations", headers=auth
    )
    assert response.status == 404
    assert await response.json() == {"message": "Sensor 99999 not found", "status": 404}
    acme = {**ACME, "Authorization": await login(stack, "admin@acme.test", ACME)}
    response = await stack.gateway.get(
        f"/api/v3_0/sensors/{sensor_id}/chart_annotations", headers=acme
    )
    assert response.status == 404
    assert (await response.json())["message"] == f"Sensor {sensor_id} not found"
