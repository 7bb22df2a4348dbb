"""Test databases of a killed run are dropped by the next run; live ones stay."""

from __future__ import annotations

import os

import asyncpg

from tests.helpers.databases import drop_orphans, fresh_db_name, pg_admin


def _dead_pid() -> int:
    """A process id that no process has now."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


async def _names(admin_url: str) -> set[str]:
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database")
    finally:
        await conn.close()
    return {row["datname"] for row in rows}


async def test_orphaned_test_databases_are_dropped(pg_admin_url: str) -> None:
    ours = fresh_db_name("fhtest")
    orphan = f"fhtest_p{_dead_pid()}_0123456789ab"
    for name in (ours, orphan):
        await pg_admin(pg_admin_url, f'CREATE DATABASE "{name}"')
    try:
        dropped = await drop_orphans(pg_admin_url)
        names = await _names(pg_admin_url)
        assert orphan in dropped
        assert orphan not in names
        assert ours in names, "a database of a live run is kept"
    finally:
        for name in (ours, orphan):
            await pg_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}"')
