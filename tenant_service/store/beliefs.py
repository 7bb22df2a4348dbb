"""Timed beliefs: saving changed beliefs only, reading the latest belief per event.

Saving runs inside the caller's transaction. Rows go in with INSERT ... ON CONFLICT
DO NOTHING RETURNING, so a concurrent POST of the same beliefs never fails with a
key violation: what was (not) inserted decides the answer. Reading selects the
latest belief per event in SQL (PostgreSQL `DISTINCT ON`, SQLite a window
function) and fetches only (event_start, value) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    TextClause,
    and_,
    bindparam,
    delete,
    exists,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tenant_service.beliefs import Belief, BeliefRow
from tenant_service.staleness import Search
from tenant_service.store import audit
from tenant_service.store.sources import SourceRecord, insert_ignoring, source_record
from tenant_service.store.tables import data_sources, sensors, timed_beliefs

DETERMINISTIC: Final = 0.5
# Keys per "IN" lookup of collided rows (well below both dialects' limits).
KEY_BATCH: Final = 400


class ReplacementError(Exception):
    """A belief with the same key but another value is stored already."""


@dataclass(frozen=True, slots=True)
class ReadFilter:
    """Which beliefs a read considers."""

    source_id: int | None = None
    source_type: str | None = None
    source_account_id: int | None = None
    prior_ms: int | None = None
    horizon_ms: int | None = None


async def save_beliefs(
    conn: AsyncConnection,
    sensor_id: int,
    source_id: int,
    beliefs: Sequence[Belief],
    *,
    allow_overwrite: bool = False,
) -> int:
    """Store the beliefs that change what this source believes; the number stored.

    A belief is dropped when the source's latest stored belief about the event has
    the same value. Another value under an existing belief key raises
    ReplacementError (or replaces it, with `allow_overwrite`).
    """
    rows = [(b.event_start, b.belief_horizon, b.value) for b in beliefs]
    plan = await plan_beliefs(
        conn, sensor_id, source_id, rows, allow_overwrite=allow_overwrite
    )
    return await write_plan(
        conn, sensor_id, source_id, plan, allow_overwrite=allow_overwrite
    )


@dataclass(slots=True)
class SavePlan:
    """What saving beliefs will write: new rows, and rows replacing stored ones."""

    new: list[Row]
    replacements: list[Row]
    staged: bool = False  # `new` waits in this connection's temp table (SQLite)


async def stage_plan(conn: AsyncConnection, plan: SavePlan) -> None:
    """SQLite: put the plan's new rows into this connection's temp table.

    Binding rows one by one is most of an insert's cost, and a temp table is
    outside the database file: this needs no turn at the tenant's single writer.
    `write_plan` then copies them in one INSERT ... SELECT, which SQLite runs
    without the interpreter (other threads and the event loop keep running).

    Staging opens the connection's transaction: its next statement on the
    database must be `write_plan`'s write (WAL refuses a write after a read in
    the same transaction when another connection has committed in between).
    """
    if conn.dialect.name == "postgresql" or not plan.new:
        return
    await conn.exec_driver_sql(_STAGE_TABLE)
    await conn.exec_driver_sql(_STAGE_CLEAR)
    await conn.exec_driver_sql(_STAGE_FILL, plan.new)
    plan.staged = True


async def plan_beliefs(
    conn: AsyncConnection,
    sensor_id: int,
    source_id: int | None,
    rows: Sequence[Row],
    *,
    allow_overwrite: bool = False,
) -> SavePlan:
    """Compare beliefs with what the source has stored (read only).

    `source_id` None: a source not created yet, so nothing stored. A write that
    lands between the plan and `write_plan` is caught there (same values are
    fine, others are replacements), as concurrent writers are on PostgreSQL.
    """
    exact: dict[tuple[int, int], float] = {}
    latest: dict[int, tuple[int, float]] = {}
    if rows and source_id is not None:
        params = {
            "sensor_id": sensor_id,
            "source_id": source_id,
            "first": min(r[0] for r in rows),
            "last": max(r[0] for r in rows),
        }
        for event_start, horizon, value in await _stored(conn, params):
            exact[(event_start, horizon)] = value
            known = latest.get(event_start)
            if known is None or horizon < known[0]:
                latest[event_start] = (horizon, value)
    if not exact:
        return SavePlan(list(rows), [])
    new: list[Row] = []
    replacements: list[Row] = []
    for row in rows:
        event_start, horizon, value = row
        stored = exact.get((event_start, horizon))
        if stored is not None:
            if stored != value:
                if not allow_overwrite:
                    raise ReplacementError()
                replacements.append(row)
            continue
        known = latest.get(event_start)
        if known is not None and known[1] == value:
            continue
        new.append(row)
    return SavePlan(new, replacements)


async def _stored(
    conn: AsyncConnection, params: dict[str, int]
) -> Sequence[tuple[int, int, float]]:
    """The rows of _STORED; on SQLite fetched by the driver as plain tuples.

    A repeated large POST reads as many rows as it sends: SQLAlchemy's row
    objects cost the event loop several times what the driver's tuples do.
    """
    if conn.dialect.name == "postgresql":
        result = await conn.execute(_STORED, params)
        return [(row[0], row[1], row[2]) for row in result]
    return await _fetch_tuples(
        conn,
        _STORED_SQLITE,
        (params["sensor_id"], params["source_id"], params["first"], params["last"]),
    )


async def _fetch_tuples(
    conn: AsyncConnection, sql: str, params: Sequence[Any] | dict[str, Any]
) -> list[Any]:
    """All rows of a SQLite query as the driver's tuples (no SQLAlchemy rows).

    The driver runs it on the connection SQLAlchemy uses, in its transaction.
    """
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:  # pragma: no cover - a pooled connection always has one
        raise RuntimeError("no aiosqlite connection")
    cursor = await driver.execute(sql, params)
    try:
        return list(await cursor.fetchall())
    finally:
        await cursor.close()


async def write_plan(
    conn: AsyncConnection,
    sensor_id: int,
    source_id: int,
    plan: SavePlan,
    *,
    allow_overwrite: bool = False,
) -> int:
    """Write a plan (in the caller's transaction); the number of beliefs stored."""
    target = (sensor_id, source_id)
    count = await _insert(
        conn, target, plan.new, allow_overwrite=allow_overwrite, staged=plan.staged
    )
    if plan.replacements:
        await _upsert(conn, target, plan.replacements)
    return count + len(plan.replacements)


# (event_start, belief_horizon, event_value) of one belief of a sensor and source.
Row = BeliefRow

# The source's stored deterministic beliefs about events in [first, last].
_STORED: Final = select(
    timed_beliefs.c.event_start,
    timed_beliefs.c.belief_horizon,
    timed_beliefs.c.event_value,
).where(
    timed_beliefs.c.sensor_id == bindparam("sensor_id"),
    timed_beliefs.c.source_id == bindparam("source_id"),
    timed_beliefs.c.event_start >= bindparam("first"),
    timed_beliefs.c.event_start <= bindparam("last"),
    timed_beliefs.c.cumulative_probability == DETERMINISTIC,
)
_STORED_SQLITE: Final = (
    "SELECT event_start, belief_horizon, event_value FROM timed_beliefs "
    "WHERE sensor_id = ? AND source_id = ? AND event_start >= ? AND event_start <= ? "
    "AND cumulative_probability = 0.5"
)
# PostgreSQL: all rows of one sensor and source as three arrays, one statement of
# five parameters whatever the count (a multi-row VALUES list binds six per row).
_INSERT_UNNEST: Final = text(
    "INSERT INTO timed_beliefs (sensor_id, event_start, source_id, belief_horizon, "
    "cumulative_probability, event_value) "
    "SELECT :sensor_id, s, :source_id, h, 0.5, v "
    "FROM unnest(CAST(:starts AS BIGINT[]), CAST(:horizons AS BIGINT[]), "
    "CAST(:values AS DOUBLE PRECISION[])) AS t(s, h, v) "
    "ON CONFLICT DO NOTHING RETURNING event_start, belief_horizon"
)
# SQLite: one prepared statement run per row by the driver (executemany), without
# RETURNING: about 2 us a row, where a multi-row VALUES list with RETURNING takes
# about 6. This runs while the tenant's single writer is held, so speed here is
# what other accounts' writes wait for.
_INSERT_MANY: Final = (
    "INSERT INTO timed_beliefs (sensor_id, event_start, source_id, belief_horizon, "
    "cumulative_probability, event_value) VALUES (?, ?, ?, ?, 0.5, ?) "
    "ON CONFLICT DO NOTHING"
)
_STAGE_TABLE: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS staged_beliefs (event_start INTEGER NOT NULL, "
    "belief_horizon INTEGER NOT NULL, event_value REAL NOT NULL)"
)
_STAGE_CLEAR: Final = "DELETE FROM temp.staged_beliefs"
_STAGE_FILL: Final = "INSERT INTO temp.staged_beliefs VALUES (?, ?, ?)"
_COPY_STAGED: Final = (
    "INSERT INTO main.timed_beliefs (sensor_id, event_start, source_id, "
    "belief_horizon, cumulative_probability, event_value) "
    "SELECT ?, event_start, ?, belief_horizon, 0.5, event_value "
    "FROM temp.staged_beliefs WHERE true ON CONFLICT DO NOTHING"
)
_UPSERT_MANY: Final = (
    "INSERT INTO timed_beliefs (sensor_id, event_start, source_id, belief_horizon, "
    "cumulative_probability, event_value) VALUES (?, ?, ?, ?, 0.5, ?) "
    "ON CONFLICT (sensor_id, event_start, source_id, belief_horizon, "
    "cumulative_probability) DO UPDATE SET event_value = excluded.event_value"
)


def _driver_rows(target: tuple[int, int], rows: list[Row]) -> list[tuple[Any, ...]]:
    sensor_id, source_id = target
    return [
        (sensor_id, start, source_id, horizon, value) for start, horizon, value in rows
    ]


async def _insert(
    conn: AsyncConnection,
    target: tuple[int, int],
    rows: list[Row],
    *,
    allow_overwrite: bool,
    staged: bool = False,
) -> int:
    """Insert rows, skipping stored keys; the number of rows that changed the data.

    A concurrent request (another process, or PostgreSQL's concurrent writers)
    may have stored some keys first: the same values there are fine, others are
    replacements.
    """
    if not rows:
        return 0
    sensor_id, source_id = target
    if conn.dialect.name == "postgresql":
        result = await conn.execute(
            _INSERT_UNNEST,
            {
                "sensor_id": sensor_id,
                "source_id": source_id,
                "starts": [r[0] for r in rows],
                "horizons": [r[1] for r in rows],
                "values": [r[2] for r in rows],
            },
        )
        inserted = {(r[0], r[1]) for r in result}
        count = len(inserted)
        collided = [r for r in rows if (r[0], r[1]) not in inserted]
    else:
        if staged:
            result = await conn.exec_driver_sql(_COPY_STAGED, target)
            await conn.exec_driver_sql(_STAGE_CLEAR)
        else:
            result = await conn.exec_driver_sql(
                _INSERT_MANY, _driver_rows(target, rows)
            )
        count = int(result.rowcount)
        # Which keys collided is unknown: check them all (rare; values we just
        # inserted compare equal).
        collided = [] if count == len(rows) else rows
    if not collided:
        return count
    differing: list[Row] = []
    for i in range(0, len(collided), KEY_BATCH):
        batch = collided[i : i + KEY_BATCH]
        keys = [(r[0], r[1]) for r in batch]
        found = {
            (es, h): v
            for es, h, v in await conn.execute(
                select(
                    timed_beliefs.c.event_start,
                    timed_beliefs.c.belief_horizon,
                    timed_beliefs.c.event_value,
                ).where(
                    and_(
                        timed_beliefs.c.sensor_id == sensor_id,
                        timed_beliefs.c.source_id == source_id,
                        timed_beliefs.c.cumulative_probability == DETERMINISTIC,
                        tuple_(
                            timed_beliefs.c.event_start,
                            timed_beliefs.c.belief_horizon,
                        ).in_(keys),
                    )
                )
            )
        }
        differing += [r for r in batch if found.get((r[0], r[1])) != r[2]]
    if differing:
        if not allow_overwrite:
            raise ReplacementError()
        await _upsert(conn, target, differing)
    return count + len(differing)


async def _upsert(
    conn: AsyncConnection, target: tuple[int, int], rows: list[Row]
) -> None:
    if conn.dialect.name != "postgresql":
        await conn.exec_driver_sql(_UPSERT_MANY, _driver_rows(target, rows))
        return
    statement = insert_ignoring(conn, timed_beliefs)
    statement = statement.on_conflict_do_update(
        index_elements=[
            "sensor_id",
            "event_start",
            "source_id",
            "belief_horizon",
            "cumulative_probability",
        ],
        set_={"event_value": statement.excluded.event_value},
    )
    sensor_id, source_id = target
    await conn.execute(
        statement,
        [
            {
                "sensor_id": sensor_id,
                "event_start": start,
                "source_id": source_id,
                "belief_horizon": horizon,
                "cumulative_probability": DETERMINISTIC,
                "event_value": value,
            }
            for start, horizon, value in rows
        ],
    )


def _read_params(
    query: TextClause,
    sensor_id: int,
    start_ms: int,
    end_ms: int,
    resolution_ms: int,
    read: ReadFilter,
) -> dict[str, Any]:
    """The parameters `query` (a `_latest_query`) uses."""
    params: dict[str, Any] = {
        "sensor_id": sensor_id,
        "start": start_ms,
        "end": end_ms,
        "resolution": resolution_ms,
        "source_id": read.source_id,
        "source_type": read.source_type,
        "source_account_id": read.source_account_id,
        "prior": read.prior_ms,
        "horizon": read.horizon_ms,
    }
    return {name: params[name] for name in query.compile().params}


def _latest_query(dialect: str, read: ReadFilter) -> TextClause:
    conditions = [
        "sensor_id = :sensor_id",
        "event_start >= :start",
        "event_start < :end",
        "cumulative_probability = 0.5",
    ]
    if read.source_id is not None:
        conditions.append("source_id = :source_id")
    if read.source_type is not None:
        conditions.append(
            "source_id IN (SELECT id FROM data_sources WHERE type = :source_type)"
        )
    if read.source_account_id is not None:
        conditions.append(
            "source_id IN (SELECT id FROM data_sources "
            "WHERE account_id = :source_account_id)"
        )
    if read.prior_ms is not None:
        # belief time = knowledge time (event end) - horizon
        conditions.append("event_start + :resolution - belief_horizon <= :prior")
    if read.horizon_ms is not None:
        conditions.append("belief_horizon >= :horizon")
    where = " AND ".join(conditions)
    if dialect == "postgresql":
        return text(
            "SELECT DISTINCT ON (event_start) event_start, event_value "
            f"FROM timed_beliefs WHERE {where} "
            "ORDER BY event_start, belief_horizon, source_id"
        )
    if read.source_id is not None:
        # One source: (event start, horizon) is unique, and SQLite takes the bare
        # columns from the row of the smallest horizon (faster than a window).
        return text(
            "SELECT event_start, event_value, MIN(belief_horizon) AS horizon "
            f"FROM timed_beliefs WHERE {where} GROUP BY event_start "
            "ORDER BY event_start"
        )
    return text(
        "SELECT event_start, event_value FROM ("
        "SELECT event_start, event_value, ROW_NUMBER() OVER ("
        "PARTITION BY event_start ORDER BY belief_horizon, source_id) AS rank "
        f"FROM timed_beliefs WHERE {where}) WHERE rank = 1 ORDER BY event_start"
    )


async def latest_values(
    conn: AsyncConnection,
    sensor_id: int,
    start_ms: int,
    end_ms: int,
    resolution_ms: int,
    read: ReadFilter,
    *,
    step_ms: int | None = None,
) -> tuple[Sequence[int], list[float]]:
    """Event starts and values of the latest belief per event in [start, end).

    Two columns rather than rows: on PostgreSQL they arrive as two arrays, so a
    year of data makes no per-row objects that the garbage collector would scan.
    Given `step_ms`, when the events are exactly the grid of that step from
    `start_ms` (the usual full window), PostgreSQL says so and the starts come back
    as that `range` instead of an array.
    """
    query = _latest_query(conn.dialect.name, read)
    used = _read_params(query, sensor_id, start_ms, end_ms, resolution_ms, read)
    if conn.dialect.name == "postgresql":
        grid = None
        if step_ms is not None and step_ms > 0:
            grid = range(start_ms, end_ms, step_ms)
        return await _fetch_arrays(conn, query, used, grid)
    # SQLite: the driver's plain tuples; SQLAlchemy's rows would cost the event
    # loop several times as much on a long window.
    rows = await _fetch_tuples(conn, query.text, used)
    return [row[0] for row in rows], [row[1] for row in rows]


async def step_means(
    conn: AsyncConnection,
    sensor_id: int,
    start_ms: int,
    end_ms: int,
    resolution_ms: int,
    read: ReadFilter,
    step_ms: int,
) -> tuple[list[int], list[float]]:
    """Step numbers and means of the latest belief per event, in steps from start.

    For reads coarser than the data (a chart of a year): the database averages
    each step, so only one row per step leaves it, not one per event.
    """
    inner = _latest_query(conn.dialect.name, read)
    used = _read_params(inner, sensor_id, start_ms, end_ms, resolution_ms, read)
    used["step"] = step_ms
    sql = (
        "SELECT (event_start - :start) / :step AS k, AVG(event_value) "
        f"FROM ({inner.text}) AS latest GROUP BY k ORDER BY k"
    )
    if conn.dialect.name == "postgresql":
        rows: Sequence[Any] = (await conn.execute(text(sql), used)).all()
    else:
        rows = await _fetch_tuples(conn, sql, used)
    return [int(row[0]) for row in rows], [float(row[1]) for row in rows]


async def _fetch_arrays(
    conn: AsyncConnection,
    query: TextClause,
    params: dict[str, Any],
    grid: range | None,
) -> tuple[Sequence[int], list[float]]:
    """Both columns as arrays, through asyncpg itself (no SQLAlchemy rows).

    With a `grid`, the starts array is left out (NULL) when the starts are exactly
    the grid: as many distinct starts as grid points, all on it, first and last
    equal (the latest-belief query gives one row per event start).
    """
    starts_sql = "array_agg(event_start ORDER BY event_start)"
    if grid is not None and len(grid):
        params = {
            **params,
            "grid_count": len(grid),
            "grid_first": grid[0],
            "grid_last": grid[-1],
            "grid_step": grid.step,
        }
        starts_sql = (
            "CASE WHEN count(*) = :grid_count AND min(event_start) = :grid_first "
            "AND max(event_start) = :grid_last "
            "AND bool_and((event_start - :grid_first) % :grid_step = 0) "
            f"THEN NULL ELSE {starts_sql} END"
        )
    names = list(params)
    sql = (
        "SELECT array_agg(event_value ORDER BY event_start), "
        f"{starts_sql} FROM ({query.text}) AS latest"
    )
    # Longest names first, so no name is replaced inside a longer one.
    for index, name in sorted(enumerate(names), key=lambda p: -len(p[1])):
        sql = sql.replace(f":{name}", f"${index + 1}")
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:  # pragma: no cover - a pooled connection always has one
        raise RuntimeError("no asyncpg connection")
    row = await driver.fetchrow(sql, *(params[name] for name in names))
    if row is None or row[0] is None:
        return [], []
    if row[1] is None and grid is not None:
        return grid, list(row[0])
    return list(row[1]), list(row[0])


async def count_known_events(
    conn: AsyncConnection,
    sensor_id: int,
    start_ms: int,
    end_ms: int,
    resolution_ms: int,
    prior_ms: int,
) -> int:
    """How many events in [start, end) have a belief with belief time <= prior.

    One range scan of the primary key (sensor, event start, ...).
    """
    query = text(
        "SELECT COUNT(DISTINCT event_start) FROM timed_beliefs "
        "WHERE sensor_id = :sensor_id AND event_start >= :start "
        "AND event_start < :end AND cumulative_probability = 0.5 "
        "AND event_start + :resolution - belief_horizon <= :prior"
    )
    result = await conn.execute(
        query,
        {
            "sensor_id": sensor_id,
            "start": start_ms,
            "end": end_ms,
            "resolution": resolution_ms,
            "prior": prior_ms,
        },
    )
    return int(result.scalar_one())


async def delete_beliefs(
    conn: AsyncConnection,
    sensor_id: int,
    *,
    source_id: int | None = None,
    start_ms: int | None = None,
    until_ms: int | None = None,
    event: str | None = None,
    actor: audit.Actor = audit.CLI,
) -> int:
    """Delete a sensor's beliefs (optionally of one source, in [start, until)).

    `event` (FlexMeasures' "Deleted data for sensor ...") is recorded in the
    asset audit log of the sensor's asset.
    """
    conditions = [timed_beliefs.c.sensor_id == sensor_id]
    if source_id is not None:
        conditions.append(timed_beliefs.c.source_id == source_id)
    if start_ms is not None:
        conditions.append(timed_beliefs.c.event_start >= start_ms)
    if until_ms is not None:
        conditions.append(timed_beliefs.c.event_start < until_ms)
    result = await conn.execute(delete(timed_beliefs).where(and_(*conditions)))
    if event is not None:
        asset_id = (
            await conn.execute(
                select(sensors.c.generic_asset_id).where(sensors.c.id == sensor_id)
            )
        ).scalar()
        if asset_id is not None:
            await audit.record_asset(conn, actor, asset_id, event)
    return int(result.rowcount)


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Statistics of one source's beliefs on a sensor (times in ms)."""

    source: SourceRecord
    min_event_start: int
    max_event_start: int
    max_belief_time: int
    min_value: float
    max_value: float
    mean_value: float
    sum_values: float
    count_values: int


async def sensor_stats(
    conn: AsyncConnection,
    sensor_id: int,
    resolution_ms: int,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[SourceStats]:
    """Per source (by id): first/last event start, last belief time, min, max,
    mean, sum and count, of events starting in [start, end)."""
    value = timed_beliefs.c.event_value
    conditions = [timed_beliefs.c.sensor_id == sensor_id]
    if start_ms is not None:
        conditions.append(timed_beliefs.c.event_start >= start_ms)
    if end_ms is not None:
        conditions.append(timed_beliefs.c.event_start < end_ms)
    belief_time = (
        timed_beliefs.c.event_start + resolution_ms - timed_beliefs.c.belief_horizon
    )
    aggregates = (
        select(
            timed_beliefs.c.source_id,
            func.min(timed_beliefs.c.event_start).label("first"),
            func.max(timed_beliefs.c.event_start).label("last"),
            func.max(belief_time).label("recorded"),
            func.min(value).label("low"),
            func.max(value).label("high"),
            func.avg(value).label("mean"),
            func.sum(value).label("total"),
            func.count(value).label("n"),
        )
        .where(and_(*conditions))
        .group_by(timed_beliefs.c.source_id)
        .subquery()
    )
    rows = await conn.execute(
        select(data_sources, aggregates)
        .select_from(
            aggregates.join(data_sources, data_sources.c.id == aggregates.c.source_id)
        )
        .order_by(data_sources.c.id)
    )
    return [
        SourceStats(
            source=source_record(row),
            min_event_start=int(row.first),
            max_event_start=int(row.last),
            max_belief_time=int(row.recorded),
            min_value=float(row.low),
            max_value=float(row.high),
            mean_value=float(row.mean),
            sum_values=float(row.total),
            count_values=int(row.n),
        )
        for row in rows
    ]


async def latest_event_per_source_type(
    conn: AsyncConnection,
    sensor_id: int,
    resolution_ms: int,
    search: Search,
    source_types: Sequence[str],
) -> dict[str, int]:
    """Per source type: the latest event start among beliefs formed by then.

    `search.beliefs_before` is the caller's "now" (or earlier); belief time is
    the event's end minus the belief horizon, as everywhere here.
    """
    belief_time = (
        timed_beliefs.c.event_start + resolution_ms - timed_beliefs.c.belief_horizon
    )
    conditions = [
        timed_beliefs.c.sensor_id == sensor_id,
        data_sources.c.type.in_(list(source_types)),
    ]
    if search.beliefs_before is not None:
        conditions.append(belief_time <= search.beliefs_before)
    if search.beliefs_after is not None:
        conditions.append(belief_time >= search.beliefs_after)
    if search.event_starts_after is not None:
        conditions.append(timed_beliefs.c.event_start >= search.event_starts_after)
    if search.event_ends_before is not None:
        conditions.append(
            timed_beliefs.c.event_start + resolution_ms <= search.event_ends_before
        )
    if search.horizons_at_least is not None:
        conditions.append(timed_beliefs.c.belief_horizon >= search.horizons_at_least)
    if search.horizons_at_most is not None:
        conditions.append(timed_beliefs.c.belief_horizon <= search.horizons_at_most)
    if search.source is not None:
        conditions.append(timed_beliefs.c.source_id == search.source)
    if search.source_types is not None:
        conditions.append(data_sources.c.type.in_(list(search.source_types)))
    if search.exclude_source_types:
        conditions.append(data_sources.c.type.not_in(list(search.exclude_source_types)))
    rows = await conn.execute(
        select(data_sources.c.type, func.max(timed_beliefs.c.event_start))
        .select_from(
            timed_beliefs.join(
                data_sources, data_sources.c.id == timed_beliefs.c.source_id
            )
        )
        .where(and_(*conditions))
        .group_by(data_sources.c.type)
    )
    return {str(kind): int(start) for kind, start in rows}


async def sources_with_data(
    conn: AsyncConnection,
    sensor_id: int,
    resolution_ms: int,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[SourceRecord]:
    """The sources with beliefs about events of the sensor overlapping
    [start, end), by id: one probe of ix_timed_beliefs_source_sensor_start per
    source, however many values there are."""
    conditions = [
        timed_beliefs.c.source_id == data_sources.c.id,
        timed_beliefs.c.sensor_id == sensor_id,
    ]
    if start_ms is not None:
        conditions.append(
            timed_beliefs.c.event_start > start_ms - resolution_ms
            if resolution_ms
            else timed_beliefs.c.event_start >= start_ms
        )
    if end_ms is not None:
        conditions.append(timed_beliefs.c.event_start < end_ms)
    rows = await conn.execute(
        select(data_sources)
        .where(exists().where(and_(*conditions)))
        .order_by(data_sources.c.id)
    )
    return [source_record(row) for row in rows]
