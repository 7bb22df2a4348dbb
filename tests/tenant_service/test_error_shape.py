"""Every error path of the backend answers FlexMeasures' JSON envelope over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from redis.asyncio import Redis
from sqlalchemy import text

from tenant_service import keys
from tenant_service.app import create_app
from tenant_service.config import Settings
from tenant_service.store.db import create_engine
from tests.helpers.net import free_port
from tests.tenant_service.conftest import (
    PASSWORD,
    Client,
    ClientFactory,
    World,
    identity,
)

BUILDING = 6  # a seeded asset type (FlexMeasures' id)
DAY = "2026-03-02T00:00:00+00:00"
MAX_DATA_BYTES = 4096


@pytest.fixture
def database_url(sqlite_database_url: str) -> str:
    """SQLite only: the envelope does not depend on the database."""
    return sqlite_database_url


@dataclasses.dataclass(slots=True)
class Backend:
    """A running backend on the seeded database, and what a case may need of it."""

    client: Client
    world: World
    app: web.Application
    start: Callable[..., Awaitable[Client]]  # another backend, settings changed

    async def call(
        self, method: str, path: str, user: int | None = None, **kwargs: Any
    ) -> ClientResponse:
        """A request as `user` (the gateway's service without one)."""
        headers = {**identity(user), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def sensor(self) -> int:
        """A new MW sensor on a new asset of Acme; its id."""
        admin = self.world.account_admin
        asset = await self.call(
            "POST",
            "/api/v3_0/assets",
            admin,
            json={"name": "Site", "generic_asset_type_id": BUILDING},
        )
        assert asset.status == 201, await asset.text()
        sensor = await self.call(
            "POST",
            "/api/v3_0/sensors",
            admin,
            json={
                "name": "power",
                "unit": "MW",
                "event_resolution": "PT15M",
                "generic_asset_id": (await asset.json())["id"],
            },
        )
        assert sensor.status == 201, await sensor.text()
        sensor_id: int = (await sensor.json())["id"]
        return sensor_id


async def crash(request: web.Request) -> web.Response:
    """A bug: no endpoint fails on purpose, so the test adds one."""
    raise RuntimeError("a bug with a secret in its message")


@pytest.fixture
async def backend(
    aiohttp_client: ClientFactory,
    settings: Settings,
    world: World,
    redis: Redis,
    redis_url: str,
    redis_prefix: str,
) -> Backend:
    """The backend with small limits, its job queue on the test Redis."""
    del redis  # deletes this test's keys afterwards
    small = dataclasses.replace(
        settings,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        trigger_limit=1,
        max_data_bytes=MAX_DATA_BYTES,
        password_checks=1,
        password_check_wait=0,
    )

    async def start(**changes: Any) -> Client:
        return await aiohttp_client(create_app(dataclasses.replace(small, **changes)))

    app = create_app(small)
    app.router.add_get("/api/v3_0/crash", crash)
    return Backend(await aiohttp_client(app), world, app, start)


Case = Callable[[Backend], Awaitable[ClientResponse]]


async def malformed_json(b: Backend) -> ClientResponse:
    return await b.call("POST", "/api/v3_0/assets", b.world.admin, data=b"{")


async def no_identity(b: Backend) -> ClientResponse:
    return await b.client.get("/api/v3_0/users")


async def bad_identity(b: Backend) -> ClientResponse:
    headers = identity(b.world.member, secret="another-secret-0123456789abcdef-0123")
    return await b.client.get("/api/v3_0/users", headers=headers)


async def inactive_user(b: Backend) -> ClientResponse:
    return await b.call("GET", "/api/v3_0/users", b.world.inactive)


async def user_on_internal(b: Backend) -> ClientResponse:
    return await b.call(
        "POST", "/internal/credentials", b.world.member, json={"email": "a@b.cd"}
    )


async def other_account(b: Backend) -> ClientResponse:
    return await b.call("GET", f"/api/v3_0/accounts/{b.world.other}", b.world.member)


async def replacement(b: Backend) -> ClientResponse:
    sensor = await b.sensor()
    path = f"/api/v3_0/sensors/{sensor}/data"
    body = {
        "start": DAY,
        "duration": "PT15M",
        "unit": "MW",
        "values": [1.0],
        "prior": "2026-01-02T00:00:00+00:00",
    }
    first = await b.call("POST", path, b.world.account_admin, json=body)
    assert first.status == 200, await first.text()
    body["values"] = [2.0]
    return await b.call("POST", path, b.world.account_admin, json=body)


async def unknown_asset(b: Backend) -> ClientResponse:
    return await b.call("GET", "/api/v3_0/assets/999999", b.world.admin)


async def unknown_sensor_data(b: Backend) -> ClientResponse:
    query = {"start": DAY, "duration": "PT1H", "unit": "MW"}
    return await b.call(
        "GET", "/api/v3_0/sensors/999999/data", b.world.admin, params=query
    )


async def unknown_route(b: Backend) -> ClientResponse:
    return await b.call("GET", "/api/v3_0/nothing", b.world.admin)


async def unknown_user_email(b: Backend) -> ClientResponse:
    body = {"email": "nobody@acme.test", "password": PASSWORD}
    return await b.call("POST", "/internal/credentials", json=body)


async def wrong_password(b: Backend) -> ClientResponse:
    body = {"email": "boss@acme.test", "password": "wrong"}
    return await b.call("POST", "/internal/credentials", json=body)


async def wrong_method(b: Backend) -> ClientResponse:
    return await b.call("PUT", "/api/v3_0/users", b.world.admin)


async def duplicate_email(b: Backend) -> ClientResponse:
    return await b.call(
        "PATCH",
        f"/api/v3_0/users/{b.world.member}",
        b.world.admin,
        json={"email": "boss@acme.test"},
    )


async def too_large(b: Backend) -> ClientResponse:
    sensor = await b.sensor()
    return await b.call(
        "POST",
        f"/api/v3_0/sensors/{sensor}/data",
        b.world.account_admin,
        data=b"x" * (MAX_DATA_BYTES + 1),
        headers={"Content-Type": "application/json"},
    )


async def bad_query(b: Backend) -> ClientResponse:
    return await b.call("GET", "/api/v3_0/users?page=x", b.world.admin)


async def bad_path_id(b: Backend) -> ClientResponse:
    return await b.call("GET", "/api/v3_0/users/x", b.world.admin)


async def bad_sensor_data(b: Backend) -> ClientResponse:
    sensor = await b.sensor()
    return await b.call(
        "POST", f"/api/v3_0/sensors/{sensor}/data", b.world.account_admin, json={}
    )


async def unknown_job(b: Backend) -> ClientResponse:
    return await b.call("GET", "/api/v3_0/jobs/no-such-job", b.world.admin)


async def unknown_schedule(b: Backend) -> ClientResponse:
    sensor = await b.sensor()
    return await b.call(
        "GET", f"/api/v3_0/sensors/{sensor}/schedules/no-such-job", b.world.member
    )


async def trigger_limit(b: Backend) -> ClientResponse:
    sensor = await b.sensor()
    path = f"/api/v3_0/sensors/{sensor}/schedules/trigger"

    def body(start: str) -> dict[str, Any]:
        return {
            "start": start,
            "duration": "PT4H",
            "flex-model": {
                "soc-at-start": "0 MWh",
                "soc-max": "2 MWh",
                "power-capacity": "1 MW",
            },
            "flex-context": {"consumption-price": "100 EUR/MWh"},
        }

    first = await b.call("POST", path, b.world.member, json=body(DAY))
    assert first.status == 202, await first.text()
    return await b.call(
        "POST", path, b.world.member, json=body("2026-03-02T05:00:00+00:00")
    )


async def busy_password_checks(b: Backend) -> ClientResponse:
    checker = b.app[keys.PASSWORDS]
    gate = threading.Event()
    held = asyncio.ensure_future(checker.run(gate.wait, 30))  # takes the one room
    try:
        for _ in range(1000):
            if checker.in_flight == 1:
                break
            await asyncio.sleep(0.005)
        body = {"email": "boss@acme.test", "password": PASSWORD}
        return await b.call("POST", "/internal/credentials", json=body)
    finally:
        gate.set()
        await held


async def queue_down(b: Backend) -> ClientResponse:
    sensor = await b.sensor()
    down = await b.start(redis_url=f"redis://127.0.0.1:{free_port()}")
    return await down.post(
        f"/api/v3_0/sensors/{sensor}/schedules/trigger",
        json={
            "start": DAY,
            "flex-model": {"soc-at-start": "0 MWh", "power-capacity": "1 MW"},
            "flex-context": {"consumption-price": "100 EUR/MWh"},
        },
        headers=identity(b.world.member),
    )


async def table_gone(b: Backend) -> ClientResponse:
    engine = create_engine(b.app[keys.SETTINGS].database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE data_sources"))
    finally:
        await engine.dispose()
    return await b.call("GET", "/api/v3_0/sources", b.world.admin)


async def internal_error(b: Backend) -> ClientResponse:
    return await b.call("GET", "/api/v3_0/crash", b.world.admin)


RETRY_SOON = {"Retry-After": "1"}
CASES = [
    # (case, status, code, headers the answer must have)
    (malformed_json, 400, 400, {}),
    (duplicate_email, 400, 400, {}),
    (unknown_schedule, 400, "UNRECOGNIZED_UDI_EVENT", {}),
    (no_identity, 401, "UNAUTHORIZED", {}),
    (bad_identity, 401, "UNAUTHORIZED", {}),
    (inactive_user, 401, "UNAUTHORIZED", {}),
    (wrong_password, 401, "WRONG_PASSWORD", {}),
    (other_account, 403, "INVALID_SENDER", {}),
    (user_on_internal, 403, "INVALID_SENDER", {}),
    (replacement, 403, "INVALID_REPLACEMENT", {}),
    (unknown_asset, 404, 404, {}),
    (unknown_sensor_data, 404, 404, {}),
    (unknown_route, 404, 404, {}),
    (unknown_user_email, 404, "UNKNOWN_USER", {}),
    (unknown_job, 404, "ERROR", {}),  # as FlexMeasures' job status answers
    (wrong_method, 405, 405, {"Allow": "GET,HEAD,POST"}),
    (too_large, 413, "PAYLOAD_TOO_LARGE", {}),
    (bad_query, 422, "UNPROCESSABLE_ENTITY", {}),
    (bad_path_id, 422, "UNPROCESSABLE_ENTITY", {}),
    (bad_sensor_data, 422, "UNPROCESSABLE_ENTITY", {}),
    (trigger_limit, 429, "TOO_MANY_REQUESTS", {"X-RateLimit-Remaining": "0"}),
    (busy_password_checks, 503, "SERVICE_UNAVAILABLE", RETRY_SOON),
    (queue_down, 503, "SERVICE_UNAVAILABLE", RETRY_SOON),
    (table_gone, 503, "SERVICE_UNAVAILABLE", RETRY_SOON),  # SQLite: OperationalError
    (internal_error, 500, "INTERNAL_ERROR", {}),
]
# Answers to the gateway only (docs/internals.md): the bare code, no message.
BARE = frozenset({"WRONG_PASSWORD", "UNKNOWN_USER"})
REJECTED = frozenset(
    {
        "INVALID_SENDER",
        "INVALID_REPLACEMENT",
        "UNRECOGNIZED_UDI_EVENT",
        "PAYLOAD_TOO_LARGE",
        "UNPROCESSABLE_ENTITY",
        "TOO_MANY_REQUESTS",
    }
)


@pytest.mark.parametrize(
    ("case", "status", "code", "headers"),
    CASES,
    ids=[case.__name__ for case, *_ in CASES],
)
async def test_error_shape(
    backend: Backend,
    case: Case,
    status: int,
    code: str | int,
    headers: dict[str, str],
) -> None:
    response = await case(backend)
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/json"
    answer = await response.json()
    assert answer["status"] == code
    if code in BARE:
        assert answer == {"status": code}
    elif status == 422:
        ((location, fields),) = answer["message"].items()
        assert isinstance(location, str)
        assert fields
        assert all(isinstance(m, list) and m for m in fields.values())
    else:
        assert isinstance(answer["message"], str)
        assert answer["message"]
    assert (answer.get("result") == "Rejected") == (code in REJECTED)
    for name, value in headers.items():
        assert response.headers[name] == value
    if status == 429:
        assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-Request-Id"]
    if response.url.path.startswith("/api/"):
        assert response.headers["FlexMeasures-Version"]
        assert response.headers["API-Version"] == "v3_0"
    assert "Traceback" not in text
    assert "secret" not in text
