"""The login throttle: slots of logins per account, per address and tokens per user.

One mechanism for every way in (`POST /api/requestAuthToken`, the login page).
Before the backend is asked (gateway/login.py), each login takes a slot of four
counters in Redis, each in one atomic script (check and count in one step, exact
across gateway processes and gateways; the counters may live on different Redis
Cluster nodes, so each script touches one key):

- checks in flight per email (GATEWAY_LOGIN_CHECKS_PER_EMAIL): a burst for one
  account beyond it is answered 429 at once and never reaches a backend;
- failed logins per email (case-insensitive) and per client address of a tenant:
  a failure keeps its slot until the window of the first one ends; past the limit
  further tries get 429 with `Retry-After`. Unknown emails count like known ones,
  so a 429 tells nothing about which accounts exist;
- tokens minted per user (by login email, GATEWAY_TOKENS_PER_USER): a success
  keeps its slot for the period.

A success forgets the email's failures; anything that is no verdict on the
password (the backend busy or down, Redis down, a cancelled request) gives every
slot back. Only hashes of the email and address are stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, Literal

from contract.rates import Rate

from .auth import REDIS_ERRORS, RedisClient
from .config import Settings
from .errors import (
    LoginRateLimitedError,
    TokenStoreUnavailableError,
    TooManyRequestsError,
)
from .words import wait_words

logger = logging.getLogger(__name__)

# KEYS[1] a counter of slots; ARGV: its limit, its life in seconds (from the first
# slot taken). Takes a slot and returns 0, or returns the seconds until the
# counter ends if it is full.
_TAKE: Final = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local ms = redis.call('PTTL', KEYS[1])
  if ms < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
    return tonumber(ARGV[2])
  end
  return math.max(1, math.ceil(ms / 1000))
end
redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] the checks in flight of an email: a sorted set of random ids scored by
# their deadlines (ms, Redis' clock), so a check whose gateway died is forgotten
# at its own deadline. ARGV: the limit, a check's life (ms), its id. 0: taken;
# 1: full.
_TAKE_IN_FLIGHT: Final = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 1
end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"""
# KEYS[1] a counter of slots: gives one back (the last one deletes the counter, so
# the next window starts afresh).
_GIVE_BACK: Final = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count <= 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
return redis.call('DECR', KEYS[1])
"""
# KEYS[1] failed logins of an email or address: a hash of `f` (failures) and `p`
# (logins in flight, each holding a slot). ARGV: the limit, the window (s, from
# the first slot). Takes a slot and returns 0; if the failures fill the limit,
# the seconds until the window ends; if logins in flight fill the rest, -1.
_TAKE_FAILURE: Final = """
local limit = tonumber(ARGV[1])
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
if f >= limit then
  local ms = redis.call('PTTL', KEYS[1])
  if ms < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
    return tonumber(ARGV[2])
  end
  return math.max(1, math.ceil(ms / 1000))
end
if f + p >= limit then
  return -1
end
redis.call('HINCRBY', KEYS[1], 'p', 1)
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] failed logins (as above): a login in flight ends. ARGV: "1" if it
# failed (its slot becomes a failure), the window (s). A hash left with nothing
# is deleted, so the next window starts afresh.
_SETTLE_FAILURE: Final = """
local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
if p > 0 then
  p = redis.call('HINCRBY', KEYS[1], 'p', -1)
end
if ARGV[1] == '1' then
  redis.call('HINCRBY', KEYS[1], 'f', 1)
  if redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
  end
elseif p <= 0 and tonumber(redis.call('HGET', KEYS[1], 'f') or '0') <= 0 then
  redis.call('DEL', KEYS[1])
end
return 0
"""
# Seconds a client waits when its account's checks in flight are all taken (a
# check takes a fraction of a second).
IN_FLIGHT_RETRY: Final = 1


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _email_digest(email: str) -> str:
    return _digest(email.strip().lower())


def retry_message(seconds: int) -> str:
    """The sentence telling a throttled user when to try again."""
    return f"Too many failed login attempts; please try again in {wait_words(seconds)}."


# What a counter counts: tokens minted ("count": a number), checks in flight of
# an email ("flight": a sorted set of deadlines), failed logins ("failures": a
# hash of failures and logins in flight).
CounterKind = Literal["count", "flight", "failures"]


@dataclass(frozen=True, slots=True)
class Counter:
    """A counter of slots in Redis: at most `limit`, living `life` seconds."""

    key: str
    limit: int
    life: int
    kind: CounterKind
    member: str = ""  # a check in flight: its id in the sorted set


@dataclass(frozen=True, slots=True)
class Full:
    """A counter without room: wait `seconds`; `at_once`: logins in flight fill it."""

    seconds: int
    at_once: bool = False


class LoginThrottle:
    """Slots of the login counters in Redis (`<prefix>:checks|mint|login:...`).

    A Redis fault while taking one is a 503 (TokenStoreUnavailableError).
    """

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        per_email: int,
        per_address: int,
        window: int,
        checks_per_email: int = 1_000_000,
        tokens_per_user: Rate | None = None,
        settling: set[asyncio.Task[None]] | None = None,
    ) -> None:
        self.redis = redis
        self.settling = settling if settling is not None else set()
        self.prefix = prefix
        self.per_email = per_email
        self.per_address = per_address
        self.window = window
        self.checks_per_email = checks_per_email
        self.tokens_per_user = tokens_per_user
        self._take = redis.register_script(_TAKE)
        self._take_in_flight = redis.register_script(_TAKE_IN_FLIGHT)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._take_failure = redis.register_script(_TAKE_FAILURE)
        self._settle_failure = redis.register_script(_SETTLE_FAILURE)

    @classmethod
    def of(
        cls,
        redis: RedisClient,
        settings: Settings,
        settling: set[asyncio.Task[None]] | None = None,
    ) -> LoginThrottle:
        """The throttle configured by the gateway's settings.

        `settling` keeps the give-backs of cancelled logins, which the app awaits
        before it closes Redis.
        """
        return cls(
            redis,
            settings.key_prefix,
            per_email=settings.login_failures_per_email,
            per_address=settings.login_failures_per_address,
            window=settings.login_failure_window,
            checks_per_email=settings.login_checks_per_email,
            tokens_per_user=settings.tokens_per_user,
            settling=settling,
        )

    async def settle(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` to its end even if the caller is cancelled (shielded, kept)."""
        task = asyncio.ensure_future(work)
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)
        await asyncio.shield(task)

    def email_key(self, tenant: str, email: str) -> str:
        """The failure counter of an email at a tenant (its hash only)."""
        return f"{self.prefix}:login:email:{tenant}:{_email_digest(email)}"

    def address_key(self, tenant: str, address: str) -> str:
        """The failure counter of a client address at a tenant (its hash only)."""
        return f"{self.prefix}:login:addr:{tenant}:{_digest(address)}"

    def reset_counters(
        self, tenant: str, email: str, address: str
    ) -> tuple[Counter, Counter]:
        """Counters of password reset requests per email and per client address.

        Every request counts (known address or not), with the limits and window
        of failed logins; separate keys, so resets never lock anyone out of a login.
        """
        return (
            Counter(
                f"{self.prefix}:reset-req:email:{tenant}:{_email_digest(email)}",
                self.per_email,
                self.window,
                "count",
            ),
            Counter(
                f"{self.prefix}:reset-req:addr:{tenant}:{_digest(address)}",
                self.per_address,
                self.window,
                "count",
            ),
        )

    def in_flight(self, tenant: str, email: str, life: int) -> Counter:
        """The counter of an email's password checks in flight (a new check)."""
        key = f"{self.prefix}:checks:{tenant}:{_email_digest(email)}"
        member = secrets.token_hex(8)
        return Counter(key, self.checks_per_email, life, "flight", member)

    def mint_counter(self, tenant: str, email: str) -> Counter | None:
        """The counter of tokens minted for a user (by login email); None: no limit."""
        if self.tokens_per_user is None:
            return None
        key = f"{self.prefix}:mint:{tenant}:{_email_digest(email)}"
        rate = self.tokens_per_user
        return Counter(key, rate.limit, rate.period, "count")

    async def take(self, counter: Counter) -> Full | None:
        """Take a slot; None if taken, else how long the counter stays full."""
        try:
            if counter.kind == "flight":
                full = await self._take_in_flight(
                    keys=[counter.key],
                    args=[counter.limit, counter.life * 1000, counter.member],
                )
                return Full(IN_FLIGHT_RETRY, at_once=True) if full else None
            script = self._take if counter.kind == "count" else self._take_failure
            wait = int(
                await script(keys=[counter.key], args=[counter.limit, counter.life])
            )
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        if wait < 0:
            return Full(IN_FLIGHT_RETRY, at_once=True)
        return Full(wait) if wait else None

    async def give_back(self, *counters: Counter | None) -> None:
        """Give one slot back to each counter (best effort: a fault is logged)."""
        for counter in counters:
            if counter is None:
                continue
            try:
                if counter.kind == "flight":
                    await self.redis.zrem(counter.key, counter.member)
                elif counter.kind == "count":
                    await self._give_back(keys=[counter.key])
                else:
                    await self._settle_failure(
                        keys=[counter.key], args=["0", counter.life]
                    )
            except REDIS_ERRORS as err:
                logger.warning("could not give a login slot back: %s", err)

    async def _keep_as_failure(self, counter: Counter) -> None:
        try:
            await self._settle_failure(keys=[counter.key], args=["1", counter.life])
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err

    async def enter(self, tenant: str, email: str, address: str, *, life: int) -> Slots:
        """Slots of every counter of a login, or the 429 of the first one full.

        `life`: seconds a check may take; its slot of the checks in flight ends
        then even if nobody gives it back.
        """
        slots = Slots(
            in_flight=self.in_flight(tenant, email, life),
            email=Counter(
                self.email_key(tenant, email), self.per_email, self.window, "failures"
            ),
            address=Counter(
                self.address_key(tenant, address),
                self.per_address,
                self.window,
                "failures",
            ),
            mint=self.mint_counter(tenant, email),
        )
        taken: list[Counter] = []
        try:
            for counter in slots.all():
                full = await self.take(counter)
                if full is None:
                    taken.append(counter)
                    continue
                raise self._refusal(counter, slots, full)
        except BaseException:
            await self.settle(self.give_back(*taken))
            raise
        return slots

    def _refusal(self, counter: Counter, slots: Slots, full: Full) -> Exception:
        if full.at_once:
            whose = (
                "from your address" if counter is slots.address else "of this account"
            )
            logger.warning("login refused: %s in flight", counter.kind)
            return LoginRateLimitedError(
                f"Too many logins {whose} at once; please try again in "
                f"{wait_words(full.seconds)}.",
                full.seconds,
                "throttled",
            )
        if counter is slots.mint:
            logger.warning(
                "login refused: tokens per user", extra={"retry_after": full.seconds}
            )
            return self.mint_refusal(full.seconds)
        logger.warning(
            "login refused: too many failures", extra={"retry_after": full.seconds}
        )
        return TooManyRequestsError(retry_message(full.seconds), full.seconds)

    def mint_refusal(self, wait: int) -> LoginRateLimitedError:
        """The 429 of a user whose tokens for the period are used up."""
        rate = self.tokens_per_user
        allows = "" if rate is None else f" allows {rate.limit} new tokens per user"
        period = "" if rate is None else f" per {str(rate).partition(' per ')[2]}"
        return LoginRateLimitedError(
            f"You hit a rate limit. The limit you hit{allows}{period}; please try "
            f"again in {wait_words(wait)}.",
            wait,
            "token_limit",
        )

    async def mint(self, tenant: str, email: str) -> Counter | None:
        """A slot of the user's tokens for a token made without a login (profile).

        LoginRateLimitedError (429) if they are used up; give it back if the token
        could not be made.
        """
        counter = self.mint_counter(tenant, email)
        if counter is None:
            return None
        full = await self.take(counter)
        if full is not None:
            logger.warning(
                "token refused: tokens per user", extra={"retry_after": full.seconds}
            )
            raise self.mint_refusal(full.seconds)
        return counter

    async def failed(self, slots: Slots) -> None:
        """A failed login: its failure slots become failures; the others go back."""
        try:
            await self._keep_as_failure(slots.email)
            await self._keep_as_failure(slots.address)
        finally:
            await self.give_back(slots.in_flight, slots.mint)

    async def succeeded(self, slots: Slots) -> None:
        """Forget the email's failures; the token keeps its slot.

        Logins of the email still in flight lose their slots with it: only one
        who knows the password can make a few more tries count that way.
        """
        try:
            await self.redis.delete(slots.email.key)
        except REDIS_ERRORS as err:
            await self.give_back(slots.in_flight, slots.address, slots.mint)
            raise TokenStoreUnavailableError() from err
        await self.give_back(slots.in_flight, slots.address)

    async def no_verdict(self, slots: Slots) -> None:
        """Nothing was learnt about the password: every slot is given back."""
        await self.give_back(*slots.all())


@dataclass(frozen=True, slots=True)
class Slots:
    """The counters in which a login holds a slot."""

    in_flight: Counter
    email: Counter
    address: Counter
    mint: Counter | None

    def all(self) -> list[Counter]:
        """In the order they are taken: the refusal of the first one full is the
        most telling (a burst of one account, its tokens used up, its failures)."""
        mint = [] if self.mint is None else [self.mint]
        return [self.in_flight, *mint, self.email, self.address]
