"""A login: the backend's verdict on a password, throttled (gateway/throttle.py).

One mechanism for every way in (`POST /api/requestAuthToken`, the login page).
"""

from __future__ import annotations

import math
from typing import Final

from aiohttp import web

from contract.tenants_file import TenantConfig

from . import keys
from .credentials import Login, ask_backend
from .errors import (
    LoginBusyError,
    LoginRateLimitedError,
    TokenStoreUnavailableError,
    TooManyRequestsError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from .throttle import LoginThrottle

# How long a check in flight counts beyond the tenant's upstream timeout (so the
# slot of a gateway that died mid-check frees itself).
IN_FLIGHT_MARGIN: Final = 5


async def verify_login(
    request: web.Request, tenant: TenantConfig, email: str, password: str
) -> Login:
    """The backend's verdict, throttled: 429 past the limits, before the backend.

    TooManyRequestsError: too many failures; LoginRateLimitedError: too many checks
    of the email in flight, or the user's tokens used up; LoginBusyError (503): the
    backend has no room for a check now. A 5xx-ish backend answer is
    UpstreamUnavailableError; Redis down is 503. Every refusal is counted by its
    reason (flexhost_gateway_login_failures_total).
    """
    metrics = request.app[keys.METRICS]
    try:
        login = await _verify_login(request, tenant, email, password)
    except TooManyRequestsError:
        metrics.login_failed(tenant.subdomain, "throttled")
        raise
    except LoginRateLimitedError as err:
        metrics.login_failed(tenant.subdomain, err.reason)
        raise
    except LoginBusyError:
        metrics.login_failed(tenant.subdomain, "backend_busy")
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
    throttle = LoginThrottle.of(
        request.app[keys.REDIS], request.app[keys.SETTINGS], request.app[keys.SETTLING]
    )
    address = request.get(keys.CLIENT_IP) or ""
    life = math.ceil(tenant.upstream_timeout) + IN_FLIGHT_MARGIN
    slots = await throttle.enter(tenant.subdomain, email, address, life=life)
    try:
        login = await ask_backend(request, tenant, email, password)
    except BaseException:
        # No verdict (busy, down, cancelled): as if the login had not been tried.
        # Shielded: a cancelled request still gives its slots back.
        await throttle.settle(throttle.no_verdict(slots))
        raise
    if login.ok:
        await throttle.succeeded(slots)
    else:
        await throttle.failed(slots)
    return login
