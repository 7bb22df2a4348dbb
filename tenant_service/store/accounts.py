"""Accounts and their account roles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Row, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.store import audit
from tenant_service.store.tables import (
    account_roles,
    accounts,
    accounts_account_roles,
    generic_assets,
    users,
)


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account with its roles."""

    id: int
    name: str
    primary_color: str | None
    secondary_color: str | None
    logo_url: str | None
    attributes: str
    consultancy_account_id: int | None
    account_roles: tuple[tuple[int, str], ...]


# Built once: constructing statements per request costs more than running them.
_QUERY: Final = (
    select(
        accounts,
        account_roles.c.id.label("role_id"),
        account_roles.c.name.label("role_name"),
    )
    .select_from(
        accounts.outerjoin(
            accounts_account_roles,
            accounts_account_roles.c.account_id == accounts.c.id,
        ).outerjoin(
            account_roles,
            account_roles.c.id == accounts_account_roles.c.account_role_id,
        )
    )
    .order_by(accounts.c.id, account_roles.c.id)
)
_BY_ID: Final = _QUERY.where(accounts.c.id == bindparam("account_id"))
_BY_NAME: Final = _QUERY.where(accounts.c.name == bindparam("name"))


def _records(rows: Sequence[Row[Any]]) -> list[AccountRecord]:
    by_id: dict[int, tuple[Row[Any], list[tuple[int, str]]]] = {}
    for row in rows:
        entry = by_id.setdefault(row.id, (row, []))
        if row.role_id is not None:
            entry[1].append((row.role_id, row.role_name))
    return [
        AccountRecord(
            id=row.id,
            name=row.name,
            primary_color=row.primary_color,
            secondary_color=row.secondary_color,
            logo_url=row.logo_url,
            attributes=row.attributes,
            consultancy_account_id=row.consultancy_account_id,
            account_roles=tuple(roles),
        )
        for row, roles in by_id.values()
    ]


async def get_account(conn: AsyncConnection, account_id: int) -> AccountRecord | None:
    """One account with its roles."""
    rows = (await conn.execute(_BY_ID, {"account_id": account_id})).all()
    records = _records(rows)
    return records[0] if records else None


async def find_account(conn: AsyncConnection, id_or_name: str) -> AccountRecord | None:
    """An account by id (when numeric) or by exact name."""
    if id_or_name.isascii() and id_or_name.isdigit():
        found = await get_account(conn, int(id_or_name))
        if found is not None:
            return found
    rows = (await conn.execute(_BY_NAME, {"name": id_or_name})).all()
    records = _records(rows)
    return records[0] if records else None


async def find_account_by_name(
    conn: AsyncConnection, name: str
) -> AccountRecord | None:
    """An account by its exact name."""
    records = _records((await conn.execute(_BY_NAME, {"name": name})).all())
    return records[0] if records else None


async def list_accounts(
    conn: AsyncConnection,
    *,
    visible_to: tuple[int, bool] | None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[list[AccountRecord], int]:
    """Accounts ordered by id and their total.

    `visible_to` = (account id, is consultant): that account, plus its consultancy
    clients for consultants. None = all accounts.
    """
    where: Any = True
    if visible_to is not None:
        own, consultant = visible_to
        where = accounts.c.id == own
        if consultant:
            where = or_(where, accounts.c.consultancy_account_id == own)
    total = (
        await conn.execute(select(func.count()).select_from(accounts).where(where))
    ).scalar_one()
    ids_query = (
        select(accounts.c.id).where(where).order_by(accounts.c.id).offset(offset)
    )
    if limit is not None:
        ids_query = ids_query.limit(limit)
    ids = [row.id for row in (await conn.execute(ids_query)).all()]
    if not ids:
        return [], int(total)
    rows = (await conn.execute(_QUERY.where(accounts.c.id.in_(ids)))).all()
    return _records(rows), int(total)


async def ensure_account_roles(
    conn: AsyncConnection, names: Iterable[str]
) -> dict[str, int]:
    """Ids of the named account roles, creating missing ones."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await conn.execute(
        select(account_roles.c.id, account_roles.c.name).where(
            account_roles.c.name.in_(wanted)
        )
    )
    found = {row.name: row.id for row in rows.all()}
    for name in wanted:
        if name not in found:
            result = await conn.execute(
                insert(account_roles).values(name=name).returning(account_roles.c.id)
            )
            found[name] = int(result.scalar_one())
    return found


async def create_account(
    conn: AsyncConnection,
    *,
    name: str,
    role_names: Iterable[str] = (),
    consultancy_account_id: int | None = None,
    actor: audit.Actor = audit.CLI,
) -> int:
    """Insert an account with account roles (audited); returns the new id."""
    result = await conn.execute(
        insert(accounts)
        .values(
            name=name, attributes="{}", consultancy_account_id=consultancy_account_id
        )
        .returning(accounts.c.id)
    )
    account_id = int(result.scalar_one())
    how = " via CLI" if actor.user_id is None else ""
    await audit.record(
        conn,
        actor,
        f"Created account '{name}' ({account_id}){how}",
        account_id=account_id,
    )
    role_ids = await ensure_account_roles(conn, role_names)
    if role_ids:
        await conn.execute(
            insert(accounts_account_roles),
            [
                {"account_id": account_id, "account_role_id": rid}
                for rid in role_ids.values()
            ],
        )
    return account_id


async def account_roles_by_id(
    conn: AsyncConnection, ids: Iterable[int]
) -> dict[int, str]:
    """The existing account roles among `ids`, as {id: name}."""
    wanted = list(ids)
    if not wanted:
        return {}
    rows = await conn.execute(
        select(account_roles.c.id, account_roles.c.name).where(
            account_roles.c.id.in_(wanted)
        )
    )
    return {row.id: row.name for row in rows.all()}


# The columns an account update may set, in FlexMeasures' order of its audit event.
UPDATABLE: Final = (
    "name",
    "primary_color",
    "secondary_color",
    "logo_url",
    "consultancy_account_id",
    "attributes",
)


async def update_account(
    conn: AsyncConnection,
    account: AccountRecord,
    values: dict[str, Any],
    *,
    role_ids: Sequence[int] | None = None,
    actor: audit.Actor,
) -> None:
    """Change columns (and, given role_ids, the roles) of an account; audited.

    The event lists each changed field with its old and new value, as
    FlexMeasures' "Account Updated, Field: ..." with the values added.
    """
    before: dict[str, Any] = {key: getattr(account, key) for key in UPDATABLE}
    parts = [
        f"{key} ({before[key]} -> {value})"
        for key, value in audit.changed(before, values).items()
    ]
    if values:
        await conn.execute(
            update(accounts).where(accounts.c.id == account.id).values(**values)
        )
    if role_ids is not None:
        old_ids = [i for i, _ in account.account_roles]
        new_ids = sorted(set(role_ids))
        if old_ids != new_ids:
            await conn.execute(
                delete(accounts_account_roles).where(
                    accounts_account_roles.c.account_id == account.id
                )
            )
            if new_ids:
                await conn.execute(
                    insert(accounts_account_roles),
                    [{"account_id": account.id, "account_role_id": i} for i in new_ids],
                )
            parts.append(f"account_roles ({old_ids} -> {new_ids})")
    if parts:
        await audit.record(
            conn,
            actor,
            f"Account Updated, Field: {', '.join(parts)}",
            user_id=actor.user_id,
            account_id=account.id,
        )


async def count_members(conn: AsyncConnection, account_id: int) -> tuple[int, int]:
    """How many users and assets an account has."""
    user_count = (
        await conn.execute(
            select(func.count())
            .select_from(users)
            .where(users.c.account_id == account_id)
        )
    ).scalar_one()
    asset_count = (
        await conn.execute(
            select(func.count())
            .select_from(generic_assets)
            .where(generic_assets.c.account_id == account_id)
        )
    ).scalar_one()
    return int(user_count), int(asset_count)
