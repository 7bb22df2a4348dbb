"""POST /internal/credentials, and the bound on password checks in flight."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from contract.config import ConfigError
from tenant_service import keys
from tenant_service.app import create_app
from tenant_service.config import Settings, load_settings
from tenant_service.errors import PasswordChecksBusyError
from tenant_service.passwords import PasswordChecker
from tests.tenant_service.conftest import (
    PASSWORD,
    SECRET,
    Client,
    ClientFactory,
    World,
    identity,
)


async def _check(client: Client, body: object) -> tuple[int, object]:
    resp = await client.post("/internal/credentials", json=body, headers=identity())
    return resp.status, await resp.json()


async def test_credentials_ok(client: Client, world: World) -> None:
    status, body = await _check(
        client, {"email": "Boss@acme.test", "password": PASSWORD}
    )
    assert status == 200
    assert body == {
        "user_id": world.account_admin,
        "account_id": world.acme,
        "roles": ["account-admin"],
        "active": True,
        "status": 200,
    }
    resp = await client.get(
        f"/api/v3_0/users/{world.account_admin}", headers=identity(world.account_admin)
    )
    assert (await resp.json())["last_login_at"] is not None


async def test_credentials_failures(client: Client, world: World) -> None:
    status, body = await _check(client, {"email": "boss@acme.test", "password": "no"})
    assert (status, body) == (401, {"status": "WRONG_PASSWORD"})
    status, body = await _check(client, {"email": "who@acme.test", "password": "no"})
    assert (status, body) == (404, {"status": "UNKNOWN_USER"})


async def test_credentials_inactive(client: Client, world: World) -> None:
    status, body = await _check(
        client, {"email": "gone@acme.test", "password": PASSWORD}
    )
    assert status == 200
    assert isinstance(body, dict)
    assert body["active"] is False


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"email": "a@b.c"}, {"password": ["Missing data for required field."]}),
        (
            {},
            {
                "email": ["Missing data for required field."],
                "password": ["Missing data for required field."],
            },
        ),
        (
            {"email": 1, "password": None},
            {"email": ["Not a valid string."], "password": ["Field may not be null."]},
        ),
        ("text", {"_schema": ["Invalid input type."]}),
    ],
)
async def test_credentials_invalid(
    client: Client, body: object, errors: dict[str, list[str]]
) -> None:
    status, answer = await _check(client, body)
    assert status == 422
    assert answer == {
        "message": {"json": errors},
        "result": "Rejected",
        "status": "UNPROCESSABLE_ENTITY",
    }


async def test_credentials_malformed(client: Client) -> None:
    resp = await client.post(
        "/internal/credentials",
        data=b"{nope",
        headers={**identity(), "Content-Type": "application/json"},
    )
    assert resp.status == 400


async def settle(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds (a few iterations; no timing)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    pytest.fail("the condition never held")


def hold(checker: PasswordChecker) -> tuple[threading.Event, asyncio.Future[bool]]:
    """Take one check's room until the returned event is set."""
    gate = threading.Event()
    return gate, asyncio.ensure_future(checker.run(gate.wait, 30))


async def test_password_checks_past_the_bound_are_busy_at_once(
    password_hash: str,
) -> None:
    checker = PasswordChecker(2, wait=0)
    gates = [hold(checker) for _ in range(2)]
    await settle(lambda: checker.in_flight == 2)
    with pytest.raises(PasswordChecksBusyError):
        await checker.verify(password_hash, PASSWORD)
    with pytest.raises(PasswordChecksBusyError):
        await checker.verify(None, PASSWORD)  # unknown users are checks too
    gates[0][0].set()
    await gates[0][1]
    # Below the bound again: a check runs.
    assert (await checker.verify(password_hash, PASSWORD)).ok
    gates[1][0].set()
    await gates[1][1]
    assert checker.in_flight == 0


async def test_a_password_check_waits_for_room_within_the_bound(
    password_hash: str,
) -> None:
    checker = PasswordChecker(1, wait=60)
    gate, held = hold(checker)
    await settle(lambda: checker.in_flight == 1)
    waiting = asyncio.ensure_future(checker.verify(password_hash, PASSWORD))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()
    gate.set()
    assert (await waiting).ok
    assert await held


async def test_a_cancelled_check_keeps_its_room_until_its_thread_ends() -> None:
    checker = PasswordChecker(1, wait=0)
    gate, held = hold(checker)
    await settle(lambda: checker.in_flight == 1)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    # The hash is still being computed: its room is still taken.
    assert checker.in_flight == 1
    with pytest.raises(PasswordChecksBusyError):
        await checker.run(gate.wait, 0)
    gate.set()
    await settle(lambda: checker.in_flight == 0)
    assert await checker.run(gate.wait, 0)


async def test_credentials_past_the_bound_are_503_with_retry_after(
    aiohttp_client: ClientFactory, settings: Settings, world: World
) -> None:
    app = create_app(
        Settings(
            name=settings.name,
            database_url=settings.database_url,
            secret=settings.secret,
            password_checks=1,
            password_check_wait=0,
        )
    )
    client = await aiohttp_client(app)
    gate, held = hold(app[keys.PASSWORDS])
    await settle(lambda: app[keys.PASSWORDS].in_flight == 1)
    resp = await client.post(
        "/internal/credentials",
        json={"email": "boss@acme.test", "password": PASSWORD},
        headers=identity(),
    )
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert await resp.json() == {
        "message": "Too many password checks are in progress; please try again in "
        "a second.",
        "status": "SERVICE_UNAVAILABLE",
    }
    gate.set()
    await held
    status, _ = await _check(client, {"email": "boss@acme.test", "password": PASSWORD})
    assert status == 200


def test_password_check_settings() -> None:
    base = {"TENANT_NAME": "acme", "TENANT_SECRET": SECRET}
    defaults = load_settings(base)
    assert (defaults.password_checks, defaults.password_check_wait) == (3, 1.0)
    given = load_settings(
        {**base, "TENANT_PASSWORD_CHECKS": "2", "TENANT_PASSWORD_CHECK_WAIT": "0.5"}
    )
    assert (given.password_checks, given.password_check_wait) == (2, 0.5)
    assert (
        load_settings({**base, "TENANT_PASSWORD_CHECK_WAIT": "0"}).password_check_wait
        == 0
    )
    for name, value in (
        ("PASSWORD_CHECKS", "0"),
        ("PASSWORD_CHECKS", "many"),
        ("PASSWORD_CHECK_WAIT", "-1"),
        ("PASSWORD_CHECK_WAIT", "61"),
        ("PASSWORD_CHECK_WAIT", "nan"),
        ("PASSWORD_CHECK_WAIT", "soon"),
    ):
        with pytest.raises(ConfigError) as err:
            load_settings({**base, f"TENANT_{name}": value})
        assert any(p.startswith(f"TENANT_{name}:") for p in err.value.problems), value
