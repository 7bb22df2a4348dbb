"""Per-user preferences of the asset pages (FlexMeasures keeps them in the session)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.store.sources import insert_ignoring
from tenant_service.store.tables import user_preferences


async def set_preference(
    conn: AsyncConnection, user_id: int, name: str, value: Any
) -> None:
    """Set one preference of a user (None: back to the default)."""
    await conn.execute(
        insert_ignoring(conn, user_preferences)
        .values(user_id=user_id)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    await conn.execute(
        update(user_preferences)
        .where(user_preferences.c.user_id == user_id)
        .values({name: value})
    )


async def get_preferences(conn: AsyncConnection, user_id: int) -> dict[str, Any]:
    """A user's preferences ({} if none were set)."""
    row = (
        (
            await conn.execute(
                user_preferences.select().where(user_preferences.c.user_id == user_id)
            )
        )
        .mappings()
        .first()
    )
    return {} if row is None else {k: v for k, v in row.items() if k != "user_id"}
