"""Annotations: stored once (get or create, race-safe), linked to accounts, assets
and sensors; the annotations of an asset and its account for charts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import ColumnElement, Table, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.store.sources import insert_ignoring
from tenant_service.store.tables import (
    annotations_accounts,
    annotations_assets,
    annotations_sensors,
    annotations_table,
    data_sources,
)

# What an annotation is attached to: (link table, its column for the target).
ACCOUNT: Final = (annotations_accounts, "account_id")
ASSET: Final = (annotations_assets, "generic_asset_id")
SENSOR: Final = (annotations_sensors, "sensor_id")


@dataclass(frozen=True, slots=True)
class Annotation:
    """One stored annotation (times in ms since the epoch)."""

    id: int
    start: int
    end: int
    belief_time: int | None
    source_id: int
    type: str
    content: str


@dataclass(frozen=True, slots=True)
class ChartAnnotation:
    """An annotation with its source's name, for charts."""

    annotation: Annotation
    source_name: str


def annotation_key(
    content: str, start: int, end: int, source_id: int, type_: str
) -> str:
    """FlexMeasures' identity of an annotation (get_or_create_annotation), hashed."""
    text = f"{type_}|{source_id}|{start}|{end}|{content}"
    return hashlib.sha256(text.encode()).hexdigest()


def _record(row: object) -> Annotation:
    return Annotation(
        id=row.id,  # type: ignore[attr-defined]  # a Row of `annotations`
        start=row.start,  # type: ignore[attr-defined]
        end=row.end,  # type: ignore[attr-defined]
        belief_time=row.belief_time,  # type: ignore[attr-defined]
        source_id=row.source_id,  # type: ignore[attr-defined]
        type=row.type,  # type: ignore[attr-defined]
        content=row.content,  # type: ignore[attr-defined]
    )


async def get_or_create(
    conn: AsyncConnection,
    *,
    content: str,
    start: int,
    end: int,
    belief_time: int | None,
    source_id: int,
    type_: str,
) -> tuple[Annotation, bool]:
    """The stored annotation with this identity, or a new one; (it, is_new)."""
    key = annotation_key(content, start, end, source_id, type_)
    inserted = await conn.execute(
        insert_ignoring(conn, annotations_table)
        .values(
            start=start,
            end=end,
            belief_time=belief_time,
            source_id=source_id,
            type=type_,
            content=content,
            key=key,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    row = (
        await conn.execute(
            select(annotations_table).where(annotations_table.c.key == key)
        )
    ).one()
    return _record(row), bool(inserted.rowcount)


async def attach(
    conn: AsyncConnection, link: tuple[Table, str], target_id: int, annotation_id: int
) -> None:
    """Link an annotation to an account, asset or sensor (once)."""
    table, column = link
    await conn.execute(
        insert_ignoring(conn, table)
        .values({column: target_id, "annotation_id": annotation_id})
        .on_conflict_do_nothing(index_elements=["annotation_id", column])
    )


def _linked(link: tuple[Table, str], target_id: int) -> ColumnElement[bool]:
    table, column = link
    return annotations_table.c.id.in_(
        select(table.c.annotation_id).where(table.c[column] == target_id)
    )


async def for_chart(
    conn: AsyncConnection,
    links: Sequence[tuple[tuple[Table, str], int]],
    *,
    after: int | None,
    before: int | None,
    beliefs_after: int | None,
    beliefs_before: int | None,
) -> list[ChartAnnotation]:
    """Annotations linked to each target in turn (asset, then account), as
    FlexMeasures' search_annotations: ending after `after`, starting before
    `before`; belief filters keep annotations without a belief time."""
    found: list[ChartAnnotation] = []
    for link, target_id in links:
        where = [_linked(link, target_id)]
        if after is not None:
            where.append(annotations_table.c.end > after)
        if before is not None:
            where.append(annotations_table.c.start < before)
        if beliefs_after is not None:
            where.append(
                or_(
                    annotations_table.c.belief_time.is_(None),
                    annotations_table.c.belief_time > beliefs_after,
                )
            )
        if beliefs_before is not None:
            where.append(
                or_(
                    annotations_table.c.belief_time.is_(None),
                    annotations_table.c.belief_time <= beliefs_before,
                )
            )
        rows = await conn.execute(
            select(annotations_table, data_sources.c.name.label("source_name"))
            .join(data_sources, data_sources.c.id == annotations_table.c.source_id)
            .where(and_(*where))
            .order_by(annotations_table.c.id)
        )
        found += [ChartAnnotation(_record(row), row.source_name) for row in rows]
    return found
