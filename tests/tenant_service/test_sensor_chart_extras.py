"""A sensor's chart annotations and the sources with data for it (ours, #13)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.tenant_service.conftest import (
    FORBIDDEN,
    World,
    identity,
    make_asset,
    make_sensor,
)

Client = TestClient[Any, Any]
WINDOW = {"start": "2026-01-01T00:00:00+01:00", "end": "2026-01-02T00:00:00+01:00"}


async def _call(
    client: Client, method: str, user: int, path: str, **kwargs: Any
) -> tuple[int, Any]:
    response = await client.request(
        method, f"/api/v3_0/{path}", headers=identity(user), **kwargs
    )
    return response.status, await response.json()


async def test_sensor_chart_annotations(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    sensor = await make_sensor(client, world.member, site["id"], "power")
    other = await make_sensor(client, world.member, site["id"], "other")
    note = {
        "content": "inverter swapped",
        "start": "2026-01-01T02:00:00+01:00",
        "end": "2026-01-01T04:00:00+01:00",
    }
    for path, body in (
        (f"sensors/{sensor}", note),
        (f"sensors/{other}", {**note, "content": "not this sensor's"}),
        (f"assets/{site['id']}", {**note, "content": "the asset's"}),
    ):
        status, answer = await _call(
            client, "POST", world.member, f"{path}/annotations", json=body
        )
        assert status == 201, answer
    status, listed = await _call(
        client,
        "GET",
        world.member,
        f"sensors/{sensor}/chart_annotations",
        params={**WINDOW, "start": "2026-01-01T02:30:00+01:00"},
    )
    assert status == 200, listed
    # As the asset's records: clipped to the window, content as lines.
    assert listed == [
        {
            "index": 0,
            "start": 1767231000000,
            "end": 1767236400000,
            "belief_time": None,
            "source": "member",
            "type": "label",
            "content": ["inverter swapped"],
        }
    ]
    # The asset's chart_annotations still leave the sensor's out (FlexMeasures).
    status, listed = await _call(
        client, "GET", world.member, f"assets/{site['id']}/chart_annotations"
    )
    assert [a["content"] for a in listed] == [["the asset's"]]
    # Outside the window: none.
    status, listed = await _call(
        client,
        "GET",
        world.member,
        f"sensors/{sensor}/chart_annotations",
        params={"start": "2026-02-01T00:00:00Z"},
    )
    assert (status, listed) == (200, [])


async def test_sensor_chart_annotations_refused(client: Client, world: World) -> None:
    site = await make_asset(client, world.account_admin)
    sensor = await make_sensor(client, world.member, site["id"], "power")
    path = f"sensors/{sensor}/chart_annotations"
    status, answer = await _call(client, "GET", world.outsider, path)
    assert (status, answer) == (403, FORBIDDEN)
    status, answer = await _call(
        client, "GET", world.member, "sensors/99999/chart_annotations"
    )
    assert (status, answer) == (
        404,
        {"message": "Sensor 99999 not found", "status": 404},
    )
    status, answer = await _call(
        client, "GET", world.member, path, params={"start": "soon", "clip": "maybe"}
    )
    assert status == 422
    assert set(answer["message"]["query"]) == {"start", "clip"}
    response = await client.get(f"/api/v3_0/{path}")
    assert response.status == 401


async def test_sensor_sources_with_data_in_a_window(
    client: Client, world: World
) -> None:
    site = await make_asset(client, world.account_admin)
    sensor = await make_sensor(client, world.member, site["id"], "power")
    for user, start in (
        (world.member, "2026-01-01T00:00:00+00:00"),
        (world.account_admin, "2026-01-05T00:00:00+00:00"),
    ):
        status, answer = await _call(
            client,
            "POST",
            user,
            f"sensors/{sensor}/data",
            json={
                "values": [1.0, 2.0],
                "start": start,
                "duration": "PT30M",
                "unit": "kW",
            },
        )
        assert status == 200, answer
    path = f"sensors/{sensor}/sources"
    status, answer = await _call(client, "GET", world.member, path)
    assert status == 200, answer
    assert [s["type"] for s in answer["sources"]] == ["user", "user"]
    assert answer["sources"][0]["name"] == "member"
    everyone = answer["sources"]
    assert set(everyone[0]) >= {"id", "name", "type", "description"}
    # Only the member's values overlap the first day; an event that started just
    # before the window overlaps it too.
    status, answer = await _call(
        client,
        "GET",
        world.member,
        path,
        params={"start": "2026-01-01T00:20:00+00:00", "end": "2026-01-02T00:00:00Z"},
    )
    assert status == 200, answer
    assert answer["sources"] == [everyone[0]]
    status, answer = await _call(
        client,
        "GET",
        world.member,
        path,
        params={"start": "2026-01-01T00:30:00Z", "end": "2026-01-02T00:00:00Z"},
    )
    assert answer["sources"] == []
    status, answer = await _call(client, "GET", world.outsider, path)
    assert (status, answer) == (403, FORBIDDEN)
    status, answer = await _call(client, "GET", world.member, "sensors/99999/sources")
    assert (status, answer) == (
        404,
        {"message": "Sensor 99999 not found", "status": 404},
    )
    status, answer = await _call(
        client, "GET", world.member, path, params={"end": "later"}
    )
    assert status == 422
    assert answer["message"]["query"] == {"end": ["Not a valid datetime."]}


async def test_sensor_sources_of_other_accounts_show_only_id_and_type(
    client: Client, world: World
) -> None:
    """A consultant reads a client's sensor; the client user's source is not theirs
    to list (GET /sources leaves it out), so only its id and type are shown."""
    site = await make_asset(client, world.admin, account_id=world.client_account)
    sensor = await make_sensor(client, world.admin, site["id"], "power")
    status, answer = await _call(
        client,
        "POST",
        world.client_user,
        f"sensors/{sensor}/data",
        json={
            "values": [1.0],
            "start": "2026-01-01T00:00:00Z",
            "duration": "PT15M",
            "unit": "kW",
        },
    )
    assert status == 200, answer
    status, mine = await _call(
        client, "GET", world.client_user, f"sensors/{sensor}/sources"
    )
    [source] = mine["sources"]
    assert source["account_id"] == world.client_account
    status, answer = await _call(
        client, "GET", world.consultant, f"sensors/{sensor}/sources"
    )
    assert status == 200, answer
    assert answer["sources"] == [
        {
            "id": source["id"],
            "name": f"Source {source['id']}",
            "type": "user",
            "description": f"Source {source['id']}",
            "model": None,
            "version": None,
            "user_id": None,
            "account_id": None,
        }
    ]
