"""Migrations produce exactly the tables of the MetaData."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from tenant_service.store.db import create_engine, migrate
from tenant_service.store.tables import metadata


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def test_migrations_match_metadata(database_url: str) -> None:
    await migrate(database_url)
    await migrate(database_url)  # idempotent
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(_tables)
    finally:
        await engine.dispose()
    assert tables - {"alembic_version"} == set(metadata.tables)
