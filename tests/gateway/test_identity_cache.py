"""The gateway reuses a signed identity per caller; the backend verifies it once."""

from __future__ import annotations

import time

import pytest

from contract.identity import Caller, IdentityError
from gateway.identity import IdentityCache
from tenant_service.identity import VerifiedIdentities

SECRET = "s" * 40


def test_identity_cache_reuses_per_caller_and_renews() -> None:
    cache = IdentityCache(reuse_s=0.2)
    alice = Caller(1, 2, ("account-admin",), 1000)

    def get(caller: Caller, secret: str = SECRET) -> str:
        return cache.get(
            secret=secret,
            tenant="acme",
            caller=caller,
            host="a.localhost",
            scheme="http",
        )

    first = get(alice)
    assert get(alice) == first
    assert get(Caller(1, 2, (), 2000)) != first
    assert get(alice, "t" * 40) != first
    time.sleep(0.25)
    assert get(alice) != first


def test_verified_identities_check_once_and_refuse_others() -> None:
    token = IdentityCache().get(
        secret=SECRET,
        tenant="acme",
        caller=Caller(7, 3, (), 1000),
        host="acme.localhost",
        scheme="https",
    )
    verified = VerifiedIdentities()
    identity = verified.verify(token, secret=SECRET, tenant="acme")
    assert identity.user_id == 7
    assert identity.expires_at > time.time()
    assert verified.verify(token, secret=SECRET, tenant="acme") is identity
    with pytest.raises(IdentityError):
        verified.verify(token, secret=SECRET, tenant="other")
    with pytest.raises(IdentityError):
        VerifiedIdentities().verify(token + "x", secret=SECRET, tenant="acme")
