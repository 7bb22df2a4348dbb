"""Turns at the database's single writer (SQLite), served fairly across accounts.

SQLite has one writer at a time. This process queues its writes here rather than
let them fail with "database is locked", and serves the waiting accounts in turn:
the next turn goes to the waiting account that was served least recently, so an
account whose writes queue up behind each other never makes another account wait
for more than the write in progress (and one each of the other waiting accounts).

A request takes its turn only for its write transaction (after it has read its
body, checked access and built its rows) and gives it back once that transaction
has ended; the identity middleware gives it back in any case.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Final

# Remembered "last served" marks: beyond this many accounts, only the waiting
# ones are kept (the others count as never served, which is fair too).
MAX_REMEMBERED: Final = 10_000


class WriteQueue:
    """One writer at a time; waiters served round-robin by account."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: dict[int, deque[asyncio.Future[None]]] = {}
        self._served: dict[int, int] = {}
        self._clock = itertools.count(1)

    @property
    def held(self) -> bool:
        """Whether a writer has its turn now."""
        return self._held

    @property
    def waiting(self) -> int:
        """How many writers wait for their turn."""
        return sum(len(queue) for queue in self._waiting.values())

    async def acquire(self, account_id: int) -> None:
        """Wait for this account's turn (FIFO within the account)."""
        if not self._held and not self._waiting:
            self._held = True
            self._mark(account_id)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(account_id, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            else:
                self._forget(account_id, future)
            raise
        self._mark(account_id)

    def release(self) -> None:
        """End the current turn; hand it to the least recently served account."""
        while self._waiting:
            account_id = min(self._waiting, key=lambda key: self._served.get(key, 0))
            queue = self._waiting[account_id]
            future = queue.popleft()
            if not queue:
                del self._waiting[account_id]
            if not future.done():
                future.set_result(None)  # the turn passes on: still held
                return
        self._held = False

    def _mark(self, account_id: int) -> None:
        self._served[account_id] = next(self._clock)
        if len(self._served) > MAX_REMEMBERED:
            self._served = {
                key: mark for key, mark in self._served.items() if key in self._waiting
            }

    def _forget(self, account_id: int, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(account_id)
        if queue is None:
            return
        try:
            queue.remove(future)
        except ValueError:
            return
        if not queue:
            del self._waiting[account_id]


class WriteTurn:
    """One request's turn at a WriteQueue (none needed: `queue` None)."""

    def __init__(self, queue: WriteQueue | None, account_id: int) -> None:
        self.queue = queue
        self.account_id = account_id
        self.taken = False

    async def take(self) -> None:
        """Wait for the turn (once; later calls return at once)."""
        if self.queue is None or self.taken:
            return
        await self.queue.acquire(self.account_id)
        self.taken = True

    def give_back(self) -> None:
        """End the turn, if taken (after the write transaction has ended)."""
        if self.queue is not None and self.taken:
            self.taken = False
            self.queue.release()
