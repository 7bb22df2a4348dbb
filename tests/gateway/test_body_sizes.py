"""Request bodies of every size up to the tenant's limit pass the gateway (#10, item 10).

Through a real gateway to a real tenant backend (SQLite): sensor-data POSTs on both
sides of every threshold on the way, sent with Content-Length and chunked.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from contract.config import Secret
from contract.tenants_file import DEFAULT_MAX_BODY_BYTES
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from gateway.proxy import BUFFER_LIMIT, CHUNK
from tenant_service.app import create_app as create_backend
from tenant_service.config import DEFAULT_MAX_DATA_BYTES
from tenant_service.config import Settings as BackendSettings
from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.gateway.conftest import tenants_text, write_secret
from tests.helpers.databases import Template, Templates

Client = TestClient[web.Request, web.Application]
HOST = {"Host": "company.localhost"}
PASSWORD = "a long test password"
DAY = "2026-01-05T00:00:00+00:00"
# aiohttp's default client_max_size, which the backend keeps for other routes.
BACKEND_CLIENT_MAX_SIZE = 1024**2
GATEWAY_CLIENT_MAX_SIZE = 64 * 1024  # the gateway's own routes (forms, login)
# A tenant limit below the backend's data limit, to see the gateway's own 413.
TENANT_LIMIT = 2 * 1024**2


@dataclass(frozen=True, slots=True)
class Company:
    gateway: Client
    auth: dict[str, str]
    data_path: str


async def _seed(url: str) -> None:
    """Company's account-admin, in a migrated DB."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            account = await account_store.create_account(conn, name="Company")
            await user_store.create_user(
                conn,
                email="admin@company.test",
                username="admin",
                account_id=account,
                password_hash=hash_password(PASSWORD),
                role_names=["account-admin"],
            )
    finally:
        await engine.dispose()


COMPANY: Final = Template("body-sizes-company", _seed)


async def _start(
    templates: Templates,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
    sqlite_database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    tenant: dict[str, Any],
) -> Company:
    await templates.copy_sqlite(COMPANY, sqlite_database_url)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    secret = write_secret(secrets_dir, "company")
    backend = await aiohttp_server(
        create_backend(
            BackendSettings(
                name="company", database_url=sqlite_database_url, secret=Secret(secret)
            )
        )
    )
    path = tmp_path / "tenants.yaml"
    path.write_text(
        tenants_text(
            [
                {
                    "subdomain": "company",
                    "backends": [str(backend.make_url("")).rstrip("/")],
                    **tenant,
                }
            ]
        )
    )
    gateway = await aiohttp_client(
        create_gateway(
            GatewaySettings(
                tenants_path=path,
                redis_url=redis_url,
                key_prefix=redis_prefix,
                secrets_dir=secrets_dir,
            )
        )
    )
    response = await gateway.post(
        "/api/requestAuthToken",
        json={"email": "admin@company.test", "password": PASSWORD},
        headers=HOST,
    )
    assert response.status == 200, await response.text()
    auth = {**HOST, "Authorization": (await response.json())["auth_token"]}
    response = await gateway.get("/api/v3_0/assets/types", headers=auth)
    battery = next(t["id"] for t in await response.json() if t["name"] == "battery")
    response = await gateway.post(
        "/api/v3_0/assets",
        json={"name": "Battery", "generic_asset_type_id": battery},
        headers=auth,
    )
    assert response.status == 201, await response.text()
    asset = await response.json()
    response = await gateway.post(
        "/api/v3_0/sensors",
        json={
            "name": "power",
            "unit": "MW",
            "event_resolution": "PT15M",
            "generic_asset_id": asset["id"],
        },
        headers=auth,
    )
    assert response.status == 201, await response.text()
    sensor = await response.json()
    return Company(gateway, auth, f"/api/v3_0/sensors/{sensor['id']}/data")


@pytest.fixture
async def company(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
    sqlite_database_url: str,
    templates: Templates,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> Company:
    """The defaults: tenant limit 16 MiB, the backend's data limit 3,250,585 bytes."""
    return await _start(
        templates,
        aiohttp_server,
        aiohttp_client,
        sqlite_database_url,
        redis_url,
        redis_prefix,
        tmp_path,
        {},
    )


@pytest.fixture
async def small_tenant(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
    sqlite_database_url: str,
    templates: Templates,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> Company:
    """A tenant whose max_body_bytes (2 MiB) is below the backend's data limit."""
    return await _start(
        templates,
        aiohttp_server,
        aiohttp_client,
        sqlite_database_url,
        redis_url,
        redis_prefix,
        tmp_path,
        {"max_body_bytes": TENANT_LIMIT},
    )


def day_body(size: int) -> bytes:
    """One day of 96 values (the same each time) padded with spaces to `size` bytes."""
    values = [round(i * 0.25 - 7.5, 2) for i in range(96)]
    text = json.dumps(
        {"start": DAY, "duration": "PT24H", "unit": "MW", "values": values}
    )
    assert size >= len(text)
    return (text[:-1] + " " * (size - len(text)) + "}").encode()


async def _chunked(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 50_000):  # not aligned with CHUNK on purpose
        yield body[i : i + 50_000]


async def post(company: Company, body: bytes, chunked: bool) -> tuple[int, Any]:
    headers = {**company.auth, "Content-Type": "application/json"}
    response = await company.gateway.post(
        company.data_path,
        data=_chunked(body) if chunked else io.BytesIO(body),  # with Content-Length
        headers=headers,
    )
    return response.status, await response.json()


def test_thresholds_are_ordered_as_the_sizes_below_assume() -> None:
    assert GATEWAY_CLIENT_MAX_SIZE == CHUNK < BUFFER_LIMIT < BACKEND_CLIENT_MAX_SIZE
    assert BACKEND_CLIENT_MAX_SIZE < TENANT_LIMIT < DEFAULT_MAX_DATA_BYTES
    assert DEFAULT_MAX_DATA_BYTES < DEFAULT_MAX_BODY_BYTES


# Each threshold on the way, -1 and +1: the gateway's own client_max_size (64 KiB,
# also CHUNK), 100 KB (the report), BUFFER_LIMIT (buffered below, streamed above),
# the backend's client_max_size (1 MiB), and the backend's data limit itself.
PASSING = sorted(
    {
        3_000,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        100_000,
        BUFFER_LIMIT - 1,
        BUFFER_LIMIT,
        BUFFER_LIMIT + 1,
        BACKEND_CLIENT_MAX_SIZE - 1,
        BACKEND_CLIENT_MAX_SIZE + 1,
        DEFAULT_MAX_DATA_BYTES,
    }
)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_sizes_pass_up_to_the_backend_data_limit(
    company: Company, chunked: bool
) -> None:
    results = {size: await post(company, day_body(size), chunked) for size in PASSING}
    assert {size: status for size, (status, _) in results.items()} == dict.fromkeys(
        PASSING, 200
    ), results
    # Past the backend's data limit: its 413, in the envelope the gateway uses too.
    status, body = await post(company, day_body(DEFAULT_MAX_DATA_BYTES + 1), chunked)
    assert status == 413
    assert body == {
        "message": "Request body exceeds the configured limit of "
        f"{DEFAULT_MAX_DATA_BYTES} bytes.",
        "result": "Rejected",
        "status": "PAYLOAD_TOO_LARGE",
    }


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_sizes_around_the_tenant_limit(
    small_tenant: Company, chunked: bool
) -> None:
    for size in (BUFFER_LIMIT + 1, TENANT_LIMIT - 1, TENANT_LIMIT):
        status, body = await post(small_tenant, day_body(size), chunked)
        assert status == 200, (size, body)
    status, body = await post(small_tenant, day_body(TENANT_LIMIT + 1), chunked)
    assert status == 413
    assert body == {
        "message": f"Request body exceeds the configured limit of {TENANT_LIMIT} "
        "bytes.",
        "result": "Rejected",
        "status": "PAYLOAD_TOO_LARGE",
    }
    # The connection is fine for the next request.
    status, _ = await post(small_tenant, day_body(3_000), chunked)
    assert status == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_one_year_of_quarter_hours_in_one_post(
    company: Company, chunked: bool
) -> None:
    values = [round((i % 96) * 0.25 - 12.0, 2) for i in range(35_040)]
    body = json.dumps(
        {
            "start": "2025-01-01T00:00:00+00:00",
            "duration": "PT8760H",
            "unit": "MW",
            "values": values,
        }
    ).encode()
    assert 200_000 < len(body) < DEFAULT_MAX_DATA_BYTES
    status, answer = await post(company, body, chunked)
    assert status == 200, answer
    response = await company.gateway.get(
        company.data_path,
        params={
            "start": "2025-01-01T00:00:00+00:00",
            "duration": "PT8760H",
            "unit": "MW",
            "resolution": "PT15M",
        },
        headers=company.auth,
    )
    assert response.status == 200
    assert (await response.json())["values"] == values


def upload_body(size: int) -> tuple[bytes, str]:
    """A multipart CSV upload (one day, MW) padded with blank lines to `size` bytes."""
    rows = "".join(
        f"2026-01-06T{i // 4:02d}:{15 * (i % 4):02d}:00+00:00,{i * 0.25}\n"
        for i in range(96)
    )
    boundary = "f12sensorsboundary"

    def build(pad: int) -> bytes:
        return (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="uploaded-files"; '
            'filename="day.csv"\r\nContent-Type: text/csv\r\n\r\n'
            f"event_start,event_value\n{rows}{chr(10) * pad}\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="unit"\r\n\r\nMW\r\n'
            f"--{boundary}--\r\n"
        ).encode()

    body = build(size - len(build(0)))
    assert len(body) == size
    return body, f"multipart/form-data; boundary={boundary}"


async def upload(company: Company, body: bytes, content_type: str) -> tuple[int, Any]:
    response = await company.gateway.post(
        company.data_path + "/upload",
        data=io.BytesIO(body),
        headers={**company.auth, "Content-Type": content_type},
    )
    return response.status, await response.json()


async def check_upload_limit(target: Company, limit: int) -> None:
    """Multipart bodies count whole, the same way at the gateway and the backend:
    exactly `limit` bytes pass, one more is 413."""
    status, answer = await upload(target, *upload_body(limit))
    assert status == 200, answer
    status, answer = await upload(target, *upload_body(limit + 1))
    assert (status, answer) == (
        413,
        {
            "message": f"Request body exceeds the configured limit of {limit} bytes.",
            "result": "Rejected",
            "status": "PAYLOAD_TOO_LARGE",
        },
    )


async def test_upload_sizes_around_the_backend_limit(company: Company) -> None:
    await check_upload_limit(company, DEFAULT_MAX_DATA_BYTES)  # the backend's 413


async def test_upload_sizes_around_the_tenant_limit(small_tenant: Company) -> None:
    await check_upload_limit(small_tenant, TENANT_LIMIT)  # the gateway's 413
