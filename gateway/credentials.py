"""The password check with a tenant's backend (`POST /internal/credentials`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web

from contract.identity import HEADER as IDENTITY_HEADER
from contract.identity import SERVICE
from contract.tenants_file import TenantConfig

from . import keys
from .errors import LoginBusyError, UpstreamUnavailableError
from .signing import identity_for
from .upstream import ReplicaBusy, attempt, client_timeout

Outcome = Literal["ok", "unknown-user", "wrong-password", "inactive"]
BUSY_RETRY_MAX: Final = 60


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


def _retry_after(headers: Any) -> int:
    """A busy backend's Retry-After in whole seconds (1 .. BUSY_RETRY_MAX)."""
    try:
        seconds = int(headers.get("Retry-After", "1"))
    except ValueError:
        seconds = 1
    return min(max(seconds, 1), BUSY_RETRY_MAX)


async def check_credentials(
    request: web.Request, tenant: TenantConfig, email: str, password: str
) -> tuple[int, dict[str, Any]]:
    """Ask a replica of the tenant's backend; (status, body).

    A replica that answers 503 is busy (its password checks are all taken): the
    next one is asked; if all are, LoginBusyError (503) with the soonest
    Retry-After. Busy is no replica failure. The login throttle bounds these
    calls, so they hold no share of the backend connections.
    """
    session = request.app[keys.HTTP]
    timeout = client_timeout(
        request.app[keys.SETTINGS].connect_timeout, total=tenant.upstream_timeout
    )
    headers = {
        IDENTITY_HEADER: identity_for(request, tenant, SERVICE),
        "X-Request-Id": request[keys.REQUEST_ID],
    }

    async def send(backend: str) -> tuple[int, dict[str, Any]]:
        async with session.post(
            f"{backend}/internal/credentials",
            json={"email": email, "password": password},
            headers=headers,
            timeout=timeout,
        ) as response:
            if response.status == 503:
                wait = _retry_after(response.headers)
                raise ReplicaBusy(wait, LoginBusyError(wait))
            try:
                body = await response.json(content_type=None)
            except (ValueError, RecursionError) as err:
                raise UpstreamUnavailableError(
                    f"The backend of tenant '{tenant.subdomain}' failed to check "
                    "credentials."
                ) from err
            return response.status, body if isinstance(body, dict) else {}

    async with attempt(
        request, tenant, send, method="POST", counted=False, task="check credentials"
    ) as answer:
        return answer


async def ask_backend(
    request: web.Request, tenant: TenantConfig, email: str, password: str
) -> Login:
    """The backend's verdict on `email` and `password` (502 for an odd answer)."""
    status, body = await check_credentials(request, tenant, email, password)
    if status in (401, 404):
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
        return Login("inactive", user_id, account_id, roles)
    return Login("ok", user_id, account_id, roles)
