"""Request rates per token and per tenant, counted in Redis for every gateway.

Each limit is a leaky bucket (GCRA): a request adds `period` to the bucket's debt,
which drains by `limit` per millisecond; a request passes while the debt stays
within `period x limit`. So `limit` requests may come at once, and then one per
`period / limit`; never more than the limit within one period of a quiet start.
One Lua script checks the token's and the tenant's bucket and charges both only if
both allow the request: one round trip, exact under any concurrency, on Redis'
clock. For limits of 100 and more per period a process takes a small lease of
permits at once (limit / 50, at most 64, used within a second or dropped), so most
requests need no Redis call: no bucket is ever charged beyond its limit; at most a
lease per process can go unused (a request refused a little early). Both keys
carry the hash tag `{<tenant>}`, so on Redis Cluster they are in one slot, as a
script's keys must be. Whole numbers throughout, so doubles in Lua
count exactly (config.py caps `period x limit` in ms at 2**53).

When Redis cannot run the script, GATEWAY_RATE_LIMIT_FAILURE decides: "open" counts
the same limits in this process instead, "closed" answers 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Final, Literal

from contract.rates import Rate
from contract.tenants_file import TenantConfig

from .auth import REDIS_ERRORS, RedisClient, token_hash
from .errors import RateLimitedError, RateLimitUnavailableError
from .metrics import Metrics

logger = logging.getLogger(__name__)

Scope = Literal["token", "tenant"]
# KEYS: the buckets. ARGV: limit and period (ms) of each, in KEYS' order, then
# the permits wanted (a lease, >= 1). A bucket is "<debt>:<ms of the last charge>";
# it expires when fully drained. Grants as many permits as every bucket allows, up
# to the number wanted (0: refused). Returns the permits granted, the index of the
# bucket that refused (0: none), ms until it would allow one, Redis' clock (ms),
# then remaining and ms until full of each.
_CHECK: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local debts = {}
local granted, refused, retry = tonumber(ARGV[#ARGV]), 0, 0
for i = 1, #KEYS do
  local limit, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local debt = 0
  local state = redis.call('GET', KEYS[i])
  if state then
    local sep = string.find(state, ':', 1, true)
    local last = tonumber(string.sub(state, sep + 1))
    local drained = math.max(now - last, 0) * limit
    debt = math.max(tonumber(string.sub(state, 1, sep - 1)) - drained, 0)
  end
  debts[i] = debt
  local fits = math.floor((period * limit - debt) / period)
  if fits < granted then
    granted = math.max(fits, 0)
  end
  local over = debt + period - period * limit
  if over > 0 then
    local wait = math.ceil(over / limit)
    if wait > retry then
      retry, refused = wait, i
    end
  end
end
local out = {granted, refused, retry, now}
for i = 1, #KEYS do
  local limit, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local debt = debts[i]
  if granted > 0 then
    debt = debt + period * granted
    redis.call('SET', KEYS[i], string.format('%.0f:%.0f', debt, now),
      'PX', math.ceil(debt / limit) + 1)
  end
  out[#out + 1] = math.floor((period * limit - debt) / period)
  out[#out + 1] = math.ceil(debt / limit)
end
return out
"""
# Permits a process takes from Redis at once (a lease) for a limit of N: N // 50,
# between 1 and 64. A lease is used within LEASE_MS or dropped, so a process can
# leave at most a lease unused; limits up to 99 per period are counted per request.
LEASE_DIVISOR: Final = 50
LEASE_MAX: Final = 64
LEASE_MS: Final = 1000
LOCAL_BUCKETS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit of a request: its scope, Redis key and rate."""

    scope: Scope
    key: str
    rate: Rate


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one request, told by its tightest (or refusing) bucket."""

    allowed: bool
    scope: Scope
    rate: Rate
    remaining: int
    full_ms: int  # until that bucket has drained completely
    retry_ms: int  # until a request would pass (0 when this one did)
    now_ms: int  # the clock the buckets are counted on (epoch ms)

    def headers(self) -> dict[str, str]:
        """FlexMeasures' (flask-limiter's) headers for this answer."""
        wait_ms = self.full_ms if self.allowed else self.retry_ms
        return {
            "X-RateLimit-Limit": str(self.rate.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil((self.now_ms + self.full_ms) / 1000)),
            "Retry-After": str(max(1, math.ceil(wait_ms / 1000))),
        }

    def message(self) -> str:
        """FlexMeasures' 429 message."""
        return f"You hit a rate limit. The limit you hit allows {self.rate}."


def _verdict(buckets: list[Bucket], reply: list[int]) -> Verdict:
    granted, refused, retry, now = (int(v) for v in reply[:4])
    allowed = granted > 0
    if refused:
        index = refused - 1
    else:  # the bucket with the fewest requests left speaks
        index = min(range(len(buckets)), key=lambda i: int(reply[4 + 2 * i]))
    bucket = buckets[index]
    return Verdict(
        allowed=bool(allowed),
        scope=bucket.scope,
        rate=bucket.rate,
        remaining=max(0, int(reply[4 + 2 * index])),
        full_ms=int(reply[5 + 2 * index]),
        retry_ms=retry,
        now_ms=now,
    )


class LocalBuckets:
    """The same buckets in this process only: the fallback while Redis is away."""

    def __init__(self, max_entries: int = LOCAL_BUCKETS) -> None:
        self.max_entries = max_entries
        self._debts: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._debts)

    def check(self, buckets: list[Bucket]) -> Verdict:
        """Charge every bucket if all allow; the verdict as the script gives it."""
        now = int(time.monotonic() * 1000)
        debts: list[int] = []
        allowed, refused, retry = 1, 0, 0
        for i, bucket in enumerate(buckets, start=1):
            limit, period = bucket.rate.limit, bucket.rate.period * 1000
            debt, last = self._debts.get(bucket.key, (0, now))
            debt = max(debt - max(now - last, 0) * limit, 0)
            debts.append(debt)
            over = debt + period - period * limit
            if over > 0:
                allowed = 0
                wait = -(-over // limit)
                if wait > retry:
                    retry, refused = wait, i
        reply = [allowed, 0 if allowed else refused, retry, int(time.time() * 1000)]
        if allowed and len(self._debts) >= self.max_entries:
            self._forget_drained(now)
        for bucket, debt in zip(buckets, debts, strict=True):
            limit, period = bucket.rate.limit, bucket.rate.period * 1000
            if allowed:
                debt += period
                self._debts[bucket.key] = (debt, now)
            reply += [(period * limit - debt) // period, -(-debt // limit)]
        return _verdict(buckets, reply)

    def _forget_drained(self, now: int) -> None:
        # Past the cap, forget the buckets that have drained (at least 1 per ms),
        # and if that is not enough all of them: a fallback must stay bounded.
        for key, (debt, last) in list(self._debts.items()):
            if debt <= now - last:
                del self._debts[key]
        if len(self._debts) >= self.max_entries:
            self._debts.clear()


class RateLimiter:
    """Checks a request against its tenant's limits; Redis faults per the policy."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        failure: Literal["open", "closed"],
        metrics: Metrics | None = None,
        local: LocalBuckets | None = None,
    ) -> None:
        self.prefix = prefix
        self.failure = failure
        self.metrics = metrics
        self.local = local if local is not None else LocalBuckets()
        self._check = redis.register_script(_CHECK)
        self._failing = False
        # Permits leased from Redis and not used yet, per set of buckets:
        # (permits left, lease end on the monotonic clock in ms, last verdict).
        self._leases: dict[tuple[str, ...], tuple[int, float, Verdict]] = {}
        self._pending: dict[tuple[str, ...], asyncio.Future[None]] = {}

    def buckets(self, tenant: TenantConfig, token: str) -> list[Bucket]:
        """The buckets a request with `token` at `tenant` is charged to.

        The rate is part of each key, so a changed limit starts a fresh bucket. The
        tenant in braces is the keys' hash tag: one cluster slot for a request's
        buckets (a token works at one tenant only).
        """
        limits = tenant.rate_limits
        found: list[Bucket] = []
        base = f"{self.prefix}:rl:{{{tenant.subdomain}}}"
        if limits.per_token is not None:
            rate = limits.per_token
            key = f"{base}:tok:{token_hash(token)}"
            found.append(Bucket("token", f"{key}:{rate.limit}:{rate.period}", rate))
        if limits.per_tenant is not None:
            rate = limits.per_tenant
            key = f"{base}:ten"
            found.append(Bucket("tenant", f"{key}:{rate.limit}:{rate.period}", rate))
        return found

    async def charge(
        self, tenant: TenantConfig, credential: str
    ) -> dict[str, str] | None:
        """Charge one request to its credential's bucket and the tenant's bucket.

        `credential` is an API token, or a page session's id (the dashboard): each
        has a bucket of the tenant's `per_token` size; all share the `per_tenant`
        bucket. The X-RateLimit-* and Retry-After headers every answer to the
        request carries (None: the tenant has no limits); past a limit a 429
        (RateLimitedError) with them. Charge only a credential known to be valid,
        so a wrong one cannot spend the tenant's budget.
        """
        verdict = await self.check(tenant, credential)
        if verdict is None:
            return None
        headers = verdict.headers()
        if not verdict.allowed:
            if self.metrics is not None:
                self.metrics.rate_limit_hit(tenant.subdomain, verdict.scope)
            raise RateLimitedError(verdict.message(), headers=headers)
        return headers

    async def check(self, tenant: TenantConfig, token: str) -> Verdict | None:
        """Charge one request; None when the tenant has no limits.

        RateLimitUnavailableError (503) when Redis fails and the policy is "closed".
        """
        buckets = self.buckets(tenant, token)
        if not buckets:
            return None
        keys = tuple(b.key for b in buckets)
        while True:
            leased = self._from_lease(keys)
            if leased is not None:
                return leased
            pending = self._pending.get(keys)
            if pending is None:
                break
            # One lease request per set of buckets at a time: concurrent requests
            # wait for it instead of each leasing (and wasting) permits.
            await asyncio.shield(pending)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[keys] = done
        try:
            return await self._lease(buckets, keys)
        finally:
            del self._pending[keys]
            done.set_result(None)

    def _from_lease(self, keys: tuple[str, ...]) -> Verdict | None:
        lease = self._leases.get(keys)
        if lease is None:
            return None
        left, until, last = lease
        if left > 0 and time.monotonic() * 1000 < until:
            verdict = dataclasses.replace(last, remaining=max(0, last.remaining - 1))
            self._use_lease(keys, left - 1, until, verdict)
            return verdict
        del self._leases[keys]
        return None

    async def _lease(self, buckets: list[Bucket], keys: tuple[str, ...]) -> Verdict:
        now = time.monotonic() * 1000
        wanted = min(
            max(1, min(b.rate.limit for b in buckets) // LEASE_DIVISOR), LEASE_MAX
        )
        args: list[int] = []
        for bucket in buckets:
            args += [bucket.rate.limit, bucket.rate.period * 1000]
        args.append(wanted)
        try:
            reply = await self._check(keys=list(keys), args=args)
        except REDIS_ERRORS as err:
            if self.metrics is not None:
                self.metrics.rate_limit_store_errors.inc()
            if not self._failing:
                self._failing = True
                logger.error(
                    "rate-limit counters unreachable (%s); failing %s",
                    type(err).__name__,
                    self.failure,
                )
            if self.failure == "closed":
                raise RateLimitUnavailableError() from err
            return self.local.check(buckets)
        if self._failing:
            self._failing = False
            logger.info("rate-limit counters reachable again")
        values = [int(v) for v in reply]
        verdict = _verdict(buckets, values)
        if values[0] > 1:
            # The client sees the leased permits as still remaining.
            verdict = dataclasses.replace(
                verdict, remaining=verdict.remaining + values[0] - 1
            )
            self._use_lease(keys, values[0] - 1, now + LEASE_MS, verdict)
        return verdict

    def _use_lease(
        self, keys: tuple[str, ...], left: int, until: float, verdict: Verdict
    ) -> None:
        if len(self._leases) >= LOCAL_BUCKETS:
            self._leases.clear()  # bounded; a dropped lease only wastes permits
        self._leases[keys] = (left, until, verdict)
