"""The tenant database schema (SQLAlchemy Core, one MetaData)."""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
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

# --- assets, sensors, sources, beliefs ------------------------------------------
# Times of events and beliefs are integers: milliseconds since the Unix epoch (UTC),
# durations in milliseconds. Range scans, belief-time arithmetic and resampling stay
# integer math in both SQLite and PostgreSQL, and reading a year of 15-minute data
# parses no datetimes.

generic_asset_types = Table(
    "generic_asset_types",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(80), nullable=False, unique=True),
    Column("description", String(255), nullable=True),
)

generic_assets = Table(
    "generic_assets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(80), nullable=False),
    Column("description", String(255), nullable=True),
    # NULL: a public asset, readable by every logged-in user of the tenant.
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column(
        "generic_asset_type_id",
        Integer,
        ForeignKey("generic_asset_types.id", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
    Column(
        "parent_asset_id",
        Integer,
        ForeignKey("generic_assets.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    # JSON texts, as FlexMeasures serves them (strings inside the JSON answer).
    Column("attributes", Text, nullable=False, server_default=text("'{}'")),
    Column("flex_context", Text, nullable=False, server_default=text("'{}'")),
    Column("flex_model", Text, nullable=False, server_default=text("'{}'")),
    Column("sensors_to_show", Text, nullable=False, server_default=text("'[]'")),
    Column(
        "sensors_to_show_as_kpis", Text, nullable=False, server_default=text("'[]'")
    ),
    Column("external_id", String(255), nullable=True),
    # Names are unique among siblings, and among an account's top-level assets.
    Index(
        "uq_generic_assets_parent_name",
        "parent_asset_id",
        "name",
        unique=True,
        sqlite_where=text("parent_asset_id IS NOT NULL"),
        postgresql_where=text("parent_asset_id IS NOT NULL"),
    ),
    Index(
        "uq_generic_assets_root_name",
        "account_id",
        "name",
        unique=True,
        sqlite_where=text("parent_asset_id IS NULL"),
        postgresql_where=text("parent_asset_id IS NULL"),
    ),
)

sensors = Table(
    "sensors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(120), nullable=False),
    Column("unit", String(80), nullable=False, server_default=text("''")),
    Column("timezone", String(80), nullable=False),
    # ms; 0 = instantaneous
    Column("event_resolution", BigInteger, nullable=False, server_default=text("0")),
    # None = ex post (an event is knowable when it ends), as FlexMeasures' default.
    Column("knowledge_horizon_fnc", String(80), nullable=True),
    Column("knowledge_horizon_par", Text, nullable=False, server_default=text("'{}'")),
    Column("attributes", Text, nullable=False, server_default=text("'{}'")),
    Column(
        "generic_asset_id",
        Integer,
        ForeignKey("generic_assets.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    UniqueConstraint("generic_asset_id", "name"),
)

data_sources = Table(
    "data_sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(80), nullable=False),
    Column("type", String(80), nullable=False),
    Column("model", String(80), nullable=True),
    Column("version", String(17), nullable=True),
    Column("description", String(255), nullable=True),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("attributes", Text, nullable=False, server_default=text("'{}'")),
    # type|name|user|account|model|version: one source per identity (NULLs included).
    Column("key", String(400), nullable=False, unique=True),
)

timed_beliefs = Table(
    "timed_beliefs",
    metadata,
    Column(
        "sensor_id",
        Integer,
        ForeignKey("sensors.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_start", BigInteger, nullable=False),  # ms since epoch, UTC
    Column(
        "source_id",
        Integer,
        ForeignKey("data_sources.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # knowledge time - belief time, ms; > 0 forecast, <= 0 measurement
    Column("belief_horizon", BigInteger, nullable=False),
    Column(
        "cumulative_probability",
        Float,
        nullable=False,
        server_default=text("0.5"),
    ),
    Column("event_value", Float, nullable=False),
    # The belief key of FlexMeasures, ordered for range scans of one sensor.
    PrimaryKeyConstraint(
        "sensor_id",
        "event_start",
        "source_id",
        "belief_horizon",
        "cumulative_probability",
    ),
    # A source's beliefs (deleting it), and whether it has data for a sensor in a
    # window: one probe per source (the charts' source lookup).
    Index(
        "ix_timed_beliefs_source_sensor_start",
        "source_id",
        "sensor_id",
        "event_start",
    ),
    sqlite_with_rowid=False,
)

# --- audit logs ------------------------------------------------------------------
# FlexMeasures' two audit tables. `audit_log` keeps ids without foreign keys, so a
# record outlives the user or account it names (FlexMeasures keeps that lineage);
# `asset_audit_log` has FlexMeasures' SET NULL foreign keys.

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_datetime", UtcDateTime, nullable=False),
    Column("event", String(500), nullable=False),
    Column("active_user_name", String(255), nullable=True),
    Column("active_user_id", Integer, nullable=True),
    Column("affected_user_id", Integer, nullable=True, index=True),
    Column("affected_account_id", Integer, nullable=True, index=True),
)

asset_audit_log = Table(
    "asset_audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_datetime", UtcDateTime, nullable=False),
    Column("event", String(500), nullable=False),
    Column("active_user_name", String(255), nullable=True),
    Column(
        "active_user_id",
        Integer,
        ForeignKey("users.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column(
        "affected_asset_id",
        Integer,
        ForeignKey("generic_assets.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
)

# --- annotations and user preferences ---------------------------------------------
# An annotation is stored once and attached to accounts, assets and sensors through
# link tables, as FlexMeasures does. Times in ms since the epoch, as beliefs.

ANNOTATION_TYPES: Final = ("alert", "holiday", "label", "feedback", "warning", "error")

annotations_table = Table(
    "annotations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("start", BigInteger, nullable=False),
    Column("end", BigInteger, nullable=False),
    Column("belief_time", BigInteger, nullable=True),
    Column(
        "source_id",
        Integer,
        ForeignKey("data_sources.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("type", String(16), nullable=False),
    Column("content", String(1024), nullable=False),
    # sha256 of content|start|end|source|type: FlexMeasures' identity of an
    # annotation (get_or_create_annotation), unique without indexing 1 kB texts.
    Column("key", String(64), nullable=False, unique=True),
)


def _annotation_link(name: str, column: str, target: str) -> Table:
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column(
            column,
            Integer,
            ForeignKey(f"{target}.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        Column(
            "annotation_id",
            Integer,
            ForeignKey("annotations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        UniqueConstraint("annotation_id", column),
    )


annotations_accounts = _annotation_link(
    "annotations_accounts", "account_id", "accounts"
)
annotations_assets = _annotation_link(
    "annotations_assets", "generic_asset_id", "generic_assets"
)
annotations_sensors = _annotation_link("annotations_sensors", "sensor_id", "sensors")

# What FlexMeasures keeps in the browser session (POST /assets/default_asset_view,
# /assets/keep_legends_below_graphs); here per user, so it also works for API tokens.
user_preferences = Table(
    "user_preferences",
    metadata,
    Column(
        "user_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("default_asset_view", String(32), nullable=True),
    Column("keep_legends_below_graphs", Boolean, nullable=True),
)

# FlexMeasures 1.0.1's seeded types (data_gen.add_default_asset_types), in its order:
# ids 1..8 as there, so a client that hard-codes a type id gets the same type.
# The latest run of each monitored task (FlexMeasures' LatestTaskRun).
latest_task_run = Table(
    "latest_task_run",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("datetime", UtcDateTime, nullable=True),
    Column("status", Boolean, nullable=True),
)

ASSET_TYPES: Final = (
    ("solar", "solar panel(s)"),
    ("wind", "wind turbine"),
    ("one-way_evse", "uni-directional Electric Vehicle Supply Equipment"),
    ("two-way_evse", "bi-directional Electric Vehicle Supply Equipment"),
    ("battery", "stationary battery"),
    ("building", "building"),
    ("process", "process"),
    ("heat-storage", "thermal storage / buffer"),
)

ADMIN: Final = "admin"
ADMIN_READER: Final = "admin-reader"
ACCOUNT_ADMIN: Final = "account-admin"
CONSULTANT: Final = "consultant"
TASK_RUNNER: Final = "task-runner"
STANDARD_ROLES: Final = (ADMIN, ADMIN_READER, ACCOUNT_ADMIN, CONSULTANT, TASK_RUNNER)
CONSULTANCY: Final = "Consultancy"
