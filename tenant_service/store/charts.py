"""The beliefs an asset chart draws: per sensor, event and source, the most recent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class ChartBelief:
    """One drawn belief (times in ms)."""

    sensor_id: int
    event_start: int
    belief_horizon: int
    source_id: int
    value: float


async def chart_beliefs(
    conn: AsyncConnection,
    sensor_resolutions: dict[int, int],
    *,
    start: int | None,
    end: int | None,
    beliefs_after: int | None,
    beliefs_before: int | None,
    most_recent_only: bool = True,
) -> list[ChartBelief]:
    """Beliefs of events overlapping [start, end), optionally only the most recent
    belief of each source about each event; ordered by sensor, event, source."""
    found: list[ChartBelief] = []
    for sensor_id, resolution in sensor_resolutions.items():
        conditions = ["sensor_id = :sensor_id", "cumulative_probability = 0.5"]
        params: dict[str, Any] = {"sensor_id": sensor_id, "resolution": resolution}
        if start is not None:
            conditions.append("event_start + :resolution > :start")
            params["start"] = start
        if end is not None:
            conditions.append("event_start < :end")
            params["end"] = end
        # belief time = knowledge time (event end) - horizon
        if beliefs_before is not None:
            conditions.append("event_start + :resolution - belief_horizon <= :before")
            params["before"] = beliefs_before
        if beliefs_after is not None:
            conditions.append("event_start + :resolution - belief_horizon > :after")
            params["after"] = beliefs_after
        where = " AND ".join(conditions)
        rank = (
            "ROW_NUMBER() OVER (PARTITION BY event_start, source_id "
            "ORDER BY belief_horizon)"
            if most_recent_only
            else "1"
        )
        sql = (
            "SELECT event_start, belief_horizon, source_id, event_value FROM ("
            f"SELECT event_start, belief_horizon, source_id, event_value, {rank} AS rn "
            f"FROM timed_beliefs WHERE {where}) AS ranked WHERE rn = 1 "
            "ORDER BY event_start, source_id, belief_horizon"
        )
        statement = text(sql).bindparams(
            *(bindparam(name) for name in params if f":{name}" in sql)
        )
        rows = await conn.execute(
            statement, {k: v for k, v in params.items() if f":{k}" in sql}
        )
        found += [
            ChartBelief(sensor_id, row[0], row[1], row[2], row[3]) for row in rows
        ]
    return found


def flatten_ids(plots: Sequence[dict[str, Any]]) -> list[int]:
    """The distinct sensor ids of parsed sensors_to_show rows, in order."""
    ids: list[int] = []
    for plot in plots:
        for sensor_id in plot["sensors"]:
            if sensor_id not in ids:
                ids.append(sensor_id)
    return ids
