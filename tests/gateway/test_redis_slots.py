"""Redis Cluster rules, checked on the wire of a plain Redis (MONITOR).

On a cluster a script may touch only the keys it names in KEYS, all in one hash
slot, and a command or transaction over several keys needs them in one slot too.
These tests run every script of the gateway and of the job queue as the code runs
them, record what the server executed (MONITOR shows each command a script runs,
right after the script), and check both rules per call.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
import redis as sync_redis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError
from rq import Queue

from contract.config import Secret as TenantSecret
from contract.rates import Rate, RateLimits
from contract.tenants_file import TenantConfig
from gateway import auth, limits, reset
from gateway import throttle as login_throttle
from gateway.auth import TokenStore
from gateway.errors import TooManyRequestsError
from gateway.limits import RateLimiter
from gateway.throttle import LoginThrottle
from tenant_service.config import Settings as TenantSettings
from tenant_service.scheduling import jobs

SCRIPTS: Final = {
    "auth._ISSUE": auth._ISSUE,
    "auth.REMEMBER": auth.REMEMBER,
    "auth._REVOKE": auth._REVOKE,
    "limits._CHECK": limits._CHECK,
    "throttle._TAKE": login_throttle._TAKE,
    "throttle._TAKE_IN_FLIGHT": login_throttle._TAKE_IN_FLIGHT,
    "throttle._GIVE_BACK": login_throttle._GIVE_BACK,
    "throttle._TAKE_FAILURE": login_throttle._TAKE_FAILURE,
    "throttle._SETTLE_FAILURE": login_throttle._SETTLE_FAILURE,
    "jobs._TAKE_SLOT": jobs._TAKE_SLOT,
    "reset._TAKE_LINK": reset._TAKE_LINK,
}
ESCAPES: Final = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b"}


def monitor_args(line: str) -> tuple[str, list[str]]:
    """The client ("lua" or an address) and the arguments of one MONITOR line."""
    _, _, rest = line.partition(" [")
    client, _, rest = rest.partition("] ")
    client = client.split(" ", 1)[1]
    args: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i] != '"':
            i += 1
            continue
        i += 1
        out: list[str] = []
        while rest[i] != '"':
            if rest[i] == "\\":
                code = rest[i + 1]
                if code == "x":
                    out.append(chr(int(rest[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                out.append(ESCAPES.get(code, code))
                i += 2
                continue
            out.append(rest[i])
            i += 1
        args.append("".join(out))
        i += 1
    return client, args


@dataclass
class Call:
    """A script call and the commands it ran, or one command, or a transaction."""

    client: str
    command: list[str]
    inner: list[list[str]] = field(default_factory=list)


class Monitor:
    """MONITOR on a raw connection: every command the server runs, in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lines: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Monitor:
        client = Redis.from_url(self.url)
        kwargs = client.connection_pool.connection_kwargs
        await client.aclose()
        reader, writer = await asyncio.open_connection(
            kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
        )
        writer.write(b"MONITOR\r\n")
        await writer.drain()
        assert await reader.readline() == b"+OK\r\n"
        self._writer = writer
        self._task = asyncio.create_task(self._read(reader))
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\r\n")[1:])

    async def until(self, marker: str) -> None:
        """Wait until the server has run `ECHO marker` (all before it is here)."""
        for _ in range(200):
            if any(marker in line for line in self.lines):
                return
            await asyncio.sleep(0.02)
        pytest.fail("MONITOR did not show the marker")

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task

    def calls(self) -> list[Call]:
        """Script calls (with what they ran), transactions and other commands."""
        found: list[Call] = []
        script: Call | None = None
        transactions: dict[str, Call] = {}
        for line in self.lines:
            client, args = monitor_args(line)
            if not args:
                continue
            name = args[0].upper()
            if client == "lua":
                if script is not None:
                    script.inner.append(args)
                continue
            script = None
            if name in ("EVAL", "EVALSHA"):
                script = Call(client, args)
                found.append(script)
            elif name == "MULTI":
                transactions[client] = Call(client, args)
            elif name in ("EXEC", "DISCARD") and client in transactions:
                found.append(transactions.pop(client))
            elif client in transactions:
                transactions[client].inner.append(args)
            else:
                found.append(Call(client, args))
        return found


async def keys_of(client: Redis, args: list[str]) -> list[str]:
    """The keys of a command, as the server sees them (COMMAND GETKEYS)."""
    try:
        found = await client.command_getkeys(*args)
    except ResponseError:  # a command without keys (TIME, PUBLISH, ...)
        return []
    return [k.decode() if isinstance(k, bytes) else str(k) for k in found]


def declared(call: Call) -> list[str]:
    count = int(call.command[2])
    return call.command[3 : 3 + count]


@pytest.fixture
def tenant_settings(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> TenantSettings:
    return TenantSettings(
        name="company",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}",
        secret=TenantSecret("s" * 32),
        redis_url=redis_url,
        redis_prefix=redis_prefix,
    )


def trigger_and_forget(settings: TenantSettings) -> None:
    """Accept one trigger (the trigger-limit script runs), then drop its job."""
    connection = jobs.connect(settings)
    try:
        accepted = jobs.accept_trigger(
            connection,
            settings,
            cache_request={"n": uuid.uuid4().hex},
            job_kwargs={},
            meta={},
            account_id=1,
            force_new=True,
        )
        job = jobs.fetch(connection, settings, accepted.job_id)
        assert job is not None
        job.delete()
        Queue(settings.queue_name, connection=connection).delete(delete_jobs=True)
    finally:
        jobs.close(connection)


async def test_every_script_names_its_keys_and_uses_one_slot(
    redis: Redis, redis_url: str, redis_prefix: str, tenant_settings: TenantSettings
) -> None:
    tenant = TenantConfig(
        "company",
        "Company",
        ("http://127.0.0.1:1",),
        rate_limits=RateLimits(per_token=Rate(5, 60), per_tenant=Rate(50, 60)),
    )
    marker = f"{redis_prefix}:end"
    async with Monitor(redis_url) as monitor:
        store = TokenStore(redis, redis_prefix)
        tokens = [
            (
                await store.issue(
                    tenant="company", user_id=7, account_id=3, roles=(), ttl=60
                )
            )[0]
            for _ in range(3)
        ]
        assert await store.lookup(tokens[0]) is not None
        await store.touch(tokens[0], 30)
        assert len(await store.user_tokens("company", 7)) == 3
        assert await store.revoke(tokens[0])
        assert await store.revoke_user("company", 7) == 3
        limiter = RateLimiter(redis, redis_prefix, "closed")
        verdict = await limiter.check(tenant, tokens[1])
        assert verdict is not None
        assert verdict.allowed
        throttle = LoginThrottle(
            redis,
            redis_prefix,
            per_email=1,
            per_address=5,
            window=60,
            checks_per_email=2,
            tokens_per_user=Rate(3, 3600),
        )
        slots = await throttle.enter("company", "a@b.cd", "10.0.0.1", life=35)
        await throttle.failed(slots)
        with pytest.raises(TooManyRequestsError) as refused:
            await throttle.enter("company", "a@b.cd", "10.0.0.1", life=35)
        assert refused.value.retry_after == 60
        slots = await throttle.enter("company", "e@f.gh", "10.0.0.1", life=35)
        await throttle.succeeded(slots)
        await throttle.give_back(await throttle.mint("company", "e@f.gh"))
        links = reset.ResetLinks(redis, redis_prefix)
        link = await links.create("company", 7, 60)
        assert await links.valid(link, "company")
        used = await links.use(link, "company")
        assert used is not None
        await links.put_back(link, used)
        await links.forget_user("company", 7)
        await asyncio.to_thread(trigger_and_forget, tenant_settings)
        await redis.echo(marker)
        await monitor.until(marker)
    shas = {hashlib.sha1(text.encode()).hexdigest(): n for n, text in SCRIPTS.items()}
    ran: set[str] = set()
    rq_slots: list[int] = []
    for call in monitor.calls():
        name = call.command[0].upper()
        if name in ("EVAL", "EVALSHA"):
            own = declared(call)
            if not any(key.startswith(f"{redis_prefix}:") for key in own):
                continue
            sha = call.command[1]
            if name == "EVAL":
                sha = hashlib.sha1(sha.encode()).hexdigest()
            ran.add(shas.get(sha, sha))
            assert len({key_slot(k.encode()) for k in own}) == 1, call
            for command in call.inner:
                touched = await keys_of(redis, command)
                assert set(touched) <= set(own), (shas.get(sha), command, own)
            continue
        touched = []
        for command in [call.command, *call.inner]:
            touched += await keys_of(redis, command)
        if any(key.startswith(f"{redis_prefix}:") for key in touched):
            assert len({key_slot(k.encode()) for k in touched}) == 1, call
        elif name == "MULTI" and any(key.startswith("rq:") for key in touched):
            rq_slots.append(len({key_slot(k.encode()) for k in touched}))
    assert ran == set(SCRIPTS), ran
    # Why the job queue needs one Redis server (README "Redis in production"): RQ's
    # own transactions span keys of several slots, which a cluster refuses.
    assert max(rq_slots) > 1


@given(
    st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    st.text(min_size=1, max_size=60),
)
def test_rate_limit_buckets_of_a_request_share_a_slot(
    subdomain: str, token: str
) -> None:
    limiter = RateLimiter(Redis(), "flexhost", "open")
    tenant = TenantConfig(
        subdomain,
        subdomain,
        ("http://127.0.0.1:1",),
        rate_limits=RateLimits(per_token=Rate(5, 60), per_tenant=Rate(50, 60)),
    )
    buckets = limiter.buckets(tenant, token)
    assert len(buckets) == 2
    assert len({key_slot(b.key.encode()) for b in buckets}) == 1
    assert all(b.key.startswith(f"flexhost:rl:{{{subdomain}}}:") for b in buckets)


def test_sync_client_is_a_plain_redis(tenant_settings: TenantSettings) -> None:
    """RQ takes a plain redis.Redis (never a cluster client)."""
    connection = jobs.connect(tenant_settings)
    try:
        assert type(connection) is sync_redis.Redis
    finally:
        jobs.close(connection)
