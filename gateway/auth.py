"""API tokens in Redis: only sha256(token) is stored, with the tenant's TTL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from .errors import TokenStoreUnavailableError
from .metrics import Metrics

# Every script names each key it touches in KEYS, and each touches one key, so all
# of them run on Redis Cluster too (tests/gateway/test_redis_slots.py checks this).
# KEYS[1] a token key. ARGV: ttl, then field/value pairs: the whole record or none.
_ISSUE: Final = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
# KEYS[1] a user's token set. ARGV: ttl, token hash. The set lives as long as the
# longest-lived token in it.
REMEMBER: Final = """
redis.call('SADD', KEYS[1], ARGV[2])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 1
"""
# KEYS[1] a token key. ARGV: the revocation channel, the token hash. Deleted and
# announced at once; in a cluster PUBLISH reaches the subscribers of every node.
_REVOKE: Final = """
local deleted = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return deleted
"""
MAX_TOKEN_LENGTH: Final = 512
# How long a gateway trusts its own memory of a valid token. Revocations reach every
# gateway at once over pub/sub; this bound only matters if such a message were lost.
CACHE_SECONDS: Final = 5.0
CACHE_ENTRIES: Final = 100_000

logger = logging.getLogger(__name__)

# One Redis server (or a Sentinel-managed master) or a Redis Cluster.
RedisClient = Redis | RedisCluster
# What a Redis call may raise when the store is unusable: a cluster with no node to
# ask (or an uncovered slot) raises RedisClusterException, which is no RedisError.
REDIS_ERRORS: Final = (RedisError, RedisClusterException)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def record_of(raw: dict[Any, Any]) -> TokenRecord | None:
    """The TokenRecord of a stored hash (None if it is not a whole record)."""
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
            extra=tuple(
                sorted((k, v) for k, v in data.items() if k not in BASE_FIELDS)
            ),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


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
    kind: str  # "api" (requestAuthToken, profile page), "api-key" (named), "session"
    # Kind-specific fields (a session's email and CSRF secret, an API key's name).
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, name: str, default: str = "") -> str:
        """An extra field."""
        for key, value in self.extra:
            if key == name:
                return value
        return default


# Fields every token record has; any other field of the hash is an extra.
BASE_FIELDS: Final = frozenset(
    {"tenant", "user_id", "account_id", "roles", "issued_at", "kind"}
)


class TokenCache:
    """Recently validated tokens, trusted only while the revocation feed is live.

    Entries live at most CACHE_SECONDS and never past the token's own expiry. While
    the gateway is not subscribed to the revocation channel (Redis down, reconnecting)
    the cache is empty and unused, so no revocation can be missed.
    """

    def __init__(
        self, max_age: float = CACHE_SECONDS, max_entries: int = CACHE_ENTRIES
    ) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: dict[str, tuple[TokenRecord, float]] = {}
        self.live = False

    def get(self, digest: str) -> TokenRecord | None:
        """The cached record of a token hash, if fresh."""
        if not self.live:
            return None
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._entries[digest]
            return None
        return entry[0]

    def put(self, digest: str, record: TokenRecord, ttl_ms: int) -> None:
        """Remember a record for the shorter of max_age and the token's TTL."""
        if not self.live or ttl_ms <= 0:
            return
        if len(self._entries) >= self.max_entries:  # drop the oldest tenth
            for old in list(self._entries)[: self.max_entries // 10 or 1]:
                del self._entries[old]
        lifetime = min(self.max_age, ttl_ms / 1000)
        self._entries[digest] = (record, time.monotonic() + lifetime)

    def evict(self, digests: list[str]) -> None:
        for digest in digests:
            self._entries.pop(digest, None)

    def set_live(self, live: bool) -> None:
        """Start or stop trusting the cache; either way it starts empty."""
        self._entries.clear()
        self.live = live


class TokenStore:
    """Issue, look up and revoke tokens; a Redis fault is a 503."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        cache: TokenCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.metrics = metrics
        self.channel = f"{prefix}:revoked"
        self.cache = cache if cache is not None else TokenCache()
        self._issue = redis.register_script(_ISSUE)
        self._remember = redis.register_script(REMEMBER)
        self._revoke = redis.register_script(_REVOKE)

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
        extra: dict[str, str] | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new random token (returned once, never stored) and its record."""
        token = secrets.token_urlsafe(32)
        digest = token_hash(token)
        more = tuple(sorted((extra or {}).items()))
        if any(key in BASE_FIELDS for key, _ in more):
            raise ValueError("extra fields must not shadow the base fields")
        record = TokenRecord(
            tenant, user_id, account_id, roles, int(time.time() * 1000), kind, more
        )
        fields = {
            "tenant": tenant,
            "user_id": str(user_id),
            "account_id": str(account_id),
            "roles": ",".join(roles),
            "issued_at": str(record.issued_at_ms),
            "kind": kind,
            **dict(more),
        }
        args: list[str | int] = [ttl]
        for name, value in fields.items():
            args += [name, value]
        token_key = self._token_key(digest)
        # The record first, then its place in the user's set: a revoke-all reads the
        # set, so a token handed out is always in it. (In the other order a revoke-all
        # between the two could miss it.) The keys may be on two cluster nodes.
        try:
            await self._issue(keys=[token_key], args=args)
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        try:
            await self._remember(
                keys=[self._user_key(tenant, user_id)], args=[ttl, digest]
            )
        except REDIS_ERRORS as err:
            with contextlib.suppress(*REDIS_ERRORS):  # unknown to anyone if it stays
                await self.redis.delete(token_key)
            raise TokenStoreUnavailableError() from err
        if self.metrics is not None:
            self.metrics.token_issued(tenant, kind)
        return token, record

    async def lookup(self, token: str) -> TokenRecord | None:
        """The live record of a token, or None (unknown, expired or revoked)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = token_hash(token)
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        key = self._token_key(digest)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(key)
                pipe.pttl(key)
                raw, ttl_ms = await pipe.execute()
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        if not raw:
            return None
        record = record_of(raw)
        if record is None:
            return None
        self.cache.put(digest, record, int(ttl_ms))
        return record

    async def revoke(self, token: str) -> bool:
        """Forget one token at every gateway; True if it existed."""
        return await self.revoke_digest(token_hash(token))

    async def revoke_digest(self, digest: str) -> bool:
        """Forget the token stored under `digest` at every gateway."""
        try:
            deleted = await self._revoke(
                keys=[self._token_key(digest)], args=[self.channel, digest]
            )
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        self.cache.evict([digest])
        return bool(deleted)

    async def touch(self, token: str, ttl: int) -> None:
        """Set a token's remaining life to `ttl` seconds (a session's idle expiry)."""
        try:
            await self.redis.expire(self._token_key(token_hash(token)), max(1, ttl))
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err

    async def user_tokens(
        self, tenant: str, user_id: int
    ) -> list[tuple[str, TokenRecord, int]]:
        """(digest, record, ms to live) of each live token of a user, oldest first."""
        try:
            members = await self.redis.smembers(self._user_key(tenant, user_id))
            digests = sorted(_text(m) for m in members)
            async with self.redis.pipeline(transaction=False) as pipe:
                for digest in digests:
                    pipe.hgetall(self._token_key(digest))
                    pipe.pttl(self._token_key(digest))
                replies = await pipe.execute() if digests else []
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        found: list[tuple[str, TokenRecord, int]] = []
        for index, digest in enumerate(digests):
            record = record_of(replies[2 * index] or {})
            if record is None or record.tenant != tenant or record.user_id != user_id:
                continue  # expired (the set keeps its hash until the user's last)
            found.append((digest, record, int(replies[2 * index + 1])))
        found.sort(key=lambda item: item[1].issued_at_ms)
        return found

    async def revoke_user(self, tenant: str, user_id: int) -> int:
        """Forget every token of a user of a tenant at every gateway; how many.

        The token keys may live on any node of a cluster, so this is no one script:
        it reads the user's set, deletes each token key and takes those hashes out
        of the set (one pipeline, split per node), and only then announces them, so
        no gateway can cache one again from Redis after hearing of it. A token
        issued meanwhile stays, as if issued just after this; the set keeps it.
        """
        user_key = self._user_key(tenant, user_id)
        try:
            digests = sorted(_text(m) for m in await self.redis.smembers(user_key))
            if not digests:
                return 0
            async with self.redis.pipeline(transaction=False) as pipe:
                for digest in digests:
                    pipe.delete(self._token_key(digest))
                pipe.srem(user_key, *digests)
                await pipe.execute()
            await self.redis.publish(self.channel, " ".join(digests))
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        self.cache.evict(digests)
        return len(digests)

    async def follow_revocations(self) -> None:
        """Keep the cache in step with revocations made by any gateway (runs forever).

        The cache is trusted only between a confirmed subscription and the first
        sign of trouble; then it is emptied and bypassed until subscribed again.
        """
        while True:
            pubsub = self.redis.pubsub()
            try:
                if isinstance(self.redis, RedisCluster):
                    # A cluster's pubsub picks the node of the channel's slot from
                    # the slot map, which the first command (or this) fetches.
                    await self.redis.initialize()
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "subscribe":
                        self.cache.set_live(True)
                    elif kind == "message":
                        self.cache.evict(_text(message["data"]).split())
            except (*REDIS_ERRORS, OSError) as err:
                if self.cache.live:
                    logger.warning("revocation feed lost: %s", err)
            finally:
                self.cache.set_live(False)
                with contextlib.suppress(*REDIS_ERRORS, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(0.5)
