"""The tenant database schema (SQLAlchemy Core, one MetaData)."""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A tz-aware datetime stored in UTC; SQLite's naive values come back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime cannot be stored")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


account_roles = Table(
    "account_roles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", String(255), nullable=True),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("primary_color", String(7), nullable=True),
    Column("secondary_color", String(7), nullable=True),
    Column("logo_url", String(255), nullable=True),
    Column(
        "consultancy_account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("attributes", Text, nullable=False, server_default=text("'{}'")),
)

accounts_account_roles = Table(
    "accounts_account_roles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "account_role_id",
        Integer,
        ForeignKey("account_roles.id", ondelete="CASCADE"),
        nullable=False,
    ),
    UniqueConstraint("account_id", "account_role_id"),
)

roles = Table(
    "roles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(80), nullable=False, unique=True),
    Column("description", String(255), nullable=True),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(255), nullable=False, unique=True),
    Column("username", String(255), nullable=False),
    Column("password_hash", String(255), nullable=True),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column(
        "timezone",
        String(255),
        nullable=False,
        server_default=text("'Europe/Amsterdam'"),
    ),
    Column("last_login_at", UtcDateTime, nullable=True),
    Column("last_seen_at", UtcDateTime, nullable=True),
    Column("login_count", Integer, nullable=False, server_default=text("0")),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("tokens_valid_after", UtcDateTime, nullable=True),
)

users_roles = Table(
    "users_roles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    Column(
        "role_id", Integer, ForeignKey("roles.id", ondelete="CASCADE"), nullable=False
    ),
    UniqueConstraint("user_id", "role_id"),
)

ADMIN: Final = "admin"
ADMIN_READER: Final = "admin-reader"
ACCOUNT_ADMIN: Final = "account-admin"
CONSULTANT: Final = "consultant"
TASK_RUNNER: Final = "task-runner"
STANDARD_ROLES: Final = (ADMIN, ADMIN_READER, ACCOUNT_ADMIN, CONSULTANT, TASK_RUNNER)
CONSULTANCY: Final = "Consultancy"
