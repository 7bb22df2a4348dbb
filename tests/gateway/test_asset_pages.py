"""Asset, sensor and jobs pages: real gateway, real tenant backend, real Redis.

The fixtures are the dashboard's (a company backend with an account-admin and a
user of another account); forms are posted with the session's CSRF secret from
this origin, as a browser would.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from rq.job import JobStatus

from gateway.web.assets import field_errors, name_matches, number_or_text
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.helpers.dashboard import (
    COMPANY,
    Dash,
    DashFactory,
    User,
    api,
    asset_type,
    seed,
    session,
    set_job_status,
)
from tests.helpers.forms import page

ORIGIN = {"Origin": "http://company.localhost"}


async def submit(
    dash: Dash,
    user: User,
    path: str,
    form: dict[str, str],
    *,
    csrf: str = "csrf-secret",
    origin: dict[str, str] = ORIGIN,
) -> tuple[int, str, str]:
    """POST a form as `user`: status, body, Location."""
    response = await dash.gateway.post(
        path,
        data={"csrf_token": csrf, **form},
        headers={**await session(dash, user), **origin},
        allow_redirects=False,
    )
    return response.status, await response.text(), response.headers.get("Location", "")


def member_of(user: User) -> User:
    """The same user as the gateway's session sees it without the account-admin
    role (the backend still knows the role: for what the page shows only)."""
    return dataclasses.replace(user, roles=())


async def add_member(url: str, account_id: int) -> User:
    """A plain member (no roles) of an account, in the backend's database."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            user_id = await user_store.create_user(
                conn,
                email="member@company.test",
                username="member",
                account_id=account_id,
                password_hash=None,
                role_names=[],
            )
    finally:
        await engine.dispose()
    return User(user_id, account_id, (), "member@company.test")


async def get_json(dash: Dash, user: User, path: str) -> Any:
    response = await dash.gateway.get(path, headers=await api(dash, user))
    return await response.json()


def asset_form(kind: int, **values: str) -> dict[str, str]:
    return {
        "name": "Depot",
        "description": "",
        "external_id": "",
        "generic_asset_type_id": str(kind),
        "parent_asset_id": "",
        "latitude": "52.1",
        "longitude": "4.3",
        "attributes": "{}",
        "flex_model": "{}",
        "flex_context": "{}",
        "sensors_to_show": "[]",
        **values,
    }


# --- list, tree and search -------------------------------------------------------------


async def test_assets_page_needs_a_session(dash: Dash) -> None:
    for path in ("/assets", "/assets/1", "/assets/new", "/sensors/1", "/jobs"):
        response = await dash.gateway.get(path, headers=COMPANY, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == f"/login?next={path}"


async def test_assets_tree_links_each_asset(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, "/assets")
    assert status == 200
    assert "Site &lt;b&gt;A&lt;/b&gt;" in text
    assert "<b>A</b>" not in text
    for asset_id in (seeded.site, seeded.battery):
        assert f'href="/assets/{asset_id}"' in text
    within = text.split('aria-label="Assets within Site &lt;b&gt;A&lt;/b&gt;"')[1]
    assert f'href="/assets/{seeded.battery}"' in within
    assert 'href="/assets/new"' in text  # an account-admin creates top-level assets
    assert 'href="/assets"' in text
    assert 'href="/jobs"' in text
    status, text = await page(dash, member_of(dash.admin), "/assets")
    assert 'href="/assets/new"' not in text


async def test_assets_search_filters_by_name_without_script(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, "/assets?q=batt")
    assert status == 200
    assert 'value="batt"' in text
    assert f'href="/assets/{seeded.battery}"' in text
    assert f'href="/assets/{seeded.site}"' not in text
    assert "1 asset named like" in text
    assert "<td>1</td>" in text  # its sensor count
    # The account's name matches every asset in the API's filter; the page
    # filters by the asset's name only.
    status, text = await page(dash, dash.admin, "/assets?q=Company")
    assert "0 assets named like" in text
    assert "No asset of your account" in text
    status, text = await page(dash, dash.admin, "/assets?q=%22%3Cb%3E")
    assert status == 200
    assert "<b>" not in text.split("<main")[1].split("</form>")[1]


def testnumber_or_text_leaves_the_api_to_name_bad_numbers() -> None:
    assert number_or_text(" 52.5 ") == 52.5
    assert number_or_text("-3") == -3
    assert number_or_text("") is None
    for text in ("north", "1e400", "nan", "-inf"):
        assert number_or_text(text) == text


def test_name_matches_every_word() -> None:
    assert name_matches("Site A battery", "a BATT")
    assert not name_matches("Site", "site b")


# --- the asset and sensor pages ------------------------------------------------------------


async def test_asset_page_shows_properties_sensors_children(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/assets/{seeded.site}")
    assert status == 200
    assert "Site &lt;b&gt;A&lt;/b&gt;" in text
    assert f'href="/sensors/{seeded.price}"' in text
    assert "EUR/MWh" in text
    assert f'href="/assets/{seeded.battery}"' in text  # a child
    assert "Company Inc." in text  # the account
    for heading in ("Attributes", "Flex-model", "Flex-context", "Sensors to show"):
        assert heading in text
    for control in ("/edit", "/delete", "/sensors/new"):
        assert f'href="/assets/{seeded.site}{control}"' in text
    assert "u13-charts" not in text  # the charts' block is a template comment
    # A member edits but does not delete; another account sees nothing.
    status, text = await page(dash, member_of(dash.admin), f"/assets/{seeded.site}")
    assert f'href="/assets/{seeded.site}/edit"' in text
    assert f'href="/assets/{seeded.site}/delete"' not in text
    status, text = await page(dash, dash.outsider, f"/assets/{seeded.site}")
    assert status == 403
    assert "Not allowed" in text
    status, text = await page(dash, dash.admin, "/assets/999999")
    assert status == 404
    assert "No such asset" in text


async def test_sensor_page_shows_properties(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/sensors/{seeded.power}")
    assert status == 200
    assert "power &lt;script&gt;" in text
    assert "<script>" not in text
    assert "15 minutes" in text
    assert "PT15M" in text
    assert "UTC" in text
    assert f'href="/assets/{seeded.battery}"' in text
    assert f'href="/sensors/{seeded.power}/edit"' in text
    status, text = await page(dash, member_of(dash.admin), f"/sensors/{seeded.power}")
    assert f'href="/sensors/{seeded.power}/edit"' not in text
    status, _ = await page(dash, dash.outsider, f"/sensors/{seeded.power}")
    assert status == 403
    status, _ = await page(dash, dash.admin, "/sensors/999999")
    assert status == 404


# --- create, edit, delete ---------------------------------------------------------------


async def test_create_asset_then_edit_it(dash: Dash) -> None:
    kind = await asset_type(dash, await api(dash, dash.admin))
    status, text = await page(dash, dash.admin, "/assets/new")
    assert status == 200
    assert 'name="csrf_token" value="csrf-secret"' in text
    status, _, location = await submit(
        dash, dash.admin, "/assets/new", asset_form(kind, attributes='{"a": 1}')
    )
    assert status == 303, _
    match = re.fullmatch(r"/assets/(\d+)\?notice=created", location)
    assert match is not None
    asset_id = int(match[1])
    asset = await get_json(dash, dash.admin, f"/api/v3_0/assets/{asset_id}")
    assert asset["name"] == "Depot"
    assert asset["latitude"] == 52.1
    status, text = await page(dash, dash.admin, location)
    assert "The asset has been created." in text
    status, text = await page(dash, dash.admin, f"/assets/{asset_id}/edit")
    assert 'value="Depot"' in text
    assert "&#34;a&#34;: 1" in text
    status, _, location = await submit(
        dash,
        dash.admin,
        f"/assets/{asset_id}/edit",
        asset_form(
            kind,
            name="Depot 2",
            description="The <depot>",
            flex_model='{"soc-max": "10 kWh"}',
            flex_context='{"site-power-capacity": "1 MW"}',
        ),
    )
    assert (status, location) == (303, f"/assets/{asset_id}?notice=saved")
    asset = await get_json(dash, dash.admin, f"/api/v3_0/assets/{asset_id}")
    assert asset["name"] == "Depot 2"
    assert asset["description"] == "The <depot>"
    assert asset["external_id"] is None
    assert "soc-max" in asset["flex_model"]
    assert "site-power-capacity" in asset["flex_context"]


async def test_asset_form_shows_the_apis_422_next_to_fields(dash: Dash) -> None:
    seeded = await seed(dash)
    kind = await asset_type(dash, await api(dash, dash.admin))
    status, text, _ = await submit(
        dash,
        dash.admin,
        f"/assets/{seeded.site}/edit",
        asset_form(kind, latitude="95", attributes="{not json", name="Kept <i>"),
    )
    assert status == 422
    assert 'id="latitude-error"' in text
    assert "exceeds the maximum latitude" in text
    assert 'id="attributes-error"' in text
    assert 'aria-invalid="true"' in text
    # What the user typed is kept (escaped).
    assert 'value="Kept &lt;i&gt;"' in text
    assert "{not json" in text
    asset = await get_json(dash, dash.admin, f"/api/v3_0/assets/{seeded.site}")
    assert asset["name"] == "Site <b>A</b>"  # nothing was saved
    status, text, _ = await submit(
        dash, dash.admin, "/assets/new", asset_form(kind, name="", latitude="north")
    )
    assert status == 422
    assert 'id="name-error"' in text
    assert 'id="latitude-error"' in text
    assert "Not a valid number." in text


async def test_asset_forms_need_csrf_and_origin(dash: Dash) -> None:
    seeded = await seed(dash)
    kind = await asset_type(dash, await api(dash, dash.admin))
    for csrf, origin in (
        ("wrong", ORIGIN),
        ("csrf-secret", {"Origin": "http://evil.example"}),
    ):
        for path in (
            "/assets/new",
            f"/assets/{seeded.site}/edit",
            f"/assets/{seeded.site}/delete",
            f"/assets/{seeded.site}/sensors/new",
            f"/sensors/{seeded.power}/edit",
        ):
            status, text, _ = await submit(
                dash, dash.admin, path, asset_form(kind), csrf=csrf, origin=origin
            )
            assert status == 403, path
            assert "could not be verified" in text
    assert await get_json(dash, dash.admin, f"/api/v3_0/assets/{seeded.site}")


async def test_forbidden_actions_show_a_clear_message(
    dash: Dash, sqlite_database_url: str
) -> None:
    seeded = await seed(dash)
    kind = await asset_type(dash, await api(dash, dash.admin))
    member = await add_member(sqlite_database_url, dash.admin.account_id)
    # A member may not create top-level assets, nor delete, nor edit sensors.
    status, text, _ = await submit(dash, member, "/assets/new", asset_form(kind))
    assert status == 403
    assert "not allowed" in text
    status, text, _ = await submit(dash, member, f"/assets/{seeded.site}/delete", {})
    assert status == 403
    assert "account-admin" in text
    status, text, _ = await submit(
        dash,
        member,
        f"/sensors/{seeded.power}/edit",
        {"name": "x", "unit": "kW", "event_resolution": "PT15M", "attributes": "{}"},
    )
    assert status == 403
    assert "not allowed" in text
    status, text = await page(dash, member, f"/assets/{seeded.site}/delete")
    assert status == 200
    assert "You may not delete this asset" in text
    # Another account's asset: 403 on every form.
    status, text, _ = await submit(
        dash, dash.outsider, f"/assets/{seeded.site}/edit", asset_form(kind)
    )
    assert status == 403


async def test_delete_asset_lists_what_goes_then_deletes(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/assets/{seeded.site}/delete")
    assert status == 200
    assert f'href="/assets/{seeded.battery}"' in text  # the child
    assert f'href="/sensors/{seeded.power}"' in text  # the child's sensor
    assert f'href="/sensors/{seeded.price}"' in text
    assert "8 values" in text  # the power sensor's data
    assert "1 child asset" in text
    assert "2 sensors" in text
    status, _, location = await submit(
        dash, dash.admin, f"/assets/{seeded.site}/delete", {}
    )
    assert (status, location) == (303, "/assets?notice=deleted")
    status, text = await page(dash, dash.admin, location)
    assert "The asset has been deleted." in text
    assert f'href="/assets/{seeded.site}"' not in text
    status, _ = await page(dash, dash.admin, f"/assets/{seeded.battery}")
    assert status == 404


async def test_create_and_edit_sensor_with_api_messages(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/assets/{seeded.site}/sensors/new")
    assert status == 200
    assert 'value="PT15M"' in text
    bad = {
        "name": "meter",
        "unit": "not-a-unit",
        "event_resolution": "15 minutes",
        "timezone": "Mars/Base",
        "attributes": "[]",
    }
    status, text, _ = await submit(
        dash, dash.admin, f"/assets/{seeded.site}/sensors/new", bad
    )
    assert status == 422
    for name in ("unit", "event_resolution", "timezone", "attributes"):
        assert f'id="{name}-error"' in text, name
    assert 'value="not-a-unit"' in text
    assert 'value="Mars/Base"' in text
    good = {
        **bad,
        "unit": "kWh",
        "event_resolution": "PT1H",
        "timezone": "Europe/Amsterdam",
        "attributes": "{}",
    }
    status, _, location = await submit(
        dash, dash.admin, f"/assets/{seeded.site}/sensors/new", good
    )
    assert (status, location) == (303, f"/assets/{seeded.site}?notice=sensor-created")
    status, text = await page(dash, dash.admin, location)
    assert "meter" in text
    assert "The sensor has been created." in text
    sensors = await get_json(
        dash, dash.admin, f"/api/v3_0/assets/{seeded.site}/sensors"
    )
    [meter] = [s for s in sensors["data"] if s["name"] == "meter"]
    assert meter["timezone"] == "Europe/Amsterdam"
    status, text = await page(dash, dash.admin, f"/sensors/{meter['id']}/edit")
    assert 'value="meter"' in text
    assert 'value="PT1H"' in text
    status, text, _ = await submit(
        dash,
        dash.admin,
        f"/sensors/{meter['id']}/edit",
        {**good, "event_resolution": "P1M"},
    )
    assert status == 422
    assert 'id="event_resolution-error"' in text
    status, _, location = await submit(
        dash, dash.admin, f"/sensors/{meter['id']}/edit", {**good, "name": "meter 2"}
    )
    assert (status, location) == (303, f"/sensors/{meter['id']}?notice=sensor-saved")
    assert (await get_json(dash, dash.admin, f"/api/v3_0/sensors/{meter['id']}"))[
        "name"
    ] == "meter 2"


def test_field_errors_reads_flexmeasures_422() -> None:
    body = {
        "message": {"json": {"name": ["Too long.", "Bad."], "x": "text"}},
        "status": "UNPROCESSABLE_ENTITY",
    }
    assert field_errors(body) == {"name": "Too long. Bad.", "x": "text"}
    assert field_errors({"message": "plain"}) == {}
    assert field_errors(None) == {}


# --- jobs -------------------------------------------------------------------------------------


async def test_jobs_page_without_queue_says_so(dash: Dash) -> None:
    status, text = await page(dash, dash.admin, "/jobs")
    assert status == 200
    assert "The job queue is unavailable" in text
    assert "No jobs yet" in text
    assert 'http-equiv="refresh"' not in text


async def test_jobs_page_lists_pending_and_failed_jobs(
    make_dash: DashFactory, redis_url: str, redis_prefix: str
) -> None:
    dash = await make_dash(
        redis_url=redis_url, redis_prefix=redis_prefix, trigger_period=0
    )
    seeded = await seed(dash)
    response = await dash.gateway.post(
        f"/api/v3_0/sensors/{seeded.power}/schedules/trigger",
        json={
            "start": "2026-01-15T00:00:00+01:00",
            "duration": "PT4H",
            "flex-model": {
                "soc-at-start": "0 kWh",
                "soc-max": "10 kWh",
                "power-capacity": "5 kW",
            },
            "flex-context": {"consumption-price": "100 EUR/MWh"},
        },
        headers=await api(dash, dash.admin),
    )
    assert response.status == 202, await response.text()
    job_id = (await response.json())["schedule"]
    status, text = await page(dash, dash.admin, "/jobs")
    assert status == 200
    assert "Queued" in text
    assert job_id in text
    assert f'href="/sensors/{seeded.power}"' in text
    assert f'href="/assets/{seeded.battery}"' in text
    assert '<meta http-equiv="refresh" content="5">' in text
    listing = await get_json(dash, dash.admin, "/api/v3_0/jobs")  # via the proxy too
    assert [job["job_id"] for job in listing["jobs"]] == [job_id]
    set_job_status(
        redis_url,
        redis_prefix,
        job_id,
        JobStatus.FAILED,
        {"type": "ValueError", "message": "no <b>prices</b>"},
    )
    status, text = await page(dash, dash.admin, "/jobs")
    assert "Failed" in text
    assert "Scheduling job failed with ValueError: no &lt;b&gt;prices&lt;/b&gt;" in text
    assert 'http-equiv="refresh"' not in text
    # Another account's user sees none of them.
    status, text = await page(dash, dash.outsider, "/jobs")
    assert status == 200
    assert job_id not in text
    assert "No jobs yet" in text
