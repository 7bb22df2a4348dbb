"""Password hashing with argon2id, run in worker threads."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER: Final = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of a password check; `new_hash` is set when the hash should be updated."""

    ok: bool
    new_hash: str | None = None


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (blocking; use in threads or the CLI)."""
    return HASHER.hash(password)


def random_password_hash() -> str:
    """The hash of a random password nobody knows: makes the current one unusable."""
    return hash_password(secrets.token_urlsafe(32))


def _verify(stored_hash: str, password: str) -> Verdict:
    try:
        HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return Verdict(ok=False)
    if HASHER.check_needs_rehash(stored_hash):
        return Verdict(ok=True, new_hash=HASHER.hash(password))
    return Verdict(ok=True)


class PasswordChecker:
    """Verifies passwords off the event loop; unknown users cost the same time."""

    def __init__(self) -> None:
        self._dummy_hash: str | None = None

    async def dummy_hash(self) -> str:
        """A hash to verify against when there is no user, so timing tells nothing."""
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(
                hash_password, secrets.token_urlsafe(16)
            )
        return self._dummy_hash

    async def verify(self, stored_hash: str | None, password: str) -> Verdict:
        """Check `password`; a missing hash still costs one verification."""
        if stored_hash is None:
            await asyncio.to_thread(_verify, await self.dummy_hash(), password)
            return Verdict(ok=False)
        return await asyncio.to_thread(_verify, stored_hash, password)
