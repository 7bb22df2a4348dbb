"""Numbers no column can hold are a 4xx, never a 500 (found by schemathesis)."""

from __future__ import annotations

import pytest

from tests.tenant_service.conftest import Client, World, identity

HUGE = "576460752303423487"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v3_0/accounts/{HUGE}",
        f"/api/v3_0/assets/{HUGE}",
        f"/api/v3_0/assets/{HUGE}/sensors",
        f"/api/v3_0/sensors/{HUGE}",
        f"/api/v3_0/sensors/{HUGE}/data",
        f"/api/v3_0/users/{HUGE}",
        f"/api/v3_0/users?account_id={HUGE}",
        f"/api/v3_0/sensors?asset={HUGE}",
        f"/api/v3_0/assets?page={HUGE}&per-page=10",
        "/api/v3_0/accounts?page=99999999999999999999999",
    ],
)
async def test_huge_numbers_in_paths_and_queries_are_4xx(
    client: Client, world: World, path: str
) -> None:
    response = await client.get(path, headers=identity(world.admin))
    assert 400 <= response.status < 500, await response.text()
    assert response.content_type == "application/json"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "big", "generic_asset_type_id": 10**12},
        {"name": "big", "generic_asset_type_id": 1, "parent_asset_id": 10**12},
        {"name": "big", "generic_asset_type_id": 1, "account_id": 10**30},
    ],
)
async def test_huge_numbers_in_bodies_are_4xx(
    client: Client, world: World, body: dict[str, object]
) -> None:
    response = await client.post(
        "/api/v3_0/assets", json=body, headers=identity(world.admin)
    )
    assert 400 <= response.status < 500, await response.text()
    assert response.content_type == "application/json"
