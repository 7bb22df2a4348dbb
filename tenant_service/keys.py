"""Typed keys for app and request state."""

from __future__ import annotations

from typing import Final

import redis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contract.drain import Drain
from contract.identity import Identity
from tenant_service.config import Settings
from tenant_service.identity import Principal, VerifiedIdentities
from tenant_service.passwords import PasswordChecker
from tenant_service.principals import PrincipalCache
from tenant_service.store.sources import KnownSources
from tenant_service.store.users import SeenTracker
from tenant_service.writes import WriteQueue, WriteTurn

SETTINGS: Final = web.AppKey("settings", Settings)
ENGINE: Final = web.AppKey("engine", AsyncEngine)
PASSWORDS: Final = web.AppKey("passwords", PasswordChecker)
SEEN: Final = web.AppKey("seen", SeenTracker)
PRINCIPALS: Final = web.AppKey("principals", PrincipalCache)
IDENTITIES: Final = web.AppKey("identities", VerifiedIdentities)
SOURCES: Final = web.AppKey("sources", KnownSources)
# SQLite's single writer, taken in turns (tenant_service/writes.py).
WRITE_QUEUE: Final = web.AppKey("write_queue", WriteQueue)
DRAIN: Final = web.AppKey("drain", Drain)
# The scheduling job queue's Redis (blocking client, used from worker threads only).
JOB_REDIS: Final = web.AppKey("job_redis", redis.Redis)

REQUEST_ID: Final = web.RequestKey("request_id", str)
IDENTITY: Final = web.RequestKey("identity", Identity)
PRINCIPAL: Final = web.RequestKey("principal", Principal)
# The request's database connection: one transaction per user request, rolled back
# unless the handler commits (the identity middleware opens and closes it).
CONN: Final = web.RequestKey("conn", AsyncConnection)
# The request's turn at WRITE_QUEUE: a handler takes it (api.v3_0.writing) just
# before its first write statement, after reading its body and checking access.
WRITE_TURN: Final = web.RequestKey("write_turn", WriteTurn)
