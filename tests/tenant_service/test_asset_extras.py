"""Annotations, asset copy/jobs/charts/KPIs and the asset-page preferences (#12)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from rq.job import JobStatus
from sqlalchemy import select

from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.scheduling import jobs
from tenant_service.store.db import create_engine
from tenant_service.store.tables import user_preferences
from tests.helpers.schedules import battery, make_site, trigger
from tests.tenant_service.conftest import (
    FORBIDDEN,
    ClientFactory,
    World,
    identity,
    make_asset,
    make_sensor,
)

Client = TestClient[Any, Any]
NOTE = {
    "content": "maintenance",
    "start": "2026-01-01T02:00:00+01:00",
    "end": "2026-01-01T04:00:00+01:00",
}
WINDOW = {
    "event_starts_after": "2026-01-01T00:00:00+01:00",
    "event_ends_before": "2026-01-02T00:00:00+01:00",
}


async def _post(
    client: Client, user: int, path: str, body: Any
) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/api/v3_0/{path}", json=body, headers=identity(user))
    return response.status, await response.json()


async def _get(
    client: Client, user: int, path: str, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    response = await client.get(
        f"/api/v3_0/{path}", params=params or {}, headers=identity(user)
    )
    return response.status, await response.json()


# --- annotations ------------------------------------------------------------------


async def test_annotation_stored_once_and_attached(
    client: Client, world: World
) -> None:
    site = await make_asset(client, world.account_admin)
    sensor = await make_sensor(client, world.member, site["id"], "power")
    status, created = await _post(
        client, world.member, f"assets/{site['id']}/annotations", NOTE
    )
    assert status == 201, created
    assert created == {
        "content": "maintenance",
        "end": "2026-01-01T03:00:00+00:00",
        "id": created["id"],
        "prior": None,
        "source": created["source"],
        "start": "2026-01-01T01:00:00+00:00",
        "type": "label",
    }
    # the same annotation again, and on a sensor: the stored one, 200
    for path in (f"assets/{site['id']}", f"sensors/{sensor}"):
        status, again = await _post(client, world.member, f"{path}/annotations", NOTE)
        assert (status, again) == (200, created)
    holiday = {
        "content": "holiday",
        "type": "holiday",
        "prior": "2025-12-01T00:00:00Z",
        "start": "2026-01-01T00:00:00+01:00",
        "end": "2026-01-02T00:00:00+01:00",
    }
    status, other = await _post(
        client, world.account_admin, f"accounts/{world.acme}/annotations", holiday
    )
    assert status == 201, other
    assert other["prior"] == "2025-12-01T00:00:00+00:00"
    assert other["id"] != created["id"]
    # chart annotations: the asset's and the account's, clipped to the window
    status, listed = await _get(
        client,
        world.member,
        f"assets/{site['id']}/chart_annotations",
        {**WINDOW, "event_starts_after": "2026-01-01T02:30:00+01:00"},
    )
    assert status == 200, listed
    assert listed == [
        {
            "index": 0,
            "start": 1767231000000,
            "end": 1767236400000,
            "belief_time": None,
            "source": "member",
            "type": "label",
            "content": ["maintenance"],
        },
        {
            "index": 1,
            "start": 1767231000000,
            "end": 1767308400000,
            "belief_time": 1764547200000,
            "source": "boss",
            "type": "holiday",
            "content": ["holiday"],
        },
    ]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {},
            {
                "content": ["Missing data for required field."],
                "start": ["Missing data for required field."],
                "end": ["Missing data for required field."],
            },
        ),
        (
            {**NOTE, "type": "bogus", "extra": 1},
            {
                "type": [
                    "Must be one of: alert, holiday, label, feedback, warning, error."
                ],
                "extra": ["Unknown field."],
            },
        ),
        (
            {**NOTE, "start": "2026-01-01T02:00:00", "end": 5},
            {
                "start": ["Not a valid aware datetime."],
                "end": ["Not a valid datetime."],
            },
        ),
        ({**NOTE, "end": NOTE["start"]}, {"_schema": ["end must be after start"]}),
        (
            {**NOTE, "content": "x" * 1025},
            {"content": ["Longer than maximum length 1024."]},
        ),
    ],
)
async def test_annotation_invalid(
    client: Client, world: World, body: dict[str, Any], errors: dict[str, Any]
) -> None:
    site = await make_asset(client, world.account_admin)
    status, answer = await _post(
        client, world.member, f"assets/{site['id']}/annotations", body
    )
    assert status == 422
    assert answer["message"] == {"json": errors}


async def test_annotation_permissions(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    sensor = await make_sensor(client, world.member, site["id"], "power")
    for user, path in (
        (world.outsider, f"assets/{site['id']}"),
        (world.outsider, f"sensors/{sensor}"),
        (world.member, f"accounts/{world.acme}"),  # account: account-admins only
    ):
        status, answer = await _post(client, user, f"{path}/annotations", NOTE)
        assert (status, answer) == (403, FORBIDDEN), path
    status, answer = await _post(client, world.admin, "accounts/9999/annotations", NOTE)
    assert (status, answer) == (
        404,
        {"message": "Account 9999 not found", "status": 404},
    )
    status, answer = await _post(client, world.admin, "sensors/9999/annotations", NOTE)
    assert status == 422
    assert answer["message"] == {"path": {"id": ["No sensor found with ID 9999."]}}
    status, answer = await _post(client, world.admin, "assets/9999/annotations", NOTE)
    assert status == 404


async def test_annotated_asset_and_sensor_can_be_deleted(
    client: Client, world: World
) -> None:
    site = await make_asset(client, world.account_admin)
    sensor = await make_sensor(client, world.member, site["id"], "power")
    for path in (f"assets/{site['id']}", f"sensors/{sensor}"):
        status, _ = await _post(client, world.member, f"{path}/annotations", NOTE)
        assert status in (200, 201)
    response = await client.delete(
        f"/api/v3_0/assets/{site['id']}", headers=identity(world.account_admin)
    )
    assert response.status == 204


# --- copy -----------------------------------------------------------------------------


async def test_copy_asset_tree(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    child = await make_asset(
        client, world.member, name="child", parent_asset_id=site["id"]
    )
    power = await make_sensor(client, world.member, child["id"], "power")
    elsewhere = await make_asset(client, world.account_admin, name="elsewhere")
    private = await make_sensor(client, world.member, elsewhere["id"], "price")
    response = await client.patch(
        f"/api/v3_0/assets/{site['id']}",
        json={
            "sensors_to_show": [power, {"title": "t", "sensors": [power, private]}],
            "flex_model": {"sensor": power},
            "flex_context": {"consumption-price": {"sensor": private}, "x": 1},
        },
        headers=identity(world.member),
    )
    assert response.status == 200
    status, answer = await _post(
        client, world.account_admin, f"assets/{site['id']}/copy", None
    )
    assert status == 201, answer
    copy_id = answer["asset"]
    assert answer == {
        "message": f"Successfully copied asset {site['id']}.",
        "asset": copy_id,
        "status": 201,
    }
    status, copied = await _get(client, world.member, f"assets/{copy_id}")
    assert copied["name"] == "Site (Copy)"
    assert copied["account_id"] == world.acme
    [copied_child] = copied["child_assets"]
    status, child_copy = await _get(
        client, world.member, f"assets/{copied_child['id']}"
    )
    assert child_copy["name"] == "child"
    [new_sensor] = child_copy["sensors"]
    assert new_sensor["name"] == "power"
    assert new_sensor["id"] != power
    # copied sensors: their copies; private sensors outside the copy: dropped
    assert json.loads(copied["sensors_to_show"]) == [
        new_sensor["id"],
        {"title": "t", "sensors": [new_sensor["id"]]},
    ]
    assert json.loads(copied["flex_model"]) == {"sensor": new_sensor["id"]}
    assert json.loads(copied["flex_context"]) == {"x": 1}
    status, log = await _get(client, world.member, f"assets/{copy_id}/auditlog")
    assert status == 200, log
    events = [record["event"] for record in log["data"]]
    assert events == [
        f"Copied asset 'Site': {site['id']} to 'Site (Copy)': {copy_id}"
    ], events
    status, again = await _post(
        client, world.account_admin, f"assets/{site['id']}/copy", None
    )
    status, second = await _get(client, world.member, f"assets/{again['asset']}")
    assert second["name"] == "Site (Copy 2)"
    # under a parent: the parent's account, the plain name
    status, placed = await _post(
        client, world.member, f"assets/{child['id']}/copy?parent={copy_id}", None
    )
    assert status == 201, placed
    assert placed["message"] == (
        f"Successfully copied asset {child['id']} to parent asset {copy_id}."
    )
    # to another account, by an admin: a top-level asset there
    status, moved = await _post(
        client, world.admin, f"assets/{site['id']}/copy?account={world.other}", None
    )
    assert status == 201, moved
    assert moved["message"] == (
        f"Successfully copied asset {site['id']} to account {world.other}."
    )
    status, there = await _get(client, world.admin, f"assets/{moved['asset']}")
    assert (there["account_id"], there["parent_asset_id"]) == (world.other, None)
    assert there["name"] == "Site (Copy)"


async def test_copy_asset_refused(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    child = await make_asset(client, world.member, name="c", parent_asset_id=site["id"])
    status, answer = await _post(
        client, world.admin, f"assets/{site['id']}/copy?parent={child['id']}", None
    )
    assert status == 422
    assert "cannot copy an asset to itself" in answer["message"]
    # a top-level copy needs account-admin rights in the account
    status, answer = await _post(
        client, world.member, f"assets/{site['id']}/copy", None
    )
    assert (status, answer) == (403, FORBIDDEN)
    status, answer = await _post(
        client, world.outsider, f"assets/{site['id']}/copy", None
    )
    assert status == 403
    for query, code in (("account=999", 404), ("parent=999", 422), ("parent=x", 422)):
        status, answer = await _post(
            client, world.admin, f"assets/{site['id']}/copy?{query}", None
        )
        assert status == code, answer


# --- jobs -------------------------------------------------------------------------


@pytest.fixture
def queued(settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    """The backend's settings with the job queue on the test Redis."""
    return dataclasses.replace(
        settings, redis_url=redis_url, redis_prefix=redis_prefix, trigger_period=0
    )


async def test_asset_jobs_lists_schedule_jobs(
    aiohttp_client: ClientFactory, queued: Settings, world: World
) -> None:
    client = await aiohttp_client(create_app(queued))
    site = await make_site(client, world)
    status, body = await trigger(client, world.member, site.power, battery(site))
    assert status == 202, body
    status, listing = await _get(client, world.member, f"assets/{site.asset}/jobs")
    assert status == 200, listing
    [job] = listing["jobs"]
    assert listing["redis_connection_err"] is None
    assert job["job_id"] == body["job"]
    assert job["queue"] == "scheduling"
    assert job["asset_or_sensor_type"] == "sensor"
    assert job["entity"] == f"sensor: power (Id: {site.power})"
    assert job["status"] == "queued"
    assert job["err"] is None
    assert job["enqueued_at"].endswith(" GMT")
    assert json.loads(job["metadata"])["job_id"] == body["job"]
    assert len(job["metadata_hash"]) == 64
    other = await make_asset(client, world.account_admin, name="other")
    status, listing = await _get(client, world.member, f"assets/{other['id']}/jobs")
    assert listing["jobs"] == []


async def test_asset_jobs_lists_any_job_by_meta(
    aiohttp_client: ClientFactory, queued: Settings, world: World
) -> None:
    """A forecast job (its function, its meta) is listed as its sensor's."""
    client = await aiohttp_client(create_app(queued))
    site = await make_asset(client, world.account_admin)
    sensor = await make_sensor(client, world.member, site["id"], "power")
    connection = jobs.connect(queued)
    try:
        # the meta a forecast trigger gives its job (api/v3_0/forecasts.py)
        job = jobs.queue(connection, queued).enqueue(
            jobs.FORECAST_FUNCTION,
            meta={"origin": "forecasting", "sensor_id": sensor, "sensors": [sensor]},
        )
        job.meta["exception"] = {"type": "ValueError", "message": "too little data"}
        job.save_meta()  # type: ignore[no-untyped-call]  # rq leaves it untyped
        job.set_status(JobStatus.FAILED)
    finally:
        jobs.close(connection)
    status, listing = await _get(client, world.member, f"assets/{site['id']}/jobs")
    assert status == 200, listing
    [entry] = listing["jobs"]
    assert entry["job_id"] == job.id
    assert entry["queue"] == "forecasting"
    assert entry["asset_or_sensor_type"] == "sensor"
    assert entry["status"] == "failed"
    assert entry["err"] == ("Scheduling job failed with ValueError: too little data")


async def test_asset_jobs_without_queue(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    status, listing = await _get(client, world.member, f"assets/{site['id']}/jobs")
    assert status == 200
    assert listing == {
        "jobs": [],
        "redis_connection_err": "Redis not configured",
        "status": 200,
    }
    status, _ = await _get(client, world.outsider, f"assets/{site['id']}/jobs")
    assert status == 403


async def test_account_jobs_lists_the_accounts_jobs_newest_first(
    aiohttp_client: ClientFactory, queued: Settings, world: World
) -> None:
    """GET /jobs (flexhost): the account's schedule and forecast jobs, with times
    and each one's message; other accounts' only to those who may read them."""
    client = await aiohttp_client(create_app(queued))
    site = await make_site(client, world)
    status, body = await trigger(client, world.member, site.power, battery(site))
    assert status == 202, body
    connection = jobs.connect(queued)
    try:
        failed = jobs.queue(connection, queued).enqueue(
            jobs.FORECAST_FUNCTION,
            meta={"origin": "forecasting", "sensor_id": site.power},
        )
        failed.meta["exception"] = {"type": "ValueError", "message": "too little data"}
        failed.save_meta()  # type: ignore[no-untyped-call]  # rq leaves it untyped
        failed.set_status(JobStatus.FAILED)
    finally:
        jobs.close(connection)
    status, listing = await _get(client, world.member, "jobs")
    assert status == 200, listing
    assert listing["redis_connection_err"] is None
    newest, oldest = listing["jobs"]
    assert newest["job_id"] == failed.id
    assert newest["queue"] == "forecasting"
    assert newest["status"] == "failed"
    assert newest["message"] == (
        "Forecasting job failed with ValueError: too little data"
    )
    assert (newest["asset_or_sensor_type"], newest["entity_id"]) == (
        "sensor",
        site.power,
    )
    assert newest["entity_name"] == "power"
    assert newest["asset_id"] == site.asset
    assert oldest["job_id"] == body["job"]
    assert oldest["status"] == "queued"
    assert oldest["message"] == "Scheduling job waiting to be processed."
    assert oldest["enqueued_at"].endswith("+00:00")
    assert oldest["started_at"] is None
    assert oldest["ended_at"] is None
    # Another account sees none of them, and may not ask for them.
    status, listing = await _get(client, world.outsider, "jobs")
    assert (status, listing["jobs"]) == (200, [])
    status, _ = await _get(client, world.outsider, "jobs", {"account": str(world.acme)})
    assert status == 403
    status, listing = await _get(
        client, world.admin, "jobs", {"account": str(world.acme)}
    )
    assert status == 200
    assert len(listing["jobs"]) == 2
    for query, code in (("999999", 404), ("x", 422)):
        status, _ = await _get(client, world.admin, "jobs", {"account": query})
        assert status == code


async def test_account_jobs_without_queue(client: Client, world: World) -> None:
    status, listing = await _get(client, world.member, "jobs")
    assert (status, listing["jobs"]) == (200, [])
    assert listing["redis_connection_err"] == "Redis not configured"


# --- charts and KPIs ----------------------------------------------------------------


async def _charted_site(client: Client, world: World) -> tuple[int, int, int]:
    site = await make_asset(client, world.account_admin)
    power = await make_sensor(client, world.member, site["id"], "power")
    kpi = await make_sensor(client, world.member, site["id"], "energy")
    response = await client.patch(
        f"/api/v3_0/sensors/{kpi}",
        json={"event_resolution": "P1D", "unit": "kWh"},
        headers=identity(world.account_admin),
    )
    assert response.status == 200, await response.text()
    response = await client.patch(
        f"/api/v3_0/assets/{site['id']}",
        json={
            "sensors_to_show": [power, {"title": "both", "sensors": [power]}],
            "sensors_to_show_as_kpis": [
                {"title": "Energy", "sensor": kpi, "function": "sum"}
            ],
        },
        headers=identity(world.member),
    )
    assert response.status == 200
    for sensor, body in (
        (power, {"values": [1, 2, 3, 4], "duration": "PT1H", "unit": "kW"}),
        (kpi, {"values": [10, 20], "duration": "P2D", "unit": "kWh"}),
    ):
        response = await client.post(
            f"/api/v3_0/sensors/{sensor}/data",
            json={**body, "start": "2026-01-01T00:00:00+01:00"},
            headers=identity(world.member),
        )
        assert response.status == 200, await response.text()
    return site["id"], power, kpi


async def test_chart_data_and_spec(client: Client, world: World) -> None:
    asset_id, power, _ = await _charted_site(client, world)
    status, records = await _get(
        client, world.member, f"assets/{asset_id}/chart_data", WINDOW
    )
    assert status == 200, records
    assert [r["event_value"] for r in records] == [1.0, 2.0, 3.0, 4.0]
    first = records[0]
    assert set(first) == {
        "index",
        "event_start",
        "event_value",
        "belief_horizon",
        "source",
        "sensor",
        "sensor_unit",
        "scale_factor",
    }
    assert first["event_start"] == 1767222000000
    assert first["sensor"] == {
        "asset_id": asset_id,
        "id": power,
        "name": "power",
        "sensor_unit": "kW",
        "event_resolution": 900.0,
        "description": "power (Site)",
        "asset_description": "Site",
    }
    assert first["source"]["type"] == "other"
    assert first["source"]["raw_type"] == "user"
    status, spec = await _get(client, world.member, f"assets/{asset_id}/chart", WINDOW)
    assert status == 200, spec
    assert set(spec) == {
        "transform",
        "description",
        "height",
        "vconcat",
        "data",
        "config",
        "width",
        "resolve",
    }
    assert spec["data"] == {"name": f"asset_{asset_id}"}
    assert [row["title"] for row in spec["vconcat"]] == [None, "Both"]
    row = spec["vconcat"][0]
    assert [layer["mark"]["type"] for layer in row["layer"]] == [
        "line",
        "rule",
        "rect",
        "circle",
        "rule",
    ]
    line = row["layer"][0]["encoding"]
    assert line["y"]["title"] == "Power (kW)"
    assert line["x"]["scale"] == {"domain": [1767222000000.0, 1767308400000.0]}
    assert row["transform"] == [{"filter": {"field": "sensor.id", "oneOf": [power]}}]
    status, spec = await _get(
        client,
        world.member,
        f"assets/{asset_id}/chart",
        {**WINDOW, "include_data": "true", "dataset_name": "d"},
    )
    assert spec["data"] == {"name": "d"}
    assert len(spec["datasets"]["d"]) == 4
    status, spec = await _get(
        client, world.member, f"assets/{asset_id}/chart", {"combine-legend": "false"}
    )
    assert spec["resolve"] == {"scale": {"x": "shared", "color": "independent"}}
    status, spec = await _get(
        client,
        world.member,
        f"assets/{asset_id}/chart",
        {"include-asset-annotations": "true"},
    )
    names = [layer.get("name") for layer in spec["vconcat"][1]["layer"]]
    assert names[:3] + names[-1:] == [
        "annotation_band_1",
        "annotation_rule_1",
        "annotation_marker_1",
        "annotation_text_1",
    ]
    band = spec["vconcat"][1]["layer"][0]
    assert band["data"] == {"name": f"asset_{asset_id}_annotations"}
    status, answer = await _get(
        client, world.member, f"assets/{asset_id}/chart", {"start": "nope"}
    )
    assert status == 422
    assert answer["message"] == {"query": {"start": ["Not a valid datetime."]}}


async def test_chart_rows_of_several_sensors(client: Client, world: World) -> None:
    """As FlexMeasures: shared unit and dimension, scale factors, resampling."""
    asset_id, power, kpi = await _charted_site(client, world)
    mega = await make_sensor(client, world.member, asset_id, "grid")
    response = await client.patch(
        f"/api/v3_0/sensors/{mega}",
        json={"unit": "MW"},
        headers=identity(world.account_admin),
    )
    assert response.status == 200, await response.text()
    response = await client.patch(
        f"/api/v3_0/assets/{asset_id}",
        json={"sensors_to_show": [[power, kpi], [power, mega]]},
        headers=identity(world.member),
    )
    assert response.status == 200
    status, spec = await _get(client, world.member, f"assets/{asset_id}/chart", WINDOW)
    assert status == 200, spec
    mixed, powers = spec["vconcat"]
    line = mixed["layer"][0]
    assert line["encoding"]["y"]["title"] == "Value (a.u.)"
    assert powers["layer"][0]["encoding"]["y"]["title"] == "Power (kW)"
    assert powers["layer"][0]["transform"] == [
        {
            "calculate": "datum.event_value * datum.scale_factor",
            "as": "scaled_event_value",
        }
    ]
    circle = mixed["layer"][3]
    assert [p["name"] for p in circle["params"]] == [
        "hover_x_brush",
        "hover_nearest_brush",
    ]
    assert line["encoding"]["x"]["timeUnit"]["step"] == 900.0
    status, records = await _get(
        client, world.member, f"assets/{asset_id}/chart_data", WINDOW
    )
    daily = [r for r in records if r["sensor"]["id"] == kpi]
    # the daily value, resampled to the finest resolution shown (15 minutes)
    assert [r["index"] for r in daily] == list(range(96))
    assert {r["event_value"] for r in daily} == {10.0}
    assert daily[1]["event_start"] - daily[0]["event_start"] == 900_000
    belief_times = {r["event_start"] + 900_000 - r["belief_horizon"] for r in daily}
    assert len(belief_times) == 1
    assert {r["scale_factor"] for r in records if r["sensor"]["id"] == power} == {1.0}


async def test_kpis(client: Client, world: World) -> None:
    asset_id, _, kpi = await _charted_site(client, world)
    status, answer = await _get(
        client,
        world.member,
        f"assets/{asset_id}/kpis",
        {"start": "2026-01-01T00:00:00+01:00", "end": "2026-01-03T00:00:00+01:00"},
    )
    assert status == 200, answer
    assert answer == {
        "data": [
            {
                "title": "Energy",
                "unit": "kWh",
                "sensor": kpi,
                "downsample_value": 30.0,
                "downsample_function": "sum",
            }
        ]
    }
    status, answer = await _get(client, world.member, f"assets/{asset_id}/kpis")
    assert status == 422
    assert set(answer["message"]["query"]) == {"start", "end"}
    status, _ = await _get(
        client,
        world.outsider,
        f"assets/{asset_id}/kpis",
        {"start": "2026-01-01T00:00:00+01:00", "end": "2026-01-03T00:00:00+01:00"},
    )
    assert status == 403


# --- preferences ------------------------------------------------------------------


async def _preferences(database_url: str, user: int) -> dict[str, Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(user_preferences).where(
                            user_preferences.c.user_id == user
                        )
                    )
                )
                .mappings()
                .first()
            )
    finally:
        await engine.dispose()
    return {} if row is None else dict(row)


async def test_preferences_stored_per_user(
    client: Client, world: World, database_url: str
) -> None:
    status, answer = await _post(
        client,
        world.member,
        "assets/default_asset_view",
        {"default_asset_view": "Graphs"},
    )
    assert (status, answer) == (
        200,
        {"message": "Default asset view updated successfully.", "status": 200},
    )
    status, answer = await _post(
        client, world.member, "assets/keep_legends_below_graphs", {}
    )
    assert (status, answer) == (
        200,
        {"message": "Default legend position updated successfully.", "status": 200},
    )
    stored = await _preferences(database_url, world.member)
    assert stored["default_asset_view"] == "Graphs"
    assert stored["keep_legends_below_graphs"] is True
    await _post(
        client,
        world.member,
        "assets/default_asset_view",
        {"default_asset_view": "Graphs", "use_as_default": False},
    )
    await _post(
        client,
        world.member,
        "assets/keep_legends_below_graphs",
        {"keep_legends_below_graphs": False},
    )
    stored = await _preferences(database_url, world.member)
    assert stored["default_asset_view"] is None
    assert stored["keep_legends_below_graphs"] is None
    assert await _preferences(database_url, world.admin) == {}


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        (
            "default_asset_view",
            {"use_as_default": False},
            {"default_asset_view": ["Missing data for required field."]},
        ),
        (
            "default_asset_view",
            {"default_asset_view": "x"},
            {
                "default_asset_view": [
                    "Must be one of: Audit Log, Context, Graphs, Properties, Status."
                ]
            },
        ),
        (
            "keep_legends_below_graphs",
            {"keep_legends_below_graphs": "maybe"},
            {"keep_legends_below_graphs": ["Not a valid boolean."]},
        ),
    ],
)
async def test_preferences_invalid(
    client: Client, world: World, path: str, body: dict[str, Any], errors: Any
) -> None:
    status, answer = await _post(client, world.member, f"assets/{path}", body)
    assert status == 422
    assert answer["message"] == {"json": errors}


async def test_service_listing_descriptions_as_flexmeasures(
    client: Client, world: World
) -> None:
    """GET /api/v3_0 describes these routes in FlexMeasures 1.0.1's words."""
    response = await client.get("/api/v3_0", headers=identity(world.member))
    assert response.status == 200
    body = await response.json()
    listed = {s["name"]: s["description"] for s in body["services"]}
    assert {name: listed.get(name) for name in FM_DESCRIPTIONS} == FM_DESCRIPTIONS


FM_DESCRIPTIONS = {
    "POST /accounts/<id>/annotations": "Add an annotation to an account.",
    "POST /assets/<id>/annotations": "Add an annotation to an asset.",
    "POST /sensors/<id>/annotations": "Add an annotation to a sensor.",
    "GET /assets/<id>/chart": "Download an embeddable chart with time series data",
    "GET /assets/<id>/chart_annotations": "Download annotations for use in charts",
    "GET /assets/<id>/chart_data": "Download time series for use in charts",
    "POST /assets/<id>/copy": "Copy an asset to a target account and/or parent.",
    "GET /assets/<id>/jobs": "Get all background jobs related to an asset.",
    "GET /assets/<id>/kpis": "Get daily KPIs for an asset.",
    "POST /assets/default_asset_view": (
        "Update the default asset view for the current user"
    ),
    "POST /assets/keep_legends_below_graphs": (
        "Toggle whether for the current user legends should always be combined "
        "below graphs or shown to the right (per graph) above a certain number."
    ),
}
