"""The tenants one backend process serves, and each tenant's state.

A dedicated backend (TENANT_NAME) is a directory of one: its engine opens at start
and stays open. A pool backend (TENANT_TENANTS_FILE + TENANT_ADDRESS) serves every
tenant of the tenants file whose `backends` contain its address; it re-reads the
file when it changes and, rate-limited, when an assertion names a tenant it does
not know yet. There a tenant costs nothing while idle: its engine opens on its
first request (migrating the database first when it is behind), and closes with
its caches after TENANT_IDLE_CLOSE seconds without requests. All engines of a pool
process together hold at most TENANT_DB_CONNECTIONS connections: a new connection
waits for a free one (the least recently used idle engine is closed to make room)
for at most TENANT_DB_CONNECTION_WAIT seconds, then the request gets 503 with
Retry-After.

Only the verified audience of a request's identity selects its tenant (the
identity middleware); handlers reach the database and caches of that tenant only,
through `request[keys.TENANT]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_

from contract.background import in_background
from contract.config import ConfigError
from contract.names import valid_tenant_name
from contract.tenants_file import load_tenants, resolve_database
from tenant_service.config import MIN_SECRET_BYTES, Settings, tenant_database_url
from tenant_service.errors import DatabaseBusyError, ServiceUnavailableError
from tenant_service.principals import PrincipalCache
from tenant_service.store.db import alembic_config, create_engine, migrate
from tenant_service.store.sources import KnownSources
from tenant_service.store.users import SeenTracker
from tenant_service.writes import WriteQueue

logger = logging.getLogger(__name__)

# A pool tenant's engine keeps at most this many idle connections, and opens at
# most half the process's budget at once (so one busy tenant leaves room).
KEPT_CONNECTIONS: Final = 2
# Migrations of tenants' databases running at once (first requests after an
# upgrade, or new tenants): alembic runs one at a time per process anyway
# (store.db._upgrade), so the others wait here, holding no connection.
PARALLEL_MIGRATIONS: Final = 1
# An assertion for an unknown tenant re-reads the tenants file at most this often.
UNKNOWN_TENANT_RELOAD_S: Final = 1.0
# A connection waiting for room looks for an idle engine to close this often.
ROOM_POLL_S: Final = 0.05


class ConnectionBudget:
    """At most `limit` open database connections across the engines that share it.

    Each engine counts a connection from just before it connects until it is
    closed (pool events). A connection that finds no room asks `make_room` to
    close an idle engine, and otherwise waits for one to close, first come first
    served, for at most `wait` seconds (then DatabaseBusyError: 503).
    """

    def __init__(
        self,
        limit: int,
        wait: float,
        make_room: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.limit = limit
        self.wait = wait
        self.make_room = make_room
        self.held = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Count one more connection, once there is room (or 503)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            if self.held < self.limit and not self._waiting:
                self.held += 1
                return
            if self.make_room is not None and await self.make_room():
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning("no database connection free (%d held)", self.held)
                raise DatabaseBusyError()
            future: asyncio.Future[None] = loop.create_future()
            self._waiting.append(future)
            try:
                await asyncio.wait_for(
                    asyncio.shield(future), min(remaining, ROOM_POLL_S)
                )
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                self._leave(future)
                raise
            if self._leave(future):
                return  # a closing connection handed its place over

    def _leave(self, future: asyncio.Future[None]) -> bool:
        """Stop waiting; whether the place had been handed over already."""
        if future.done():
            return not future.cancelled()
        future.cancel()
        with contextlib.suppress(ValueError):
            self._waiting.remove(future)
        return False

    def release(self) -> None:
        """A counted connection closed: hand its place to the first waiter."""
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.held = max(0, self.held - 1)

    def watch(self, engine: AsyncEngine) -> None:
        """Count `engine`'s connections against this budget."""
        target = engine.sync_engine

        def connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            # Runs in the engine's greenlet, on the event loop: await_ may wait.
            await_(self.acquire())
            try:
                return dialect.connect(*cargs, **cparams)
            except BaseException:
                self.release()
                raise

        def closed(*_args: Any) -> None:
            self.release()

        event.listen(target, "do_connect", connect)
        event.listen(target, "close", closed)
        event.listen(target, "close_detached", closed)


class TenantState:
    """One tenant served by this process: its settings, engine and caches."""

    def __init__(self, settings: Settings, *, migrated: bool = False) -> None:
        self.settings = settings
        # A pool's tenant takes turns for its requests (Directory.using).
        self.turns = (
            asyncio.Semaphore(settings.requests_per_tenant) if settings.pooled else None
        )
        self.principals = PrincipalCache()
        self.sources = KnownSources()
        self.write_queue = WriteQueue()
        self.seen = SeenTracker()
        self.migrated = migrated
        self.in_flight = 0
        self.last_used = time.monotonic()
        self._engine: AsyncEngine | None = None
        self._opening = asyncio.Lock()

    @property
    def name(self) -> str:
        """The tenant's name (its subdomain; the audience of its identities)."""
        return self.settings.name

    @property
    def is_open(self) -> bool:
        """Whether its engine is open."""
        return self._engine is not None

    @property
    def engine(self) -> AsyncEngine:
        """The open engine (only while the tenant is in use: Directory.using)."""
        if self._engine is None:
            raise RuntimeError(f"tenant {self.name}: engine not open")
        return self._engine

    def forget(self) -> None:
        """Drop the caches (the engine has closed)."""
        self.principals = PrincipalCache()
        self.sources = KnownSources()
        self.seen = SeenTracker()


@dataclass(frozen=True, slots=True)
class PoolTenants:
    """The tenants of the file at a pool's address: served, and named but not
    served (no usable secret or database yet)."""

    served: dict[str, Settings]
    skipped: frozenset[str] = frozenset()


def _pool_tenants(settings: Settings) -> PoolTenants:
    """The tenants of the tenants file at this pool's address (runs in a thread)."""
    if settings.tenants_file is None:
        return PoolTenants({})
    config = load_tenants(
        settings.tenants_file, secrets_dir=settings.secrets_dir, check_secrets=False
    )
    address = settings.address.lower()
    found: dict[str, Settings] = {}
    skipped: set[str] = set()
    for tenant in config.tenants:
        if address not in (backend.lower() for backend in tenant.backends):
            continue
        name = tenant.subdomain
        skipped.add(name)
        if tenant.secret is None:
            logger.warning(
                "tenant %s not served: no secret at %s", name, tenant.secret_ref
            )
            continue
        if len(tenant.secret.get().encode()) < MIN_SECRET_BYTES:
            logger.warning("tenant %s not served: its secret is under 32 bytes", name)
            continue
        try:
            url = (
                resolve_database(tenant.database)
                if tenant.database
                else tenant_database_url(settings.database_url, name)
            )
        except ValueError as err:
            logger.warning("tenant %s not served: %s", name, err)
            continue
        found[name] = replace(
            settings,
            name=name,
            database_url=url,
            secret=tenant.secret,
            flexmeasures_version=tenant.flexmeasures_version,
            pending_schedule_accepted=(
                tenant.pending_schedule_accepted or settings.pending_schedule_accepted
            ),
        )
        skipped.discard(name)
    return PoolTenants(found, frozenset(skipped))


def _file_stamp(settings: Settings) -> tuple[int, int, int] | None:
    """What changes when the tenants file does (None: unreadable)."""
    if settings.tenants_file is None:
        return None
    try:
        stat = os.stat(settings.tenants_file)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class Directory:
    """Tenant name -> its state, for the tenants this process serves."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.budget: ConnectionBudget | None = None
        self._tenants: dict[str, TenantState] = {}
        # Tenants whose engine is open: served ones, and replaced or removed ones
        # (closed once their last request has ended).
        self._engines_open: set[TenantState] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._migrations = asyncio.Semaphore(PARALLEL_MIGRATIONS)
        self._head: str | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._last_unknown = -math.inf
        # Named at this address but not served at the last reading (e.g. its secret
        # file was written after the tenants file): an assertion for one of them
        # re-reads the file even if it has not changed.
        self._skipped: frozenset[str] = frozenset()
        if settings.pooled:
            self.budget = ConnectionBudget(
                settings.db_connections,
                settings.db_connection_wait,
                self._close_least_recent,
            )
        else:
            self._tenants[settings.name] = TenantState(settings, migrated=True)

    # Looking tenants up

    def get(self, name: str) -> TenantState | None:
        """The tenant of this name, if this process serves it."""
        return self._tenants.get(name)

    def only(self) -> TenantState:
        """A dedicated backend's one tenant."""
        return self._tenants[self.settings.name]

    def __len__(self) -> int:
        return len(self._tenants)

    @property
    def waiting(self) -> bool:
        """Whether the file names tenants here that could not be served yet."""
        return bool(self._skipped)

    def names(self) -> list[str]:
        """The names of the tenants served, sorted (a pool's worker takes their
        queues)."""
        return sorted(self._tenants)

    @property
    def open_engines(self) -> int:
        """How many tenants' engines are open."""
        return len(self._engines_open)

    async def lookup(self, name: str) -> TenantState | None:
        """The tenant of this name; an unknown one re-reads the file (rate-limited)."""
        state = self._tenants.get(name)
        if state is not None or not self.settings.pooled or not valid_tenant_name(name):
            return state
        now = time.monotonic()
        if now - self._last_unknown >= UNKNOWN_TENANT_RELOAD_S:
            self._last_unknown = now
            await self.refresh(reread=name in self._skipped)
        return self._tenants.get(name)

    # The tenants file

    async def refresh(self, *, force: bool = False, reread: bool = False) -> None:
        """Re-read the tenants file if it changed, or anyway with `reread` (one
        reading at a time); `force` also raises a rejected file's ConfigError."""
        if self._refresh is None:
            self._refresh = asyncio.create_task(self._reload(force, reread))
            self._refresh.add_done_callback(self._refreshed)
        await asyncio.shield(self._refresh)

    def _refreshed(self, _task: asyncio.Task[None]) -> None:
        self._refresh = None

    async def _reload(self, force: bool, reread: bool = False) -> None:
        stamp = await asyncio.to_thread(_file_stamp, self.settings)
        if stamp == self._stamp and not (force or reread):
            return
        try:
            found = await in_background(_pool_tenants, self.settings)
        except ConfigError as err:
            if force:
                raise
            logger.warning("tenants file rejected, the last good one stays: %s", err)
            self._stamp = stamp
            return
        self._stamp = stamp
        self._skipped = found.skipped
        self._apply(found.served)

    def _apply(self, found: dict[str, Settings]) -> None:
        added = changed = 0
        for name, settings in found.items():
            old = self._tenants.get(name)
            if old is not None and old.settings == settings:
                continue
            if old is None:
                added += 1
            else:
                changed += 1
            self._tenants[name] = TenantState(settings)
        gone = [name for name in self._tenants if name not in found]
        for name in gone:
            del self._tenants[name]
        if added or changed or gone:
            logger.info(
                "tenants: %d served (%d added, %d changed, %d removed)",
                len(self._tenants),
                added,
                changed,
                len(gone),
            )

    # Engines

    @contextlib.asynccontextmanager
    async def using(self, state: TenantState) -> AsyncIterator[TenantState]:
        """Use a tenant for one request: its engine open, never closed meanwhile.

        In a pool a tenant has at most TENANT_REQUESTS_PER_TENANT requests running
        at once; the others wait their turn (holding nothing), so one tenant's
        burst leaves the process's event loop to the other tenants' requests.
        """
        state.in_flight += 1
        state.last_used = time.monotonic()
        try:
            async with state.turns or contextlib.nullcontext():
                if state._engine is None:
                    async with state._opening:
                        if state._engine is None:
                            await self._open(state)
                yield state
        finally:
            state.in_flight -= 1
            state.last_used = time.monotonic()

    async def _open(self, state: TenantState) -> None:
        if self.budget is None:
            engine = create_engine(state.settings.database_url)
        else:
            most = max(1, self.budget.limit // 2)
            kept = min(KEPT_CONNECTIONS, most)
            engine = create_engine(
                state.settings.database_url,
                pool_size=kept,
                max_overflow=most - kept,
                pool_timeout=self.settings.db_connection_wait,
            )
            self.budget.watch(engine)
        try:
            if not state.migrated:
                async with self._migrations:
                    if not await self._at_head(engine):
                        await self._migrate(state)
                state.migrated = True
        except (DBAPIError, OSError) as err:
            await engine.dispose()
            logger.warning("tenant %s: database unavailable: %s", state.name, err)
            raise ServiceUnavailableError(headers={"Retry-After": "1"}) from err
        except BaseException:
            await engine.dispose()
            raise
        state._engine = engine
        self._engines_open.add(state)
        logger.info("tenant %s: engine open", state.name)

    async def _migrate(self, state: TenantState) -> None:
        """Upgrade the tenant's schema in a thread of its own (alembic's work
        would hold up every tenant's requests on the event loop), counting its
        connection against the budget."""
        logger.info("tenant %s: migrating its database", state.name)
        if self.budget is not None:
            await self.budget.acquire()
        try:
            await asyncio.to_thread(asyncio.run, migrate(state.settings.database_url))
        finally:
            if self.budget is not None:
                self.budget.release()

    async def _at_head(self, engine: AsyncEngine) -> bool:
        """Whether the database's schema is the newest (no migration needed)."""
        if self._head is None:
            self._head = await asyncio.to_thread(_head_revision)
        try:
            async with engine.connect() as conn:
                found = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
        except DBAPIError:
            return False  # no alembic_version table yet: a new database
        return found == self._head

    async def _close(self, state: TenantState) -> None:
        """Close the tenant's engine: the next request opens a new one.

        The disposal runs as a task of its own (awaited by close_all at the
        end), so a cancelled caller cannot leave the connections open.
        """
        engine = state._engine
        if engine is None:
            return
        state._engine = None
        self._engines_open.discard(state)
        closing = asyncio.create_task(self._dispose(state, engine))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.shield(closing)

    async def _dispose(self, state: TenantState, engine: AsyncEngine) -> None:
        seen = state.seen
        state.forget()  # a new engine starts with empty caches
        await seen.drain()  # last-seen writes still on this engine
        await engine.dispose()
        logger.info("tenant %s: engine closed", state.name)

    async def _close_least_recent(self) -> bool:
        """Close the least recently used idle engine (to make room); any closed?"""
        idle = [state for state in self._engines_open if state.in_flight == 0]
        if not idle:
            return False
        await self._close(min(idle, key=lambda state: state.last_used))
        return True

    async def close_idle(self) -> None:
        """Close the engines idle for TENANT_IDLE_CLOSE, and retired ones at once."""
        now = time.monotonic()
        for state in list(self._engines_open):
            retired = self._tenants.get(state.name) is not state
            if state.in_flight == 0 and (
                retired or now - state.last_used >= self.settings.idle_close
            ):
                await self._close(state)

    async def close_all(self) -> None:
        """Close every engine (at shutdown)."""
        for state in list(self._engines_open):
            await self._close(state)
        # Closes begun elsewhere (an idle sweep cancelled at shutdown) end too.
        await asyncio.gather(*self._closing, return_exceptions=True)

    # The process's lifetime

    async def start(self) -> None:
        """Read the tenants file (pool; a bad file is a ConfigError), or open the
        dedicated tenant's engine and check it with SELECT 1."""
        if self.settings.pooled:
            await self.refresh(force=True)
            logger.info("pool %s: %d tenants", self.settings.address, len(self))
            return
        state = self.only()
        async with self.using(state), state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        logger.info("database ready", extra={"dialect": state.engine.dialect.name})

    async def watch(self) -> None:
        """Follow the tenants file and close idle engines, until cancelled."""
        interval = min(self.settings.reload_interval, self.settings.idle_close / 2)
        interval = max(interval, 0.05)
        next_reload = time.monotonic() + self.settings.reload_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if time.monotonic() >= next_reload:
                    next_reload = time.monotonic() + self.settings.reload_interval
                    await self.refresh()
                await self.close_idle()
            except Exception:  # keep watching; the next round may succeed
                logger.exception("tenant directory upkeep failed")


def _head_revision() -> str | None:
    """The newest migration's revision."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
