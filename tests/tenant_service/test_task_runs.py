"""FlexMeasures' task-run monitoring on the backend: GET /api/ops/getLatestTaskRun
(task-check token) and POST /api/ops/postLatestTaskRun (role task-runner), on
SQLite and PostgreSQL. Answers as FlexMeasures 1.0.1's (observed side by side)."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import aiohttp
import pytest

from contract.config import Secret
from contract.routes import TASK_TOKEN_HEADER
from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.tenant_service.conftest import (
    FORBIDDEN,
    Client,
    ClientFactory,
    World,
    identity,
)

TOKEN: Final = "task-check-token-0123456789"
GET: Final = "/api/ops/getLatestTaskRun"
POST: Final = "/api/ops/postLatestTaskRun"


def answer(status: str, reason: str, lastrun: str = "1970-01-01T00:00:00") -> Any:
    return {
        "frequency": 10,
        "lastrun": lastrun,
        "process": "FlexMeasures",
        "reason": reason,
        "server": "",
        "status": status,
    }


@pytest.fixture
async def monitored(
    aiohttp_client: ClientFactory, settings: Settings, world: World
) -> Client:
    configured = dataclasses.replace(settings, task_check_auth_token=Secret(TOKEN))
    return await aiohttp_client(create_app(configured))


@pytest.fixture
async def runner(database_url: str, world: World, password_hash: str) -> int:
    """A user with the task-runner role."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            return await user_store.create_user(
                conn,
                email="cron@acme.test",
                username="cron",
                account_id=world.acme,
                password_hash=password_hash,
                role_names=["task-runner"],
            )
    finally:
        await engine.dispose()


async def check(client: Client, token: str | None, name: str = "backup") -> Any:
    headers = identity()  # the gateway's service identity
    if token is not None:
        headers[TASK_TOKEN_HEADER] = token
    response = await client.get(GET, params={"name": name}, headers=headers)
    return response.status, await response.json()


async def post(client: Client, user: int, **form: str) -> Any:
    response = await client.post(POST, data=form, headers=identity(user))
    return response.status, await response.json()


async def test_task_run_check_needs_the_token(
    monitored: Client, client: Client
) -> None:
    assert await check(monitored, None) == (
        401,
        answer("ERROR", "Not authenticated to check task status."),
    )
    assert await check(monitored, "wrong") == (
        403,
        answer("ERROR", "Not authorized to check task status."),
    )
    # No token configured (FlexMeasures' default): nobody may check.
    assert await check(client, TOKEN) == (
        403,
        answer("ERROR", "Not authorized to check task status."),
    )
    assert await check(monitored, TOKEN, name="") == (
        400,
        answer("ERROR", "No task name given."),
    )
    assert await check(monitored, TOKEN) == (
        404,
        answer("ERROR", "Task backup has no last run time."),
    )


async def test_task_run_post_and_check(
    monitored: Client, world: World, runner: int
) -> None:
    assert await post(monitored, world.member, name="backup") == (403, FORBIDDEN)
    assert await post(monitored, runner, status="True") == (
        400,
        {"status": "ERROR", "reason": "No task name given."},
    )
    assert await post(monitored, runner, name="backup", datetime="soon") == (
        400,
        {"status": "ERROR", "reason": "Not a valid datetime."},
    )
    assert await post(
        monitored, runner, name="backup", datetime="2026-12-01T10:00:00+01:00"
    ) == (200, {"status": "OK"})
    assert await check(monitored, TOKEN) == (
        200,
        answer("OK", "", "2026-12-01T09:00:00+00:00"),
    )
    # A failed run, now; admins may post too.
    assert await post(monitored, world.admin, name="backup", status="False") == (
        200,
        {"status": "OK"},
    )
    status, body = await check(monitored, TOKEN)
    assert (status, body["status"], body["reason"]) == (200, "ERROR", "")
    assert body["lastrun"] > "2026-12-01T09:00:00+00:00"


async def test_task_run_post_multipart(monitored: Client, runner: int) -> None:
    form = aiohttp.FormData()
    form.add_field("name", "report")
    form.add_field("datetime", "2026-12-02T00:00:00")  # naive: UTC
    response = await monitored.post(POST, data=form(), headers=identity(runner))
    assert response.status == 200, await response.text()
    assert (await check(monitored, TOKEN, name="report"))[1]["lastrun"] == (
        "2026-12-02T00:00:00+00:00"
    )
