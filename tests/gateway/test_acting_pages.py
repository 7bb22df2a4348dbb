"""Acting from an asset's page without JavaScript: the upload, the sensor trigger and
the asset-wide schedule trigger as plain forms, and a job's status page.

Real gateway, real company backend (jobs queued on the test Redis; no worker runs
them here: tests/e2e/browser/test_browser_charts.py watches them end), forms posted
as a browser without script would: the session's CSRF secret in the form, from
this origin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import MultiDict
from rq.job import JobStatus

from gateway.web.acting import asset_schedule_body, reasons
from tests.helpers.dashboard import (
    COMPANY,
    Dash,
    DashFactory,
    Seeded,
    User,
    api,
    queued_job,
    seed,
    session,
    set_job_status,
)
from tests.helpers.forms import page

ORIGIN = {"Origin": "http://company.localhost"}
EVIL = {"Origin": "http://evil.example"}
GOOD_CSV = (
    "event_start,value\n2026-01-16T00:00:00+00:00,1.5\n2026-01-16T00:15:00+00:00,2.5\n"
)
# The first line is fine, the second is not: all or nothing.
BAD_CSV = (
    "event_start,value\n2026-01-16T01:00:00+00:00,7.5\n2026-01-16T01:15:00+00:00,high\n"
)
START = "2026-01-15T00:00:00+01:00"
BATTERY_MODEL = {"soc-at-start": "0 kWh", "soc-max": "10 kWh", "power-capacity": "5 kW"}


async def post_form(
    dash: Dash,
    user: User,
    path: str,
    data: dict[str, Any] | aiohttp.FormData | list[tuple[str, str]],
    *,
    origin: dict[str, str] = ORIGIN,
    accept: str = "text/html",
) -> tuple[int, str, str]:
    """POST a form as `user` (no script): status, body, Location."""
    response = await dash.gateway.post(
        path,
        data=data,
        headers={**await session(dash, user), **origin, "Accept": accept},
        allow_redirects=False,
    )
    return response.status, await response.text(), response.headers.get("Location", "")


def upload(
    sensor: int, text: str, name: str, csrf: str = "csrf-secret"
) -> aiohttp.FormData:
    """The upload form as a browser sends it (fields in the page's order)."""
    form = aiohttp.FormData()
    form.add_field("csrf_token", csrf)
    form.add_field("sensor", str(sensor))
    form.add_field(
        "uploaded-files", text.encode(), filename=name, content_type="text/csv"
    )
    return form


async def values(dash: Dash, sensor: int, start: str, duration: str) -> list[Any]:
    response = await dash.gateway.get(
        f"/api/v3_0/sensors/{sensor}/data",
        params={"start": start, "duration": duration, "unit": "kW"},
        headers=await api(dash, dash.admin),
    )
    assert response.status == 200, await response.text()
    found: list[Any] = (await response.json())["values"]
    return found


async def job_ids(dash: Dash) -> list[str]:
    response = await dash.gateway.get(
        "/api/v3_0/jobs", headers=await api(dash, dash.admin)
    )
    assert response.status == 200, await response.text()
    return [job["job_id"] for job in (await response.json())["jobs"]]


async def store_flex_model(dash: Dash, asset: int) -> None:
    """The battery's flex-model and flex-context, stored on the asset."""
    response = await dash.gateway.patch(
        f"/api/v3_0/assets/{asset}",
        json={
            "flex_model": BATTERY_MODEL,
            "flex_context": {"consumption-price": "100 EUR/MWh"},
        },
        headers=await api(dash, dash.admin),
    )
    assert response.status == 200, await response.text()


@dataclass(frozen=True, slots=True)
class Site:
    """Company's seeded site, its jobs queued on the test Redis."""

    dash: Dash
    seeded: Seeded


@pytest.fixture
async def site(make_dash: DashFactory, redis_url: str, redis_prefix: str) -> Site:
    """The seeded site with the battery's flex-model and flex-context stored."""
    dash = await make_dash(
        redis_url=redis_url, redis_prefix=redis_prefix, trigger_period=0
    )
    seeded = await seed(dash)
    await store_flex_model(dash, seeded.battery)
    return Site(dash, seeded)


def job_of(location: str, asset: int) -> str:
    match = re.fullmatch(rf"/jobs/([0-9a-f-]+)\?asset={asset}", location)
    assert match, location
    return match[1]


def test_reasons_name_the_field_of_each_message() -> None:
    body = {
        "message": {
            "json": {"start": ["Not a valid datetime."], "flex-model": {"0": ["Bad."]}}
        },
        "status": "UNPROCESSABLE_ENTITY",
    }
    assert reasons(body) == ("start: Not a valid datetime.", "flex-model: Bad.")
    files = {
        "message": {
            "combined_sensor_data_upload": {
                "uploaded-files": {"0": ["Invalid content."]}
            }
        }
    }
    assert reasons(files) == ("Invalid content.",)
    assert reasons({"message": "plain"}) == ("plain",)
    assert reasons(None) == ()


def test_asset_schedule_body_fills_each_device() -> None:
    form = MultiDict(
        [
            ("start", " 2026-01-15T00:00:00+01:00 "),
            ("duration", "PT4H"),
            ("device", "7"),
            ("device", "8"),
            ("device", "x"),
            ("flex_model", '{"soc-at-start": "1 kWh"}'),
            ("flex_context", ""),
        ]
    )
    assert asset_schedule_body(form) == {
        "start": "2026-01-15T00:00:00+01:00",
        "duration": "PT4H",
        "flex-model": [
            {"soc-at-start": "1 kWh", "sensor": 7},
            {"soc-at-start": "1 kWh", "sensor": 8},
        ],
    }
    form["flex_model"] = '[{"sensor": 9}]'
    assert asset_schedule_body(form)["flex-model"] == [{"sensor": 9}]


async def test_asset_page_forms_post_to_pages_with_csrf(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/assets/{seeded.battery}")
    assert status == 200
    for action in ("upload", "trigger", "schedules/trigger"):
        assert f'action="/assets/{seeded.battery}/{action}"' in text, action
    assert text.count('name="csrf_token" value="csrf-secret"') >= 4  # and log out
    # The power sensor (kW) is ticked as a device of the asset-wide schedule.
    assert re.search(rf'name="device" value="{seeded.power}" checked', text), (
        "the power sensor is not ticked"
    )


async def test_upload_form_without_script_stores_or_refuses_all(dash: Dash) -> None:
    seeded = await seed(dash)
    path = f"/assets/{seeded.battery}/upload"
    status, text, _ = await post_form(
        dash, dash.admin, path, upload(seeded.power, GOOD_CSV, "good.csv")
    )
    assert status == 200, text
    assert "Stored good.csv (2 rows) for sensor" in text
    assert await values(dash, seeded.power, "2026-01-16T00:00:00+00:00", "PT30M") == [
        1.5,
        2.5,
    ]
    # A bad line: the API's reason with the file's name, status 422, nothing stored.
    status, text, _ = await post_form(
        dash, dash.admin, path, upload(seeded.power, BAD_CSV, "bad.csv")
    )
    assert status == 422, text
    assert "Nothing was stored; bad.csv was refused:" in text
    assert "Invalid content in file: bad.csv" in text
    assert "<li>" in text
    assert await values(dash, seeded.power, "2026-01-16T01:00:00+00:00", "PT30M") == [
        None,
        None,
    ]
    # No file chosen (a browser sends an empty part): nothing sent to the API.
    empty = upload(seeded.power, "", "")
    status, text, _ = await post_form(dash, dash.admin, path, empty)
    assert status == 422
    assert "Choose a CSV file first." in text


async def test_upload_form_needs_csrf_and_origin(dash: Dash) -> None:
    seeded = await seed(dash)
    path = f"/assets/{seeded.battery}/upload"
    for form, origin in (
        (upload(seeded.power, GOOD_CSV, "good.csv", csrf="wrong"), ORIGIN),
        (upload(seeded.power, GOOD_CSV, "good.csv"), EVIL),
    ):
        status, text, _ = await post_form(dash, dash.admin, path, form, origin=origin)
        assert status == 403
        assert "could not be verified" in text
    assert await values(dash, seeded.power, "2026-01-16T00:00:00+00:00", "PT30M") == [
        None,
        None,
    ]
    # Another account's user: the API's 403 on the page.
    status, text, _ = await post_form(
        dash, dash.outsider, path, upload(seeded.power, GOOD_CSV, "good.csv")
    )
    assert status == 403
    assert "The upload failed" in text
    # Without a session: to the login page, back to the asset afterwards.
    response = await dash.gateway.post(
        path,
        data=upload(seeded.power, GOOD_CSV, "good.csv"),
        headers={**COMPANY, **ORIGIN},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=")


async def test_sensor_trigger_form_leads_to_a_self_refreshing_job_page(
    site: Site, redis_url: str, redis_prefix: str
) -> None:
    dash, seeded = site.dash, site.seeded
    form = {
        "csrf_token": "csrf-secret",
        "sensor": str(seeded.power),
        "kind": "schedule",
        "duration": "PT6H",
    }
    path = f"/assets/{seeded.battery}/trigger"
    status, _, location = await post_form(dash, dash.admin, path, form)
    assert status == 303
    job = job_of(location, seeded.battery)
    status, text = await page(dash, dash.admin, location)
    assert status == 200
    assert "Queued" in text
    assert job in text
    assert '<meta http-equiv="refresh" content="2">' in text
    assert f'href="/assets/{seeded.battery}"' in text
    # The job ends: no more reloading; the way to its result.
    set_job_status(redis_url, redis_prefix, job, JobStatus.FINISHED)
    status, text = await page(dash, dash.admin, location)
    assert status == 200
    assert "Finished" in text
    assert 'http-equiv="refresh"' not in text
    assert "the asset's charts" in text
    # A failed job: its message, no reloading either.
    status, _, location = await post_form(
        dash, dash.admin, path, {**form, "duration": "PT4H"}
    )
    failed = job_of(location, seeded.battery)
    set_job_status(
        redis_url,
        redis_prefix,
        failed,
        JobStatus.FAILED,
        {"type": "ValueError", "message": "no <b>prices</b>"},
    )
    status, text = await page(dash, dash.admin, location)
    assert status == 200
    assert "Scheduling job failed with ValueError: no &lt;b&gt;prices&lt;/b&gt;" in text
    assert 'http-equiv="refresh"' not in text
    # Bad input: the API's message on a page, 4xx, no job.
    status, text, _ = await post_form(
        dash, dash.admin, path, {**form, "duration": "soon"}
    )
    assert status == 422
    assert "The API refused the schedule:" in text
    assert "duration: " in text
    assert sorted(await job_ids(dash)) == sorted([job, failed])
    # Bad CSRF: refused before anything is sent.
    status, text, _ = await post_form(
        dash, dash.admin, path, {**form, "csrf_token": "wrong"}
    )
    assert status == 403
    assert "could not be verified" in text
    assert len(await job_ids(dash)) == 2


async def test_job_page_refuses_unknown_jobs_and_strangers(
    site: Site,
) -> None:
    dash, seeded = site.dash, site.seeded
    status, _, location = await post_form(
        dash,
        dash.admin,
        f"/assets/{seeded.battery}/schedules/trigger",
        [
            ("csrf_token", "csrf-secret"),
            ("device", str(seeded.power)),
            ("start", START),
        ],
    )
    assert status == 303
    status, text = await page(dash, dash.outsider, location)
    assert status == 403
    status, text = await page(dash, dash.admin, "/jobs/0000-no-such-job")
    assert status == 404
    assert "There is no job 0000-no-such-job" in text
    response = await dash.gateway.get(location, headers=COMPANY, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=/jobs/")


async def test_asset_schedule_form_uses_the_stored_flex_model(
    site: Site, redis_url: str, redis_prefix: str
) -> None:
    dash, seeded = site.dash, site.seeded
    path = f"/assets/{seeded.battery}/schedules/trigger"
    form = [
        ("csrf_token", "csrf-secret"),
        ("device", str(seeded.power)),
        ("start", START),
        ("duration", "PT4H"),
        ("flex_model", ""),
        ("flex_context", ""),
    ]
    status, _, location = await post_form(dash, dash.admin, path, form)
    assert status == 303
    job = job_of(location, seeded.battery)
    # The job's flex-model: the device, the rest from the asset's stored one.
    with queued_job(redis_url, redis_prefix, job) as queued:
        request = queued.kwargs["request"]
    assert request["sensors"] == [seeded.power]
    assert request["flex_model"] == [{**BATTERY_MODEL, "sensor": seeded.power}]
    assert request["flex_context"] == {"consumption-price": "100 EUR/MWh"}
    status, text = await page(dash, dash.admin, location)
    assert "Queued" in text
    assert '<meta http-equiv="refresh" content="2">' in text
    listing = await dash.gateway.get(
        "/api/v3_0/jobs", headers=await api(dash, dash.admin)
    )
    [listed] = (await listing.json())["jobs"]
    assert (listed["job_id"], listed["asset_or_sensor_type"]) == (job, "asset")
    assert listed["entity_id"] == seeded.battery


async def test_asset_schedule_form_bad_input_sends_nothing(
    site: Site,
) -> None:
    dash, seeded = site.dash, site.seeded
    path = f"/assets/{seeded.battery}/schedules/trigger"
    good = [("csrf_token", "csrf-secret"), ("device", str(seeded.power))]
    for extra, wanted in (
        ([("start", "soon")], "start: "),
        (
            [("start", START), ("flex_context", "{not json")],
            "flex-context: Not valid JSON",
        ),
        ([("start", START), ("device", str(seeded.price))], f"Sensor {seeded.price}"),
    ):
        status, text, _ = await post_form(dash, dash.admin, path, good + extra)
        assert 400 <= status < 500, text
        assert wanted in text, text
        assert "<li>" in text
    # No device ticked: the API's message about the flex-model.
    status, text, _ = await post_form(
        dash, dash.admin, path, [("csrf_token", "csrf-secret"), ("start", START)]
    )
    assert status == 422
    assert "flex-model: " in text
    for form, origin in (
        (
            [("csrf_token", "wrong"), ("device", str(seeded.power)), ("start", START)],
            ORIGIN,
        ),
        ([*good, ("start", START)], EVIL),
    ):
        status, text, _ = await post_form(dash, dash.admin, path, form, origin=origin)
        assert status == 403
        assert "could not be verified" in text
    # Another account's user may not schedule the asset.
    status, text, _ = await post_form(
        dash, dash.outsider, path, [*good, ("start", START)]
    )
    assert status == 403
    assert await job_ids(dash) == []


async def test_asset_schedule_form_answers_json_to_the_pages_script(
    site: Site,
) -> None:
    dash, seeded = site.dash, site.seeded
    path = f"/assets/{seeded.battery}/schedules/trigger"
    form = [
        ("csrf_token", "csrf-secret"),
        ("device", str(seeded.power)),
        ("start", START),
    ]
    status, text, _ = await post_form(
        dash, dash.admin, path, form, accept="application/json"
    )
    assert status == 202, text
    assert '"job"' in text
    status, text, _ = await post_form(
        dash,
        dash.admin,
        path,
        [*form[:2], ("start", "soon")],
        accept="application/json",
    )
    assert status == 422
    assert '"UNPROCESSABLE_ENTITY"' in text
    status, text, _ = await post_form(
        dash,
        dash.admin,
        path,
        [("csrf_token", "wrong"), *form[1:]],
        accept="application/json",
    )
    assert status == 403
    assert '"FORBIDDEN"' in text
    response = await dash.gateway.post(
        path, data=form, headers={**COMPANY, **ORIGIN, "Accept": "application/json"}
    )
    assert response.status == 401
    assert (await response.json())["status"] == "UNAUTHORIZED"
    assert len(await job_ids(dash)) == 1
