"""Settings of one tenant backend, read from `TENANT_*` environment variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from contract.config import ConfigError, Env, Secret
from contract.names import valid_tenant_name
from contract.redis import SCHEMES as REDIS_SCHEMES
from contract.redis import RedisSettings, parse_sentinels
from contract.tenants_file import DEFAULT_SECRETS_DIR, database_url_problem

PREFIX: Final = "TENANT_"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8101
DEFAULT_FLEXMEASURES_VERSION: Final = "1.0.1"
# FlexMeasures' FLEXMEASURES_MAX_SENSOR_DATA_INGESTION_BYTES default (3.1 MiB).
DEFAULT_MAX_DATA_BYTES: Final = 3_250_585
# FlexMeasures 1.0's scheduling defaults: job timeout 180 s, job cache 1 h, results
# (FLEXMEASURES_PLANNING_TTL) 7 days, triggers 10 per 5 minutes per account.
DEFAULT_JOB_TIMEOUT: Final = 180
DEFAULT_JOB_CACHE_TTL: Final = 3600
DEFAULT_PLANNING_TTL: Final = 7 * 24 * 3600
# Beliefs one sensor-data POST may store (values at the sensor's resolution):
# a year of 15-minute data is 35,040. On SQLite a write of this many rows holds
# the tenant's single writer for about 0.2 s.
DEFAULT_MAX_BELIEFS_PER_REQUEST: Final = 100_000
# A worker killed mid-job leaves it "started": its heartbeat lapses this many
# seconds past the job timeout, and the next sweep for abandoned jobs (by any
# worker of the queue, idle or not, every DEFAULT_JOB_SWEEP_INTERVAL) retries it.
DEFAULT_JOB_HEARTBEAT_GRACE: Final = 10
DEFAULT_JOB_SWEEP_INTERVAL: Final = 15
DEFAULT_TRIGGER_LIMIT: Final = 10
DEFAULT_TRIGGER_PERIOD: Final = 300
DEFAULT_SHUTDOWN_GRACE: Final = 15
# Password checks (argon2id, 64 MiB each) at once per process: one account's burst
# (at most GATEWAY_LOGIN_CHECKS_PER_EMAIL = 2) leaves room for everyone else; a
# check waits at most DEFAULT_PASSWORD_CHECK_WAIT seconds for room, then 503.
DEFAULT_PASSWORD_CHECKS: Final = 3
DEFAULT_PASSWORD_CHECK_WAIT: Final = 1.0
# The job queue's Redis: seconds per command, and per connect (or sentinel query).
REDIS_TIMEOUT: Final = 5.0
REDIS_CONNECT_TIMEOUT: Final = 2.0
# Pool backends (TENANT_TENANTS_FILE): a tenant's engine closes after this many
# seconds without requests; all engines together hold at most this many database
# connections; a request waits this long for one before it is answered 503; the
# tenants file is checked for changes this often (seconds).
DEFAULT_IDLE_CLOSE: Final = 300.0
DEFAULT_DB_CONNECTIONS: Final = 20
DEFAULT_DB_CONNECTION_WAIT: Final = 2.0
DEFAULT_RELOAD_INTERVAL: Final = 2.0
# A pool tenant's requests running at once (the rest wait): one event loop serves
# every tenant of a pool, and each request in flight takes its share of it. With 1
# a tenant at full load raised a neighbour's p50 1.6-2.6x, with 2 2.5-4.8x
# (bench.tenant_scale); a tenant that needs more runs on a dedicated backend.
DEFAULT_REQUESTS_PER_TENANT: Final = 1
TENANT_PLACEHOLDER: Final = "{tenant}"
MIN_SECRET_BYTES: Final = 32  # HS256 wants a key of at least its output size


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the tenant backend needs to run."""

    name: str
    database_url: str
    secret: Secret
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    flexmeasures_version: str = DEFAULT_FLEXMEASURES_VERSION
    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    allow_data_overwrite: bool = False
    max_beliefs_per_request: int = DEFAULT_MAX_BELIEFS_PER_REQUEST
    # Schedules: the job queue on Redis (None: triggers answer 503), or the Redis
    # master that these sentinels (host, port) watch under that name. RQ needs one
    # Redis server: no Redis Cluster.
    redis_url: str | None = None
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    # Password of the sentinels' master, or of the redis_url server (if not in it).
    redis_password: Secret | None = None
    redis_prefix: str = "flexhost"  # of this backend's Redis keys and queue name
    job_timeout: int = DEFAULT_JOB_TIMEOUT
    job_cache_ttl: int = DEFAULT_JOB_CACHE_TTL
    planning_ttl: int = DEFAULT_PLANNING_TTL
    job_heartbeat_grace: int = DEFAULT_JOB_HEARTBEAT_GRACE
    job_sweep_interval: int = DEFAULT_JOB_SWEEP_INTERVAL
    trigger_limit: int = DEFAULT_TRIGGER_LIMIT  # accepted triggers per account...
    trigger_period: int = DEFAULT_TRIGGER_PERIOD  # ...per this many seconds; 0 = off
    # Answer a pending schedule 202 {"status": "QUEUED"...} instead of FlexMeasures'
    # default 400 UNKNOWN_SCHEDULE.
    pending_schedule_accepted: bool = False
    # On SIGTERM: seconds the requests in flight get to finish before they are cut.
    shutdown_grace: int = DEFAULT_SHUTDOWN_GRACE
    # Password checks running at once, and how long one waits for room (seconds)
    # before it is answered 503 with Retry-After.
    password_checks: int = DEFAULT_PASSWORD_CHECKS
    password_check_wait: float = DEFAULT_PASSWORD_CHECK_WAIT
    # GET /api/ops/getLatestTaskRun answers only to this token (FlexMeasures'
    # FLEXMEASURES_TASK_CHECK_AUTH_TOKEN); None: to nobody (403), its default.
    task_check_auth_token: Secret | None = None
    # FlexMeasures' FLEXMEASURES_MODE, echoed as `server` by getLatestTaskRun.
    mode: str = ""
    # A pool backend: every tenant of this tenants file whose `backends` contain
    # `address` (None: the dedicated backend of `name`). Its `database_url` is a
    # template ({tenant}) unless a tenant has its own `database`.
    tenants_file: Path | None = None
    address: str = ""
    secrets_dir: Path = DEFAULT_SECRETS_DIR
    idle_close: float = DEFAULT_IDLE_CLOSE
    db_connections: int = DEFAULT_DB_CONNECTIONS
    db_connection_wait: float = DEFAULT_DB_CONNECTION_WAIT
    reload_interval: float = DEFAULT_RELOAD_INTERVAL
    requests_per_tenant: int = DEFAULT_REQUESTS_PER_TENANT

    @property
    def pooled(self) -> bool:
        """Whether this process serves the tenants of a tenants file."""
        return self.tenants_file is not None

    @property
    def job_queue(self) -> bool:
        """Whether a job queue is configured (a Redis URL or sentinels)."""
        return self.redis_url is not None or bool(self.redis_sentinels)

    @property
    def queue_name(self) -> str:
        """This tenant's scheduling queue (RQ queue name)."""
        return f"{self.redis_prefix}:{self.name}:scheduling"

    @property
    def redis(self) -> RedisSettings:
        """The job queue's Redis (RQ needs one server: no cluster)."""
        return RedisSettings(
            url=self.redis_url,
            sentinels=self.redis_sentinels,
            sentinel_master=self.redis_sentinel_master,
            password=self.redis_password,
            timeout=REDIS_TIMEOUT,
            connect_timeout=REDIS_CONNECT_TIMEOUT,
        )


def default_database_url(tenant: str) -> str:
    """The SQLite file a tenant uses when no database URL is configured."""
    return f"sqlite+aiosqlite:///./.flexhost/{tenant}.sqlite3"


def tenant_database_url(template: str, tenant: str) -> str:
    """A TENANT_DATABASE_URL with `{tenant}` replaced by the tenant's name."""
    return template.replace(TENANT_PLACEHOLDER, tenant)


def _address_problem(address: str) -> str | None:
    try:
        parsed = urlsplit(address)
        port = parsed.port
    except ValueError:
        return f"not a URL: {address!r}"
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None:
        return f"must be a backend URL as tenants.yaml writes it, got {address!r}"
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        return f"must be a base URL without path, got {address!r}"
    return None


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Settings from `TENANT_*` variables; one ConfigError names every problem."""
    env = Env(environ, PREFIX)
    problems = env.problems
    get = env.text

    raw_file = get("TENANTS_FILE")
    tenants_file = Path(raw_file) if raw_file else None
    address = (get("ADDRESS") or "").strip().rstrip("/")
    name = get("NAME") or ""
    if tenants_file is not None:
        # A pool: the tenants, their secrets and databases come from the file.
        if not address:
            problems.append(f"{PREFIX}ADDRESS: required with {PREFIX}TENANTS_FILE")
        elif (problem := _address_problem(address)) is not None:
            problems.append(f"{PREFIX}ADDRESS: {problem}")
        for key in ("NAME", "SECRET", "SECRET_FILE"):
            if get(key) is not None:
                problems.append(
                    f"{PREFIX}{key}: not with {PREFIX}TENANTS_FILE (a pool's tenants "
                    "and secrets come from the file)"
                )
    elif not name:
        problems.append(f"{PREFIX}NAME: required (or {PREFIX}TENANTS_FILE)")
    elif not valid_tenant_name(name):
        problems.append(f"{PREFIX}NAME: {name!r} is not a valid subdomain label")
    elif address:
        problems.append(f"{PREFIX}ADDRESS: only with {PREFIX}TENANTS_FILE")

    database_url = get("DATABASE_URL") or default_database_url(
        TENANT_PLACEHOLDER if tenants_file is not None else name or "tenant"
    )
    problem = database_url_problem(tenant_database_url(database_url, "x"))
    if problem is not None:
        problems.append(f"{PREFIX}DATABASE_URL: {problem}")
    elif tenants_file is None:
        database_url = tenant_database_url(database_url, name or "tenant")

    secret: Secret | None = None
    if tenants_file is None:
        before = len(problems)
        secret = env.secret("SECRET")
        if secret is None:
            if len(problems) == before:
                problems.append(f"{PREFIX}SECRET or {PREFIX}SECRET_FILE: required")
        elif len(secret.get().encode()) < MIN_SECRET_BYTES:
            problems.append(f"{PREFIX}SECRET: must be at least 32 bytes (HS256)")
    secrets_dir = Path(get("SECRETS_DIR") or DEFAULT_SECRETS_DIR)
    idle_close = env.number("IDLE_CLOSE", DEFAULT_IDLE_CLOSE, high=7 * 24 * 3600)
    db_connections = env.integer("DB_CONNECTIONS", DEFAULT_DB_CONNECTIONS)
    db_connection_wait = env.number(
        "DB_CONNECTION_WAIT", DEFAULT_DB_CONNECTION_WAIT, high=60
    )
    reload_interval = env.number("RELOAD_INTERVAL", DEFAULT_RELOAD_INTERVAL, high=3600)
    requests_per_tenant = env.integer(
        "REQUESTS_PER_TENANT", DEFAULT_REQUESTS_PER_TENANT
    )

    host = get("HOST") or DEFAULT_HOST
    default_port = DEFAULT_PORT
    if address and _address_problem(address) is None:
        default_port = urlsplit(address).port or DEFAULT_PORT
    port = env.integer("PORT", default_port)
    if port > 65535:
        problems.append(f"{PREFIX}PORT: {port} is not in 1..65535")

    version = get("FLEXMEASURES_VERSION") or DEFAULT_FLEXMEASURES_VERSION
    try:
        Version(version)
    except InvalidVersion:
        problems.append(f"{PREFIX}FLEXMEASURES_VERSION: {version!r} is not PEP 440")

    max_data_bytes = env.integer("MAX_DATA_BYTES", DEFAULT_MAX_DATA_BYTES)
    allow_data_overwrite = env.flag("ALLOW_DATA_OVERWRITE")
    max_beliefs = env.integer(
        "MAX_BELIEFS_PER_REQUEST", DEFAULT_MAX_BELIEFS_PER_REQUEST
    )
    redis_url = get("REDIS_URL")
    if redis_url is not None and not redis_url.startswith(REDIS_SCHEMES):
        problems.append(
            f"{PREFIX}REDIS_URL: must start with redis://, rediss:// or unix://"
        )
    sentinels: tuple[tuple[str, int], ...] = ()
    raw_sentinels = get("REDIS_SENTINELS")
    if raw_sentinels is not None:
        try:
            sentinels = parse_sentinels(raw_sentinels)
        except ValueError as err:
            problems.append(f"{PREFIX}REDIS_SENTINELS: {err}")
    sentinel_master = (get("REDIS_SENTINEL_MASTER") or "").strip()
    if raw_sentinels is not None and not sentinel_master:
        problems.append(
            f"{PREFIX}REDIS_SENTINEL_MASTER: required with {PREFIX}REDIS_SENTINELS"
        )
    if sentinel_master and raw_sentinels is None:
        problems.append(
            f"{PREFIX}REDIS_SENTINELS: required with {PREFIX}REDIS_SENTINEL_MASTER"
        )
    if raw_sentinels is not None and redis_url is not None:
        problems.append(f"{PREFIX}REDIS_URL, {PREFIX}REDIS_SENTINELS: set only one")
    raw_password = get("REDIS_PASSWORD")
    if raw_password is not None and redis_url and urlsplit(redis_url).password:
        problems.append(
            f"{PREFIX}REDIS_PASSWORD, {PREFIX}REDIS_URL: set only one password"
        )
    redis_prefix = get("REDIS_PREFIX") or "flexhost"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", redis_prefix):
        problems.append(f"{PREFIX}REDIS_PREFIX: letters, digits, _ . - only")
    job_timeout = env.integer("JOB_TIMEOUT", DEFAULT_JOB_TIMEOUT)
    job_cache_ttl = env.integer("JOB_CACHE_TTL", DEFAULT_JOB_CACHE_TTL)
    planning_ttl = env.integer("PLANNING_TTL", DEFAULT_PLANNING_TTL)
    heartbeat_grace = env.integer(
        "JOB_HEARTBEAT_GRACE", DEFAULT_JOB_HEARTBEAT_GRACE, minimum=1
    )
    sweep_interval = env.integer(
        "JOB_SWEEP_INTERVAL", DEFAULT_JOB_SWEEP_INTERVAL, minimum=1
    )
    trigger_limit = env.integer("TRIGGER_LIMIT", DEFAULT_TRIGGER_LIMIT)
    trigger_period = env.integer("TRIGGER_PERIOD", DEFAULT_TRIGGER_PERIOD, minimum=0)
    pending_schedule_accepted = env.flag("PENDING_SCHEDULE_ACCEPTED")
    shutdown_grace = env.integer("SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE, minimum=0)
    password_checks = env.integer("PASSWORD_CHECKS", DEFAULT_PASSWORD_CHECKS)
    password_check_wait = env.number(
        "PASSWORD_CHECK_WAIT",
        DEFAULT_PASSWORD_CHECK_WAIT,
        low=0,
        high=60,
        low_allowed=True,
    )
    raw_task_token = get("TASK_CHECK_AUTH_TOKEN")
    mode = get("MODE") or ""

    if problems:
        raise ConfigError(problems)
    return Settings(
        name=name,
        database_url=database_url,
        secret=secret or Secret(""),
        host=host,
        port=port,
        flexmeasures_version=version,
        max_data_bytes=max_data_bytes,
        allow_data_overwrite=allow_data_overwrite,
        max_beliefs_per_request=max_beliefs,
        redis_url=redis_url,
        redis_sentinels=sentinels,
        redis_sentinel_master=sentinel_master,
        redis_password=Secret(raw_password) if raw_password is not None else None,
        redis_prefix=redis_prefix,
        job_timeout=job_timeout,
        job_cache_ttl=job_cache_ttl,
        planning_ttl=planning_ttl,
        job_heartbeat_grace=heartbeat_grace,
        job_sweep_interval=sweep_interval,
        trigger_limit=trigger_limit,
        trigger_period=trigger_period,
        pending_schedule_accepted=pending_schedule_accepted,
        shutdown_grace=shutdown_grace,
        password_checks=password_checks,
        password_check_wait=password_check_wait,
        task_check_auth_token=(Secret(raw_task_token) if raw_task_token else None),
        mode=mode,
        tenants_file=tenants_file,
        address=address,
        secrets_dir=secrets_dir,
        idle_close=idle_close,
        db_connections=db_connections,
        db_connection_wait=db_connection_wait,
        reload_interval=reload_interval,
        requests_per_tenant=requests_per_tenant,
    )
