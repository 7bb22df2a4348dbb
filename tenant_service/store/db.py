"""Engine creation, schema migration and the database cleanup context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenant_service import keys

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


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, pool_recycle=1800, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW
    )


def alembic_config() -> Config:
    """Alembic configuration built in code (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate_engine(engine: AsyncEngine) -> None:
    """Upgrade the schema of `engine`'s database to the newest revision."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def migrate(url: str) -> None:
    """Create or upgrade the schema at `url` (alembic upgrade head)."""
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


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the engine, check it with SELECT 1, and dispose of it at shutdown."""
    settings = app[keys.SETTINGS]
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        await engine.dispose()
        raise
    app[keys.ENGINE] = engine
    logger.info("database ready", extra={"dialect": engine.dialect.name})
    try:
        yield
    finally:
        await engine.dispose()
