"""A loopback SMTP server for tests that closes its connections when it stops.

aiosmtpd's Controller stops its loop with client connections still open: a
client that has not sent QUIT yet (our mail thread, slowed down by a busy
machine) leaves a transport that is never closed, and its ResourceWarning
fails whichever later test the garbage collector happens to run in.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

# How long stop() lets a client finish its conversation before cutting it.
FINISH_S = 2.0


class _Tracked(SMTP):
    """An SMTP session that keeps itself in its controller's set while open."""

    def __init__(self, open_sessions: set[_Tracked], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open_sessions = open_sessions
        self.ended = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._open_sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._open_sessions.discard(self)
        self.ended.set()
        super().connection_lost(error)


class LoopbackSMTP(Controller):
    """aiosmtpd's threaded Controller; stop() ends every connection first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_sessions: set[_Tracked] = set()

    def factory(self) -> SMTP:
        return _Tracked(self.open_sessions, self.handler, **self.SMTP_kwargs)

    async def _close_sessions(self) -> None:
        if self.open_sessions:
            endings = [
                asyncio.ensure_future(s.ended.wait()) for s in self.open_sessions
            ]
            _, waiting = await asyncio.wait(endings, timeout=FINISH_S)
            for ending in waiting:
                ending.cancel()
        for session in list(self.open_sessions):
            # The session's transport, and under STARTTLS the plain one beneath.
            for transport in (session.transport, session._original_transport):
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
        # Let the aborted transports run their connection_lost callbacks.
        for _ in range(3):
            await asyncio.sleep(0)

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None:
            ending = asyncio.run_coroutine_threadsafe(self._close_sessions(), self.loop)
            ending.result(timeout=FINISH_S + 5)
        super().stop(no_assert)
