"""The tenant backend application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from contract.drain import Drain
from tenant_service import keys
from tenant_service.api import internal, ops
from tenant_service.api.v3_0 import (
    accounts,
    annotating,
    asset_charts,
    asset_tools,
    assets,
    auditlog,
    docs,
    forecasts,
    health,
    listing,
    schedules,
    sensor_data,
    sensors,
    users,
)
from tenant_service.api.v3_0 import jobs as job_api
from tenant_service.config import Settings
from tenant_service.identity import VerifiedIdentities
from tenant_service.middlewares import identity, request_id_and_errors
from tenant_service.passwords import PasswordChecker
from tenant_service.scheduling import jobs
from tenant_service.tenancy import Directory


async def tenants_ctx(app: web.Application) -> AsyncIterator[None]:
    """The tenants: a pool reads its tenants file (and follows it, closing idle
    engines), a dedicated backend opens its engine; all engines close at the end
    (after their last-seen writes)."""
    directory = app[keys.TENANTS]
    try:
        await directory.start()
    except BaseException:
        await directory.close_all()
        raise
    upkeep = (
        asyncio.create_task(directory.watch()) if app[keys.SETTINGS].pooled else None
    )
    try:
        yield
    finally:
        if upkeep is not None:
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep
        await directory.close_all()


async def job_queue_ctx(app: web.Application) -> AsyncIterator[None]:
    """The scheduling queue's Redis client, when TENANT_REDIS_URL or _SENTINELS is set.

    Not checked at start: Redis being down only affects schedules (503 with
    Retry-After), never the rest of the API.
    """
    settings = app[keys.SETTINGS]
    if not settings.job_queue:
        yield
        return
    connection = jobs.connect(settings)
    app[keys.JOB_REDIS] = connection
    try:
        yield
    finally:
        await asyncio.to_thread(jobs.close, connection)


def create_app(settings: Settings) -> web.Application:
    """Wire middlewares, routes and resources (no I/O here)."""
    # Middleware order, outermost first: the drain's count of requests in flight,
    # request id + error mapping (so every failure, including identity refusals,
    # gets an envelope and the headers), then identity (gateway JWT -> principal).
    drain = Drain()
    app = web.Application(
        middlewares=[drain.middleware(), request_id_and_errors, identity]
    )
    app[keys.SETTINGS] = settings
    app[keys.PASSWORDS] = PasswordChecker(
        settings.password_checks, settings.password_check_wait
    )
    app[keys.IDENTITIES] = VerifiedIdentities()
    app[keys.TENANTS] = Directory(settings)
    app[keys.DRAIN] = drain
    app.cleanup_ctx.append(tenants_ctx)
    app.cleanup_ctx.append(docs.openapi_ctx)
    app.cleanup_ctx.append(job_queue_ctx)
    for module in (
        listing,
        health,
        users,
        accounts,
        ops,
        internal,
        docs,
        assets,
        asset_tools,
        asset_charts,
        annotating,
        sensors,
        sensor_data,
        schedules,
        job_api,
        forecasts,
        auditlog,
    ):
        app.router.add_routes(module.routes)
    return app
