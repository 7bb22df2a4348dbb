"""An asset's charts page and its JSON relays: real gateway, backend and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from gateway import keys
from gateway.web.charts import sensors_to_show_ids, source_kind
from gateway.web.sessions import COOKIE
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.helpers.stack import COMPANY, Stack, login, seed_asset_and_sensor

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
