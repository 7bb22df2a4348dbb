"""One low-priority thread per process for long background work (a tenants file's
reload), so that the event loop keeps its CPU."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Final, TypeVar

# How much lower than the event loop's the background thread's CPU priority is
# (nice). With two gateway workers reloading 10,000 tenants at once beside their
# requests, more threads wanted the 2 CPUs than there were, and the kernel now and
# then left a loop waiting a whole time slice behind the parse threads (one reload
# of ten: a request 55 ms; with it, the worst of twenty 16 ms; bench.gateway_scale).
BACKGROUND_NICENESS: Final = 10

T = TypeVar("T")


def _lower_priority() -> None:
    # Linux: a thread's own nice value, above the one it inherited (raising it
    # needs no privilege; 19 is the lowest priority).
    with suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + BACKGROUND_NICENESS))


# Work sent here runs one piece after another, in the submitted order.
_THREAD: Final = ThreadPoolExecutor(
    1, thread_name_prefix="background", initializer=_lower_priority
)


async def in_background(work: Callable[..., T], *args: object) -> T:
    """`work(*args)` in the process's background thread, at its lower priority."""
    return await asyncio.get_running_loop().run_in_executor(_THREAD, work, *args)
