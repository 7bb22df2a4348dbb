"""`flexhost up --database-url`: the tenants' database template, checked, and the
PostgreSQL databases it names created when missing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from contract.tenants_file import plain_database_problem, resolve_database

TENANT_PLACEHOLDER: Final = "{tenant}"
# Databases created at once on one server (CREATE DATABASE copies template1).
PARALLEL_CREATES: Final = 4
CONNECT_TIMEOUT_S: Final = 10.0
# PostgreSQL cuts longer identifiers (NAMEDATALEN - 1): two tenants could meet.
MAX_NAME_BYTES: Final = 63
MAINTENANCE_DATABASE: Final = "postgres"
# CREATE DATABASE of a name that exists: duplicate_database, or unique_violation
# when two CREATEs race (PostgreSQL's SQLSTATEs).
EXISTS: Final = frozenset({"42P04", "23505"})


class DatabaseSetupError(Exception):
    """Tenant databases could not be made ready (a message for the user)."""


def database_template(raw: str) -> str:
    """The URL of `--database-url`: as given, or behind env:VARIABLE / file:/path
    (ValueError with a message).

    As a tenant's `database` in tenants.yaml: a password goes in the variable or
    file (or PGPASSWORD / ~/.pgpass), never in clear on the command line.
    """
    value = raw.strip()
    kind, _, _target = value.partition(":")
    if kind in ("env", "file"):
        url = resolve_database(value)
    else:
        problem = plain_database_problem(value)
        if problem is not None:
            raise ValueError(problem)
        url = value
    if TENANT_PLACEHOLDER not in url:
        raise ValueError(
            f"must contain {TENANT_PLACEHOLDER} (each tenant gets its own database)"
        )
    try:
        make_url(url.replace(TENANT_PLACEHOLDER, "x"))
    except (ArgumentError, ValueError) as err:
        raise ValueError("not a database URL") from err
    return url


def is_postgresql(url: str) -> bool:
    """Whether a tenant database URL is PostgreSQL's (else SQLite)."""
    return url.startswith("postgresql")


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Server:
    """Where to connect to create databases: a server's maintenance database, with
    every connection option of the tenants' URL (as the backends connect)."""

    url: str  # the maintenance database's URL, password included (never shown)
    where: str  # host:port (no user, no password), for messages

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection to its `postgres` database, outside any transaction
        (CREATE DATABASE needs that); DatabaseSetupError if none."""
        engine = create_async_engine(
            self.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"timeout": CONNECT_TIMEOUT_S},
        )
        try:
            try:
                conn = await engine.connect()
            except (OSError, TimeoutError) as err:
                reason = err.strerror if isinstance(err, OSError) else None
                raise DatabaseSetupError(
                    f"PostgreSQL at {self.where} is unreachable "
                    f"({reason or type(err).__name__}): cannot create the tenant "
                    "databases; start it or fix --database-url"
                ) from err
            except DBAPIError as err:
                raise DatabaseSetupError(
                    f"PostgreSQL at {self.where} refused a connection to its "
                    f"{MAINTENANCE_DATABASE!r} database: {_reason(err)}"
                ) from err
            try:
                yield conn
            finally:
                await conn.close()
        finally:
            await engine.dispose()


def _target(url: str) -> tuple[Server, str]:
    parsed: URL = make_url(url)
    maintenance = parsed.set(database=MAINTENANCE_DATABASE)
    server = Server(maintenance.render_as_string(hide_password=False), _where(parsed))
    return server, parsed.database or ""


def _where(url: URL) -> str:
    """The URL's server(s) as host:port, comma-separated (a URL may name several
    in its query, `?host=a:5432&host=b:5432`, tried in turn)."""
    if url.host:
        return f"{url.host}:{url.port or 5432}"
    given = url.query.get("host", ())
    hosts = [given] if isinstance(given, str) else list(given)
    return (
        ",".join(h if ":" in h or h.startswith("/") else f"{h}:5432" for h in hosts)
        or "localhost:5432"
    )


def _reason(err: DBAPIError) -> str:
    """The server's own words for a refusal (not SQLAlchemy's wrapping)."""
    return str(err.orig).strip() or type(err.orig).__name__


async def ensure_databases(urls: Iterable[str]) -> list[str]:
    """Create the PostgreSQL databases of `urls` that do not exist yet, on each
    URL's server through its `postgres` database, PARALLEL_CREATES at a time per
    server; the names created. Existing ones (also made meanwhile by someone else)
    are left as they are; DatabaseSetupError says what failed."""
    by_server: dict[Server, set[str]] = {}
    long: list[str] = []
    for url in urls:
        if not is_postgresql(url):
            continue
        server, name = _target(url)
        if len(name.encode()) > MAX_NAME_BYTES:
            long.append(name)
        by_server.setdefault(server, set()).add(name)
    if long:
        raise DatabaseSetupError(
            f"database name(s) longer than {MAX_NAME_BYTES} bytes: "
            f"{', '.join(sorted(long)[:5])} (shorten --database-url or the subdomains)"
        )
    made = await _all(_ensure_on(server, names) for server, names in by_server.items())
    return sorted(name for names in made for name in names)


async def _ensure_on(server: Server, names: set[str]) -> list[str]:
    async with server.connect() as conn:
        rows = await conn.execute(
            text("SELECT datname FROM pg_database WHERE datname = ANY(:names)"),
            {"names": sorted(names)},
        )
        found = set(rows.scalars())
    missing = sorted(names - found)
    pending = iter(missing)  # shared: each name is taken by one worker

    async def worker() -> list[str]:
        made: list[str] = []
        async with server.connect() as conn:
            for name in pending:
                if await _create(conn, server, name):
                    made.append(name)
        return made

    workers = min(PARALLEL_CREATES, len(missing))
    made = await _all(worker() for _ in range(workers))
    return [name for names in made for name in names]


async def _all(jobs: Iterable[Coroutine[Any, Any, list[str]]]) -> list[list[str]]:
    """Every job's result, all finished; the first failure raised after."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if not isinstance(result, BaseException)]


async def _create(conn: AsyncConnection, server: Server, name: str) -> bool:
    """CREATE DATABASE `name`; False if it exists (made meanwhile elsewhere)."""
    try:
        await conn.exec_driver_sql(f"CREATE DATABASE {quote_identifier(name)}")
    except DBAPIError as err:
        if getattr(err.orig, "sqlstate", None) in EXISTS:
            return False
        raise DatabaseSetupError(
            f"cannot create database {name!r} on {server.where}: "
            f"{_reason(err)} (the role needs CREATEDB)"
        ) from err
    return True
