"""Hot read queries compiled once, run on asyncpg itself on PostgreSQL.

SQLAlchemy's per-execution work (statement building, cache key, result metadata,
row objects) costs more than PostgreSQL's answer for the small reads most requests
make. A `Prepared` statement is built from SQLAlchemy Core with named bind parameters
and compiled for asyncpg once; on PostgreSQL it runs on the request's connection
through asyncpg (a server-side prepared statement cached per connection) and returns
asyncpg records. On other databases (SQLite) it runs through SQLAlchemy as usual.
Rows are read by column name in both cases.

The raw path is taken only outside a transaction (reads run in autocommit), so a
write request never reads around its own transaction. Driver errors are raised as
SQLAlchemy's (DataError, OperationalError, DBAPIError), as on the usual path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from sqlalchemy import Executable
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

_ASYNCPG: Final = asyncpg_dialect()  # type: ignore[no-untyped-call]  # untyped upstream
# A row by column name: an asyncpg Record or SQLAlchemy's RowMapping.
Record = Mapping[Any, Any]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement with its asyncpg SQL text and positional parameters."""

    statement: Executable
    sql: str
    names: tuple[str, ...]  # the parameter of each position
    constants: dict[str, Any]  # values of the statement's own literals, by name

    @classmethod
    def of(cls, statement: Executable) -> Prepared:
        """Compile `statement` (its bind parameters named) for asyncpg."""
        compiled = statement.compile(dialect=_ASYNCPG)  # type: ignore[attr-defined]
        names = tuple(compiled.positiontup or ())
        constants = {
            name: bind.effective_value
            for name, bind in ((n, compiled.binds[n]) for n in names)
            if not bind.required
        }
        return cls(statement, compiled.string, names, constants)

    def _args(self, params: Mapping[str, Any]) -> list[Any]:
        constants = self.constants
        return [
            constants[name] if name in constants else params[name]
            for name in self.names
        ]

    async def fetch(
        self, conn: AsyncConnection, params: Mapping[str, Any]
    ) -> Sequence[Record]:
        """All rows, each a mapping of column name to value."""
        driver = await _raw_asyncpg(conn)
        if driver is None:
            return (await conn.execute(self.statement, dict(params))).mappings().all()
        args = self._args(params)
        try:
            rows: Sequence[Record] = await driver.fetch(self.sql, *args)
        except _DRIVER_ERRORS as err:
            raise _translated(self.sql, args, err) from err
        return rows

    async def fetchrow(
        self, conn: AsyncConnection, params: Mapping[str, Any]
    ) -> Record | None:
        """The first row, or None."""
        driver = await _raw_asyncpg(conn)
        if driver is None:
            return (await conn.execute(self.statement, dict(params))).mappings().first()
        args = self._args(params)
        try:
            row: Record | None = await driver.fetchrow(self.sql, *args)
        except _DRIVER_ERRORS as err:
            raise _translated(self.sql, args, err) from err
        return row

    async def scalar(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row (None without rows)."""
        row = await self.fetchrow(conn, params)
        return None if row is None else next(iter(row.values()))


async def _raw_asyncpg(conn: AsyncConnection) -> Any | None:
    """The asyncpg connection under `conn` when it runs in autocommit, else None."""
    if conn.dialect.driver != "asyncpg":
        return None
    options = (
        conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    )
    if options.get("isolation_level") != "AUTOCOMMIT":
        return None
    raw = await conn.get_raw_connection()
    return raw.driver_connection


_DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
# Errors of a connection that is gone or refused, or of a server going down.
_UNAVAILABLE: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    OSError,
)


def _translated(sql: str, args: list[Any], err: Exception) -> sa_exc.DBAPIError:
    """SQLAlchemy's exception for an asyncpg error (as its own asyncpg dialect maps)."""
    if isinstance(err, _UNAVAILABLE):
        return sa_exc.OperationalError(sql, args, err)
    if isinstance(err, asyncpg.DataError):
        return sa_exc.DataError(sql, args, err)
    return sa_exc.DBAPIError(sql, args, err)
