"""Typed keys for app and request state."""

from __future__ import annotations

from typing import Final

import redis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.drain import Drain
from contract.identity import Identity
from tenant_service.config import Settings
from tenant_service.identity import Principal, VerifiedIdentities
from tenant_service.passwords import PasswordChecker
from tenant_service.tenancy import Directory, TenantState
from tenant_service.writes import WriteTurn

# The process's settings (a pool's: host, port, Redis, limits; each tenant's own
# are request[TENANT].settings).
SETTINGS: Final = web.AppKey("settings", Settings)
# The tenants this process serves (tenant_service/tenancy.py).
TENANTS: Final = web.AppKey("tenants", Directory)
PASSWORDS: Final = web.AppKey("passwords", PasswordChecker)
IDENTITIES: Final = web.AppKey("identities", VerifiedIdentities)
DRAIN: Final = web.AppKey("drain", Drain)
# The scheduling job queue's Redis (blocking client, used from worker threads only).
JOB_REDIS: Final = web.AppKey("job_redis", redis.Redis)

REQUEST_ID: Final = web.RequestKey("request_id", str)
# The request's tenant: the verified audience of its identity. Its settings,
# engine (open while the request runs) and caches: principals, the user's data
# sources, the seen tracker and (SQLite) the writer's queue.
TENANT: Final = web.RequestKey("tenant", TenantState)
IDENTITY: Final = web.RequestKey("identity", Identity)
PRINCIPAL: Final = web.RequestKey("principal", Principal)
# The request's database connection: one transaction per user request, rolled back
# unless the handler commits (the identity middleware opens and closes it).
CONN: Final = web.RequestKey("conn", AsyncConnection)
# The request's turn at its tenant's write queue: a handler takes it (api.v3_0.
# writing) just before its first write statement, after reading its body and
# checking access.
WRITE_TURN: Final = web.RequestKey("write_turn", WriteTurn)
