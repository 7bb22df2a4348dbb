"""Load from another process: `python -m tests.helpers.load URL TENANT SECRET USER N S`.

N clients GET URL as USER of TENANT (an identity signed with SECRET), each sending
its next request as soon as the last is answered, for S seconds; prints how many
were answered. Another process, so the load's own CPU does not slow the server
under test (a test's event loop) as an in-process client would.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

from contract.identity import HEADER, Caller, sign_identity


async def hammer(
    url: str, tenant: str, secret: str, user: int, n: int, s: float
) -> int:
    """Requests answered by N clients in S seconds."""
    caller = Caller(user_id=user, account_id=1, auth_time_ms=int(time.time() * 1000))
    token = sign_identity(
        secret=secret,
        tenant=tenant,
        caller=caller,
        host=f"{tenant}.localhost",
        scheme="http",
        request_id="load",
    )
    deadline = time.monotonic() + s
    answered = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal answered
        while time.monotonic() < deadline:
            async with session.get(url, headers={HEADER: token}) as response:
                await response.read()
                answered += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(n)))
    return answered


def main() -> None:
    """Run the load given on the command line."""
    url, tenant, secret, user, n, s = sys.argv[1:7]
    print(asyncio.run(hammer(url, tenant, secret, int(user), int(n), float(s))))


if __name__ == "__main__":
    main()
