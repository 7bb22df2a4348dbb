"""Template databases: migrate and seed once per pytest process, copy per test.

A test still gets a database of its own; it starts as a copy of a template built on
first use (PostgreSQL `CREATE DATABASE ... TEMPLATE`, a copied file for SQLite), which
costs about what creating an empty database costs, instead of a migration and a seed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar, cast

from sqlalchemy.engine import make_url

from tenant_service.store.db import migrate

T = TypeVar("T")

# A template may still count a connection for a moment after its engine closed:
# the server process of a closed connection exits asynchronously.
IN_USE_RETRIES = 50
IN_USE_PAUSE = 0.02


@dataclass(frozen=True, slots=True)
class Template(Generic[T]):
    """A migrated database that `seed` then fills; `name` keys the cache."""

    name: str
    seed: Callable[[str], Awaitable[T]]


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL."""
    database = make_url(url).database
    if not database:
        raise ValueError(f"not a SQLite file URL: {url}")
    return Path(database)


# Test databases are named after the pytest process that made them, so that a run
# that was killed (and never dropped its databases) is cleaned up by the next one.
TEST_DB_RE = re.compile(r"^(?:fhtest|fhtpl)_p(\d+)_[0-9a-f]+")


def fresh_db_name(kind: str = "fhtest") -> str:
    """A fresh database name of this process: `<kind>_p<pid>_<random>`."""
    return f"{kind}_p{os.getpid()}_{uuid.uuid4().hex[:12]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


async def drop_orphans(admin_url: str) -> list[str]:
    """Drop the test databases whose pytest process is gone; their names."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database"
            " WHERE datname LIKE 'fhtest%' OR datname LIKE 'fhtpl%'"
        )
    finally:
        await conn.close()
    orphans = []
    for row in rows:
        match = TEST_DB_RE.match(row["datname"])
        if match is not None and not _alive(int(match[1])):
            orphans.append(row["datname"])
    for name in orphans:
        await _drop(admin_url, name)
    return orphans


def asyncpg_url(admin_url: str, name: str) -> str:
    """SQLAlchemy URL of database `name` on the server of libpq URL `admin_url`."""
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def pg_admin(admin_url: str, statement: str) -> None:
    """Run one statement on the admin database."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _create_from(admin_url: str, name: str, template: str) -> None:
    import asyncpg

    for _ in range(IN_USE_RETRIES):
        try:
            await pg_admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return
        except asyncpg.exceptions.ObjectInUseError:
            await asyncio.sleep(IN_USE_PAUSE)
    await pg_admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


class Templates:
    """The templates of one pytest process, built on first use."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._prefix = fresh_db_name("fhtpl")
        self._files: dict[str, tuple[Path, object]] = {}
        self._databases: dict[str, tuple[str, object]] = {}
        self._admin_url: str | None = None

    async def copy_sqlite(self, template: Template[T], url: str) -> T:
        """Make `url`'s file a copy of the template; the template's seed result."""
        if template.name not in self._files:
            path = self._directory / f"{template.name}.sqlite3"
            built = f"sqlite+aiosqlite:///{path}"
            await migrate(built)
            self._files[template.name] = (path, await template.seed(built))
        source, seeded = self._files[template.name]
        target = sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Every engine on the template is closed, so its WAL is checkpointed into
        # the main file; copy any side file anyway, should one be left.
        for suffix in ("", "-wal", "-shm"):
            side = source.with_name(source.name + suffix)
            if side.exists():
                shutil.copyfile(side, target.with_name(target.name + suffix))
        return cast(T, seeded)

    async def create_pg(self, template: Template[T], admin_url: str, name: str) -> T:
        """CREATE DATABASE `name` as a copy of the template; its seed result."""
        if template.name not in self._databases:
            source = f"{self._prefix}_{template.name.replace('-', '_')}"
            await pg_admin(admin_url, f'CREATE DATABASE "{source}"')
            self._admin_url = admin_url
            built = asyncpg_url(admin_url, source)
            await migrate(built)
            self._databases[template.name] = (source, await template.seed(built))
        source, seeded = self._databases[template.name]
        await _create_from(admin_url, name, source)
        return cast(T, seeded)

    def result(self, template: Template[T], url: str) -> T:
        """The seed result of the template that `url`'s database was copied from."""
        if make_url(url).get_backend_name() == "sqlite":
            return cast(T, self._files[template.name][1])
        return cast(T, self._databases[template.name][1])

    async def drop(self) -> None:
        """Drop the PostgreSQL templates (files go with their temporary directory)."""
        if self._admin_url is None:
            return
        for source, _ in self._databases.values():
            await pg_admin(
                self._admin_url, f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)'
            )


async def _drop(admin_url: str, name: str) -> None:
    for _ in range(3):
        try:
            await pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except Exception:  # a pool may still be closing; try again shortly
            await asyncio.sleep(0.2)


class Drops:
    """Drops test databases in a thread of their own: no test waits for a DROP."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fhdrop")

    def drop(self, admin_url: str, name: str) -> None:
        """Drop database `name` soon (a DROP takes seconds on a busy server)."""
        self._pool.submit(asyncio.run, _drop(admin_url, name))

    def close(self) -> None:
        """Wait for the drops still queued."""
        self._pool.shutdown(wait=True)
