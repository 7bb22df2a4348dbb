"""Password checks with a tenant's backend, throttled per account and per address.

One mechanism for every way in (`POST /api/requestAuthToken`, the login page):
failed logins are counted in Redis per email (case-insensitive) and per client
address of a tenant; past a limit, further tries are refused with 429 and
`Retry-After` until the window of the first failure ends, without asking the
backend. Unknown emails count like known ones, so a 429 tells nothing about which
accounts exist. Only hashes of the email and address are stored.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
from aiohttp import web

from . import keys
from .auth import REDIS_ERRORS, RedisClient
from .config import Settings, TenantConfig
from .errors import (
    TokenStoreUnavailableError,
    TooManyRequestsError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from .identity import SERVICE, Caller
from .middlewares import UPSTREAM
from .proxy import replica_order

logger = logging.getLogger(__name__)

Outcome = Literal["ok", "unknown-user", "wrong-password", "inactive"]
# KEYS[1] a failure counter; ARGV[1] the window (s), which starts at the first
# failure. One key per call: the email's and the address's counters may be on two
# nodes of a Redis Cluster.
_COUNT_FAILURE: Final = """
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


def tenant_secret(tenant: TenantConfig) -> str:
    """The secret shared with the tenant's backends."""
    if tenant.secret is None:  # the config loader refuses tenants without one
        raise UpstreamUnavailableError(f"Tenant '{tenant.subdomain}' has no secret.")
    return tenant.secret.get()


def identity_for(request: web.Request, tenant: TenantConfig, caller: Caller) -> str:
    """The signed identity of `caller` for the tenant's backends."""
    return request.app[keys.IDENTITIES].get(
        secret=tenant_secret(tenant),
        tenant=tenant.subdomain,
        caller=caller,
        host=request[keys.PUBLIC_AUTHORITY],
        scheme=request[keys.SCHEME],
    )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def retry_message(seconds: int) -> str:
    """The sentence telling a throttled user when to try again."""
    if seconds < 60:
        wait = f"{seconds} second{'s' if seconds != 1 else ''}"
    else:
        minutes = math.ceil(seconds / 60)
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"Too many failed login attempts; please try again in {wait}."


class LoginThrottle:
    """Counters of failed logins in Redis (`<prefix>:fail:...`); a fault is a 503."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        per_email: int,
        per_address: int,
        window: int,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.per_email = per_email
        self.per_address = per_address
        self.window = window
        self._count = redis.register_script(_COUNT_FAILURE)

    @classmethod
    def of(cls, redis: RedisClient, settings: Settings) -> LoginThrottle:
        """The throttle configured by the gateway's settings."""
        return cls(
            redis,
            settings.key_prefix,
            per_email=settings.login_failures_per_email,
            per_address=settings.login_failures_per_address,
            window=settings.login_failure_window,
        )

    def email_key(self, tenant: str, email: str) -> str:
        """The counter of an email at a tenant (its hash only)."""
        return f"{self.prefix}:fail:email:{tenant}:{_digest(email.strip().lower())}"

    def address_key(self, tenant: str, address: str) -> str:
        """The counter of a client address at a tenant (its hash only)."""
        return f"{self.prefix}:fail:addr:{tenant}:{_digest(address)}"

    async def retry_after(self, tenant: str, email: str, address: str) -> int | None:
        """Seconds until this email and address may try again; None if they may now."""
        limits = (
            (self.email_key(tenant, email), self.per_email),
            (self.address_key(tenant, address), self.per_address),
        )
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, _ in limits:
                    pipe.get(key)
                    pipe.ttl(key)
                replies = await pipe.execute()
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err
        waits = []
        for index, (_, limit) in enumerate(limits):
            count, ttl = replies[2 * index], int(replies[2 * index + 1])
            if count is not None and int(count) >= limit:
                waits.append(ttl if ttl > 0 else self.window)
        return max(waits) if waits else None

    async def failed(self, tenant: str, email: str, address: str) -> None:
        """Count a failed login; a window starts at the first failure."""
        try:
            for key in (
                self.email_key(tenant, email),
                self.address_key(tenant, address),
            ):
                await self._count(keys=[key], args=[self.window])
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err

    async def succeeded(self, tenant: str, email: str) -> None:
        """Forget an email's failures after it logged in."""
        try:
            await self.redis.delete(self.email_key(tenant, email))
        except REDIS_ERRORS as err:
            raise TokenStoreUnavailableError() from err


@dataclass(frozen=True, slots=True)
class Login:
    """The backend's verdict on an email and password (user facts when known)."""

    outcome: Outcome
    user_id: int = 0
    account_id: int = 0
    roles: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the password matched an active user."""
        return self.outcome == "ok"


async def check_credentials(
    request: web.Request, tenant: TenantConfig, email: str, password: str
) -> tuple[int, dict[str, Any]]:
    """Ask a replica of the tenant's backend; (status, body)."""
    session = request.app[keys.HTTP]
    timeout = aiohttp.ClientTimeout(
        total=tenant.upstream_timeout,
        connect=request.app[keys.SETTINGS].connect_timeout,
    )
    headers = {
        "X-FlexHost-Identity": identity_for(request, tenant, SERVICE),
        "X-Request-Id": request[keys.REQUEST_ID],
    }
    last_error: Exception | None = None
    for backend in replica_order(request.app, tenant):
        request[UPSTREAM] = backend
        try:
            async with session.post(
                f"{backend}/internal/credentials",
                json={"email": email, "password": password},
                headers=headers,
                timeout=timeout,
            ) as response:
                body = await response.json(content_type=None)
                return response.status, body if isinstance(body, dict) else {}
        except aiohttp.ClientConnectorError as err:
            last_error = err
            logger.warning("backend %s unreachable for a credential check", backend)
            continue
        except TimeoutError as err:
            raise UpstreamTimeoutError(
                f"The backend of tenant '{tenant.subdomain}' did not answer in time."
            ) from err
        except (aiohttp.ClientError, ValueError) as err:
            raise UpstreamUnavailableError(
                f"The backend of tenant '{tenant.subdomain}' failed to check "
                "credentials."
            ) from err
    raise UpstreamUnavailableError(
        f"The backend of tenant '{tenant.subdomain}' is unavailable."
    ) from last_error


async def verify_login(
    request: web.Request, tenant: TenantConfig, email: str, password: str
) -> Login:
    """The backend's verdict, throttled: TooManyRequestsError (429) past the limits.

    A 5xx-ish backend answer is UpstreamUnavailableError; Redis down is 503. Every
    refusal is counted by its reason (flexhost_gateway_login_failures_total).
    """
    metrics = request.app[keys.METRICS]
    try:
        login = await _verify_login(request, tenant, email, password)
    except TooManyRequestsError:
        metrics.login_failed(tenant.subdomain, "throttled")
        raise
    except TokenStoreUnavailableError:
        metrics.login_failed(tenant.subdomain, "store_unavailable")
        raise
    except (UpstreamUnavailableError, UpstreamTimeoutError):
        metrics.login_failed(tenant.subdomain, "backend_error")
        raise
    if not login.ok:
        metrics.login_failed(tenant.subdomain, login.outcome.replace("-", "_"))
    return login


async def _verify_login(
    request: web.Request, tenant: TenantConfig, email: str, password: str
) -> Login:
    throttle = LoginThrottle.of(request.app[keys.REDIS], request.app[keys.SETTINGS])
    address = request.get(keys.CLIENT_IP) or ""
    wait = await throttle.retry_after(tenant.subdomain, email, address)
    if wait is not None:
        logger.warning("login refused: too many failures", extra={"retry_after": wait})
        raise TooManyRequestsError(retry_message(wait), wait)
    status, body = await check_credentials(request, tenant, email, password)
    if status in (401, 404):
        await throttle.failed(tenant.subdomain, email, address)
        return Login("unknown-user" if status == 404 else "wrong-password")
    if status != 200:
        raise UpstreamUnavailableError(
            f"The backend of tenant '{tenant.subdomain}' failed to check credentials."
        )
    try:
        user_id = int(body["user_id"])
        account_id = int(body["account_id"])
        roles = tuple(str(role) for role in body.get("roles", []))
        active = bool(body["active"])
    except (KeyError, TypeError, ValueError) as err:
        raise UpstreamUnavailableError(
            f"The backend of tenant '{tenant.subdomain}' gave an unreadable answer."
        ) from err
    if not active:
        await throttle.failed(tenant.subdomain, email, address)
        return Login("inactive", user_id, account_id, roles)
    await throttle.succeeded(tenant.subdomain, email)
    return Login("ok", user_id, account_id, roles)
