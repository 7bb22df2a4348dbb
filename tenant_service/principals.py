"""A short-lived memory of the users behind recent requests.

Every user request needs its user (active? roles? tokens revoked since?). Reading it
costs a database round trip per request; remembering it for PRINCIPAL_TTL_S saves
most of them. Writes to a user through this process evict it at once; a write
elsewhere (another replica, the admin CLI) is seen within PRINCIPAL_TTL_S. The
gateway revokes tokens in Redis at once either way, so this bound only delays the
backend's own second check.
"""

from __future__ import annotations

import time
from typing import Final

from tenant_service.store.users import UserRecord

PRINCIPAL_TTL_S: Final = 2.0
MAX_ENTRIES: Final = 10_000


class PrincipalCache:
    """user id -> (record, time read), for at most `ttl_s` seconds."""

    def __init__(self, ttl_s: float = PRINCIPAL_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[int, tuple[UserRecord, float]] = {}

    def get(self, user_id: int) -> UserRecord | None:
        """The remembered user, if read less than `ttl_s` ago."""
        entry = self._entries.get(user_id)
        if entry is None or time.monotonic() - entry[1] > self.ttl_s:
            return None
        return entry[0]

    def put(self, user: UserRecord) -> None:
        """Remember a user just read from the database."""
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[user.id] = (user, time.monotonic())

    def evict(self, user_id: int) -> None:
        """Forget a user (it was just changed)."""
        self._entries.pop(user_id, None)
