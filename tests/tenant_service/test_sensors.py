"""The sensors API: listing, filters, CRUD, entity addresses and ACLs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import insert, select

from tenant_service.store.db import create_engine
from tenant_service.store.tables import data_sources, timed_beliefs
from tests.tenant_service.conftest import (
    FORBIDDEN,
    Client,
    World,
    identity,
    make_asset,
    make_sensor,
)

SENSOR_KEYS = {
    "id",
    "name",
    "unit",
    "timezone",
    "event_resolution",
    "entity_address",
    "attributes",
    "generic_asset_id",
}


async def test_create_and_read(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    resp = await client.post(
        "/api/v3_0/sensors",
        json={
            "name": "power",
            "unit": "MW",
            "event_resolution": "P0DT0H15M0S",
            "generic_asset_id": site["id"],
            "timezone": "Europe/Amsterdam",
            "attributes": '{"capacity_in_mw": 10}',
        },
        headers=identity(world.member),
    )
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == SENSOR_KEYS | {"status"}
    assert body["event_resolution"] == "PT15M"
    assert body["attributes"] == '{"capacity_in_mw": 10}'
    assert (
        body["entity_address"] == f"ea1.2021-01.io.flexmeasures.acme:fm1.{body['id']}"
    )
    resp = await client.get(
        f"/api/v3_0/sensors/{body['id']}", headers=identity(world.member)
    )
    assert resp.status == 200
    assert await resp.json() == {**body, "status": 200}
    # default time zone, instantaneous resolution, attributes as an object
    resp = await client.post(
        "/api/v3_0/sensors",
        json={
            "name": "temp",
            "unit": "°C",
            "event_resolution": "P0D",
            "generic_asset_id": str(site["id"]),
            "attributes": {"a": [1, 2]},
        },
        headers=identity(world.member),
    )
    body = await resp.json()
    assert resp.status == 201, body
    assert body["timezone"] == "UTC"
    assert body["event_resolution"] == "P0D"
    assert body["attributes"] == '{"a": [1, 2]}'


async def test_unknown_and_forbidden(client: Client, world: World) -> None:
    site = await make_asset(client, world.outsider)
    sensor_id = await make_sensor(client, world.outsider, site["id"], "power")
    resp = await client.get("/api/v3_0/sensors/999999", headers=identity(world.member))
    assert resp.status == 422
    assert await resp.json() == {
        "message": {"path": {"id": ["No sensor found with ID 999999."]}},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }
    resp = await client.get(
        f"/api/v3_0/sensors/{sensor_id}", headers=identity(world.member)
    )
    assert resp.status == 403
    assert await resp.json() == FORBIDDEN
    resp = await client.get(
        f"/api/v3_0/sensors/{sensor_id}", headers=identity(world.reader)
    )
    assert resp.status == 200


async def test_listing(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    child = await make_asset(client, world.member, name="c", parent_asset_id=site["id"])
    a = await make_sensor(client, world.member, site["id"], "a")
    b = await make_sensor(client, world.member, child["id"], "b")
    theirs = await make_asset(client, world.outsider, name="T")
    t = await make_sensor(client, world.outsider, theirs["id"], "t")
    clients = await make_asset(
        client, world.admin, name="C", account_id=world.client_account
    )
    c = await make_sensor(client, world.admin, clients["id"], "c")
    public = await make_asset(client, world.admin, name="P", account_id=None)
    p = await make_sensor(client, world.admin, public["id"], "p")

    async def ids(user: int, query: str = "") -> Any:
        resp = await client.get(f"/api/v3_0/sensors{query}", headers=identity(user))
        body = await resp.json()
        if resp.status != 200:
            return resp.status, body
        return [s["id"] for s in body] if isinstance(body, list) else body

    assert await ids(world.member) == [a, b]
    assert await ids(world.admin) == [a, b]
    assert await ids(world.member, f"?asset_id={site['id']}") == [a, b]
    assert await ids(world.member, f"?asset={child['id']}") == [b]
    assert await ids(world.member, "?include_public_assets=true") == [a, b, p]
    assert await ids(world.consultant, "?include_consultancy_clients=True") == [a, b, c]
    assert await ids(world.member, "?include_consultancy_clients=True") == [a, b]
    assert await ids(world.outsider) == [t]
    assert (await ids(world.member, f"?account={world.other}"))[0] == 403
    assert (await ids(world.member, f"?asset={theirs['id']}"))[0] == 403
    assert await ids(world.reader, f"?account_id={world.other}") == [t]
    assert await ids(world.member, "?unit=kW") == [a, b]
    assert await ids(world.member, "?unit=MW") == []
    status, body = await ids(world.admin, f"?account={world.acme}&asset={theirs['id']}")
    assert status == 422
    assert body == {
        "message": "Please provide either an account or an asset ID, not both",
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }
    body = await ids(world.member, "?page=1&per_page=1")
    assert [s["id"] for s in body["data"]] == [a]
    assert body["num-records"] == 2
    assert body["filtered-records"] == 2
    body = await ids(world.member, "?page=1&filter=b")
    assert [s["id"] for s in body["data"]] == [b]
    assert body["filtered-records"] == 1
    for query in (
        "?asset=x",
        "?account=99999",
        "?asset=99999",
        "?page=x",
        "?include_public_assets=2",
    ):
        assert (await ids(world.member, query))[0] == 422, query


async def test_search_terms_are_literal_and_sorting(
    client: Client, world: World
) -> None:
    """`%`, `_` and `/` in a filter match themselves; digits also match id prefixes."""
    site = await make_asset(client, world.account_admin)
    names = ["50% load", "500 kW", "a_b", "axb", "x/y", "Zeta"]
    made = {
        name: await make_sensor(client, world.member, site["id"], name)
        for name in names
    }

    async def listed(query: str, path: str = "/api/v3_0/sensors") -> list[str]:
        resp = await client.get(path + query, headers=identity(world.member))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        rows = body["data"] if isinstance(body, dict) else body
        return [row["name"] for row in rows]

    assert await listed("?filter=50%25") == ["50% load"]
    assert await listed("?filter=a_b") == ["a_b"]
    assert await listed("?filter=x/y") == ["x/y"]
    assert await listed("?filter=LOAD%2050") == ["50% load"]  # every term, any case
    assert await listed(f"?filter={made['Zeta']}") == ["Zeta"]  # an id prefix
    # Names sort in the database's collation; descending is ascending reversed.
    ascending = await listed("?sort_by=name")
    assert sorted(ascending) == sorted(names)
    assert await listed("?sort_by=name&sort_dir=desc") == ascending[::-1]
    on_asset = f"/api/v3_0/assets/{site['id']}/sensors"
    assert await listed("?filter=zeta%20axb", on_asset) == ["axb", "Zeta"]  # any term
    assert await listed("?sort-by=name&per-page=2&page=2", on_asset) == ascending[2:4]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"unit": None}, "unit"),
        ({"unit": "bananas per fortnight"}, "unit"),
        ({"event_resolution": "15 minutes"}, "event_resolution"),
        ({"event_resolution": "P1M"}, "event_resolution"),
        ({"event_resolution": "-PT15M"}, "event_resolution"),
        ({"event_resolution": 15}, "event_resolution"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"attributes": "[1]"}, "attributes"),
        ({"attributes": "{oops"}, "attributes"),
        ({"name": ""}, "name"),
        ({"generic_asset_id": 999999}, "generic_asset_id"),
        ({"generic_asset_id": True}, "generic_asset_id"),
        ({"entity_address": "ea1"}, "entity_address"),
        ({"id": 4}, "id"),
    ],
)
async def test_create_validation(
    client: Client, world: World, change: dict[str, Any], field: str
) -> None:
    site = await make_asset(client, world.account_admin)
    body = {
        "name": "power",
        "unit": "kW",
        "event_resolution": "PT15M",
        "generic_asset_id": site["id"],
        **change,
    }
    if change.get("unit", "") is None:
        del body["unit"]
    resp = await client.post(
        "/api/v3_0/sensors", json=body, headers=identity(world.member)
    )
    assert resp.status == 422
    data = await resp.json()
    assert field in data["message"]["json"], data
    resp = await client.get("/api/v3_0/sensors", headers=identity(world.member))
    assert await resp.json() == []


async def test_create_rights_and_duplicates(client: Client, world: World) -> None:
    theirs = await make_asset(client, world.outsider)
    resp = await client.post(
        "/api/v3_0/sensors",
        json={
            "name": "x",
            "unit": "kW",
            "event_resolution": "PT1H",
            "generic_asset_id": theirs["id"],
        },
        headers=identity(world.member),
    )
    assert resp.status == 403
    site = await make_asset(client, world.account_admin)
    await make_sensor(client, world.member, site["id"], "power")
    resp = await client.post(
        "/api/v3_0/sensors",
        json={
            "name": "power",
            "unit": "kW",
            "event_resolution": "PT1H",
            "generic_asset_id": site["id"],
        },
        headers=identity(world.member),
    )
    assert resp.status == 422
    assert "name" in (await resp.json())["message"]["json"]


async def test_patch(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    sensor_id = await make_sensor(client, world.member, site["id"], "power")
    url = f"/api/v3_0/sensors/{sensor_id}"
    resp = await client.patch(url, json={"name": "p2"}, headers=identity(world.member))
    assert resp.status == 403  # account-admins only
    resp = await client.patch(
        url,
        json={
            "name": "p2",
            "unit": "MW",
            "event_resolution": "PT1H",
            "attributes": '{"x": 1}',
        },
        headers=identity(world.account_admin),
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["name"], body["unit"], body["event_resolution"]) == (
        "p2",
        "MW",
        "PT1H",
    )
    assert body["attributes"] == '{"x": 1}'
    for field in ("id", "generic_asset_id", "entity_address"):
        resp = await client.patch(url, json={field: 1}, headers=identity(world.admin))
        assert resp.status == 422
        assert (await resp.json())["message"]["json"] == {field: ["Unknown field."]}
    resp = await client.patch(
        "/api/v3_0/sensors/999999", json={"name": "x"}, headers=identity(world.admin)
    )
    assert resp.status == 422


async def test_delete_removes_beliefs(
    client: Client, world: World, database_url: str
) -> None:
    site = await make_asset(client, world.account_admin)
    sensor_id = await make_sensor(client, world.member, site["id"], "power")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            source = (
                await conn.execute(
                    insert(data_sources)
                    .values(name="t", type="user", key="t")
                    .returning(data_sources.c.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(timed_beliefs).values(
                    sensor_id=sensor_id,
                    event_start=0,
                    source_id=source,
                    belief_horizon=0,
                    event_value=1.0,
                )
            )
        url = f"/api/v3_0/sensors/{sensor_id}"
        resp = await client.delete(url, headers=identity(world.member))
        assert resp.status == 403
        resp = await client.delete(url, headers=identity(world.account_admin))
        assert resp.status == 204
        assert resp.headers["Content-Type"].startswith("application/json")
        resp = await client.get(url, headers=identity(world.admin))
        assert resp.status == 422
        async with engine.connect() as conn:
            left = (await conn.execute(select(timed_beliefs))).all()
        assert left == []
    finally:
        await engine.dispose()
