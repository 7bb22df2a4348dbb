"""The assets API: listing, filters, pagination, tree, CRUD and FlexMeasures' ACLs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.tenant_service.conftest import (
    BUILDING,
    FORBIDDEN,
    SOLAR,
    Client,
    World,
    identity,
    make_asset,
    make_sensor,
)

ASSET_KEYS = {
    "id",
    "name",
    "description",
    "account_id",
    "owner",
    "latitude",
    "longitude",
    "generic_asset_type_id",
    "generic_asset_type",
    "attributes",
    "parent_asset_id",
    "child_assets",
    "sensors",
    "sensors_to_show",
    "flex_context",
    "flex_model",
    "sensors_to_show_as_kpis",
    "external_id",
}


async def test_types(client: Client, world: World) -> None:
    resp = await client.get("/api/v3_0/assets/types", headers=identity(world.member))
    assert resp.status == 200
    body = await resp.json()
    # FlexMeasures 1.0.1's seeded types, ids and order (a client may hard-code them)
    assert [(t["id"], t["name"]) for t in body] == [
        (1, "solar"),
        (2, "wind"),
        (3, "one-way_evse"),
        (4, "two-way_evse"),
        (5, "battery"),
        (6, "building"),
        (7, "process"),
        (8, "heat-storage"),
    ]
    assert body[4] == {"id": 5, "name": "battery", "description": "stationary battery"}


async def test_create_and_read_full_object(client: Client, world: World) -> None:
    created = await make_asset(
        client,
        world.account_admin,
        latitude=52.37,
        longitude=4.89,
        attributes=json.dumps({"capacity_in_mw": 10}),
        flex_context={"site-power-capacity": "1 MW"},
    )
    assert set(created) == ASSET_KEYS | {"status"}
    assert created["status"] == 201
    assert created["account_id"] == world.acme
    assert created["owner"] == {"id": world.acme, "name": "Acme"}
    assert created["attributes"] == '{"capacity_in_mw": 10}'
    assert json.loads(created["flex_context"]) == {"site-power-capacity": "1 MW"}
    assert created["sensors_to_show"] == "[]"
    assert created["generic_asset_type"] == {"id": BUILDING, "name": "building"}
    child = await make_asset(
        client, world.member, name="Battery", parent_asset_id=created["id"]
    )
    assert child["account_id"] == world.acme
    sensor_id = await make_sensor(client, world.member, created["id"], "power")
    resp = await client.get(
        f"/api/v3_0/assets/{created['id']}", headers=identity(world.member)
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == 200
    assert body["sensors"] == [{"id": sensor_id, "name": "power"}]
    assert body["child_assets"] == [
        {
            "id": child["id"],
            "name": "Battery",
            "account_id": world.acme,
            "generic_asset_type": {"id": BUILDING, "name": "building"},
        }
    ]
    # the client's call: a bare list
    resp = await client.get(
        "/api/v3_0/assets?all_accessible=False&sort_by=id&sort_dir=asc"
        "&include_public=False",
        headers=identity(world.member),
    )
    listing = await resp.json()
    assert [a["id"] for a in listing] == [created["id"], child["id"]]
    assert listing[0]["sensors"] == [{"id": sensor_id, "name": "power"}]


async def test_unknown_asset_is_404(client: Client, world: World) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        resp = await client.request(
            method,
            "/api/v3_0/assets/999999",
            json={} if method == "PATCH" else None,
            headers=identity(world.admin),
        )
        assert resp.status == 404
        assert await resp.json() == {
            "message": "No asset found with ID 999999.",
            "status": 404,
        }


async def test_acl_listing_and_reading(client: Client, world: World) -> None:
    mine = await make_asset(client, world.account_admin, name="Mine")
    theirs = await make_asset(client, world.outsider, name="Theirs")
    clients = await make_asset(
        client, world.admin, name="Clients", account_id=world.client_account
    )
    public = await make_asset(client, world.admin, name="Public", account_id=None)
    assert public["owner"] is None
    assert public["account_id"] is None

    async def ids(user: int, query: str = "") -> Any:
        resp = await client.get(f"/api/v3_0/assets{query}", headers=identity(user))
        if resp.status != 200:
            return resp.status
        return [a["id"] for a in await resp.json()]

    assert await ids(world.member) == [mine["id"]]
    assert await ids(world.admin) == [mine["id"]]  # own account, even for admins
    assert await ids(world.member, f"?account={world.other}") == 403
    assert await ids(world.reader, f"?account_id={world.other}") == [theirs["id"]]
    assert await ids(world.consultant, f"?account={world.client_account}") == [
        clients["id"]
    ]
    assert await ids(world.member, f"?account={world.client_account}") == 403
    assert await ids(world.member, "?include_public=true") == [mine["id"], public["id"]]
    assert sorted(await ids(world.consultant, "?all_accessible=true")) == sorted(
        [mine["id"], clients["id"], public["id"]]
    )
    assert len(await ids(world.admin, "?all_accessible=true")) == 4
    assert await ids(world.outsider, "/public") == [public["id"]]
    for user, asset, status in (
        (world.member, theirs, 403),
        (world.reader, theirs, 200),
        (world.outsider, public, 200),
        (world.consultant, clients, 200),
        (world.client_user, mine, 403),
    ):
        resp = await client.get(
            f"/api/v3_0/assets/{asset['id']}", headers=identity(user)
        )
        assert resp.status == status
        if status == 403:
            assert await resp.json() == FORBIDDEN


async def test_create_rights(client: Client, world: World) -> None:
    resp = await client.post(
        "/api/v3_0/assets",
        json={"name": "x", "generic_asset_type_id": BUILDING},
        headers=identity(world.member),
    )
    assert resp.status == 403  # top level needs account-admin
    await make_asset(client, world.member, 422, account_id=world.other)
    body = await make_asset(client, world.account_admin, 422, account_id=world.other)
    assert "account_id" in body["message"]["json"]
    await make_asset(client, world.account_admin, 422, account_id=None)  # public
    parent = await make_asset(client, world.outsider, name="Other site")
    resp = await client.post(
        "/api/v3_0/assets",
        json={
            "name": "child",
            "generic_asset_type_id": BUILDING,
            "parent_asset_id": parent["id"],
        },
        headers=identity(world.member),
    )
    assert resp.status == 403  # no update right on another account's parent
    await make_asset(client, world.admin, account_id=world.other, name="by admin")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"generic_asset_type_id": BUILDING}, "name"),
        ({"name": "x"}, "generic_asset_type_id"),
        ({"name": "x", "generic_asset_type_id": 999}, "generic_asset_type_id"),
        ({"name": "x", "generic_asset_type_id": "a"}, "generic_asset_type_id"),
        ({"name": "", "generic_asset_type_id": BUILDING}, "name"),
        ({"name": 5, "generic_asset_type_id": BUILDING}, "name"),
        ({"name": "x", "generic_asset_type_id": BUILDING, "latitude": 91}, "latitude"),
        (
            {"name": "x", "generic_asset_type_id": BUILDING, "longitude": "e"},
            "longitude",
        ),
        (
            {"name": "x", "generic_asset_type_id": BUILDING, "attributes": "{"},
            "attributes",
        ),
        (
            {"name": "x", "generic_asset_type_id": BUILDING, "attributes": "[]"},
            "attributes",
        ),
        (
            {"name": "x", "generic_asset_type_id": BUILDING, "flex_model": 3},
            "flex_model",
        ),
        (
            {"name": "x", "generic_asset_type_id": BUILDING, "sensors_to_show": "{}"},
            "sensors_to_show",
        ),
        (
            {
                "name": "x",
                "generic_asset_type_id": BUILDING,
                "attributes": '{"a": NaN}',
            },
            "attributes",
        ),
        ({"name": "x", "generic_asset_type_id": BUILDING, "id": 3}, "id"),
        ({"name": "x", "generic_asset_type_id": BUILDING, "bogus": 1}, "bogus"),
        (
            {"name": "x", "generic_asset_type_id": BUILDING, "parent_asset_id": 99999},
            "parent_asset_id",
        ),
        (
            {"name": "x", "generic_asset_type_id": BUILDING, "account_id": 99999},
            "account_id",
        ),
    ],
)
async def test_create_validation(
    client: Client, world: World, body: dict[str, Any], field: str
) -> None:
    resp = await client.post(
        "/api/v3_0/assets", json=body, headers=identity(world.account_admin)
    )
    assert resp.status == 422
    data = await resp.json()
    assert data["status"] == "UNPROCESSABLE_ENTITY"
    assert data["result"] == "Rejected"
    assert field in data["message"]["json"]
    listing = await client.get("/api/v3_0/assets", headers=identity(world.admin))
    assert await listing.json() == []  # nothing half-stored


async def test_duplicate_names(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin, name="Site")
    body = await make_asset(client, world.account_admin, 422, name="Site")
    assert "name" in body["message"]["json"]
    await make_asset(client, world.outsider, name="Site")  # other account: fine
    await make_asset(client, world.member, name="A", parent_asset_id=site["id"])
    body = await make_asset(
        client, world.member, 422, name="A", parent_asset_id=site["id"]
    )
    assert "name" in body["message"]["json"]
    other = await make_asset(client, world.member, name="B", parent_asset_id=site["id"])
    resp = await client.patch(
        f"/api/v3_0/assets/{other['id']}",
        json={"name": "A"},
        headers=identity(world.member),
    )
    assert resp.status == 422


async def test_patch(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    resp = await client.patch(
        f"/api/v3_0/assets/{site['id']}",
        json={
            "name": "Renamed",
            "latitude": 10,
            "flex_model": '{"soc-unit": "kWh"}',
            "sensors_to_show": [1, [2, 3]],
        },
        headers=identity(world.member),
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["name"] == "Renamed"
    assert body["latitude"] == 10
    assert body["flex_model"] == '{"soc-unit": "kWh"}'
    assert body["sensors_to_show"] == "[1, [2, 3]]"
    for field in ("id", "account_id"):
        resp = await client.patch(
            f"/api/v3_0/assets/{site['id']}",
            json={field: 5},
            headers=identity(world.admin),
        )
        assert resp.status == 422
        assert (await resp.json())["message"]["json"] == {field: ["Unknown field."]}
    resp = await client.patch(
        f"/api/v3_0/assets/{site['id']}",
        json={"name": "x"},
        headers=identity(world.outsider),
    )
    assert resp.status == 403
    # no cycles in the tree
    child = await make_asset(client, world.member, name="c", parent_asset_id=site["id"])
    resp = await client.patch(
        f"/api/v3_0/assets/{site['id']}",
        json={"parent_asset_id": child["id"]},
        headers=identity(world.admin),
    )
    assert resp.status == 422
    assert "parent_asset_id" in (await resp.json())["message"]["json"]


async def test_delete_cascades(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    child = await make_asset(client, world.member, name="c", parent_asset_id=site["id"])
    sensor_id = await make_sensor(client, world.member, child["id"], "power")
    resp = await client.delete(
        f"/api/v3_0/assets/{site['id']}", headers=identity(world.member)
    )
    assert resp.status == 403  # deletion needs account-admin
    resp = await client.delete(
        f"/api/v3_0/assets/{site['id']}", headers=identity(world.account_admin)
    )
    assert resp.status == 204
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.read() == b""
    for path in (f"/assets/{site['id']}", f"/assets/{child['id']}"):
        resp = await client.get("/api/v3_0" + path, headers=identity(world.admin))
        assert resp.status == 404
    resp = await client.get(
        f"/api/v3_0/sensors/{sensor_id}", headers=identity(world.admin)
    )
    assert resp.status == 422


async def test_pagination_filter_sort_fields(client: Client, world: World) -> None:
    for name in ("Solar park", "Battery", "Solar roof", "Wind"):
        await make_asset(client, world.account_admin, name=name)
    headers = identity(world.member)
    resp = await client.get(
        "/api/v3_0/assets?page=1&per-page=2&sort-by=name&sort-dir=desc", headers=headers
    )
    body = await resp.json()
    assert [a["name"] for a in body["data"]] == ["Wind", "Solar roof"]
    assert body["num-records"] == 4
    assert body["filtered-records"] == 4
    assert body["status"] == 200
    resp = await client.get(
        "/api/v3_0/assets?page=2&per_page=2&sort_by=name&sort_dir=desc", headers=headers
    )
    assert [a["name"] for a in (await resp.json())["data"]] == ["Solar park", "Battery"]
    resp = await client.get(
        "/api/v3_0/assets?page=1&filter=solar&sort-by=name", headers=headers
    )
    body = await resp.json()
    assert [a["name"] for a in body["data"]] == ["Solar park", "Solar roof"]
    assert body["filtered-records"] == 2
    assert body["num-records"] == 4
    resp = await client.get('/api/v3_0/assets?filter="solar r"', headers=headers)
    assert [a["name"] for a in await resp.json()] == ["Solar roof"]
    resp = await client.get("/api/v3_0/assets?fields=id|name", headers=headers)
    assert all(set(a) == {"id", "name"} for a in await resp.json())
    for query, field in (
        ("page=0", "page"),
        ("per-page=x", "per-page"),
        ("sort-by=height", "sort-by"),
        ("sort_dir=up", "sort_dir"),
        ("fields=id,colour", "fields"),
        ("all_accessible=maybe", "all_accessible"),
        ("account=x", "account"),
        ("root=99999", "root"),
        ("asset_type=99999", "asset_type"),
    ):
        resp = await client.get(f"/api/v3_0/assets?{query}", headers=headers)
        assert resp.status == 422, query
        assert field in (await resp.json())["message"]["query"]


async def test_root_depth_and_type(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    child = await make_asset(
        client,
        world.member,
        name="c",
        parent_asset_id=site["id"],
        generic_asset_type_id=SOLAR,
    )
    grandchild = await make_asset(
        client, world.member, name="g", parent_asset_id=child["id"]
    )
    headers = identity(world.member)

    async def ids(query: str) -> list[int]:
        resp = await client.get(f"/api/v3_0/assets?{query}", headers=headers)
        assert resp.status == 200
        return [a["id"] for a in await resp.json()]

    assert await ids(f"root={site['id']}") == [
        site["id"],
        child["id"],
        grandchild["id"],
    ]
    assert await ids(f"root={site['id']}&depth=1") == [site["id"], child["id"]]
    assert await ids(f"root={child['id']}") == [child["id"], grandchild["id"]]
    assert await ids(f"asset_type={SOLAR}") == [child["id"]]


async def test_asset_sensors(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    for name in ("b", "a", "c"):
        await make_sensor(client, world.member, site["id"], name)
    headers = identity(world.member)
    resp = await client.get(f"/api/v3_0/assets/{site['id']}/sensors", headers=headers)
    body = await resp.json()
    assert resp.status == 200
    assert [s["name"] for s in body["data"]] == ["b", "a", "c"]
    assert body["num-records"] == 3
    assert body["filtered-records"] == 3
    resp = await client.get(
        f"/api/v3_0/assets/{site['id']}/sensors?sort-by=name&per-page=2&page=2",
        headers=headers,
    )
    assert [s["name"] for s in (await resp.json())["data"]] == ["c"]
    resp = await client.get(
        f"/api/v3_0/assets/{site['id']}/sensors", headers=identity(world.outsider)
    )
    assert resp.status == 403
    resp = await client.get("/api/v3_0/assets/999999/sensors", headers=headers)
    assert resp.status == 404
