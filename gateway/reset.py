"""Password reset by mail: one-time links in Redis and the backend's user calls.

A link carries a random token (secrets.token_urlsafe); Redis keeps only its
sha256 as `<prefix>:reset:<hex>` -> "<tenant> <user id>" with the link's life as
TTL. Using a link takes it away in one atomic step (GETDEL in a script), so a
link works once even when two requests race. The backend is asked with the
gateway's service identity: `POST /internal/users/lookup` (who has this email),
`GET /internal/users/<id>` (whose address this is) and
`POST /internal/users/<id>/password` (set it, audited as "Password reset").
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from contract.identity import HEADER as IDENTITY_HEADER
from contract.identity import SERVICE
from contract.tenants_file import TenantConfig

from . import keys

# A user's set of link hashes is kept like their set of token hashes.
from .auth import REDIS_ERRORS, REMEMBER, RedisClient
from .errors import TokenStoreUnavailableError, UpstreamUnavailableError
from .signing import identity_for
from .upstream import attempt, client_timeout

logger = logging.getLogger(__name__)

# KEYS[1] a link's key: its value and the milliseconds it had left, deleted at
# once; nil if there is none (used, expired or never made).
_TAKE_LINK: Final = """
local ms = redis.call('PTTL', KEYS[1])
local value = redis.call('GETDEL', KEYS[1])
if not value then
  return nil
end
return {value, ms}
"""
TOKEN_MAX: Final = 128


@dataclass(frozen=True, slots=True)
class ResetLink:
    """What a used link stood for, and how long it had left (to put it back)."""

    tenant: str
    user_id: int
    left_ms: int
    kind: str = "reset"  # "reset" (asked for by the user) or "invite" (by an admin)


def link_hash(token: str) -> str:
    """The hex sha256 under which a link's token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class ResetLinks:
    """Make, check and use one-time links; a Redis fault is a 503."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._take = redis.register_script(_TAKE_LINK)
        self._remember = redis.register_script(REMEMBER)

    @classmethod
    def of(cls, app: web.Application) -> ResetLinks:
        """The links of the app's Redis, under its key prefix."""
        return cls(app[keys.REDIS], app[keys.SETTINGS].key_prefix)

    def key(self, token: str) -> str:
        """The Redis key of a link (its token's hash only)."""
        return self._link_key(link_hash(token))

    def _link_key(self, digest: str) -> str:
        return f"{self.prefix}:reset:{digest}"

    def _user_key(self, tenant: str, user_id: int) -> str:
        return f"{self.prefix}:reset-user:{tenant}:{user_id}"

    async def create(
        self, tenant: str, user_id: int, ttl: int, kind: str = "reset"
    ) -> str:
        """A new link's token (returned once, never stored).

        The user's set of link hashes lets a reset end every other link of theirs.
        """
        token = secrets.token_urlsafe(32)
        digest = link_hash(token)
        try:
            await self.redis.set(
                self._link_key(digest), f"{tenant} {user_id} {kind}", ex=ttl, nx=True
            )
            await self._remember(
                keys=[self._user_key(tenant, user_id)], args=[ttl, digest]
            )
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        return token

    async def forget_user(self, tenant: str, user_id: int) -> None:
        """End every link of a user (their password was just set); best effort."""
        user_key = self._user_key(tenant, user_id)
        try:
            digests = [_text(m) for m in await self.redis.smembers(user_key)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for digest in digests:
                    pipe.delete(self._link_key(digest))
                pipe.delete(user_key)
                await pipe.execute()
        except REDIS_ERRORS as err:
            logger.warning("could not end a user's other reset links: %s", err)

    async def peek(self, token: str, tenant: str) -> ResetLink | None:
        """The live link of this tenant (without using it); None if there is none."""
        if not token or len(token) > TOKEN_MAX:
            return None
        try:
            value = await self.redis.get(self.key(token))
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        link = None if value is None else _parse(value, 0)
        return link if link is not None and link.tenant == tenant else None

    async def valid(self, token: str, tenant: str) -> bool:
        """Whether the link is live for this tenant (without using it)."""
        return await self.peek(token, tenant) is not None

    async def use(self, token: str, tenant: str) -> ResetLink | None:
        """Take the link away; what it stood for, or None (none, or another tenant's:
        that one is put back)."""
        if not token or len(token) > TOKEN_MAX:
            return None
        try:
            found = await self._take(keys=[self.key(token)])
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        if not found:
            return None
        link = _parse(found[0], int(found[1]))
        if link is None:
            return None
        if link.tenant != tenant:
            await self.put_back(token, link)
            return None
        return link

    async def put_back(self, token: str, link: ResetLink) -> None:
        """Make a used link live again for what it had left (the reset failed)."""
        if link.left_ms <= 0:
            return
        try:
            await self.redis.set(
                self.key(token),
                f"{link.tenant} {link.user_id} {link.kind}",
                px=link.left_ms,
                nx=True,
            )
        except REDIS_ERRORS as err:
            logger.warning("could not put a reset link back: %s", err)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse(value: bytes | str, left_ms: int) -> ResetLink | None:
    tenant, _, rest = _text(value).partition(" ")
    user, _, kind = rest.partition(" ")
    try:
        return ResetLink(tenant, int(user), left_ms, kind or "reset")
    except ValueError:
        return None


async def call_backend(
    request: web.Request,
    tenant: TenantConfig,
    path: str,
    body: dict[str, Any] | None,
    *,
    method: str = "POST",
    identity: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Call the tenant's backend as `identity` (default: the service)."""
    session = request.app[keys.HTTP]
    timeout = client_timeout(
        request.app[keys.SETTINGS].connect_timeout, total=tenant.upstream_timeout
    )
    headers = {
        IDENTITY_HEADER: identity or identity_for(request, tenant, SERVICE),
        "X-Request-Id": request[keys.REQUEST_ID],
    }

    async def send(backend: str) -> tuple[int, dict[str, Any]]:
        async with session.request(
            method, f"{backend}{path}", json=body, headers=headers, timeout=timeout
        ) as response:
            try:
                found = await response.json(content_type=None)
            except (ValueError, RecursionError) as err:
                raise UpstreamUnavailableError(
                    f"The backend of tenant '{tenant.subdomain}' gave an unreadable "
                    "answer."
                ) from err
            return response.status, found if isinstance(found, dict) else {}

    async with attempt(
        request, tenant, send, method=method, counted=False, task="reset a password"
    ) as answer:
        return answer


@dataclass(frozen=True, slots=True)
class Account:
    """A user found by email."""

    user_id: int
    email: str
    active: bool


async def find_user(
    request: web.Request, tenant: TenantConfig, email: str
) -> Account | None:
    """The user with this email (None if nobody); UpstreamUnavailableError else."""
    status, body = await call_backend(
        request, tenant, "/internal/users/lookup", {"email": email}
    )
    return _account(tenant, status, body)


async def user_by_id(
    request: web.Request, tenant: TenantConfig, user_id: int
) -> Account | None:
    """The user with this id, their address as the backend has it (None if nobody)."""
    status, body = await call_backend(
        request, tenant, f"/internal/users/{user_id}", None, method="GET"
    )
    return _account(tenant, status, body)


def _account(tenant: TenantConfig, status: int, body: dict[str, Any]) -> Account | None:
    """A lookup's answer: the user, None on 404; UpstreamUnavailableError else."""
    if status == 404:
        return None
    try:
        if status != 200:
            raise ValueError(status)
        return Account(int(body["user_id"]), str(body["email"]), bool(body["active"]))
    except (KeyError, TypeError, ValueError) as err:
        raise UpstreamUnavailableError(
            f"The backend of tenant '{tenant.subdomain}' failed to look up a user."
        ) from err


async def set_password(
    request: web.Request, tenant: TenantConfig, user_id: int, password: str
) -> list[str]:
    """Set the password; [] when done, else the backend's problems with it."""
    status, body = await call_backend(
        request, tenant, f"/internal/users/{user_id}/password", {"password": password}
    )
    if status == 200:
        return []
    if status == 422:
        try:
            problems = body["message"]["json"]["password"]
            return [str(p) for p in problems] or ["This password is not allowed."]
        except (KeyError, TypeError):
            return ["This password is not allowed."]
    if status == 404:
        return ["This account no longer exists."]
    raise UpstreamUnavailableError(
        f"The backend of tenant '{tenant.subdomain}' failed to set a password."
    )
