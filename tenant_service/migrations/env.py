"""Alembic environment: runs on a connection handed over in config.attributes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tenant_service.store.tables import metadata


def run_migrations_online() -> None:
    """Migrate on the caller's connection (async engines pass it via run_sync)."""
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run migrations through tenant_service.store.db.migrate")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported")
run_migrations_online()
