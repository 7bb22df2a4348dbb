"""Password hashing with argon2id, run in worker threads."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tenant_service.config import DEFAULT_PASSWORD_CHECK_WAIT, DEFAULT_PASSWORD_CHECKS
from tenant_service.errors import PasswordChecksBusyError

HASHER: Final = PasswordHasher()
# The rules of a new password (the admin CLI and the reset by mail).
MIN_PASSWORD_LENGTH: Final = 8
MAX_PASSWORD_LENGTH: Final = 1024
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of a password check; `new_hash` is set when the hash should be updated."""

    ok: bool
    new_hash: str | None = None


def password_problems(password: str) -> list[str]:
    """What is wrong with a new password (none: it is fine)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return [f"Shorter than minimum length {MIN_PASSWORD_LENGTH}."]
    if len(password) > MAX_PASSWORD_LENGTH:
        return [f"Longer than maximum length {MAX_PASSWORD_LENGTH}."]
    if not password.strip():
        return ["The password must not be only spaces."]
    return []


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
    """Verifies passwords off the event loop; unknown users cost the same time.

    At most `checks` run at once (each argon2id check takes 64 MiB and a core for a
    while); a check waits at most `wait` seconds for room, then
    PasswordChecksBusyError (503 with Retry-After), so a burst is answered fast
    instead of queueing everyone's logins behind it. A check's room is freed when
    its thread ends, even if the request waiting for it is gone.
    """

    def __init__(
        self,
        checks: int = DEFAULT_PASSWORD_CHECKS,
        wait: float = DEFAULT_PASSWORD_CHECK_WAIT,
    ) -> None:
        self.checks = checks
        self.wait = wait
        self.in_flight = 0
        self._room = asyncio.Semaphore(checks)
        self._dummy_hash: str | None = None

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in a thread once there is room (PasswordChecksBusyError)."""
        if not self._room.locked():
            await self._room.acquire()  # free: returns at once
        elif self.wait <= 0:
            raise PasswordChecksBusyError()
        else:
            try:
                async with asyncio.timeout(self.wait):
                    await self._room.acquire()
            except TimeoutError as err:
                raise PasswordChecksBusyError() from err
        self.in_flight += 1
        task = asyncio.ensure_future(asyncio.to_thread(func, *args))
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self.in_flight -= 1
        self._room.release()
        if not task.cancelled():
            task.exception()  # seen here if its request is gone

    async def dummy_hash(self) -> str:
        """A hash to verify against when there is no user, so timing tells nothing."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.run(hash_password, secrets.token_urlsafe(16))
        return self._dummy_hash

    async def verify(self, stored_hash: str | None, password: str) -> Verdict:
        """Check `password`; a missing hash still costs one verification."""
        if stored_hash is None:
            await self.run(_verify, await self.dummy_hash(), password)
            return Verdict(ok=False)
        return await self.run(_verify, stored_hash, password)
