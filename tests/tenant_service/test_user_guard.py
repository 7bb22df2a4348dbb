"""Nobody changes, deactivates or resets a user who holds a role they lack (#10).

A table of actor role x target role x action through the real backend app. The
targets are fresh users of the actor's account (acme) holding one role each, or
the actor itself; consultants are also tried on users of their client account.
A user may still edit their own name, email and timezone and reset their own
password, but never their own `active` flag or roles.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from sqlalchemy import select

from tenant_service.config import Settings
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tenant_service.store.tables import users
from tests.tenant_service.conftest import Client, World, identity

# action -> (path suffix, body)
ACTIONS: Final[dict[str, tuple[str, dict[str, Any] | None]]] = {
    "email": ("", {"email": "renamed@acme.test"}),
    "name": ("", {"username": "renamed", "timezone": "Europe/Berlin"}),
    "deactivate": ("", {"active": False}),
    "reactivate": ("", {"active": True}),  # of a target deactivated before
    "reset": ("/password-reset", None),
    "roles": ("", {"flexmeasures_roles": ["account-admin"]}),
}
ALL: Final = tuple(ACTIONS)
OK, NO = 200, 403


@pytest.fixture
def database_url(sqlite_database_url: str) -> str:
    """SQLite only: the rule is the same on both databases (120 cases)."""
    return sqlite_database_url


def row(actor: str, target: str, **expected: int) -> list[Any]:
    """One (actor, target) line of the table: an expected status per action."""
    assert set(expected) == set(ALL)
    return [
        pytest.param(actor, target, a, expected[a], id=f"{actor}-{target}-{a}")
        for a in ALL
    ]


SELF: Final = dict(email=OK, name=OK, deactivate=NO, reactivate=NO, reset=OK, roles=NO)
NOTHING: Final = dict.fromkeys(ALL, NO)
EVERYTHING: Final = dict.fromkeys(ALL, OK)

TABLE: Final = [
    # admins may do everything to others, and to themselves what anyone may
    *row("admin", "admin", **EVERYTHING),
    *row("admin", "account-admin", **EVERYTHING),
    *row("admin", "consultant", **EVERYTHING),
    *row("admin", "user", **EVERYTHING),
    *row("admin", "self", **SELF),
    # account-admins: nothing on an admin or a consultant (roles they lack)
    *row("account-admin", "admin", **NOTHING),
    *row("account-admin", "account-admin", **EVERYTHING),
    *row("account-admin", "consultant", **NOTHING),
    *row("account-admin", "user", **EVERYTHING),
    *row("account-admin", "self", **SELF),
    # consultants update users of their clients only, and never their roles or
    # active flag (account-admins and admins do that)
    *row("consultant", "admin", **NOTHING),
    *row("consultant", "account-admin", **NOTHING),
    *row("consultant", "user", **NOTHING),
    *row("consultant", "client-account-admin", **NOTHING),
    *row(
        "consultant",
        "client-user",
        email=OK,
        name=OK,
        deactivate=NO,
        reactivate=NO,
        reset=OK,
        roles=NO,
    ),
    *row("consultant", "self", **SELF),
    # plain users: themselves only
    *row("user", "admin", **NOTHING),
    *row("user", "account-admin", **NOTHING),
    *row("user", "user", **NOTHING),
    *row("user", "self", **SELF),
]


def actor_of(world: World, actor: str) -> int:
    """The seeded user acting in a row of a table."""
    return {
        "admin": world.admin,
        "account-admin": world.account_admin,
        "consultant": world.consultant,
        "user": world.member,
    }[actor]


async def make_target(settings: Settings, world: World, target: str) -> int:
    """A fresh user of acme (or of the client account) with the target's role."""
    account = world.client_account if target.startswith("client-") else world.acme
    role = target.removeprefix("client-")
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            return await user_store.create_user(
                conn,
                email=f"target-{target}@acme.test",
                username=f"target-{target}",
                account_id=account,
                password_hash=None,
                role_names=[] if role == "user" else [role],
            )
    finally:
        await engine.dispose()


async def stored(settings: Settings, user_id: int) -> tuple[Any, ...]:
    """What the actions change: email, name, timezone, active, password, revocation."""
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            found = (
                await conn.execute(
                    select(
                        users.c.email,
                        users.c.username,
                        users.c.timezone,
                        users.c.active,
                        users.c.password_hash,
                        users.c.tokens_valid_after,
                    ).where(users.c.id == user_id)
                )
            ).one()
            record = await user_store.get_user(conn, user_id)
            assert record is not None
            return (*found, record.role_names)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(("actor", "target", "action", "expected"), TABLE)
async def test_user_update_guard(
    client: Client,
    settings: Settings,
    world: World,
    actor: str,
    target: str,
    action: str,
    expected: int,
) -> None:
    actor_id = actor_of(world, actor)
    target_id = (
        actor_id if target == "self" else await make_target(settings, world, target)
    )
    if action == "reactivate" and target != "self":
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                await user_store.update_user(conn, target_id, {"active": False})
        finally:
            await engine.dispose()
    before = await stored(settings, target_id)
    suffix, body = ACTIONS[action]
    resp = await client.patch(
        f"/api/v3_0/users/{target_id}{suffix}", json=body, headers=identity(actor_id)
    )
    answer = await resp.json()
    assert resp.status == expected, answer
    after = await stored(settings, target_id)
    if expected == NO:
        assert answer["status"] == "INVALID_SENDER"
        assert after == before  # nothing changed, no token revoked
    else:
        assert after != before or (action == "roles" and target == "account-admin")


# Creation (#12): who may create a user in which account, holding which role.
# FlexMeasures' create-children on the account (admins, its account-admins,
# consultants of its consultancy); roles on creation follow the rule above:
# only who may set roles in that account, and only roles they hold themselves.
CREATED_ROLES: Final = ("none", "account-admin", "consultant", "admin-reader", "admin")
CREATED, NOT_CREATED = 201, 403


def creation_row(actor: str, where: str, *statuses: int) -> list[Any]:
    """One (actor, account) line: an expected status per created role."""
    assert len(statuses) == len(CREATED_ROLES)
    return [
        pytest.param(actor, where, role, status, id=f"{actor}-{where}-{role}")
        for role, status in zip(CREATED_ROLES, statuses, strict=True)
    ]


C, N = CREATED, NOT_CREATED
CREATION_TABLE: Final = [
    *creation_row("admin", "own", C, C, C, C, C),
    *creation_row("admin", "client", C, C, C, C, C),
    *creation_row("account-admin", "own", C, C, N, N, N),
    *creation_row("account-admin", "client", N, N, N, N, N),
    *creation_row("consultant", "own", N, N, N, N, N),
    *creation_row("consultant", "client", C, N, N, N, N),
    *creation_row("user", "own", N, N, N, N, N),
    *creation_row("user", "client", N, N, N, N, N),
]


@pytest.mark.parametrize(("actor", "where", "role", "expected"), CREATION_TABLE)
async def test_user_creation_guard(
    client: Client,
    world: World,
    actor: str,
    where: str,
    role: str,
    expected: int,
) -> None:
    actor_id = actor_of(world, actor)
    account = world.acme if where == "own" else world.client_account
    body: dict[str, Any] = {
        "email": "new@acme.test",
        "username": "new one",
        "account_id": account,
    }
    if role != "none":
        body["flexmeasures_roles"] = [role]
    resp = await client.post("/api/v3_0/users", json=body, headers=identity(actor_id))
    answer = await resp.json()
    assert resp.status == expected, answer
    listing = await client.get(
        f"/api/v3_0/users?account_id={account}&include_inactive=true",
        headers=identity(world.admin),
    )
    emails = {u["email"]: u for u in await listing.json()}
    if expected == NOT_CREATED:
        assert answer["status"] == "INVALID_SENDER"
        assert "new@acme.test" not in emails  # nothing half-stored
    else:
        assert answer["account_id"] == account
        stored = emails["new@acme.test"]
        assert len(stored["flexmeasures_roles"]) == (0 if role == "none" else 1)
