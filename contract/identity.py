"""The signed identity the gateway forwards to a tenant backend (docs/internals.md).

The gateway signs it with the tenant's secret; the backend verifies it. Both
import these names, so the header, issuer, claims and lifetime cannot drift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import jwt

HEADER: Final = "X-FlexHost-Identity"
# A backend answer carrying this names a user whose tokens the gateway revokes.
REVOKE_HEADER: Final = "X-FlexHost-Revoke-User"
ISSUER: Final = "flexhost-gateway"
SERVICE_SUBJECT: Final = "service:gateway"
LIFETIME_S: Final = 60  # the longest an assertion may live (exp - iat)
LEEWAY_S: Final = 5  # clock skew the backend allows between the two hosts
ALGORITHM: Final = "HS256"


class IdentityError(Exception):
    """The identity is missing, malformed, expired or not for this tenant."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as known from a token record (None fields for the service)."""

    user_id: int | None = None
    account_id: int | None = None
    roles: tuple[str, ...] = ()
    auth_time_ms: int | None = None


SERVICE: Final = Caller()


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified identity: the service, or a user and their token's issue time."""

    user_id: int | None
    account_id: int | None
    auth_time_ms: int | None
    host: str
    scheme: str
    request_id: str
    expires_at: int = 0  # the assertion's `exp`, seconds since the epoch

    @property
    def is_service(self) -> bool:
        """Whether the gateway itself is calling (public or internal endpoints)."""
        return self.user_id is None


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
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def claimed_tenant(token: str) -> str:
    """The audience an assertion names, NOT verified ("" if it names none).

    Only for choosing whose secret verifies it: a backend serving several tenants
    verifies the assertion with that tenant's secret and audience next, so the
    tenant a request reaches is always its verified audience.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    aud = claims.get("aud")
    return aud if isinstance(aud, str) else ""


def verify_identity(token: str, *, secret: str, tenant: str) -> Identity:
    """Check signature, issuer, audience and lifetime; return the identity."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=tenant,
            issuer=ISSUER,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as err:
        raise IdentityError(f"invalid identity: {type(err).__name__}") from err
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise IdentityError("exp and iat must be integers")
    if exp - iat > LIFETIME_S:
        raise IdentityError("identity lives too long")
    host, scheme = claims.get("host"), claims.get("scheme")
    if not isinstance(host, str) or scheme not in ("http", "https"):
        raise IdentityError("host and scheme are required")
    jti = claims.get("jti")
    request_id = jti if isinstance(jti, str) else ""
    sub = claims["sub"]
    if sub == SERVICE_SUBJECT:
        return Identity(None, None, None, host, str(scheme), request_id, exp)
    if not isinstance(sub, str) or not sub.isascii() or not sub.isdigit():
        raise IdentityError("subject is neither the service nor a user id")
    auth_time, account = claims.get("auth_time"), claims.get("acc")
    if not isinstance(auth_time, int) or isinstance(auth_time, bool):
        raise IdentityError("a user identity needs an integer auth_time")
    account_id = account if isinstance(account, int) else None
    return Identity(int(sub), account_id, auth_time, host, str(scheme), request_id, exp)
