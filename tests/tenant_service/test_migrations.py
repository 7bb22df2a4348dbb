"""Migrations produce exactly the tables of the MetaData."""

from __future__ import annotations

import asyncio
import sys

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from tenant_service.store.db import alembic_config, create_engine, migrate
from tenant_service.store.tables import ASSET_TYPES, metadata


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


MIGRATE = "import asyncio, sys; from tenant_service.store.db import migrate; " + (
    "asyncio.run(migrate(sys.argv[1]))"
)


async def test_processes_migrating_one_new_database_at_once_all_succeed(
    database_url: str,
) -> None:
    """A dedicated tenant's replicas starting together (or a pool beside the
    launcher's seeding) migrate one database at once: each waits for the other
    instead of creating the tables it just created (without the lock 2 of 3
    failed here, on both databases)."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MIGRATE,
            database_url,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    results = [
        await asyncio.wait_for(process.communicate(), 120) for process in processes
    ]
    failed = [
        err.decode()[-2000:]
        for (_, err), process in zip(results, processes, strict=True)
        if process.returncode != 0
    ]
    assert failed == []
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _to(connection: Connection, revision: str, *, down: bool = False) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


def _types(conn: Connection) -> list[tuple[int, str]]:
    rows = conn.execute(text("SELECT id, name FROM generic_asset_types ORDER BY id"))
    return [(row[0], row[1]) for row in rows]


def _asset_types(conn: Connection) -> dict[str, str]:
    rows = conn.execute(
        text(
            "SELECT a.name, t.name FROM generic_assets a "
            "JOIN generic_asset_types t ON t.id = a.generic_asset_type_id"
        )
    )
    return {row[0]: row[1] for row in rows}


def _seed_old_world(conn: Connection) -> None:
    _to(conn, "0002")
    conn.execute(text("INSERT INTO accounts (id, name) VALUES (1, 'A')"))
    conn.execute(
        text("INSERT INTO generic_asset_types (id, name) VALUES (20, 'custom')")
    )
    for name, kind in (("bat", "battery"), ("ld", "load"), ("own", "custom")):
        conn.execute(
            text(
                "INSERT INTO generic_assets (name, account_id, generic_asset_type_id) "
                "SELECT :n, 1, id FROM generic_asset_types WHERE name = :k"
            ),
            {"n": name, "k": kind},
        )


async def test_asset_types_reseeded_on_existing_database(database_url: str) -> None:
    """0003 gives FlexMeasures' ids; assets keep their named type; downgrade too."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_seed_old_world)
            before = await conn.run_sync(_asset_types)
            assert (await conn.run_sync(_types))[0] == (1, "battery")
        async with engine.begin() as conn:
            await conn.run_sync(_to, "head")
            assert await conn.run_sync(_asset_types) == before
            # FlexMeasures' eight (as test_assets pins them), then what must stay
            assert await conn.run_sync(_types) == [
                *((i, name) for i, (name, _) in enumerate(ASSET_TYPES, 1)),
                (9, "load"),  # still used: kept
                (10, "custom"),  # not one of our seeds: kept
            ]
            # new types get fresh ids (the PostgreSQL sequence follows)
            await conn.execute(
                text("INSERT INTO generic_asset_types (name) VALUES ('x')")
            )
            assert (await conn.run_sync(_types))[-1] == (11, "x")
            await conn.execute(text("DELETE FROM generic_asset_types WHERE id = 11"))
        async with engine.begin() as conn:
            await conn.run_sync(_to, "0002", down=True)
            assert await conn.run_sync(_asset_types) == before
            assert [name for _, name in await conn.run_sync(_types)][:3] == [
                "battery",
                "solar",
                "wind",
            ]
    finally:
        await engine.dispose()
