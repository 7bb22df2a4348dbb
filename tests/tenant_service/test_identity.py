"""Identity verification, request ids, headers and error envelopes."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import jwt
import pytest

from contract.identity import IdentityError, verify_identity
from contract.logs import setup_logging
from tests.tenant_service.conftest import (
    FORBIDDEN,
    HOST,
    SECRET,
    TENANT,
    UNAUTHORIZED,
    Client,
    World,
    identity,
    now_ms,
)


def _claims(**overrides: object) -> dict[str, object]:
    issued = int(time.time())
    claims: dict[str, object] = {
        "iss": "flexhost-gateway",
        "aud": TENANT,
        "sub": "5",
        "acc": 1,
        "auth_time": now_ms(),
        "host": HOST,
        "scheme": "https",
        "iat": issued,
        "exp": issued + 60,
        "jti": "r1",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _verify(claims: dict[str, object], secret: str = SECRET) -> object:
    token = jwt.encode(claims, secret, algorithm="HS256")
    return verify_identity(token, secret=SECRET, tenant=TENANT)


def test_verify_identity_user() -> None:
    found = _verify(_claims())
    assert getattr(found, "user_id", None) == 5


@pytest.mark.parametrize(
    "claims",
    [
        _claims(aud="other"),
        _claims(iss="someone"),
        _claims(exp=None),
        _claims(iat=int(time.time()) - 600, exp=int(time.time()) - 500),
        _claims(exp=int(time.time()) + 3600),
        _claims(sub="abc"),
        _claims(auth_time=None),
        _claims(auth_time="123"),
        _claims(scheme="ftp"),
        _claims(host=None),
    ],
)
def test_verify_identity_refuses(claims: dict[str, object]) -> None:
    with pytest.raises(IdentityError):
        _verify(claims)


def test_verify_identity_refuses_wrong_secret() -> None:
    with pytest.raises(IdentityError):
        _verify(_claims(), secret="another-secret-0123456789abcdef-xyz")


def test_verify_identity_refuses_garbage() -> None:
    with pytest.raises(IdentityError):
        verify_identity("not.a.jwt", secret=SECRET, tenant=TENANT)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-FlexHost-Identity": "garbage"},
        identity(1, tenant="other"),
        identity(1, secret="wrong-secret-0123456789abcdef-0123456789"),
        identity(1, now=time.time() - 3600),
    ],
    ids=["missing", "garbage", "wrong-tenant", "wrong-secret", "expired"],
)
async def test_api_requires_identity(client: Client, headers: dict[str, str]) -> None:
    for path in ("/api/v3_0/users", "/api/ops/ping", "/api/v3_0"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401
        assert await resp.json() == UNAUTHORIZED
        assert resp.headers["FlexMeasures-Version"] == "1.0.1"
    resp = await client.post("/internal/credentials", json={}, headers=headers)
    assert resp.status == 401


async def test_service_identity_only_public(client: Client) -> None:
    for path in ("/api/v3_0", "/api/v3_0/health/ready", "/api/ops/ping"):
        resp = await client.get(path, headers=identity())
        assert resp.status == 200, path
    resp = await client.get("/api/v3_0/users", headers=identity())
    assert resp.status == 401
    assert await resp.json() == UNAUTHORIZED


async def test_user_identity_not_internal(client: Client, world: World) -> None:
    resp = await client.post(
        "/internal/credentials",
        json={"email": "admin@acme.test", "password": "x"},
        headers=identity(world.admin),
    )
    assert resp.status == 403
    assert await resp.json() == FORBIDDEN


async def test_unknown_and_inactive_users_refused(client: Client, world: World) -> None:
    for user_id in (world.inactive, 999_999):
        resp = await client.get("/api/v3_0/users", headers=identity(user_id))
        assert resp.status == 401
        assert await resp.json() == UNAUTHORIZED


async def test_ping_and_headers(client: Client) -> None:
    resp = await client.get(
        "/api/ops/ping", headers={**identity(), "X-Request-Id": "abc.123"}
    )
    assert resp.status == 200
    assert await resp.json() == {"message": "ok", "status": 200}
    assert resp.headers["X-Request-Id"] == "abc.123"
    assert resp.headers["FlexMeasures-Version"] == "1.0.1"
    assert "API-Version" not in resp.headers


async def test_bad_request_id_replaced(client: Client) -> None:
    resp = await client.get(
        "/api/ops/ping", headers={**identity(), "X-Request-Id": "bad id!"}
    )
    assert resp.headers["X-Request-Id"] != "bad id!"
    assert len(resp.headers["X-Request-Id"]) == 32


async def test_health_ready(client: Client) -> None:
    resp = await client.get("/api/v3_0/health/ready", headers=identity())
    assert await resp.json() == {"database_sql": True, "status": 200}
    assert resp.headers["API-Version"] == "v3_0"


async def test_service_listing(client: Client) -> None:
    resp = await client.get("/api/v3_0", headers=identity())
    body = await resp.json()
    assert body["status"] == "PROCESSED"
    assert body["version"] == "3.0"
    assert body["message"] == "Request has been processed."
    names = [s["name"] for s in body["services"]]
    assert names[0] == "GET "
    assert "GET /users" in names
    assert "PATCH /users/<id>/password-reset" in names
    assert "GET /accounts/<id>" in names
    by_name = {s["name"]: s for s in body["services"]}
    assert by_name["GET "]["url"] == f"https://{HOST}/api/v3_0"
    assert by_name["GET "]["description"] == "Obtain a service listing for this version"
    assert by_name["PATCH /users/<id>/password-reset"]["description"] == (
        "Password reset"
    )
    assert all(s["description"] for s in body["services"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v3_0/nonexistent", 404),
        ("DELETE", "/api/v3_0/users", 405),
        ("GET", "/elsewhere", 404),
    ],
)
async def test_http_errors_are_json(
    client: Client, world: World, method: str, path: str, status: int
) -> None:
    resp = await client.request(method, path, headers=identity(world.member))
    assert resp.status == status
    body = await resp.json()
    assert body["status"] == status
    assert isinstance(body["message"], str)


async def test_last_seen_is_recorded(client: Client, world: World) -> None:
    resp = await client.get("/api/v3_0/users", headers=identity(world.member))
    assert resp.status == 200
    for _ in range(50):  # written in the background
        resp = await client.get(
            f"/api/v3_0/users/{world.member}", headers=identity(world.member)
        )
        if (await resp.json())["last_seen_at"] is not None:
            break
        await asyncio.sleep(0.02)
    assert (await resp.json())["last_seen_at"] is not None


async def test_logs_are_json_without_secrets(
    client: Client, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = identity(world.member)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    setup_logging()
    try:
        await client.get(
            "/api/v3_0/users", headers={**headers, "X-Request-Id": "log-1"}
        )
        await client.post(
            "/internal/credentials",
            json={"email": "member@acme.test", "password": "hunter2-secret"},
            headers=identity(),
        )
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    access = [e for e in lines if e.get("path") == "/api/v3_0/users"]
    assert access
    assert access[0]["request_id"] == "log-1"
    assert access[0]["tenant"] == TENANT
    assert headers["X-FlexHost-Identity"] not in out
    assert "hunter2-secret" not in out
