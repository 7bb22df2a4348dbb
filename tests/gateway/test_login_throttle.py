"""Login limits under concurrency: real gateways, real Redis, a loopback backend.

The backend here holds each password check until the test lets it answer, so the
logins a test sends at once really are in flight at once: what reaches the
backend, and what the gateway refuses meanwhile, is then exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from contract.config import ConfigError
from contract.rates import Rate
from gateway import keys
from gateway.config import load_settings
from tests.gateway.conftest import GatewayFactory, metric, tenants_text, write_secret
from tests.helpers.net import free_port
from tests.helpers.pages import CSRF_RE

Server = Callable[..., Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]
HOST = "company.localhost"
PASSWORD = "right password"
UNREADABLE = (
    "The browser (or proxy) sent a request that this server could not understand."
)
FRESH_RE = re.compile(r'id="fresh-token" value="([^"]+)"')


class Passwords:
    """A tenant backend's /internal/credentials: users with one password each.

    While `gate` is clear every check waits (in flight); `busy` answers 503.
    """

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_post("/internal/credentials", self.check)
        self.app.router.add_route("*", "/{tail:.*}", self.other)
        self.gate = asyncio.Event()
        self.gate.set()
        self.asked = 0
        self.in_flight = 0
        self.busy: str | None = None  # a Retry-After to answer 503 with
        self.deep = False  # answer other requests with JSON nested too deep

    async def other(self, request: web.Request) -> web.Response:
        if request.path == "/readyz":
            return web.json_response({"status": "ok"})
        if self.deep:
            deep = "[" * 10_000 + "]" * 10_000
            return web.Response(text=deep, content_type="application/json")
        return web.json_response({"id": 7, "email": "user@company.test"})

    async def check(self, request: web.Request) -> web.Response:
        data = await request.json()
        if self.busy is not None:
            return web.json_response(
                {
                    "message": "Too many password checks are in progress; please "
                    "try again in a second.",
                    "status": "SERVICE_UNAVAILABLE",
                },
                status=503,
                headers={"Retry-After": self.busy},
            )
        self.asked += 1
        self.in_flight += 1
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        email = str(data["email"]).lower()
        if not email.startswith("user"):
            return web.json_response({"status": "UNKNOWN_USER"}, status=404)
        if data["password"] != PASSWORD:
            return web.json_response({"status": "WRONG_PASSWORD"}, status=401)
        user_id = int(email[4 : email.index("@")] or 0) + 7
        return web.json_response(
            {"user_id": user_id, "account_id": 3, "roles": [], "active": True}
        )


@pytest.fixture
async def passwords(aiohttp_server: Server) -> tuple[Passwords, str]:
    backend = Passwords()
    server = await aiohttp_server(backend.app)
    return backend, str(server.make_url("")).rstrip("/")


GatewayMaker = Callable[..., Awaitable[Client]]


@pytest.fixture
def gateway(
    make_gateway: GatewayFactory,
    passwords: tuple[Passwords, str],
    secrets_dir: Path,
) -> GatewayMaker:
    """A gateway (another one at each call, sharing Redis) over the backend(s)."""
    write_secret(secrets_dir, "company")

    async def factory(*backends: str, **overrides: Any) -> Client:
        entry: dict[str, object] = {
            "subdomain": "company",
            "backends": list(backends) or [passwords[1]],
        }
        # bursts of 60 logins on the test's own loop may wait for Redis longer than
        # the 1 s default on a busy machine: these tests count, so they wait longer
        overrides.setdefault("redis_timeout", 5.0)
        return await make_gateway(tenants_text([entry]), **overrides)

    return factory


async def request_token(
    client: Client, email: str, password: str = PASSWORD, ip: str | None = None
) -> ClientResponse:
    headers = {"Host": HOST}
    if ip is not None:  # trusted proxy (127.0.0.1) forwarding for `ip`
        headers["X-Forwarded-For"] = ip
    response = await client.post(
        "/api/requestAuthToken",
        json={"email": email, "password": password},
        headers=headers,
    )
    await response.read()
    return response


async def burst(
    backend: Passwords,
    sends: Sequence[Awaitable[ClientResponse]],
    *,
    held: int,
) -> list[ClientResponse]:
    """Send all at once while the backend holds its checks; wait until exactly
    `held` are in flight there and all others are answered, then let them go."""
    backend.gate.clear()
    tasks = [asyncio.ensure_future(send) for send in sends]
    try:
        for _ in range(2000):
            done = sum(task.done() for task in tasks)
            if done == len(tasks) - held and backend.in_flight == held:
                break
            if done > len(tasks) - held or backend.in_flight > held:
                break  # fails below, with the numbers
            await asyncio.sleep(0.01)
        assert backend.in_flight == held
        assert sum(task.done() for task in tasks) == len(tasks) - held
    finally:
        backend.gate.set()
    return list(await asyncio.gather(*tasks))


def statuses(responses: list[ClientResponse]) -> dict[int, int]:
    found: dict[int, int] = {}
    for response in responses:
        found[response.status] = found.get(response.status, 0) + 1
    return found


async def errors(responses: list[ClientResponse]) -> list[str]:
    """The bodies of the 5xx answers (read only when an assertion failed)."""
    return [await r.text() for r in responses if r.status >= 500]


def login_failures(client: Client, reason: str) -> float:
    text = client.app[keys.METRICS].exposition().decode()
    name = "flexhost_gateway_login_failures_total"
    pool = client.app[keys.REGISTRY].pool("company")  # the label by default
    assert pool is not None
    return metric(text, name, pool=pool, reason=reason)


async def failures(redis: Redis, prefix: str) -> dict[str, dict[str, int]]:
    """Each failure counter: {"f": failures, "p": logins in flight}."""
    found = {}
    async for key in redis.scan_iter(match=f"{prefix}:login:*"):
        fields = await redis.hgetall(key)
        found[key.decode()] = {
            k.decode() if isinstance(k, bytes) else k: int(v) for k, v in fields.items()
        }
    return found


# --- item 3: failed logins, exact under concurrency ----------------------------


async def test_login_throttle_lets_exactly_5_of_60_wrong_passwords_reach_the_backend(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    client = await gateway(login_checks_per_email=100)
    answers = await burst(
        backend,
        [request_token(client, "user1@company.test", "wrong") for _ in range(60)],
        held=5,
    )
    assert backend.asked == 5
    assert statuses(answers) == {401: 5, 429: 55}, await errors(answers)
    # Refused while the 5 were in flight (no failure yet): try again in a second.
    for answer in answers:
        if answer.status == 429:
            assert answer.headers["Retry-After"] == "1"
            assert await answer.json() == {
                "message": "Too many logins of this account at once; please try "
                "again in 1 second.",
                "result": "Rejected",
                "status": "TOO_MANY_REQUESTS",
            }
    # The 5 failures now hold the window: even the right password waits.
    again = await request_token(client, "user1@company.test")
    assert again.status == 429
    assert 890 <= int(again.headers["Retry-After"]) <= 900
    assert await again.json() == {
        "message": "Too many failed login attempts; please try again in 15 minutes.",
        "status": "TOO_MANY_REQUESTS",
    }
    assert backend.asked == 5


async def test_login_throttle_per_address_across_many_emails(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    client = await gateway(login_checks_per_email=100, trusted_proxies=("127.0.0.1",))
    answers = await burst(
        backend,
        [
            request_token(client, f"user{n}@company.test", "wrong", ip="203.0.113.9")
            for n in range(60)
        ],
        held=20,
    )
    assert backend.asked == 20
    assert statuses(answers) == {401: 20, 429: 40}, await errors(answers)
    for answer in answers:
        if answer.status == 429:
            assert answer.headers["Retry-After"] == "1"
            body = await answer.json()
            assert body["message"].startswith("Too many logins from your address")
    # Now 20 failures: the address waits for the window.
    refused = await request_token(client, "user99@company.test", ip="203.0.113.9")
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) > 800
    # Another address is not affected, nor (below its limit) one of those emails.
    other = await request_token(client, "user1@company.test", ip="198.51.100.1")
    assert other.status == 200


async def test_correct_logins_at_once_from_one_address_count_no_failure(
    gateway: GatewayMaker,
    passwords: tuple[Passwords, str],
    redis: Redis,
    redis_prefix: str,
) -> None:
    backend, _ = passwords
    client = await gateway(login_failures_per_address=20)
    answers = await burst(
        backend,
        [request_token(client, f"user{n}@company.test") for n in range(30)],
        held=20,
    )
    assert statuses(answers) == {200: 20, 429: 10}, await errors(answers)
    assert {a.headers["Retry-After"] for a in answers if a.status == 429} == {"1"}
    # Nothing failed: no counter is left, and the ten get in now.
    assert await failures(redis, redis_prefix) == {}
    for n in range(20, 30):
        assert (await request_token(client, f"user{n}@company.test")).status == 200


async def test_login_throttle_is_shared_by_two_gateways(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    first = await gateway(login_checks_per_email=100)
    second = await gateway(login_checks_per_email=100)
    assert first.app is not second.app
    sends = [
        request_token(client, "user2@company.test", "wrong")
        for _ in range(30)
        for client in (first, second)
    ]
    answers = await burst(backend, sends, held=5)
    assert backend.asked == 5
    assert statuses(answers) == {401: 5, 429: 55}, await errors(answers)


async def test_login_throttle_below_the_limit_and_at_it(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    client = await gateway(login_failures_per_email=3)
    for _ in range(2):
        assert (await request_token(client, "user3@company.test", "x")).status == 401
    # 2 failures of 3: the right password passes and forgets them.
    assert (await request_token(client, "user3@company.test")).status == 200
    for _ in range(3):
        assert (await request_token(client, "user3@company.test", "x")).status == 401
    assert (await request_token(client, "user3@company.test")).status == 429
    assert backend.asked == 6


async def test_a_success_forgets_the_email_and_gives_the_address_slot_back(
    gateway: GatewayMaker,
    passwords: tuple[Passwords, str],
    redis: Redis,
    redis_prefix: str,
) -> None:
    client = await gateway()
    for _ in range(2):
        assert (await request_token(client, "user4@company.test", "x")).status == 401
    found = await failures(redis, redis_prefix)
    assert list(found.values()) == [{"f": 2, "p": 0}] * 2
    assert (await request_token(client, "user4@company.test")).status == 200
    # The email's failures are gone; the address keeps its 2 failures only.
    assert list((await failures(redis, redis_prefix)).values()) == [{"f": 2, "p": 0}]
    assert not [k async for k in redis.scan_iter(match=f"{redis_prefix}:checks:*")]


# --- item 4: a busy backend, checks in flight per email, tokens per user -------


async def test_a_busy_backend_is_503_with_retry_after_and_no_failure(
    gateway: GatewayMaker,
    passwords: tuple[Passwords, str],
    redis: Redis,
    redis_prefix: str,
) -> None:
    backend, url = passwords
    backend.busy = "7"
    client = await gateway(login_failures_per_email=2)
    for _ in range(4):  # more than the failure limit: none of them counts
        answer = await request_token(client, "user5@company.test", "wrong")
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "7"
        assert await answer.json() == {
            "message": "Too many logins are being checked right now; please try "
            "again in 7 seconds.",
            "status": "SERVICE_UNAVAILABLE",
        }
    assert not [k async for k in redis.scan_iter(match=f"{redis_prefix}:login:*")]
    assert not [k async for k in redis.scan_iter(match=f"{redis_prefix}:checks:*")]
    assert not [k async for k in redis.scan_iter(match=f"{redis_prefix}:mint:*")]
    assert client.app[keys.HEALTH].is_up(url)  # busy is no replica failure
    assert login_failures(client, "backend_busy") == 4
    backend.busy = None
    assert (await request_token(client, "user5@company.test")).status == 200


async def test_a_busy_replica_passes_the_check_to_the_next(
    gateway: GatewayMaker, passwords: tuple[Passwords, str], aiohttp_server: Server
) -> None:
    backend, url = passwords
    busy = Passwords()
    busy.busy = "3"
    busy_url = str((await aiohttp_server(busy.app)).make_url("")).rstrip("/")
    client = await gateway(busy_url, url)
    for _ in range(4):  # round-robin: each replica comes first in turn
        assert (await request_token(client, "user6@company.test")).status == 200
    assert backend.asked == 4
    assert client.app[keys.HEALTH].is_up(busy_url)


async def test_a_refusing_replica_is_skipped_by_later_checks(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, url = passwords
    dead = f"http://127.0.0.1:{free_port()}"
    client = await gateway(dead, url, health_interval=600.0)
    for _ in range(4):  # round-robin: the dead replica would come first twice
        assert (await request_token(client, "user8@company.test")).status == 200
    assert backend.asked == 4
    assert not client.app[keys.HEALTH].is_up(dead)  # as for proxied requests


async def test_checks_in_flight_per_email(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    client = await gateway(login_checks_per_email=2, login_failures_per_email=100)
    answers = await burst(
        backend,
        [request_token(client, "user7@company.test") for _ in range(10)],
        held=2,
    )
    assert backend.asked == 2
    assert statuses(answers) == {200: 2, 429: 8}, await errors(answers)
    refused = next(answer for answer in answers if answer.status == 429)
    assert refused.headers["Retry-After"] == "1"
    assert await refused.json() == {
        "message": "Too many logins of this account at once; please try again in "
        "1 second.",
        "result": "Rejected",
        "status": "TOO_MANY_REQUESTS",
    }
    # At the limit, not beyond: 2 at once both pass; other accounts are not held.
    answers = await burst(
        backend,
        [
            request_token(client, "user7@company.test"),
            request_token(client, "user7@company.test"),
            request_token(client, "user8@company.test"),
        ],
        held=3,
    )
    assert statuses(answers) == {200: 3}, await errors(answers)


async def test_checks_in_flight_of_a_dead_gateway_end_at_their_deadline(
    gateway: GatewayMaker, redis: Redis, redis_prefix: str
) -> None:
    client = await gateway(login_checks_per_email=2)
    digest = hashlib.sha256(b"user15@company.test").hexdigest()
    key = f"{redis_prefix}:checks:company:{digest}"
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    # Two checks whose gateways died: their deadlines have passed.
    await redis.zadd(key, {"dead-1": now_ms - 1, "dead-2": now_ms - 1000})
    assert (await request_token(client, "User15@company.test")).status == 200
    # Two checks in flight elsewhere, before their deadlines: the account is full.
    await redis.zadd(key, {"live-1": now_ms + 60_000, "live-2": now_ms + 60_000})
    refused = await request_token(client, "user15@company.test")
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    await redis.zrem(key, "live-1")
    assert (await request_token(client, "user15@company.test")).status == 200
    assert await redis.zrange(key, 0, -1) == [b"live-2"]


async def test_tokens_per_user_are_limited_before_the_password_check(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    client = await gateway(tokens_per_user=Rate(3, 3600), login_checks_per_email=100)
    # Wrong passwords mint nothing, so they spend none of it.
    assert (await request_token(client, "user9@company.test", "x")).status == 401
    answers = await burst(
        backend,
        [request_token(client, "user9@company.test") for _ in range(10)],
        held=3,
    )
    assert statuses(answers) == {200: 3, 429: 7}, await errors(answers)
    assert backend.asked == 4
    refused = next(answer for answer in answers if answer.status == 429)
    assert 3590 <= int(refused.headers["Retry-After"]) <= 3600
    assert await refused.json() == {
        "message": "You hit a rate limit. The limit you hit allows 3 new tokens per "
        "user per 1 hour; please try again in 60 minutes.",
        "result": "Rejected",
        "status": "TOO_MANY_REQUESTS",
    }
    # Any case of the email is the same user; the backend is not asked.
    assert (await request_token(client, "USER9@company.test")).status == 429
    assert backend.asked == 4
    # Another user has their own.
    assert (await request_token(client, "user10@company.test")).status == 200
    assert login_failures(client, "token_limit") == 8


async def test_tokens_per_user_count_page_logins_and_profile_tokens(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    client = await gateway(tokens_per_user=Rate(3, 600))
    page = {"Host": HOST, "Origin": f"http://{HOST}"}
    login = await client.post(
        "/login",
        data={"email": "user11@company.test", "password": PASSWORD},
        headers=page,
        allow_redirects=False,
    )
    assert login.status == 303  # 1 of 3: the page session
    profile = await client.get("/logged-in-user", headers={"Host": HOST})
    found = CSRF_RE.search(await profile.text())
    assert found is not None
    form = {"csrf_token": found.group(1)}
    fresh = await client.post(
        "/logged-in-user/api-tokens", data=form, headers=page, allow_redirects=False
    )
    assert fresh.status == 201  # 2 of 3
    assert FRESH_RE.search(await fresh.text())
    assert (await request_token(client, "user11@company.test")).status == 200  # 3
    refused = await client.post(
        "/logged-in-user/api-keys",
        data={**form, "name": "one more", "days": "3"},
        headers=page,
        allow_redirects=False,
    )
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    text = await refused.text()
    assert "allows 3 new tokens per user per 10 minutes" in text
    assert not FRESH_RE.search(text)
    second = await client.post(
        "/login",
        data={"email": "user11@company.test", "password": PASSWORD},
        headers=page,
        allow_redirects=False,
    )
    assert second.status == 429
    assert "Retry-After" in second.headers
    assert "allows 3 new tokens per user" in await second.text()


async def test_page_login_passes_on_busy_and_in_flight_refusals(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    backend.busy = "2"
    client = await gateway()
    page = {"Host": HOST, "Origin": f"http://{HOST}"}
    answer = await client.post(
        "/login",
        data={"email": "user12@company.test", "password": PASSWORD},
        headers=page,
        allow_redirects=False,
    )
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "2"
    assert "Too many logins are being checked right now" in await answer.text()
    assert "flexhost_session" not in answer.cookies


# --- item 9: deep JSON ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 5_000 + "1" + "}" * 5_000,
        '{"email": ' + "[" * 9_000 + "]" * 9_000 + ', "password": "x"}',
        "[" * 10_000,
    ],
    ids=["arrays", "objects", "inside-a-field", "unclosed"],
)
async def test_request_auth_token_deep_json_is_400(
    gateway: GatewayMaker, passwords: tuple[Passwords, str], body: str
) -> None:
    backend, _ = passwords
    client = await gateway()
    response = await client.post(
        "/api/requestAuthToken",
        data=body,
        headers={"Host": HOST, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert await response.json() == {"message": UNREADABLE, "status": 400}
    assert backend.asked == 0


async def test_login_page_with_deep_json_or_form_is_no_500(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    client = await gateway()
    page = {"Host": HOST, "Origin": f"http://{HOST}"}
    deep = "[" * 10_000 + "]" * 10_000
    response = await client.post(
        "/login", data=deep, headers={**page, "Content-Type": "application/json"}
    )
    assert response.status == 422
    assert "Please enter your email address and your password." in (
        await response.text()
    )
    response = await client.post(
        "/login",
        data={"email": deep[:5000], "password": deep[:5000]},
        headers=page,
    )
    assert response.status == 422
    assert backend.asked == 0


async def test_request_auth_token_json_just_under_the_depth_is_read(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    client = await gateway()
    body = json.dumps({"email": "user13@company.test", "password": PASSWORD})
    nested = body[:-1] + ', "extra": ' + "[" * 500 + "]" * 500 + "}"
    response = await client.post(
        "/api/requestAuthToken",
        data=nested,
        headers={"Host": HOST, "Content-Type": "application/json"},
    )
    assert response.status == 200


async def test_backend_json_nested_too_deep_is_no_500_on_the_profile(
    gateway: GatewayMaker, passwords: tuple[Passwords, str]
) -> None:
    backend, _ = passwords
    client = await gateway()
    page = {"Host": HOST, "Origin": f"http://{HOST}"}
    login = await client.post(
        "/login",
        data={"email": "user14@company.test", "password": PASSWORD},
        headers=page,
        allow_redirects=False,
    )
    assert login.status == 303
    backend.deep = True
    profile = await client.get("/logged-in-user", headers={"Host": HOST})
    assert profile.status == 200  # without the details the backend could not give
    assert CSRF_RE.search(await profile.text())


# --- settings --------------------------------------------------------------------


def test_login_limit_settings_from_the_environment() -> None:
    settings = load_settings(
        {"GATEWAY_TOKENS_PER_USER": "30/hour", "GATEWAY_LOGIN_CHECKS_PER_EMAIL": "4"}
    )
    assert settings.tokens_per_user == Rate(30, 3600)
    assert settings.login_checks_per_email == 4
    assert load_settings({"GATEWAY_TOKENS_PER_USER": "off"}).tokens_per_user is None
    defaults = load_settings({})
    assert defaults.tokens_per_user == Rate(100, 3600)
    assert defaults.login_checks_per_email == 2
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                "GATEWAY_TOKENS_PER_USER": "many",
                "GATEWAY_LOGIN_CHECKS_PER_EMAIL": "0",
            }
        )
    assert any(p.startswith("GATEWAY_TOKENS_PER_USER:") for p in err.value.problems)
    assert any(
        p.startswith("GATEWAY_LOGIN_CHECKS_PER_EMAIL:") for p in err.value.problems
    )
