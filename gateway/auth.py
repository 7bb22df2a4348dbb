"""API tokens in Redis: only sha256(token) is stored, with the tenant's TTL."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import TokenStoreUnavailableError

# KEYS: token key, the user's token set. ARGV: ttl, hash, then field/value pairs.
_ISSUE: Final = """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return 1
"""
# KEYS[1] the user's token set; ARGV[1] the token key prefix.
_REVOKE_USER: Final = """
local hashes = redis.call('SMEMBERS', KEYS[1])
for _, h in ipairs(hashes) do
  redis.call('DEL', ARGV[1] .. h)
end
redis.call('DEL', KEYS[1])
return #hashes
"""
MAX_TOKEN_LENGTH: Final = 512


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def token_hash(token: str) -> str:
    """The hex sha256 under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What a token stands for."""

    tenant: str
    user_id: int
    account_id: int
    roles: tuple[str, ...]
    issued_at_ms: int
    kind: str


class TokenStore:
    """Issue, look up and revoke tokens; a Redis fault is a 503."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._issue = redis.register_script(_ISSUE)
        self._revoke_user = redis.register_script(_REVOKE_USER)

    def _token_key(self, digest: str) -> str:
        return f"{self.prefix}:tok:{digest}"

    def _user_key(self, tenant: str, user_id: int) -> str:
        return f"{self.prefix}:utok:{tenant}:{user_id}"

    async def issue(
        self,
        *,
        tenant: str,
        user_id: int,
        account_id: int,
        roles: tuple[str, ...],
        ttl: int,
        kind: str = "api",
    ) -> tuple[str, TokenRecord]:
        """A new random token (returned once, never stored) and its record."""
        token = secrets.token_urlsafe(32)
        digest = token_hash(token)
        record = TokenRecord(
            tenant, user_id, account_id, roles, int(time.time() * 1000), kind
        )
        fields = {
            "tenant": tenant,
            "user_id": str(user_id),
            "account_id": str(account_id),
            "roles": ",".join(roles),
            "issued_at": str(record.issued_at_ms),
            "kind": kind,
        }
        args: list[str | int] = [ttl, digest]
        for name, value in fields.items():
            args += [name, value]
        try:
            await self._issue(
                keys=[self._token_key(digest), self._user_key(tenant, user_id)],
                args=args,
            )
        except RedisError as err:
            raise TokenStoreUnavailableError() from err
        return token, record

    async def lookup(self, token: str) -> TokenRecord | None:
        """The live record of a token, or None (unknown, expired or revoked)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            raw = await self.redis.hgetall(self._token_key(token_hash(token)))
        except RedisError as err:
            raise TokenStoreUnavailableError() from err
        if not raw:
            return None
        try:
            data = {_text(k): _text(v) for k, v in raw.items()}
            roles = tuple(r for r in data.get("roles", "").split(",") if r)
            return TokenRecord(
                tenant=data["tenant"],
                user_id=int(data["user_id"]),
                account_id=int(data["account_id"]),
                roles=roles,
                issued_at_ms=int(data["issued_at"]),
                kind=data.get("kind", "api"),
            )
        except (KeyError, ValueError, UnicodeDecodeError):
            return None

    async def revoke(self, token: str) -> bool:
        """Forget one token; True if it existed."""
        try:
            return bool(await self.redis.delete(self._token_key(token_hash(token))))
        except RedisError as err:
            raise TokenStoreUnavailableError() from err

    async def revoke_user(self, tenant: str, user_id: int) -> int:
        """Forget every token of a user of a tenant; the number revoked."""
        try:
            count = await self._revoke_user(
                keys=[self._user_key(tenant, user_id)], args=[f"{self.prefix}:tok:"]
            )
        except RedisError as err:
            raise TokenStoreUnavailableError() from err
        return int(count)
