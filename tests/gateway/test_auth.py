"""Token issuance, storage and checks, against real Redis and a loopback backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from tests.gateway.conftest import (
    EchoBackend,
    GatewayFactory,
    raw_request,
    start_echo,
    tenants_text,
    write_secret,
)

Server = Callable[..., Awaitable[TestServer]]
COMPANY = {"Host": "company.localhost:8080"}
ACME = {"Host": "acme.localhost:8080"}
UNAUTHORIZED = {
    "message": "You could not be properly authenticated for this content or functionality.",
    "status": "UNAUTHORIZED",
}


@pytest.fixture
async def two_tenants(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> tuple[object, EchoBackend, EchoBackend]:
    company, company_url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    acme, acme_url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "acme"), "acme"
    )
    client = await make_gateway(
        tenants_text(
            [
                {"subdomain": "company", "backends": [company_url], "token_ttl": 120},
                {
                    "subdomain": "acme",
                    "backends": [acme_url],
                    "hide_account_existence": True,
                },
            ]
        )
    )
    return client, company, acme


async def login(client: object, headers: dict[str, str] = COMPANY) -> str:
    response = await client.post(  # type: ignore[attr-defined]
        "/api/requestAuthToken",
        json={"email": "admin@company.test", "password": "pw"},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["user_id"] == 7
    assert body["status"] == 200
    token: str = body["auth_token"]
    return token


async def test_request_auth_token_stores_only_a_hash_with_ttl(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
    redis: Redis,
    redis_prefix: str,
) -> None:
    client, company, _ = two_tenants
    token = await login(client)
    assert len(token) >= 43
    keys = [k.decode() async for k in redis.scan_iter(match=f"{redis_prefix}:*")]
    # The token, the user's set of tokens, the user's count of tokens minted.
    assert len(keys) == 3
    for key in keys:
        assert token not in key
        assert "@" not in key
        dumped = await redis.dump(key)
        assert dumped is not None
        assert token.encode() not in dumped
    (tok_key,) = [k for k in keys if ":tok:" in k]
    assert 110 < await redis.ttl(tok_key) <= 120
    record = await redis.hgetall(tok_key)
    assert record[b"tenant"] == b"company"
    assert company.seen[-1]["raw_path"] == "/internal/credentials"
    claims = company.seen[-1]["claims"]
    assert isinstance(claims, dict)
    assert claims["sub"] == "service:gateway"


async def test_token_is_accepted_raw_and_with_bearer(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
) -> None:
    client, company, _ = two_tenants
    token = await login(client)
    for header in (token, f"Bearer {token}"):
        response = await client.get(  # type: ignore[attr-defined]
            "/api/v3_0/users", headers={**COMPANY, "Authorization": header}
        )
        assert response.status == 200
        claims = company.seen[-1]["claims"]
        assert isinstance(claims, dict)
        assert claims["sub"] == "7"
        assert claims["acc"] == 3
        assert claims["host"] == "company.localhost:8080"  # with the port used
        assert "Authorization" not in company.seen[-1]["headers"]  # type: ignore[operator]


async def test_auth_token_query_parameter_is_accepted_and_not_forwarded(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
) -> None:
    client, company, _ = two_tenants
    token = await login(client)
    response = await client.get(  # type: ignore[attr-defined]
        f"/api/v3_0/users?a=1&auth_token={token}&b=%2B2", headers=COMPANY
    )
    assert response.status == 200
    assert company.seen[-1]["raw_path"] == "/api/v3_0/users?a=1&b=%2B2"


# Spellings of the token's query parameter that aiohttp's query parser decodes to
# `auth_token` ("T" stands for the token): each authenticates, and the backend's
# request line must be the second column.
ENCODED_SPELLINGS = [
    ("auth_token=T", "/api/v3_0/users"),
    ("auth%5Ftoken=T", "/api/v3_0/users"),
    ("auth%5ftoken=T", "/api/v3_0/users"),
    ("%61%75%74%68%5F%74%6F%6B%65%6E=T", "/api/v3_0/users"),
    ("%61%75%74%68%5f%74%6f%6b%65%6e=T", "/api/v3_0/users"),
    ("a=1&auth%5Ftoken=T&b=%2B2", "/api/v3_0/users?a=1&b=%2B2"),
    ("auth%5Ftoken=T&auth_token=T&x=y", "/api/v3_0/users?x=y"),
    ("auth_token=T&auth%5Ftoken=&auth%5Ftoken", "/api/v3_0/users"),
    ("&&auth%5Ftoken=T&&x=1", "/api/v3_0/users?&&&x=1"),
    ("x=%E9&auth_t%6Fken=T", "/api/v3_0/users?x=%E9"),
    ("auth_t%6Fken=T#frag", "/api/v3_0/users"),
    ("x=1&auth%5Ftoken=T#&auth_token=T", "/api/v3_0/users?x=1"),
]
# Spellings the parser does not read as auth_token: no authentication (401).
NOT_THE_PARAMETER = [
    "auth+token=T",
    "Auth_token=T",
    "AUTH%5FTOKEN=T",
    "auth%255Ftoken=T",
    "a=1;auth_token=T",
    "auth_token%3DT",
    "auth%5Ftoken%00=T",
    "x=1#&auth_token=T",
]


async def _get_raw(client: object, target: str) -> str:
    """GET `target` exactly as written (no client-side quoting); the status code."""
    answer = await raw_request(
        client,  # type: ignore[arg-type]
        f"GET {target} HTTP/1.1\r\nHost: company.localhost:8080\r\n"
        "Connection: close\r\n\r\n",
    )
    return answer.split(" ", 2)[1]


@pytest.mark.parametrize(("query", "forwarded"), ENCODED_SPELLINGS)
async def test_auth_token_in_every_spelling_authenticates_and_is_stripped(
    two_tenants: tuple[object, EchoBackend, EchoBackend], query: str, forwarded: str
) -> None:
    client, company, _ = two_tenants
    token = await login(client)
    seen = len(company.seen)
    status = await _get_raw(client, f"/api/v3_0/users?{query.replace('T', token)}")
    assert status == "200"
    (request,) = company.seen[seen:]
    assert request["raw_path"] == forwarded
    assert token not in str(request["headers"])


@pytest.mark.parametrize("query", NOT_THE_PARAMETER)
async def test_auth_token_lookalikes_do_not_authenticate(
    two_tenants: tuple[object, EchoBackend, EchoBackend], query: str
) -> None:
    client, company, _ = two_tenants
    token = await login(client)
    seen = len(company.seen)
    status = await _get_raw(client, f"/api/v3_0/users?{query.replace('T', token)}")
    assert status == "401"
    assert company.seen[seen:] == []


async def test_auth_token_parameter_is_stripped_when_a_header_authenticates(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
) -> None:
    client, company, _ = two_tenants
    token = await login(client)
    other = await login(client)
    response = await client.get(  # type: ignore[attr-defined]
        f"/api/v3_0/users?auth%5Ftoken={other}&q=1",
        headers={**COMPANY, "Authorization": token},
    )
    assert response.status == 200
    assert company.seen[-1]["raw_path"] == "/api/v3_0/users?q=1"


async def test_token_is_bound_to_its_tenant(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
) -> None:
    client, _, acme = two_tenants
    token = await login(client)
    response = await client.get(  # type: ignore[attr-defined]
        "/api/v3_0/users", headers={**ACME, "Authorization": token}
    )
    assert response.status == 401
    assert await response.json() == UNAUTHORIZED
    assert not [s for s in acme.seen if s["raw_path"] == "/api/v3_0/users"]


@pytest.mark.parametrize(
    "header", [None, "", "garbage", "Bearer ", "x" * 600, "Basic dXNlcjpwdw=="]
)
async def test_missing_or_invalid_token_is_401(
    two_tenants: tuple[object, EchoBackend, EchoBackend], header: str | None
) -> None:
    client, company, _ = two_tenants
    headers = dict(COMPANY)
    if header is not None:
        headers["Authorization"] = header
    response = await client.get("/api/v3_0/assets", headers=headers)  # type: ignore[attr-defined]
    assert response.status == 401
    assert await response.json() == UNAUTHORIZED
    assert response.headers["FlexMeasures-Version"] == "1.0.1"
    assert response.headers["API-Version"] == "v3_0"
    assert not company.seen


async def test_expired_token_is_401(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
    redis: Redis,
    redis_prefix: str,
) -> None:
    client, _, _ = two_tenants
    token = await login(client)
    expired = [key async for key in redis.scan_iter(match=f"{redis_prefix}:tok:*")]
    assert len(expired) == 1
    await redis.pexpire(expired[0], 1)
    await asyncio.sleep(0.01)
    response = await client.get(  # type: ignore[attr-defined]
        "/api/v3_0/users", headers={**COMPANY, "Authorization": token}
    )
    assert response.status == 401
    assert await response.json() == UNAUTHORIZED


async def test_revoke_header_from_backend_revokes_all_user_tokens(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
) -> None:
    client, company, _ = two_tenants
    first, second = await login(client), await login(client)

    async def revoke(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"X-FlexHost-Revoke-User": "7"})

    company.handler = revoke
    response = await client.patch(  # type: ignore[attr-defined]
        "/api/v3_0/users/7/password-reset", headers={**COMPANY, "Authorization": first}
    )
    assert response.status == 200
    assert "X-FlexHost-Revoke-User" not in response.headers
    company.handler = None
    for token in (first, second):
        response = await client.get(  # type: ignore[attr-defined]
            "/api/v3_0/users", headers={**COMPANY, "Authorization": token}
        )
        assert response.status == 401


@pytest.mark.parametrize(
    ("backend_status", "backend_body", "tenant", "status", "errors"),
    [
        (
            401,
            {"status": "WRONG_PASSWORD"},
            COMPANY,
            401,
            ["User password does not match."],
        ),
        (
            404,
            {"status": "UNKNOWN_USER"},
            COMPANY,
            404,
            ["User with email 'admin@company.test' does not exist"],
        ),
        (404, {"status": "UNKNOWN_USER"}, ACME, 401, ["Invalid email or password."]),
        (401, {"status": "WRONG_PASSWORD"}, ACME, 401, ["Invalid email or password."]),
        (
            200,
            {"user_id": 7, "account_id": 3, "roles": [], "active": False},
            COMPANY,
            401,
            ["Account is disabled."],
        ),
    ],
)
async def test_request_auth_token_failures(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
    backend_status: int,
    backend_body: dict[str, object],
    tenant: dict[str, str],
    status: int,
    errors: list[str],
) -> None:
    client, company, acme = two_tenants

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(backend_body, status=backend_status)

    company.handler = acme.handler = answer
    response = await client.post(  # type: ignore[attr-defined]
        "/api/requestAuthToken",
        json={"email": "admin@company.test", "password": "wrong"},
        headers=tenant,
    )
    assert await response.json() == {"errors": errors, "status": status}
    assert response.status == status


BOTH = {
    "json": {
        "email": ["Missing data for required field."],
        "password": ["Missing data for required field."],
    }
}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "expected"),
    [
        (
            b'{"email": "a@b.c"}',
            "application/json",
            422,
            {"json": {"password": ["Missing data for required field."]}},
        ),
        (
            b"{}",
            "application/json",
            422,
            {
                "json": {
                    "email": ["Missing data for required field."],
                    "password": ["Missing data for required field."],
                }
            },
        ),
        (
            b'{"email": 5, "password": []}',
            "application/json",
            422,
            {
                "json": {
                    "email": ["Not a valid string."],
                    "password": ["Not a valid string."],
                }
            },
        ),
        (
            b"[1]",
            "application/json",
            422,
            {"json": {"_schema": ["Invalid input type."]}},
        ),
        (b'{"email": "a@b.c", ', "application/json", 400, None),
        # Not JSON by its Content-Type, or empty: no fields, as FlexMeasures (#12)
        (b"email=a%40b.c&password=x", "application/x-www-form-urlencoded", 422, BOTH),
        (b'{"email": "a@b.c", "password": "x"}', "text/plain", 422, BOTH),
        (b"", "", 422, BOTH),
        (b"", "application/json", 422, BOTH),
    ],
)
async def test_request_auth_token_bad_input(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
    body: bytes,
    content_type: str,
    status: int,
    expected: dict[str, object] | None,
) -> None:
    client, company, _ = two_tenants
    headers = {**COMPANY, "Content-Type": content_type} if content_type else COMPANY
    response = await client.post(  # type: ignore[attr-defined]
        "/api/requestAuthToken", data=body, headers=headers
    )
    assert response.status == status
    answer = await response.json()
    if expected is None:
        assert answer == {
            "message": "The browser (or proxy) sent a request that this server could "
            "not understand.",
            "status": 400,
        }
    else:
        assert answer == {
            "message": expected,
            "result": "Rejected",
            "status": "UNPROCESSABLE_ENTITY",
        }
    assert not company.seen


async def test_request_auth_token_wrong_method_is_json_405(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
) -> None:
    client, _, _ = two_tenants
    response = await client.get("/api/requestAuthToken", headers=COMPANY)  # type: ignore[attr-defined]
    assert response.status == 405
    assert response.content_type == "application/json"
    assert (await response.json())["status"] == 405


async def test_preflight_reaches_the_backend_as_the_service_only(
    two_tenants: tuple[object, EchoBackend, EchoBackend],
) -> None:
    """A preflight with or without a token: never a user's identity (#12)."""
    client, company, _ = two_tenants
    token = await login(client)
    for extra in ({}, {"Authorization": token}, {"Authorization": "garbage"}):
        response = await client.options(  # type: ignore[attr-defined]
            "/api/v3_0/assets", headers={**COMPANY, **extra}
        )
        assert response.status == 200  # the echo backend's answer, passed on
        claims = company.seen[-1]["claims"]
        assert isinstance(claims, dict)
        assert claims["sub"] == "service:gateway"
        assert "Authorization" not in company.seen[-1]["headers"]  # type: ignore[operator]
