"""Through the real gateway (SQLite and PostgreSQL backends, real Redis): the real
`flexmeasures-client` uploads a CSV file; sensor status and stats; FlexMeasures'
task-run monitoring, whose check authenticates with its own token, not a user's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from contract.config import Secret
from tenant_service.passwords import hash_password
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.helpers.stack import COMPANY, PASSWORD, Stack, login, seed_asset_and_sensor

TASK_TOKEN: Final = "a-long-task-check-token-for-the-monitor"
START: Final = "2026-01-15T00:00:00+01:00"


@pytest.fixture
def backend_options() -> dict[str, object]:
    """Company's backend answers task checks that carry TASK_TOKEN."""
    return {"task_check_auth_token": Secret(TASK_TOKEN)}


async def test_flexmeasures_client_uploads_a_csv_file(
    stack: Stack, fm_session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    from flexmeasures_client import FlexMeasuresClient

    _, power_id = await seed_asset_and_sensor(stack)  # MW, PT15M, Europe/Amsterdam
    path = tmp_path / "power.csv"
    # Naive local times (the sensor's zone), hourly, in kW: converted and repeated.
    path.write_text("datetime,kW\n2026-01-15T00:00:00,1500\n2026-01-15T01:00:00,2500\n")
    client: Any = FlexMeasuresClient(
        email="member@company.test",
        password=PASSWORD,
        host=f"company.localhost:{stack.gateway.port}",
        ssl=False,
        session=fm_session,
    )
    answer, status = await client.post_sensor_data(
        sensor_id=power_id, file_path=str(path), unit="kW"
    )
    assert (status, answer) == (
        200,
        {"message": "Request has been processed.", "status": "PROCESSED"},
    )
    data = await client.get_sensor_data(
        sensor_id=power_id, start=START, duration="PT2H", unit="MW", resolution="PT15M"
    )
    assert data["values"] == [1.5] * 4 + [2.5] * 4
    # The same file again: nothing new.
    answer, status = await client.post_sensor_data(
        sensor_id=power_id, file_path=str(path), unit="kW"
    )
    assert answer["status"] == "ALREADY_RECEIVED_AND_SUCCESSFULLY_PROCESSED"
    # A refused row is named; nothing of the file is stored.
    path.write_text("datetime,kW\n2026-01-16T00:00:00,1\n2026-01-16T00:15:00,x\n")
    with pytest.raises(ValueError, match="Line 3: 'x' is not a number"):
        await client.post_sensor_data(sensor_id=power_id, file_path=str(path))

    auth = {**COMPANY, "Authorization": await login(stack, "member@company.test")}
    response = await stack.gateway.get(
        f"/api/v3_0/sensors/{power_id}/status", headers=auth
    )
    assert response.status == 200
    [status_data] = (await response.json())["sensors_data"]
    assert (status_data["source_type"], status_data["stale"]) == ("user", True)
    response = await stack.gateway.get(
        f"/api/v3_0/sensors/{power_id}/stats", headers=auth
    )
    assert response.status == 200
    stats = await response.json()
    [source] = [key for key in stats if key != "status"]
    assert source.startswith("member (ID: ")
    assert stats[source]["Number of values"] == 8
    assert stats[source]["First event start"] == START


async def test_task_runs_through_the_gateway(stack: Stack, database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await user_store.create_user(
                conn,
                email="cron@company.test",
                username="cron",
                account_id=stack.account_id,
                password_hash=hash_password(PASSWORD),
                role_names=["task-runner"],
            )
    finally:
        await engine.dispose()
    runner = await login(stack, "cron@company.test")
    response = await stack.gateway.post(
        "/api/ops/postLatestTaskRun",
        data={"name": "backup", "datetime": "2026-12-01T03:00:00+00:00"},
        headers={**COMPANY, "Authorization": runner},
    )
    assert (response.status, await response.json()) == (200, {"status": "OK"})
    response = await stack.gateway.post(
        "/api/ops/postLatestTaskRun",
        data={"name": "backup"},
        headers={**COMPANY, "Authorization": await login(stack, "member@company.test")},
    )
    assert response.status == 403
    response = await stack.gateway.post(
        "/api/ops/postLatestTaskRun", data={"name": "backup"}, headers=COMPANY
    )
    assert response.status == 401

    async def check(headers: dict[str, str]) -> tuple[int, Any]:
        response = await stack.gateway.get(
            "/api/ops/getLatestTaskRun",
            params={"name": "backup"},
            headers={**COMPANY, **headers},
        )
        return response.status, await response.json()

    status, body = await check({"Authorization": TASK_TOKEN})
    assert (status, body["status"], body["lastrun"]) == (
        200,
        "OK",
        "2026-12-01T03:00:00+00:00",
    )
    # A user's token is not the task-check token; no header is no authentication.
    assert (await check({"Authorization": runner}))[0] == 403
    status, body = await check({})
    assert (status, body["reason"]) == (401, "Not authenticated to check task status.")
    # Only the gateway sets the backend's task-token header.
    status, body = await check({"X-FlexHost-Task-Token": TASK_TOKEN})
    assert status == 401
