"""Data sources: the posting user's source (get or create, race-safe), listings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Insert, Table, and_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.store.tables import data_sources, users

USER_TYPE: Final = "user"


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A data source as stored."""

    id: int
    name: str
    type: str
    model: str | None
    version: str | None
    description: str | None
    user_id: int | None
    account_id: int | None


def describe(source: SourceRecord) -> str:
    """FlexMeasures' `DataSource.description`: "Seita's naive forecaster v1.2"."""
    text = source.name
    if source.model:
        named = source.type.lower() in source.model.lower()
        kind = "model" if named else source.type
        text += f"'s {source.model} {kind}"
        if source.version:
            text += f" v{source.version}"
    return text


def insert_ignoring(conn: AsyncConnection, table: Table) -> Any:
    """The dialect's INSERT, to add ON CONFLICT clauses to."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def source_key(
    type_: str,
    name: str,
    user_id: int | None,
    account_id: int | None,
    model: str | None = None,
    version: str | None = None,
) -> str:
    """The unique identity of a source: type|name|user|account|model|version."""
    parts = (type_, name, user_id, account_id, model, version)
    return "|".join("" if part is None else str(part) for part in parts)


def source_record(row: Any) -> SourceRecord:
    """A source of a row with the data_sources columns."""
    return SourceRecord(
        id=row.id,
        name=row.name,
        type=row.type,
        model=row.model,
        version=row.version,
        description=row.description,
        user_id=row.user_id,
        account_id=row.account_id,
    )


_USER_SOURCE: Final = (
    select(data_sources.c.id)
    .where(
        and_(
            data_sources.c.user_id == bindparam("user_id"),
            data_sources.c.type == USER_TYPE,
        )
    )
    .order_by(data_sources.c.id)
    .limit(1)
)


class KnownSources:
    """user id -> id of their data source, for sources already committed.

    A user's source never changes once it exists, so each process looks it up
    once. Only sources found in the database are remembered: one created in the
    current transaction could still be rolled back.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._ids: dict[int, int] = {}

    async def find(self, conn: AsyncConnection, user_id: int) -> int | None:
        """The id of the user's data source, None if it does not exist yet."""
        known = self._ids.get(user_id)
        if known is not None:
            return known
        found = (await conn.execute(_USER_SOURCE, {"user_id": user_id})).scalar()
        if found is None:
            return None
        if len(self._ids) >= self.max_entries:
            self._ids.clear()
        self._ids[user_id] = int(found)
        return int(found)

    async def user_source_id(self, conn: AsyncConnection, user_id: int) -> int:
        """The id of the user's data source, created on first use (race-safe)."""
        known = self._ids.get(user_id)
        if known is not None:
            return known
        found = (await conn.execute(_USER_SOURCE, {"user_id": user_id})).scalar()
        if found is None:
            return await _create_user_source(conn, user_id)
        if len(self._ids) >= self.max_entries:
            self._ids.clear()
        self._ids[user_id] = int(found)
        return int(found)


async def user_source_id(conn: AsyncConnection, user_id: int) -> int:
    """The id of the user's data source, created on first use (race-safe)."""
    found = (await conn.execute(_USER_SOURCE, {"user_id": user_id})).scalar()
    if found is not None:
        return int(found)
    return await _create_user_source(conn, user_id)


async def _create_user_source(conn: AsyncConnection, user_id: int) -> int:
    """Insert the user's data source unless a concurrent request did; its id."""
    user = (
        await conn.execute(
            select(users.c.username, users.c.email, users.c.account_id).where(
                users.c.id == user_id
            )
        )
    ).one()
    name = (user.username or user.email)[:80]
    key = source_key(USER_TYPE, name, user_id, user.account_id)
    insert: Insert = (
        insert_ignoring(conn, data_sources)
        .values(
            name=name,
            type=USER_TYPE,
            user_id=user_id,
            account_id=user.account_id,
            key=key,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    await conn.execute(insert)
    source_id = (
        await conn.execute(select(data_sources.c.id).where(data_sources.c.key == key))
    ).scalar_one()
    return int(source_id)


async def get_source(conn: AsyncConnection, source_id: int) -> SourceRecord | None:
    """One source, or None."""
    row = (
        await conn.execute(select(data_sources).where(data_sources.c.id == source_id))
    ).first()
    return source_record(row) if row is not None else None


async def list_sources(
    conn: AsyncConnection, *, only_latest: bool = False
) -> list[SourceRecord]:
    """All sources by id; `only_latest` keeps the newest version of each model."""
    rows = (await conn.execute(select(data_sources).order_by(data_sources.c.id))).all()
    records = [source_record(row) for row in rows]
    if not only_latest:
        return records
    newest: dict[tuple[str, str, str | None, int | None], SourceRecord] = {}
    for record in records:
        identity = (record.type, record.name, record.model, record.user_id)
        kept = newest.get(identity)
        if kept is None or _version(record.version) >= _version(kept.version):
            newest[identity] = record
    return sorted(newest.values(), key=lambda r: r.id)


def _version(text: str | None) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in (text or "").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


async def named_source_id(
    conn: AsyncConnection,
    name: str,
    type_: str,
    model: str | None = None,
    version: str | None = None,
    *,
    attributes: dict[str, Any] | None = None,
) -> int:
    """The id of a source without user or account (a CLI import, the scheduler).

    Sources with `attributes` (a forecaster's config) are one per distinct
    attributes, as FlexMeasures makes a new data source per forecaster config.
    """
    key = source_key(type_, name, None, None, model, version)
    text = "{}"
    if attributes is not None:
        text = json.dumps(attributes, sort_keys=True, separators=(",", ":"))
        key += "|" + hashlib.sha256(text.encode()).hexdigest()[:16]
    found = (
        await conn.execute(select(data_sources.c.id).where(data_sources.c.key == key))
    ).scalar()
    if found is not None:
        return int(found)
    await conn.execute(
        insert_ignoring(conn, data_sources)
        .values(
            name=name[:80],
            type=type_,
            model=model,
            version=version,
            key=key,
            attributes=text,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    source_id = (
        await conn.execute(select(data_sources.c.id).where(data_sources.c.key == key))
    ).scalar_one()
    return int(source_id)
