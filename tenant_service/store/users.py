"""Users and their roles."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    Row,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from tenant_service.store import audit
from tenant_service.store.tables import accounts, roles, users, users_roles

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user with their roles and account, as stored."""

    id: int
    email: str
    username: str
    account_id: int
    account_name: str
    consultancy_account_id: int | None
    active: bool
    timezone: str
    last_login_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    login_count: int
    tokens_valid_after: dt.datetime | None
    role_ids: tuple[int, ...]
    role_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a login check needs to know about a user."""

    id: int
    account_id: int
    active: bool
    password_hash: str | None
    role_names: tuple[str, ...]


def utcnow() -> dt.datetime:
    """The current time, tz-aware UTC."""
    return dt.datetime.now(dt.UTC)


def revocation_time(now: dt.datetime | None = None) -> dt.datetime:
    """`now` rounded up to the next millisecond: tokens issued before it die.

    auth_time has ms precision; rounding up also refuses a token issued in the
    same millisecond as the revocation.
    """
    moment = now or utcnow()
    ms = math.ceil(moment.timestamp() * 1000)
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def to_ms(moment: dt.datetime) -> int:
    """Milliseconds since the epoch."""
    return math.floor(moment.timestamp() * 1000 + 0.5)


_USER_COLUMNS = (
    users.c.id,
    users.c.email,
    users.c.username,
    users.c.account_id,
    accounts.c.name.label("account_name"),
    accounts.c.consultancy_account_id,
    users.c.active,
    users.c.timezone,
    users.c.last_login_at,
    users.c.last_seen_at,
    users.c.login_count,
    users.c.tokens_valid_after,
)


def _records(rows: Sequence[Row[Any]]) -> list[UserRecord]:
    """Fold (user, role) rows into records, keeping the order of first appearance."""
    by_id: dict[int, tuple[Row[Any], list[int], list[str]]] = {}
    for row in rows:
        entry = by_id.setdefault(row.id, (row, [], []))
        if row.role_id is not None:
            entry[1].append(row.role_id)
            entry[2].append(row.role_name)
    return [
        UserRecord(
            id=row.id,
            email=row.email,
            username=row.username,
            account_id=row.account_id,
            account_name=row.account_name,
            consultancy_account_id=row.consultancy_account_id,
            active=bool(row.active),
            timezone=row.timezone,
            last_login_at=row.last_login_at,
            last_seen_at=row.last_seen_at,
            login_count=row.login_count,
            tokens_valid_after=row.tokens_valid_after,
            role_ids=tuple(role_ids),
            role_names=tuple(role_names),
        )
        for row, role_ids, role_names in by_id.values()
    ]


# Built once: constructing statements per request costs more than running them.
_USER_QUERY: Final[Select[Any]] = (
    select(*_USER_COLUMNS, roles.c.id.label("role_id"), roles.c.name.label("role_name"))
    .select_from(
        users.join(accounts, accounts.c.id == users.c.account_id)
        .outerjoin(users_roles, users_roles.c.user_id == users.c.id)
        .outerjoin(roles, roles.c.id == users_roles.c.role_id)
    )
    .order_by(users.c.id, roles.c.id)
)
_USER_BY_ID: Final[Select[Any]] = _USER_QUERY.where(users.c.id == bindparam("user_id"))
_USER_BY_EMAIL: Final[Select[Any]] = _USER_QUERY.where(
    users.c.email == bindparam("email")
)


async def get_user(conn: AsyncConnection, user_id: int) -> UserRecord | None:
    """One user with roles and account, in one query."""
    result = await conn.execute(_USER_BY_ID, {"user_id": user_id})
    records = _records(result.all())
    return records[0] if records else None


async def get_user_by_email(conn: AsyncConnection, email: str) -> UserRecord | None:
    """One user by (case-insensitive) email."""
    result = await conn.execute(_USER_BY_EMAIL, {"email": email.lower()})
    records = _records(result.all())
    return records[0] if records else None


async def list_users(
    conn: AsyncConnection,
    account_ids: Iterable[int] | None,
    *,
    include_inactive: bool,
    offset: int = 0,
    limit: int | None = None,
    terms: Sequence[str] = (),
) -> tuple[list[UserRecord], int]:
    """Users of the given accounts (all when None), ordered by id, and their total.

    Each of `terms` must be in the user's name or email (any case).
    """
    conditions: list[ColumnElement[bool]] = []
    if account_ids is not None:
        conditions.append(users.c.account_id.in_(list(account_ids)))
    if not include_inactive:
        conditions.append(users.c.active.is_(True))
    for term in terms:
        conditions.append(
            or_(
                users.c.username.icontains(term, autoescape=True),
                users.c.email.icontains(term, autoescape=True),
            )
        )
    where = and_(True, *conditions)
    total = (
        await conn.execute(select(func.count()).select_from(users).where(where))
    ).scalar_one()
    ids_query = select(users.c.id).where(where).order_by(users.c.id).offset(offset)
    if limit is not None:
        ids_query = ids_query.limit(limit)
    ids = [row.id for row in (await conn.execute(ids_query)).all()]
    if not ids:
        return [], int(total)
    result = await conn.execute(_USER_QUERY.where(users.c.id.in_(ids)))
    return _records(result.all()), int(total)


async def username_taken(conn: AsyncConnection, username: str) -> bool:
    """Whether a user has this username (FlexMeasures refuses a second one)."""
    row = (
        await conn.execute(select(users.c.id).where(users.c.username == username))
    ).first()
    return row is not None


async def count_users(conn: AsyncConnection) -> int:
    """How many users exist."""
    return int(
        (await conn.execute(select(func.count()).select_from(users))).scalar_one()
    )


async def get_credentials(conn: AsyncConnection, email: str) -> Credentials | None:
    """The password hash and login facts of the user with `email`."""
    row = (
        await conn.execute(
            select(
                users.c.id, users.c.account_id, users.c.active, users.c.password_hash
            ).where(users.c.email == email.strip().lower())
        )
    ).first()
    if row is None:
        return None
    names = (
        await conn.execute(
            select(roles.c.name)
            .join(users_roles, users_roles.c.role_id == roles.c.id)
            .where(users_roles.c.user_id == row.id)
            .order_by(roles.c.name)
        )
    ).scalars()
    return Credentials(
        id=row.id,
        account_id=row.account_id,
        active=bool(row.active),
        password_hash=row.password_hash,
        role_names=tuple(names),
    )


async def record_login(
    conn: AsyncConnection, user_id: int, *, new_hash: str | None = None
) -> None:
    """Count a successful login (and store a rehashed password)."""
    values: dict[str, Any] = {
        "last_login_at": utcnow(),
        "login_count": users.c.login_count + 1,
    }
    if new_hash is not None:
        values["password_hash"] = new_hash
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))


PASSWORD_RESET: Final = "Password reset for user {username}"
PASSWORD_CHANGED: Final = "Password changed for user {username}"
# Columns of `users` whose changes the audit log names (never the password hash).
AUDITED: Final = ("email", "username", "timezone", "active")


async def _names(conn: AsyncConnection, user_id: int) -> tuple[str, int] | None:
    row = (
        await conn.execute(
            select(users.c.username, users.c.account_id).where(users.c.id == user_id)
        )
    ).first()
    return None if row is None else (row.username, row.account_id)


async def set_password_hash(
    conn: AsyncConnection,
    user_id: int,
    password_hash: str,
    *,
    actor: audit.Actor = audit.CLI,
    event: str = PASSWORD_CHANGED,
) -> dt.datetime:
    """Replace the password and revoke all tokens issued until now; audited.

    `event` is a template with `{username}`; the hash never goes into it.
    """
    revoked = revocation_time()
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(password_hash=password_hash, tokens_valid_after=revoked)
    )
    names = await _names(conn, user_id)
    if names is not None:
        await audit.record(
            conn,
            actor,
            event.format(username=names[0]),
            user_id=user_id,
            account_id=names[1],
        )
    return revoked


async def update_user(
    conn: AsyncConnection,
    user_id: int,
    values: dict[str, Any],
    *,
    actor: audit.Actor = audit.CLI,
) -> None:
    """Set columns of one user; the changed ones are audited (old -> new)."""
    if not values:
        return
    before = (
        await conn.execute(
            select(*(users.c[key] for key in AUDITED), users.c.account_id).where(
                users.c.id == user_id
            )
        )
    ).first()
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))
    if before is None:
        return
    old = {key: getattr(before, key) for key in AUDITED}
    parts: list[str] = []
    for key, value in audit.changed(old, values).items():
        if key == "active":
            parts.append(f"Active status set to '{value}'.")
        elif key in AUDITED:
            parts.append(f"Updated {key}: {old[key]} -> {value}.")
    if parts:
        await audit.record(
            conn, actor, "".join(parts), user_id=user_id, account_id=before.account_id
        )


async def set_roles(
    conn: AsyncConnection,
    user_id: int,
    role_ids: Iterable[int],
    *,
    actor: audit.Actor = audit.CLI,
) -> None:
    """Replace the roles of one user; added and removed roles are audited."""
    wanted = sorted(set(role_ids))
    old = {
        row.id: row.name
        for row in (
            await conn.execute(
                select(roles.c.id, roles.c.name)
                .join(users_roles, users_roles.c.role_id == roles.c.id)
                .where(users_roles.c.user_id == user_id)
            )
        ).all()
    }
    if sorted(old) == wanted:
        return
    await conn.execute(delete(users_roles).where(users_roles.c.user_id == user_id))
    rows = [{"user_id": user_id, "role_id": role_id} for role_id in wanted]
    if rows:
        await conn.execute(insert(users_roles), rows)
    new = await find_roles(conn, wanted, ())
    removed = sorted(old[i] for i in set(old) - set(new))
    added = sorted(new[i] for i in set(new) - set(old))
    event = ""
    if removed:
        event += f"Removed role(s): [{','.join(removed)}]."
    if added:
        event += f"Added role(s): [{','.join(added)}]."
    names = await _names(conn, user_id)
    await audit.record(
        conn,
        actor,
        event,
        user_id=user_id,
        account_id=None if names is None else names[1],
    )


async def ensure_roles(conn: AsyncConnection, names: Iterable[str]) -> dict[str, int]:
    """Ids of the named roles, creating missing ones."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    found = {
        row.name: row.id
        for row in (
            await conn.execute(
                select(roles.c.id, roles.c.name).where(roles.c.name.in_(wanted))
            )
        ).all()
    }
    for name in wanted:
        if name not in found:
            result = await conn.execute(
                insert(roles).values(name=name).returning(roles.c.id)
            )
            found[name] = int(result.scalar_one())
    return found


async def find_roles(
    conn: AsyncConnection, ids: Iterable[int], names: Iterable[str]
) -> dict[int, str]:
    """Existing roles among the given ids and names, as {id: name}."""
    id_list, name_list = list(ids), list(names)
    if not id_list and not name_list:
        return {}
    rows = await conn.execute(
        select(roles.c.id, roles.c.name).where(
            roles.c.id.in_(id_list) | roles.c.name.in_(name_list)
        )
    )
    return {row.id: row.name for row in rows.all()}


async def create_user(
    conn: AsyncConnection,
    *,
    email: str,
    username: str,
    account_id: int,
    password_hash: str | None,
    role_names: Iterable[str] = (),
    actor: audit.Actor = audit.CLI,
) -> int:
    """Insert a user with roles (audited as FlexMeasures: "User x created")."""
    result = await conn.execute(
        insert(users)
        .values(
            email=email.strip().lower(),
            username=username,
            account_id=account_id,
            password_hash=password_hash,
            active=True,
            login_count=0,
        )
        .returning(users.c.id)
    )
    user_id = int(result.scalar_one())
    await audit.record(
        conn,
        actor,
        f"User {username} created",
        user_id=user_id,
        account_id=account_id,
    )
    role_ids = await ensure_roles(conn, role_names)
    if role_ids:
        await set_roles(conn, user_id, role_ids.values(), actor=actor)
    return user_id


class SeenTracker:
    """Writes `last_seen_at` at most once a minute per user, in the background."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._written: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def seen(self, engine: AsyncEngine, user_id: int) -> None:
        """Note a request by `user_id`; schedule a write when the last is stale."""
        now = time.monotonic()
        last = self._written.get(user_id)
        if last is not None and now - last < self.interval_s:
            return
        self._written[user_id] = now
        if len(self._written) > 100_000:  # bound memory; a rare extra write is fine
            self._written.clear()
        task = asyncio.create_task(self._write(engine, user_id, utcnow()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(
        self, engine: AsyncEngine, user_id: int, when: dt.datetime
    ) -> None:
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(users).where(users.c.id == user_id).values(last_seen_at=when)
                )
        except Exception:  # best effort: never fail a request over last_seen_at
            logger.warning("could not update last_seen_at", exc_info=True)

    async def drain(self) -> None:
        """Wait for pending writes (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
