"""The gateway's cache of signed identities (contract/identity.py signs them)."""

from __future__ import annotations

import time
import uuid
from typing import Final

from contract.identity import Caller, sign_identity

REUSE_S: Final = 30


class IdentityCache:
    """One signed assertion per caller, reused for REUSE_S of its LIFETIME_S.

    Signing costs more than the rest of the gateway's own work on a proxied
    request, and the backend can skip verifying an assertion it has seen; the
    request id travels in X-Request-Id, so `jti` names the assertion, not the
    request. A reused assertion proves no more than a fresh one would: the token
    behind it was checked on this very request.
    """

    def __init__(self, reuse_s: float = REUSE_S, max_entries: int = 50_000) -> None:
        self.reuse_s = reuse_s
        self.max_entries = max_entries
        self._entries: dict[tuple[object, ...], tuple[str, float]] = {}

    def get(
        self, *, secret: str, tenant: str, caller: Caller, host: str, scheme: str
    ) -> str:
        """A valid assertion for this caller, signed anew when the last one aged."""
        key = (secret, tenant, caller, host, scheme)
        now = time.time()
        entry = self._entries.get(key)
        if entry is not None and now - entry[1] < self.reuse_s:
            return entry[0]
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        token = sign_identity(
            secret=secret,
            tenant=tenant,
            caller=caller,
            host=host,
            scheme=scheme,
            request_id=uuid.uuid4().hex,
            now=now,
        )
        self._entries[key] = (token, now)
        return token
