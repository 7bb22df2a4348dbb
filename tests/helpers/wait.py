"""Wait until a condition holds, or fail the test naming what was awaited."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import pytest

# Short enough that a test waits little past the moment the condition holds.
INTERVAL = 0.05


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    seconds: float = 5,
    what: str = "condition",
    interval: float = INTERVAL,
) -> None:
    """Poll `check` (sync or async) until it is true; fail after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"{what} not reached in {seconds} s")
        await asyncio.sleep(interval)
