"""Every listed or embedded object passes the access check of fetching it (#10).

An asset's tree may hold assets of other accounts (an admin or a consultant put
them there): `GET /assets/<child>` is 403 for the parent's account, so no listing
may name the child or its sensors to that account either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.tenant_service.conftest import (
    Client,
    World,
    identity,
    make_asset,
    make_sensor,
)


@dataclass(frozen=True, slots=True)
class Tree:
    """Acme's site with its own sensor and a child asset of another account."""

    parent: int
    child: int  # account "other"
    public: int  # a public asset, parent of another child of "other"
    public_child: int
    mine: int  # sensor of the parent
    secret: int  # sensor of the child
    public_secret: int  # sensor of the public asset's child


@pytest.fixture
async def tree(client: Client, world: World) -> Tree:
    parent = await make_asset(client, world.admin, name="Site", account_id=world.acme)
    child = await make_asset(
        client,
        world.admin,
        name="Their battery",
        account_id=world.other,
        parent_asset_id=parent["id"],
    )
    public = await make_asset(client, world.admin, name="Grid", account_id=None)
    public_child = await make_asset(
        client,
        world.admin,
        name="Their meter",
        account_id=world.other,
        parent_asset_id=public["id"],
    )
    return Tree(
        parent=parent["id"],
        child=child["id"],
        public=public["id"],
        public_child=public_child["id"],
        mine=await make_sensor(client, world.admin, parent["id"], "site power"),
        secret=await make_sensor(client, world.admin, child["id"], "their power"),
        public_secret=await make_sensor(
            client, world.admin, public_child["id"], "their meter"
        ),
    )


async def get(client: Client, user: int, path: str) -> Any:
    resp = await client.get(f"/api/v3_0{path}", headers=identity(user))
    assert resp.status == 200, await resp.text()
    return await resp.json()


def sensor_ids(body: Any) -> set[int]:
    rows = body["data"] if isinstance(body, dict) else body
    return {row["id"] for row in rows}


def child_ids(assets: list[dict[str, Any]]) -> set[int]:
    return {child["id"] for asset in assets for child in asset["child_assets"]}


async def test_child_of_another_account_is_forbidden_to_fetch(
    client: Client, world: World, tree: Tree
) -> None:
    for path in (f"/assets/{tree.child}", f"/sensors/{tree.secret}"):
        resp = await client.get(f"/api/v3_0{path}", headers=identity(world.member))
        assert resp.status == 403


@pytest.mark.parametrize(
    "query",
    [
        "asset={parent}",
        "asset={parent}&include_public_assets=true",
        "asset={parent}&page=1",
        "asset={parent}&filter=power",
        "asset={parent}&unit=kW",
        "",
        "include_public_assets=true",
        "account_id={acme}",
        "account_id={acme}&include_consultancy_clients=true",
        "asset={public}",
    ],
)
async def test_sensor_listings_leave_out_unreadable_sensors(
    client: Client, world: World, tree: Tree, query: str
) -> None:
    path = "/sensors?" + query.format(
        parent=tree.parent, public=tree.public, acme=world.acme
    )
    for user in (world.member, world.account_admin, world.consultant):
        body = await get(client, user, path)
        listed = sensor_ids(body)
        assert tree.secret not in listed, (user, path)
        assert tree.public_secret not in listed, (user, path)
        if isinstance(body, dict):  # paged: the counts leave them out too
            assert body["num-records"] == len(listed)
    # The child's own account and admins see them, as fetching allows.
    assert tree.secret in sensor_ids(
        await get(client, world.admin, f"/sensors?asset={tree.parent}")
    )
    assert tree.secret in sensor_ids(
        await get(client, world.reader, f"/sensors?asset={tree.parent}")
    )
    assert tree.secret in sensor_ids(
        await get(client, world.outsider, f"/sensors?asset={tree.child}")
    )


async def test_parent_sensor_listing_still_lists_readable_sensors(
    client: Client, world: World, tree: Tree
) -> None:
    listed = sensor_ids(
        await get(client, world.member, f"/sensors?asset={tree.parent}")
    )
    assert listed == {tree.mine}
    paged = await get(client, world.member, f"/assets/{tree.parent}/sensors")
    assert sensor_ids(paged) == {tree.mine}
    assert paged["num-records"] == 1


@pytest.mark.parametrize(
    "path",
    [
        "/assets/{parent}",
        "/assets",
        "/assets?all_accessible=true",
        "/assets?root={parent}",
        "/assets?include_public=true",
        "/assets?page=1",
        "/assets/public",
        "/assets/{public}",
    ],
)
async def test_child_assets_leave_out_unreadable_children(
    client: Client, world: World, tree: Tree, path: str
) -> None:
    full = path.format(parent=tree.parent, public=tree.public)
    for user in (world.member, world.account_admin, world.consultant):
        body = await get(client, user, full)
        assets = body if isinstance(body, list) else body.get("data", [body])
        listed = {asset["id"] for asset in assets}
        assert tree.child not in listed
        assert tree.public_child not in listed
        assert tree.child not in child_ids(assets), (user, full)
        assert tree.public_child not in child_ids(assets), (user, full)
    # Admins, and the child's own account, see the children.
    body = await get(client, world.admin, f"/assets/{tree.parent}")
    assert child_ids([body]) == {tree.child}
    body = await get(client, world.outsider, f"/assets/{tree.public}")
    assert child_ids([body]) == {tree.public_child}


async def test_consultant_lists_client_children(
    client: Client, world: World, tree: Tree
) -> None:
    """A consultant reads its clients' assets: a client's child is listed."""
    client_child = await make_asset(
        client,
        world.admin,
        name="Client battery",
        account_id=world.client_account,
        parent_asset_id=tree.parent,
    )
    sensor = await make_sensor(client, world.admin, client_child["id"], "client")
    body = await get(client, world.consultant, f"/assets/{tree.parent}")
    assert child_ids([body]) == {client_child["id"]}
    listed = sensor_ids(
        await get(client, world.consultant, f"/sensors?asset={tree.parent}")
    )
    assert listed == {tree.mine, sensor}
    # ...which a plain member of the consultancy does not.
    body = await get(client, world.member, f"/assets/{tree.parent}")
    assert child_ids([body]) == set()
    listed = sensor_ids(
        await get(client, world.member, f"/sensors?asset={tree.parent}")
    )
    assert listed == {tree.mine}


async def test_deleting_a_parent_never_deletes_another_accounts_child(
    client: Client, world: World, tree: Tree
) -> None:
    """The cascade would delete the child of "other": refused, nothing deleted."""
    resp = await client.delete(
        f"/api/v3_0/assets/{tree.parent}", headers=identity(world.account_admin)
    )
    assert resp.status == 403
    for asset in (tree.parent, tree.child):
        assert (await get(client, world.admin, f"/assets/{asset}"))["id"] == asset
    # Without the foreign child, the account-admin may delete the parent.
    resp = await client.delete(
        f"/api/v3_0/assets/{tree.child}", headers=identity(world.outsider)
    )
    assert resp.status == 204
    resp = await client.delete(
        f"/api/v3_0/assets/{tree.parent}", headers=identity(world.account_admin)
    )
    assert resp.status == 204
