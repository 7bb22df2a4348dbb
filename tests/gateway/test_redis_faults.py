"""Redis stopped while the gateway runs: token paths answer 503, then recover."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import Settings
from tests.gateway.conftest import RedisProcess, start_echo, tenants_text, write_secret
from tests.helpers.wait import until

pytestmark = pytest.mark.slow
HOST = {"Host": "company.localhost"}


async def test_redis_down_gives_503_on_token_paths_and_recovers(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    redis_process: RedisProcess,
    tmp_path: Path,
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    _, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    path = tmp_path / "tenants.yaml"
    path.write_text(tenants_text([{"subdomain": "company", "backends": [url]}]))
    settings = Settings(
        tenants_path=path,
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        secrets_dir=secrets_dir,
        redis_timeout=0.5,
    )
    client = await aiohttp_client(create_app(settings))

    async def login() -> ClientResponse:
        return await client.post(
            "/api/requestAuthToken",
            json={"email": "a@b.cd", "password": "x"},
            headers=HOST,
        )

    async def redis_ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await until(redis_ready)
    token = (await (await login()).json())["auth_token"]
    assert (
        await client.get("/api/v3_0/users", headers={**HOST, "Authorization": token})
    ).status == 200

    redis_process.stop()

    async def redis_gone() -> bool:
        return (await client.get("/readyz")).status == 503

    await until(redis_gone)
    response = await client.get(
        "/api/v3_0/users", headers={**HOST, "Authorization": token}
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["status"] == "TOKEN_STORE_UNAVAILABLE"
    response = await login()
    assert response.status == 503
    assert (await client.get("/readyz")).status == 503
    # What needs no token keeps working.
    assert (await client.get("/api/", headers=HOST)).status == 200
    assert (await client.get("/api/v3_0", headers=HOST)).status == 200

    redis_process.start()
    await until(redis_ready)
    response = await login()
    assert response.status == 200
    token = (await response.json())["auth_token"]
    assert (
        await client.get("/api/v3_0/users", headers={**HOST, "Authorization": token})
    ).status == 200
