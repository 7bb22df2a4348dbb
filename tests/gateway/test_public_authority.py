"""The host with the port the client used: passed to backends, used in URLs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from gateway.tenants import normalize_host, public_authority
from tests.gateway.conftest import (
    EchoBackend,
    GatewayFactory,
    start_echo,
    tenants_text,
    write_secret,
)
from tests.helpers.stack import Stack, login

Server = Callable[..., Awaitable[TestServer]]


@pytest.mark.parametrize(
    ("raw", "scheme", "port", "expected"),
    [
        ("company.localhost:8080", "http", None, "company.localhost:8080"),
        ("Company.LocalHost.:8080", "http", None, "company.localhost:8080"),
        ("company.localhost:80", "http", None, "company.localhost"),
        ("company.localhost:443", "https", None, "company.localhost"),
        ("company.localhost:443", "http", None, "company.localhost:443"),
        ("company.localhost:80", "https", None, "company.localhost:80"),
        ("company.localhost", "http", None, "company.localhost"),
        ("company.localhost", "https", "8443", "company.localhost:8443"),
        ("company.localhost", "https", "443", "company.localhost"),
        ("company.localhost:9000", "https", "8443", "company.localhost:9000"),
        ("company.localhost", "http", "x", "company.localhost"),
        ("company.localhost:99999", "http", None, "company.localhost"),
        ("company.localhost:0", "http", None, "company.localhost"),
        ("company.localhost:08080", "http", None, "company.localhost:8080"),
        ("[::1]:8080", "http", None, "[::1]:8080"),
        ("[::1]", "http", None, "[::1]"),
        ("", "http", None, ""),
    ],
)
def test_public_authority(
    raw: str, scheme: str, port: str | None, expected: str
) -> None:
    assert public_authority(raw, scheme, port) == expected
    # Tenant resolution keeps using the bare host.
    assert normalize_host(expected) == normalize_host(raw)


@pytest.fixture
async def company(
    make_gateway: GatewayFactory, aiohttp_server: Server, secrets_dir: Path
) -> tuple[object, object, EchoBackend]:
    backend, url = await start_echo(
        aiohttp_server, write_secret(secrets_dir, "company"), "company"
    )
    text = tenants_text([{"subdomain": "company", "backends": [url]}])
    direct = await make_gateway(text)
    proxied = await make_gateway(text, trusted_proxies=("127.0.0.1/32",))
    return direct, proxied, backend


@pytest.mark.parametrize(
    ("headers", "trusted", "host"),
    [
        ({"Host": "company.localhost:8080"}, False, "company.localhost:8080"),
        ({"Host": "company.localhost:80"}, False, "company.localhost"),
        ({"Host": "company.localhost"}, False, "company.localhost"),
        # X-Forwarded-* count only from a trusted proxy.
        (
            {"Host": "company.localhost:8080", "X-Forwarded-Port": "9"},
            False,
            "company.localhost:8080",
        ),
        (
            {
                "Host": "127.0.0.1:8080",
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Host": "company.localhost:443",
                "X-Forwarded-Proto": "https",
            },
            True,
            "company.localhost",
        ),
        (
            {
                "Host": "127.0.0.1:8080",
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Host": "company.localhost",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Port": "8443",
            },
            True,
            "company.localhost:8443",
        ),
        (
            {
                "Host": "company.localhost:8080",
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Proto": "http",
            },
            True,
            "company.localhost:8080",
        ),
    ],
)
async def test_backend_gets_the_host_with_the_port_the_client_used(
    company: tuple[object, object, EchoBackend],
    headers: dict[str, str],
    trusted: bool,
    host: str,
) -> None:
    direct, proxied, backend = company
    client = proxied if trusted else direct
    response = await client.get("/api/v3_0", headers=headers)  # type: ignore[attr-defined]
    assert response.status == 200
    seen = backend.seen[-1]
    assert seen["headers"]["X-Forwarded-Host"] == host  # type: ignore[index]
    claims = seen["claims"]
    assert isinstance(claims, dict)
    assert claims["host"] == host


async def test_service_listing_urls_carry_the_clients_port(
    stack: Stack,
) -> None:
    for host, base in (
        ("company.flexmeasures.io:8080", "http://company.flexmeasures.io:8080"),
        ("company.flexmeasures.io:80", "http://company.flexmeasures.io"),
        ("company.flexmeasures.io", "http://company.flexmeasures.io"),
    ):
        response = await stack.gateway.get("/api/v3_0", headers={"Host": host})
        assert response.status == 200
        urls = [service["url"] for service in (await response.json())["services"]]
        assert urls
        assert all(url.startswith(f"{base}/api/v3_0") for url in urls), urls
        assert f"{base}/api/v3_0/users" in urls
    # Entity addresses name the host without its port, as before.
    headers = {"Host": "company.flexmeasures.io:8080"}
    token = await login(stack, "admin@company.test", headers)
    auth = {**headers, "Authorization": token}
    types = await (
        await stack.gateway.get("/api/v3_0/assets/types", headers=auth)
    ).json()
    asset = await stack.gateway.post(
        "/api/v3_0/assets",
        json={"name": "Site", "generic_asset_type_id": types[0]["id"]},
        headers=auth,
    )
    assert asset.status == 201, await asset.text()
    sensor = await stack.gateway.post(
        "/api/v3_0/sensors",
        json={
            "name": "power",
            "unit": "kW",
            "event_resolution": "PT15M",
            "generic_asset_id": (await asset.json())["id"],
        },
        headers=auth,
    )
    assert sensor.status == 201, await sensor.text()
    address = (await sensor.json())["entity_address"]
    assert address.startswith("ea1.2021-01.io.flexmeasures.company:fm1.")
