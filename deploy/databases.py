"""`flexhost up --database-url`: the tenants' database template, checked, and the
PostgreSQL databases it names created when missing."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from contract.tenants_file import plain_database_problem, resolve_database

TENANT_PLACEHOLDER: Final = "{tenant}"
# Databases created at once on one server (CREATE DATABASE copies template1).
PARALLEL_CREATES: Final = 4
CONNECT_TIMEOUT_S: Final = 10.0
# PostgreSQL cuts longer identifiers (NAMEDATALEN - 1): two tenants could meet.
MAX_NAME_BYTES: Final = 63
MAINTENANCE_DATABASE: Final = "postgres"


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
    """Where to connect to create databases: a server's maintenance database."""

    host: str | None
    port: int | None
    user: str | None
    password: str | None
    ssl: str | None

    def describe(self) -> str:
        """host:port (no user, no password) for messages."""
        return f"{self.host or 'localhost'}:{self.port or 5432}"

    async def connect(self) -> asyncpg.Connection[Any]:
        """A connection to its `postgres` database (DatabaseSetupError if none)."""
        try:
            conn: asyncpg.Connection[Any] = await asyncpg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                database=MAINTENANCE_DATABASE,
                ssl=self.ssl,
                timeout=CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as err:
            reason = err.strerror if isinstance(err, OSError) else None
            raise DatabaseSetupError(
                f"PostgreSQL at {self.describe()} is unreachable "
                f"({reason or type(err).__name__}): cannot create the tenant "
                "databases; start it or fix --database-url"
            ) from err
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            raise DatabaseSetupError(
                f"PostgreSQL at {self.describe()} refused a connection to its "
                f"{MAINTENANCE_DATABASE!r} database: {err}"
            ) from err
        return conn


def _target(url: str) -> tuple[Server, str]:
    parsed: URL = make_url(url)
    host = parsed.host or _query(parsed, "host")
    server = Server(
        host=host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        ssl=_query(parsed, "ssl"),
    )
    return server, parsed.database or ""


def _query(url: URL, key: str) -> str | None:
    value = url.query.get(key)
    if isinstance(value, tuple):
        return value[0] if value else None
    return value


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
    conn = await server.connect()
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])",
            sorted(names),
        )
    finally:
        await conn.close()
    missing = sorted(names - {row["datname"] for row in rows})
    pending = iter(missing)  # shared: each name is taken by one worker

    async def worker() -> list[str]:
        made: list[str] = []
        conn = await server.connect()
        try:
            for name in pending:
                if await _create(conn, server, name):
                    made.append(name)
        finally:
            await conn.close()
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


async def _create(conn: asyncpg.Connection[Any], server: Server, name: str) -> bool:
    """CREATE DATABASE `name`; False if it exists (made meanwhile elsewhere)."""
    try:
        await conn.execute(f"CREATE DATABASE {quote_identifier(name)}")
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        return False
    except asyncpg.PostgresError as err:
        raise DatabaseSetupError(
            f"cannot create database {name!r} on {server.describe()}: {err}"
            " (the role needs CREATEDB)"
        ) from err
    return True
