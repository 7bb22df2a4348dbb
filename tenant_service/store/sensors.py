"""Sensors: reads joined with their asset's ownership, and writes."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.acl import Owner
from tenant_service.store import audit
from tenant_service.store.assets import subtree
from tenant_service.store.prepared import Prepared, Record
from tenant_service.store.tables import accounts, generic_assets, sensors


@dataclass(frozen=True, slots=True)
class SensorRecord:
    """A sensor with the ownership of its asset."""

    id: int
    name: str
    unit: str
    timezone: str
    event_resolution_ms: int
    knowledge_horizon_fnc: str | None
    knowledge_horizon_par: str
    attributes: str
    generic_asset_id: int
    owner: Owner


_SENSOR_QUERY: Final[Select[Any]] = select(
    sensors,
    generic_assets.c.account_id.label("asset_account_id"),
    accounts.c.consultancy_account_id.label("consultancy_account_id"),
).select_from(
    sensors.join(
        generic_assets, generic_assets.c.id == sensors.c.generic_asset_id
    ).outerjoin(accounts, accounts.c.id == generic_assets.c.account_id)
)
_SENSOR_BY_ID: Final = Prepared.of(
    _SENSOR_QUERY.where(sensors.c.id == bindparam("sensor_id"))
)


def sensor_record(row: Record) -> SensorRecord:
    """A SensorRecord from a row of a query built on _SENSOR_QUERY."""
    return SensorRecord(
        id=row["id"],
        name=row["name"],
        unit=row["unit"],
        timezone=row["timezone"],
        event_resolution_ms=int(row["event_resolution"]),
        knowledge_horizon_fnc=row["knowledge_horizon_fnc"],
        knowledge_horizon_par=row["knowledge_horizon_par"],
        attributes=row["attributes"],
        generic_asset_id=row["generic_asset_id"],
        owner=Owner(row["asset_account_id"], row["consultancy_account_id"]),
    )


async def get_sensor(conn: AsyncConnection, sensor_id: int) -> SensorRecord | None:
    """One sensor with its owner, or None."""
    row = await _SENSOR_BY_ID.fetchrow(conn, {"sensor_id": sensor_id})
    return sensor_record(row) if row is not None else None


_NAME_TAKEN: Final = select(sensors.c.id).where(
    sensors.c.generic_asset_id == bindparam("asset_id"),
    sensors.c.name == bindparam("name"),
    sensors.c.id != bindparam("exclude_id"),
)
_DELETE: Final = delete(sensors).where(sensors.c.id == bindparam("sensor_id"))


Scope = Literal["account", "clients", "subtree", "asset"]
# Whose sensors a viewer may read besides public ones: everyone's (admins and
# admin-readers), their account's, or also their consultancy clients'.
Viewer = Literal["all", "member", "consultant"]


@dataclass(frozen=True, slots=True)
class SensorListing:
    """The shape of a sensor listing; its values travel as parameters.

    Parameters: `account_id` (scopes "account", "clients"), `asset_id` ("subtree",
    "asset"), `viewer_account_id` (viewers other than "all"), `unit` (with
    `unit`), `term0`... (LIKE patterns from `like_pattern`), `offset` and `limit`
    (when `paged`).

    Every listed sensor is one its viewer may read (acl.may_read): an asset's
    tree may hold assets of other accounts.
    """

    scope: Scope  # one account, an account and its clients, an asset's tree, an asset
    viewer: Viewer = "all"
    public: bool = False  # also sensors of public assets
    unit: bool = False  # only sensors with the unit `unit`
    terms: tuple[bool, ...] = ()  # per search term: whether it is all digits
    any_term: bool = False  # a sensor matching any term (else every term)
    sort: str = "id"  # a key of SORTS
    descending: bool = False
    paged: bool = False

    def scope_where(self) -> ColumnElement[bool]:
        """The listing without its search terms."""
        where: ColumnElement[bool]
        if self.scope == "account":
            where = generic_assets.c.account_id == bindparam("account_id")
        elif self.scope == "clients":
            where = generic_assets.c.account_id.in_(
                select(accounts.c.id).where(
                    or_(
                        accounts.c.id == bindparam("account_id"),
                        accounts.c.consultancy_account_id == bindparam("account_id"),
                    )
                )
            )
        elif self.scope == "subtree":
            where = generic_assets.c.id.in_(subtree(bindparam("asset_id")))
        else:
            where = sensors.c.generic_asset_id == bindparam("asset_id")
        if self.public:
            where = or_(where, generic_assets.c.account_id.is_(None))
        if self.unit:
            where = and_(where, sensors.c.unit == bindparam("unit"))
        if self.viewer != "all":
            where = and_(where, readable_by(self.viewer))
        return where

    def filtered_where(self) -> ColumnElement[bool]:
        """The listing with its search terms."""
        where = self.scope_where()
        if not self.terms:
            return where
        matches = [
            _term_match(index, digits) for index, digits in enumerate(self.terms)
        ]
        return and_(where, or_(*matches) if self.any_term else and_(*matches))


def readable_by(viewer: Viewer) -> ColumnElement[bool]:
    """Sensors whose asset the viewer (`viewer_account_id`) may read."""
    account = bindparam("viewer_account_id", type_=Integer)
    clauses = [
        generic_assets.c.account_id.is_(None),
        generic_assets.c.account_id == account,
    ]
    if viewer == "consultant":
        clauses.append(accounts.c.consultancy_account_id == account)
    return or_(*clauses)


def like_pattern(term: str) -> str:
    """A search term as a LIKE operand with "/" escaping its wildcards."""
    return term.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _term_match(index: int, digits: bool) -> ColumnElement[bool]:
    """A sensor whose name contains the term, or whose id starts with it."""
    term = bindparam(f"term{index}", type_=String)
    name = sensors.c.name.icontains(term, escape="/")
    if not digits:
        return name
    return or_(name, cast(sensors.c.id, String).startswith(term, escape="/"))


SORTS: Final[dict[str, ColumnElement[Any]]] = {
    "id": sensors.c.id,
    "name": sensors.c.name,
    "resolution": sensors.c.event_resolution,
}


@functools.lru_cache(maxsize=256)
def _listing_query(listing: SensorListing) -> Prepared:
    column = SORTS[listing.sort]
    order = (
        [column.desc(), sensors.c.id.desc()]
        if listing.descending
        else [
            column.asc(),
            sensors.c.id.asc(),
        ]
    )
    query = _SENSOR_QUERY.where(listing.filtered_where()).order_by(*order)
    if listing.paged:
        query = query.offset(bindparam("offset")).limit(bindparam("limit"))
    return Prepared.of(query)


@functools.lru_cache(maxsize=256)
def _count_query(listing: SensorListing, filtered: bool) -> Prepared:
    where = listing.filtered_where() if filtered else listing.scope_where()
    return Prepared.of(
        select(func.count()).select_from(_SENSOR_QUERY.where(where).subquery())
    )


async def list_sensors(
    conn: AsyncConnection, listing: SensorListing, params: Mapping[str, Any]
) -> list[SensorRecord]:
    """One page (or all) of the sensors of a listing, in its order."""
    rows = await _listing_query(listing).fetch(conn, params)
    return [sensor_record(row) for row in rows]


async def count_sensors(
    conn: AsyncConnection,
    listing: SensorListing,
    params: Mapping[str, Any],
    *,
    filtered: bool,
) -> int:
    """How many sensors a listing has, with or without its search terms."""
    return int(await _count_query(listing, filtered).scalar(conn, params))


async def name_taken(
    conn: AsyncConnection, asset_id: int, name: str, exclude_id: int = -1
) -> bool:
    """Whether the asset has another sensor with this name."""
    params = {"asset_id": asset_id, "name": name, "exclude_id": exclude_id}
    return (await conn.execute(_NAME_TAKEN, params)).first() is not None


async def create_sensor(
    conn: AsyncConnection, values: dict[str, Any], *, actor: audit.Actor = audit.CLI
) -> int:
    """Insert a sensor (audited on its asset); its id."""
    result = await conn.execute(
        insert(sensors).values(**values).returning(sensors.c.id)
    )
    sensor_id = int(result.scalar_one())
    name = values.get("name")
    event = (
        f"Created sensor '{name}' ({sensor_id}) via CLI."
        if actor.user_id is None
        else f"Created sensor '{name}': {sensor_id}"
    )
    await audit.record_asset(conn, actor, values["generic_asset_id"], event)
    return sensor_id


async def sensor_label(conn: AsyncConnection, sensor_id: int) -> tuple[str, int] | None:
    """A sensor's name and asset id."""
    row = (
        await conn.execute(
            select(sensors.c.name, sensors.c.generic_asset_id).where(
                sensors.c.id == sensor_id
            )
        )
    ).first()
    return None if row is None else (row.name, row.generic_asset_id)


async def update_sensor(
    conn: AsyncConnection,
    sensor_id: int,
    values: dict[str, Any],
    *,
    actor: audit.Actor = audit.CLI,
) -> None:
    """Change some columns of a sensor; audited on its asset (old and new values)."""
    if not values:
        return
    before = (
        await conn.execute(
            select(
                sensors.c.name.label("old_name"),
                sensors.c.generic_asset_id.label("asset_id"),
                *(sensors.c[key] for key in values),
            ).where(sensors.c.id == sensor_id)
        )
    ).first()
    await conn.execute(
        update(sensors).where(sensors.c.id == sensor_id).values(**values)
    )
    if before is None:
        return
    old = {key: before._mapping[key] for key in values}
    fields = [
        f"Field name: {key}, Old value: {old[key]}, New value: {value}"
        for key, value in audit.changed(old, values).items()
    ]
    if fields:
        await audit.record_asset(
            conn,
            actor,
            before.asset_id,
            f"Updated sensor '{before.old_name}': {sensor_id}. "
            f"Updated fields: {'; '.join(fields)}",
        )


async def delete_sensor(
    conn: AsyncConnection, sensor_id: int, *, actor: audit.Actor = audit.CLI
) -> None:
    """Delete a sensor; its beliefs go with it (ON DELETE CASCADE). Audited."""
    label = await sensor_label(conn, sensor_id)
    if label is not None:
        await audit.record_asset(
            conn, actor, label[1], f"Deleted sensor '{label[0]}': {sensor_id}"
        )
    await conn.execute(_DELETE, {"sensor_id": sensor_id})
