"""One happy path per annotation, chart and asset-tool route, through the gateway."""

from __future__ import annotations

from typing import Any

from tests.helpers.stack import COMPANY, Stack, login, seed_asset_and_sensor

START = "2026-01-01T00:00:00+01:00"
WINDOW = {"start": START, "end": "2026-01-02T00:00:00+01:00"}


async def test_asset_extras_through_the_gateway(stack: Stack) -> None:
    asset, sensor = await seed_asset_and_sensor(stack)
    auth = {**COMPANY, "Authorization": await login(stack, "admin@company.test")}

    async def call(
        method: str,
        path: str,
        expect: int,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        response = await stack.gateway.request(
            method, f"/api/v3_0/{path}", json=body, params=params or {}, headers=auth
        )
        answer = await response.json()
        assert response.status == expect, (path, answer)
        return answer

    note = {"content": "check", "start": START, "end": "2026-01-01T01:00:00+01:00"}
    created = await call("POST", f"assets/{asset}/annotations", 201, note)
    assert created["content"] == "check"
    assert await call("POST", f"sensors/{sensor}/annotations", 200, note) == created
    account_note = {**note, "type": "holiday"}
    await call("POST", f"accounts/{stack.account_id}/annotations", 201, account_note)
    listed = await call("GET", f"assets/{asset}/chart_annotations", 200, None, WINDOW)
    assert [a["content"] for a in listed] == [["check", "check"]]

    await call("PATCH", f"assets/{asset}", 200, {"sensors_to_show": [sensor]})
    data = {"values": [1.0] * 4, "start": START, "duration": "PT1H", "unit": "MW"}
    await call("POST", f"sensors/{sensor}/data", 200, data)
    records = await call("GET", f"assets/{asset}/chart_data", 200, None, WINDOW)
    assert len(records) == 4
    spec = await call("GET", f"assets/{asset}/chart", 200, None, WINDOW)
    assert len(spec["vconcat"]) == 1
    await call(
        "PATCH",
        f"assets/{asset}",
        200,
        {"sensors_to_show_as_kpis": [{"title": "Total", "sensor": sensor}]},
    )
    kpis = await call("GET", f"assets/{asset}/kpis", 200, None, WINDOW)
    assert kpis["data"][0]["downsample_value"] == 4.0

    copied = await call("POST", f"assets/{asset}/copy", 201)
    assert copied["message"] == f"Successfully copied asset {asset}."
    jobs = await call("GET", f"assets/{asset}/jobs", 200)
    assert jobs["jobs"] == []
    view = {"default_asset_view": "Graphs"}
    await call("POST", "assets/default_asset_view", 200, view)
    legends = {"keep_legends_below_graphs": True}
    await call("POST", "assets/keep_legends_below_graphs", 200, legends)
