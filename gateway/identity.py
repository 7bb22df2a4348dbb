"""The signed identity the gateway forwards to a tenant backend (docs/internals.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import jwt

HEADER: Final = "X-FlexHost-Identity"
ISSUER: Final = "flexhost-gateway"
SERVICE_SUBJECT: Final = "service:gateway"
LIFETIME_S: Final = 60


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as known from a token record (None fields for the service)."""

    user_id: int | None = None
    account_id: int | None = None
    roles: tuple[str, ...] = ()
    auth_time_ms: int | None = None


SERVICE: Final = Caller()


def sign_identity(
    *,
    secret: str,
    tenant: str,
    caller: Caller,
    host: str,
    scheme: str,
    request_id: str,
    now: float | None = None,
) -> str:
    """A short-lived HS256 assertion of `caller` for the backend of `tenant`."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": tenant,
        "sub": SERVICE_SUBJECT if caller.user_id is None else str(caller.user_id),
        "host": host,
        "scheme": scheme,
        "iat": issued,
        "exp": issued + LIFETIME_S,
        "jti": request_id,
    }
    if caller.user_id is not None:
        claims["acc"] = caller.account_id
        claims["roles"] = list(caller.roles)
        claims["auth_time"] = caller.auth_time_ms
    return jwt.encode(claims, secret, algorithm="HS256")
