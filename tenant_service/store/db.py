"""Engine creation and schema migration."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


# Kept connections: more than the requests one process serves at once, so that a
# busy backend reuses connections instead of opening and closing overflow ones
# (each new PostgreSQL connection costs a TLS attempt and a handshake).
POOL_SIZE: Final = 20
POOL_OVERFLOW: Final = 20
POOL_TIMEOUT: Final = 30.0  # SQLAlchemy's default wait for a pooled connection


def create_engine(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = POOL_OVERFLOW,
    pool_timeout: float = POOL_TIMEOUT,
) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    pool = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout,
    }
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **pool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_recycle=1800, **pool)


def alembic_config() -> Config:
    """Alembic configuration built in code (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


# Alembic keeps the migration in progress in module-wide state (its `context` and
# `op` proxies): two migrations at once in one process, in two threads, run each
# other's statements on the wrong database. One at a time per process.
_ALEMBIC: Final = threading.Lock()


# The PostgreSQL advisory lock held while a database is migrated (any number, the
# same in every process: "flexhost" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x666C6578686F7374


@contextlib.contextmanager
def _advisory_lock(connection: Connection) -> Iterator[None]:
    """PostgreSQL: hold the migration lock for the rest of the migration's
    transaction (each statement after it sees what the one before committed)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
    yield


@contextlib.asynccontextmanager
async def _file_lock(url: str) -> AsyncIterator[None]:
    """SQLite: hold an exclusive lock on a file beside the database from before
    the migration's connection opens until after its transaction commits.

    SQLite's own locks come with the first write, too late (the version is read
    before). Held only around alembic's run (as at first), the lock was free
    before the version stamps committed: the next process read no version, ran
    the first migration again and failed on CREATE TABLE (`flexhost up` seeding
    a demo tenant beside its starting backend: 2 failures in 2 runs; none in 3
    with the lock held to the commit)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{database}.migration-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    with _ALEMBIC, _advisory_lock(connection):
        command.upgrade(config, "head")


async def migrate_engine(engine: AsyncEngine) -> None:
    """Upgrade the schema of `engine`'s database to the newest revision (across
    processes one at a time on PostgreSQL; on SQLite only through `migrate`)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def migrate(url: str) -> None:
    """Create or upgrade the schema at `url` (alembic upgrade head).

    One at a time per database across processes: a dedicated tenant's replicas
    at their start, a pool's first request beside the launcher seeding a demo
    tenant. Each read "no schema yet" and created the tables the other had just
    created (2 of 3 failed). PostgreSQL: a transaction-level advisory lock;
    SQLite: a lock file `<database>.migration-lock`.
    """
    async with _file_lock(url):
        engine = create_engine(url)
        try:
            await migrate_engine(engine)
        finally:
            await engine.dispose()


async def ping(engine: AsyncEngine) -> bool:
    """Whether `SELECT 1` works."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # any driver error means "not ready"
        logger.warning("database ping failed", exc_info=True)
        return False
    return True
