"""FlexMeasures' audit logs: who changed what, when, written with the change.

Every store function that changes an account, user, asset or sensor calls
`record` or `record_asset` on the same connection, inside the same transaction
as the change: a rolled-back change leaves no record, and no change is stored
without one. A new route records with one line:

    await audit.record_asset(conn, actor, asset_id, f"Copied asset ...")

Events never contain secrets: callers name fields, never password hashes or
tokens (`describe` leaves out SECRET_FIELDS).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.store.tables import asset_audit_log, audit_log

MAX_EVENT: Final = 500
# Columns whose values never go into an event.
SECRET_FIELDS: Final = frozenset({"password_hash", "password", "tokens_valid_after"})


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: a user (API, pages), or nobody (the CLI, the system)."""

    user_id: int | None
    name: str | None


CLI: Final = Actor(None, None)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored event."""

    event: str
    event_datetime: dt.datetime
    active_user_id: int | None
    active_user_name: str | None


def truncate(event: str, limit: int = MAX_EVENT) -> str:
    """FlexMeasures' truncation: an ellipsis in the middle of a long event."""
    if len(event) <= limit:
        return event
    half = (limit - 5) // 2
    return f"{event[:half]} ... {event[-half:]}"


def now() -> dt.datetime:
    """The time of an event (UTC)."""
    return dt.datetime.now(dt.UTC)


async def record(
    conn: AsyncConnection,
    actor: Actor,
    event: str,
    *,
    user_id: int | None = None,
    account_id: int | None = None,
) -> None:
    """Record an event about a user and/or an account (table `audit_log`)."""
    await conn.execute(
        insert(audit_log).values(
            event_datetime=now(),
            event=truncate(event),
            active_user_id=actor.user_id,
            active_user_name=actor.name,
            affected_user_id=user_id,
            affected_account_id=account_id,
        )
    )


async def record_asset(
    conn: AsyncConnection, actor: Actor, asset_id: int, *events: str
) -> None:
    """Record events about an asset or its sensors (table `asset_audit_log`)."""
    if not events:
        return
    when = now()
    await conn.execute(
        insert(asset_audit_log),
        [
            {
                "event_datetime": when,
                "event": truncate(event),
                "active_user_id": actor.user_id,
                "active_user_name": actor.name,
                "affected_asset_id": asset_id,
            }
            for event in events
        ],
    )


def changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `new` whose value differs from `old` (secrets left out)."""
    return {
        key: value
        for key, value in new.items()
        if key not in SECRET_FIELDS and old.get(key) != value
    }


async def _page(
    conn: AsyncConnection,
    table: Any,
    where: Any,
    *,
    terms: Sequence[str] = (),
    descending: bool | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[list[AuditRecord], int, int]:
    filtered = where
    if terms:
        like = [table.c.event.ilike(f"%{t}%") for t in terms] + [
            table.c.active_user_name.ilike(f"%{t}%") for t in terms
        ]
        filtered = where & or_(*like)
    total = (
        await conn.execute(select(func.count()).select_from(table).where(where))
    ).scalar_one()
    matching = total
    if filtered is not where:
        matching = (
            await conn.execute(select(func.count()).select_from(table).where(filtered))
        ).scalar_one()
    order = [table.c.id]
    if descending is not None:
        column = table.c.event_datetime
        order = [column.desc() if descending else column.asc(), table.c.id]
    query = (
        select(
            table.c.event,
            table.c.event_datetime,
            table.c.active_user_id,
            table.c.active_user_name,
        )
        .where(filtered)
        .order_by(*order)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = (await conn.execute(query)).all()
    records = [
        AuditRecord(
            event=row.event,
            event_datetime=row.event_datetime,
            active_user_id=row.active_user_id,
            active_user_name=row.active_user_name,
        )
        for row in rows
    ]
    return records, int(total), int(matching)


# Which log holds the events about what: (table, column of the affected id).
_SUBJECTS: Final = {
    "account": (audit_log, audit_log.c.affected_account_id),
    "user": (audit_log, audit_log.c.affected_user_id),
    "asset": (asset_audit_log, asset_audit_log.c.affected_asset_id),
}


async def records(
    conn: AsyncConnection,
    subject: Literal["account", "user", "asset"],
    subject_id: int,
    *,
    terms: Sequence[str] = (),
    descending: bool | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[list[AuditRecord], int, int]:
    """Events about an account (and its users), a user, or an asset (and its
    sensors): (this page, all of them, those matching `terms`), oldest first."""
    table, column = _SUBJECTS[subject]
    return await _page(
        conn,
        table,
        column == subject_id,
        terms=terms,
        descending=descending,
        offset=offset,
        limit=limit,
    )
