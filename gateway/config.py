"""Gateway settings (environment) and tenants.yaml parsing with located problems."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from packaging.version import InvalidVersion, Version
from yarl import URL

DEFAULT_BASE_DOMAINS: Final = ("flexmeasures.io", "localhost")
DEFAULT_TOKEN_TTL: Final = 21600
DEFAULT_UPSTREAM_TIMEOUT: Final = 30.0
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
DEFAULT_FM_VERSION: Final = "1.0.1"
DEFAULT_SECRETS_DIR: Final = Path(".flexhost/secrets")
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_SENTINEL_PORT: Final = 26379
REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
KNOWN_VERSIONS: Final = ("v3_0",)
SUNSET_VERSIONS: Final = ("v1", "v1_1", "v1_2", "v1_3", "v2_0")
SUBDOMAIN_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME_RE: Final = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
ENV_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOKEN_TTL_RANGE: Final = (60, 366 * 24 * 3600)
# Pages: default colours and the longest life of a named API key (90 days).
DEFAULT_PRIMARY_COLOR: Final = "#1f6feb"
DEFAULT_ACCENT_COLOR: Final = "#0d9488"
DEFAULT_API_KEY_MAX_TTL: Final = 90 * 24 * 3600
COLOR_RE: Final = re.compile(r"#[0-9a-fA-F]{6}")
# Request rates: "500/minute", "500 per 1 minute", "10/5 minutes", ...
RATE_RE: Final = re.compile(
    r"(\d{1,12})\s*(?:/|\s+per\s+)\s*(?:(\d{1,6})\s*)?(second|minute|hour|day)s?",
    re.IGNORECASE | re.ASCII,
)
RATE_UNITS: Final = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}
# The Redis script counts in whole numbers of limit x milliseconds; doubles keep
# those exact up to 2**53.
RATE_CAPACITY: Final = 2**53


class ConfigError(Exception):
    """An unusable configuration; `problems` names each fault and its place."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Secret:
    """A secret string whose repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _period_words(period: int) -> str:
    """Seconds in FlexMeasures' words: 60 -> "1 minute", 300 -> "5 minutes"."""
    for unit, seconds in RATE_UNITS.items():
        if period % seconds == 0:
            count = period // seconds
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{period} seconds"  # not reached: a second divides every period


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` requests per `period` seconds."""

    limit: int
    period: int

    def __str__(self) -> str:
        """As FlexMeasures words it: "500 per 1 minute"."""
        return f"{self.limit} per {_period_words(self.period)}"


def parse_rate(text: str) -> Rate:
    """A rate such as "500/minute" or "10 per 5 minutes" (ValueError if not)."""
    match = RATE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            'must be like "500/minute" or "10 per 5 minutes" (per second, minute, '
            f"hour or day), or off; got {text!r}"
        )
    limit, count, unit = int(match[1]), int(match[2] or 1), match[3].lower()
    period = count * RATE_UNITS[unit]
    if limit < 1 or not 1 <= period <= 366 * 86400:
        raise ValueError(
            f"must allow at least 1 request per 1 second .. 366 days, got {text!r}"
        )
    most = RATE_CAPACITY // (period * 1000)
    if limit > most:
        raise ValueError(
            f"at most {most} per {_period_words(period)} can be counted, got {text!r}"
        )
    return Rate(limit, period)


DEFAULT_PER_TOKEN: Final = Rate(500, 60)  # FlexMeasures 1.0: 500 per minute per user
# A client logs in once per start and again when its token expires (6 h); even a
# script logging in on every run of a per-minute cron job needs 60 an hour.
DEFAULT_TOKENS_PER_USER: Final = Rate(100, 3600)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """A tenant's request limits on /api/<version>/... (None: no limit)."""

    per_token: Rate | None = DEFAULT_PER_TOKEN
    per_tenant: Rate | None = None

    def as_yaml(self) -> dict[str, str]:
        """The `rate_limits` mapping of tenants.yaml that parses back to these."""
        return {
            "per_token": str(self.per_token) if self.per_token else "off",
            "per_tenant": str(self.per_tenant) if self.per_tenant else "off",
        }


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """One tenant as configured in tenants.yaml."""

    subdomain: str
    name: str
    backends: tuple[str, ...]
    versions: tuple[str, ...] = KNOWN_VERSIONS
    status: Literal["active", "suspended"] = "active"
    aliases: tuple[str, ...] = ()
    token_ttl: int = DEFAULT_TOKEN_TTL
    hide_account_existence: bool = False
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    secret_ref: str = ""
    demo: bool = False
    flexmeasures_version: str = DEFAULT_FM_VERSION
    # For the tenant's backends (TENANT_PENDING_SCHEDULE_ACCEPTED), not the gateway.
    pending_schedule_accepted: bool = False
    # Pages: the tenant's colours, and the longest life a user may give an API key.
    primary_color: str = DEFAULT_PRIMARY_COLOR
    accent_color: str = DEFAULT_ACCENT_COLOR
    api_key_max_ttl: int = DEFAULT_API_KEY_MAX_TTL
    rate_limits: RateLimits = RateLimits()
    secret: Secret | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TenantsConfig:
    """The whole tenants.yaml."""

    base_domains: tuple[str, ...]
    tenants: tuple[TenantConfig, ...]


@dataclass(frozen=True, slots=True)
class Settings:
    """Gateway process settings (env prefix GATEWAY_)."""

    tenants_path: Path
    redis_url: str = DEFAULT_REDIS_URL
    key_prefix: str = "flexhost"
    secrets_dir: Path = DEFAULT_SECRETS_DIR
    host: str = "127.0.0.1"
    port: int = 8080
    trusted_proxies: tuple[str, ...] = ()
    reload_interval: float = 0.5
    redis_timeout: float = 1.0
    connect_timeout: float = 3.0
    access_log: bool = True
    workers: int = 1
    # Page sessions: idle and absolute lifetimes in seconds.
    session_idle: int = 1800
    session_max: int = 12 * 3600
    # Failed logins (pages and requestAuthToken): at most this many per account
    # (email) and per client address of a tenant within the window (seconds).
    login_failures_per_email: int = 5
    login_failures_per_address: int = 20
    login_failure_window: int = 900
    # Password checks of one email in flight at once (all gateways together): more
    # are answered 429 at once, so a burst for one account never reaches a backend.
    login_checks_per_email: int = 2
    # Tokens minted per user (login email) per period: requestAuthToken, page logins,
    # fresh tokens and API keys of the profile page. None: no limit.
    tokens_per_user: Rate | None = DEFAULT_TOKENS_PER_USER
    # Replica probes (seconds between rounds) and the drain on SIGTERM (seconds
    # in-flight requests get before they are cut).
    health_interval: float = 5.0
    shutdown_grace: float = 15.0
    # Metrics: the files of the worker processes (default: a temporary directory),
    # and a bearer token /metrics asks for (none: ops keep /metrics off the internet).
    metrics_dir: Path | None = None
    metrics_token: Secret | None = None
    # When the rate-limit counters in Redis cannot be reached: "open" counts in each
    # process instead (the same limits per process), "closed" answers 503.
    rate_limit_failure: Literal["open", "closed"] = "open"
    # Redis Sentinel instead of redis_url: the sentinels (host, port) and the name of
    # the master they watch. Or redis_url names one node of a Redis Cluster.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    redis_cluster: bool = False
    # Password of the Redis servers (a sentinel's master, the cluster's nodes, or the
    # server of a redis_url without one); the sentinels are asked without one.
    redis_password: Secret | None = None
    # Slow clients: a request's line and headers must arrive within header_timeout
    # seconds (from its first byte; a new connection's first request from the
    # connect). A body may pause at most body_timeout seconds between reads, and
    # after its first body_timeout seconds must keep body_min_rate bytes/s on
    # average (0: no rate); else 408 and the connection closes.
    header_timeout: float = 10.0
    body_timeout: float = 20.0
    body_min_rate: int = 500
    # Backend connections of each gateway process per replica, the shares of them
    # one token and one client address may hold at once (more: 429), and the
    # seconds a request waits for a free one when all are busy (then 503).
    upstream_connections: int = 256
    upstream_share_per_token: float = 0.25
    upstream_share_per_address: float = 0.5
    upstream_wait: float = 5.0


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """Comma-separated `host:port` (port default 26379, IPv6 as `[::1]:26379`).

    ValueError naming the first entry that is not one.
    """
    nodes: list[tuple[str, int]] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        if entry.startswith("["):
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"not host:port: {entry!r}")
            colon, port_text = rest[:1], rest[1:]
        elif entry.count(":") > 1:
            raise ValueError(f"write an IPv6 address as [addr]:port: {entry!r}")
        else:
            host, colon, port_text = entry.partition(":")
        if colon and not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"not host:port: {entry!r}")
        port = int(port_text) if colon else DEFAULT_SENTINEL_PORT
        if not host or not 1 <= port <= 65535:
            raise ValueError(f"not host:port: {entry!r}")
        nodes.append((host, port))
    if not nodes:
        raise ValueError("no host:port given")
    return tuple(nodes)


def _redis_problems(env: Mapping[str, str], settings: Settings) -> list[str]:
    """What is wrong with the Redis settings (URL, Sentinel, Cluster, password)."""
    problems: list[str] = []
    try:
        url: URL | None = URL(settings.redis_url)
    except ValueError:
        url = None
    if url is None or not settings.redis_url.startswith(REDIS_SCHEMES):
        problems.append(
            "GATEWAY_REDIS_URL: must start with redis://, rediss:// or unix://, "
            f"got {settings.redis_url!r}"
        )
    sentinels = bool(env.get("REDIS_SENTINELS", "").strip())
    if sentinels and not settings.redis_sentinel_master:
        problems.append(
            "GATEWAY_REDIS_SENTINEL_MASTER: required with GATEWAY_REDIS_SENTINELS"
        )
    if settings.redis_sentinel_master and not sentinels:
        problems.append(
            "GATEWAY_REDIS_SENTINELS: required with GATEWAY_REDIS_SENTINEL_MASTER"
        )
    if sentinels and env.get("REDIS_URL"):
        problems.append(
            "GATEWAY_REDIS_URL, GATEWAY_REDIS_SENTINELS: set only one (with "
            "sentinels the master's address comes from them)"
        )
    if sentinels and settings.redis_cluster:
        problems.append(
            "GATEWAY_REDIS_CLUSTER: not with GATEWAY_REDIS_SENTINELS (Redis Cluster "
            "fails over by itself)"
        )
    if settings.redis_cluster and url is not None and not sentinels:
        if url.scheme == "unix":
            problems.append(
                "GATEWAY_REDIS_URL: a cluster node needs redis:// or rediss://"
            )
        elif url.path not in ("", "/", "/0"):
            problems.append(
                "GATEWAY_REDIS_URL: a Redis Cluster has only database 0, "
                f"got {url.path!r}"
            )
    if settings.redis_password is not None and not sentinels and url and url.password:
        problems.append(
            "GATEWAY_REDIS_PASSWORD, GATEWAY_REDIS_URL: set only one password"
        )
    return problems


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Gateway settings from the environment; every problem in one ConfigError."""
    problems: list[str] = []
    env = {
        k[len("GATEWAY_") :]: v for k, v in environ.items() if k.startswith("GATEWAY_")
    }

    def number(name: str, default: float, kind: type[int] | type[float]) -> Any:
        raw = env.get(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"GATEWAY_{name}: not a number: {raw!r}")
            return default
        if value <= 0:
            problems.append(f"GATEWAY_{name}: must be positive, got {raw!r}")
        return value

    def flag(name: str, default: bool) -> bool:
        raw = env.get(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        problems.append(f"GATEWAY_{name}: must be true or false, got {raw!r}")
        return default

    proxies = tuple(
        p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip()
    )
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            problems.append(
                f"GATEWAY_TRUSTED_PROXIES: not an address or network: {proxy!r}"
            )
    failure = env.get("RATE_LIMIT_FAILURE", "open")
    if failure not in ("open", "closed"):
        problems.append(
            f"GATEWAY_RATE_LIMIT_FAILURE: must be open or closed, got {failure!r}"
        )
    metrics_token = env.get("METRICS_TOKEN") or None
    if metrics_token is not None and len(metrics_token) < 16:
        problems.append("GATEWAY_METRICS_TOKEN: must be at least 16 characters")
    sentinels: tuple[tuple[str, int], ...] = ()
    if env.get("REDIS_SENTINELS", "").strip():
        try:
            sentinels = parse_sentinels(env["REDIS_SENTINELS"])
        except ValueError as err:
            problems.append(f"GATEWAY_REDIS_SENTINELS: {err}")
    redis_password = env.get("REDIS_PASSWORD") or None

    def share(name: str, default: float) -> float:
        raw = env.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 < value <= 1:
            problems.append(f"GATEWAY_{name}: a fraction in (0, 1], got {raw!r}")
            return default
        return value

    body_min_rate = 500
    raw_rate = env.get("BODY_MIN_RATE")
    if raw_rate is not None:
        if raw_rate.strip().isdigit():
            body_min_rate = int(raw_rate)
        else:
            problems.append(
                f"GATEWAY_BODY_MIN_RATE: bytes per second (0: off), got {raw_rate!r}"
            )
    tokens_per_user: Rate | None = DEFAULT_TOKENS_PER_USER
    raw_tokens = env.get("TOKENS_PER_USER", "").strip()
    if raw_tokens.lower() == "off":
        tokens_per_user = None
    elif raw_tokens:
        try:
            tokens_per_user = parse_rate(raw_tokens)
        except ValueError as err:
            problems.append(f"GATEWAY_TOKENS_PER_USER: {err}")
    settings = Settings(
        tenants_path=Path(env.get("TENANTS_PATH", "tenants.yaml")),
        redis_url=env.get("REDIS_URL", DEFAULT_REDIS_URL),
        key_prefix=env.get("KEY_PREFIX", "flexhost"),
        secrets_dir=Path(env.get("SECRETS_DIR", str(DEFAULT_SECRETS_DIR))),
        host=env.get("HOST", "127.0.0.1"),
        port=number("PORT", 8080, int),
        trusted_proxies=proxies,
        reload_interval=number("RELOAD_INTERVAL", 0.5, float),
        redis_timeout=number("REDIS_TIMEOUT", 1.0, float),
        connect_timeout=number("CONNECT_TIMEOUT", 3.0, float),
        access_log=flag("ACCESS_LOG", True),
        workers=number("WORKERS", os.cpu_count() or 1, int),
        session_idle=number("SESSION_IDLE", 1800, int),
        session_max=number("SESSION_MAX", 12 * 3600, int),
        login_failures_per_email=number("LOGIN_FAILURES_PER_EMAIL", 5, int),
        login_failures_per_address=number("LOGIN_FAILURES_PER_ADDRESS", 20, int),
        login_failure_window=number("LOGIN_FAILURE_WINDOW", 900, int),
        login_checks_per_email=number("LOGIN_CHECKS_PER_EMAIL", 2, int),
        tokens_per_user=tokens_per_user,
        health_interval=number("HEALTH_INTERVAL", 5.0, float),
        shutdown_grace=number("SHUTDOWN_GRACE", 15.0, float),
        metrics_dir=Path(env["METRICS_DIR"]) if env.get("METRICS_DIR") else None,
        metrics_token=Secret(metrics_token) if metrics_token else None,
        rate_limit_failure="closed" if failure == "closed" else "open",
        redis_sentinels=sentinels,
        redis_sentinel_master=env.get("REDIS_SENTINEL_MASTER", "").strip(),
        redis_cluster=flag("REDIS_CLUSTER", False),
        redis_password=Secret(redis_password) if redis_password else None,
        header_timeout=number("HEADER_TIMEOUT", 10.0, float),
        body_timeout=number("BODY_TIMEOUT", 20.0, float),
        body_min_rate=body_min_rate,
        upstream_connections=number("UPSTREAM_CONNECTIONS", 256, int),
        upstream_share_per_token=share("UPSTREAM_SHARE_PER_TOKEN", 0.25),
        upstream_share_per_address=share("UPSTREAM_SHARE_PER_ADDRESS", 0.5),
        upstream_wait=number("UPSTREAM_WAIT", 5.0, float),
    )
    problems += _redis_problems(env, settings)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", settings.key_prefix):
        problems.append(
            f"GATEWAY_KEY_PREFIX: letters, digits, _ . - only: {settings.key_prefix!r}"
        )
    if problems:
        raise ConfigError(problems)
    return settings


# --- tenants.yaml -------------------------------------------------------------

_TENANT_KEYS: Final = frozenset(
    {
        "subdomain",
        "name",
        "backends",
        "versions",
        "status",
        "aliases",
        "token_ttl",
        "hide_account_existence",
        "upstream_timeout",
        "max_body_bytes",
        "secret",
        "demo",
        "flexmeasures_version",
        "pending_schedule_accepted",
        "colors",
        "api_key_max_ttl",
        "rate_limits",
    }
)
_TOP_KEYS: Final = frozenset({"base_domains", "tenants"})


class _Problems:
    """Collects problems, each prefixed with source:line:col and a path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, path: str, message: str) -> None:
        if node is None:
            self.items.append(f"{self.source}: {path}: {message}")
        else:
            mark = node.start_mark
            self.items.append(
                f"{self.source}:{mark.line + 1}:{mark.column + 1}: {path}: {message}"
            )


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_object(node, deep=True)


def _mapping(
    node: yaml.Node, path: str, problems: _Problems
) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, path, "must be a mapping")
        return None
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            problems.add(key_node, path, "keys must be plain strings")
            continue
        key = str(key_node.value)
        if key in out:
            problems.add(key_node, f"{path}.{key}", "duplicate key")
        out[key] = (key_node, value_node)
    return out


def _hostname(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    host = value.strip().lower().rstrip(".")
    return host if HOSTNAME_RE.match(host) else None


def _string_list(
    loader: yaml.SafeLoader, node: yaml.Node, path: str, problems: _Problems
) -> list[tuple[yaml.Node, str]] | None:
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":str"):
        return [(node, str(node.value))]
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, path, "must be a list of strings")
        return None
    items: list[tuple[yaml.Node, str]] = []
    for i, item in enumerate(node.value):
        value = _scalar(loader, item) if isinstance(item, yaml.ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            problems.add(item, f"{path}[{i}]", "must be a non-empty string")
            continue
        items.append((item, value.strip()))
    return items


def _rate_limits(
    loader: yaml.SafeLoader, node: yaml.Node, path: str, problems: _Problems
) -> RateLimits:
    fields = _mapping(node, path, problems)
    if fields is None:
        return RateLimits()
    chosen: dict[str, Rate | None] = {
        "per_token": DEFAULT_PER_TOKEN,
        "per_tenant": None,
    }
    for key, (key_node, value_node) in fields.items():
        if key not in chosen:
            problems.add(key_node, f"{path}.{key}", "unknown field")
            continue
        value = (
            _scalar(loader, value_node)
            if isinstance(value_node, yaml.ScalarNode)
            else value_node
        )
        # YAML reads an unquoted `off` as false.
        if value is None or value is False or value == "off":
            chosen[key] = None
            continue
        if not isinstance(value, str):
            problems.add(
                value_node,
                f"{path}.{key}",
                f'must be like "500/minute", or off; got {value!r}',
            )
            continue
        try:
            chosen[key] = parse_rate(value)
        except ValueError as err:
            problems.add(value_node, f"{path}.{key}", str(err))
    return RateLimits(per_token=chosen["per_token"], per_tenant=chosen["per_tenant"])


def _backend_problem(url: str) -> str | None:
    try:
        parsed = URL(url)
    except ValueError:
        return f"not a URL: {url!r}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return f"must be an http:// or https:// URL with a host, got {url!r}"
    if parsed.query_string or parsed.fragment or parsed.path not in ("", "/"):
        return f"must be a base URL without path, query or fragment, got {url!r}"
    return None


def _resolve_secret(ref: str) -> str | None:
    kind, _, target = ref.partition(":")
    if kind == "env":
        return os.environ.get(target) or None
    try:
        text = Path(target).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def _tenant(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    index: int,
    problems: _Problems,
    secrets_dir: Path,
    check_secrets: bool,
) -> TenantConfig | None:
    path = f"tenants[{index}]"
    fields = _mapping(node, path, problems)
    if fields is None:
        return None
    before = len(problems.items)
    for key, (key_node, _) in fields.items():
        if key not in _TENANT_KEYS:
            problems.add(key_node, f"{path}.{key}", "unknown field")

    def get(key: str) -> tuple[yaml.Node, Any] | None:
        if key not in fields:
            return None
        value_node = fields[key][1]
        if isinstance(value_node, yaml.ScalarNode):
            return value_node, _scalar(loader, value_node)
        return value_node, value_node

    sub_entry = get("subdomain")
    subdomain = ""
    if sub_entry is None:
        problems.add(node, f"{path}.subdomain", "missing")
    else:
        raw = sub_entry[1]
        if not isinstance(raw, str) or not SUBDOMAIN_RE.match(raw):
            problems.add(
                sub_entry[0],
                f"{path}.subdomain",
                "must be lower-case letters, digits and inner hyphens (max 63), "
                f"got {raw!r}",
            )
        else:
            subdomain = raw

    name = subdomain
    name_entry = get("name")
    if name_entry is not None:
        if isinstance(name_entry[1], str) and name_entry[1].strip():
            name = name_entry[1].strip()
        else:
            problems.add(name_entry[0], f"{path}.name", "must be a non-empty string")

    backends: list[str] = []
    if "backends" not in fields:
        problems.add(node, f"{path}.backends", "missing: give at least one backend URL")
    else:
        items = _string_list(
            loader, fields["backends"][1], f"{path}.backends", problems
        )
        if items is not None and not items:
            problems.add(fields["backends"][1], f"{path}.backends", "must not be empty")
        for i, (item_node, url) in enumerate(items or []):
            problem = _backend_problem(url)
            if problem:
                problems.add(item_node, f"{path}.backends[{i}]", problem)
            else:
                backends.append(url.rstrip("/"))

    versions: list[str] = list(KNOWN_VERSIONS)
    if "versions" in fields:
        items = _string_list(
            loader, fields["versions"][1], f"{path}.versions", problems
        )
        versions = []
        for i, (item_node, version) in enumerate(items or []):
            if version not in KNOWN_VERSIONS:
                problems.add(
                    item_node,
                    f"{path}.versions[{i}]",
                    f"unknown API version {version!r}; "
                    f"known: {', '.join(KNOWN_VERSIONS)}",
                )
            else:
                versions.append(version)
        if items is not None and not items:
            problems.add(fields["versions"][1], f"{path}.versions", "must not be empty")

    status: Literal["active", "suspended"] = "active"
    status_entry = get("status")
    if status_entry is not None:
        if status_entry[1] == "suspended":
            status = "suspended"
        elif status_entry[1] != "active":
            problems.add(
                status_entry[0],
                f"{path}.status",
                f"must be 'active' or 'suspended', got {status_entry[1]!r}",
            )

    aliases: list[str] = []
    if "aliases" in fields:
        items = _string_list(loader, fields["aliases"][1], f"{path}.aliases", problems)
        for i, (item_node, alias) in enumerate(items or []):
            host = _hostname(alias)
            if host is None:
                problems.add(
                    item_node, f"{path}.aliases[{i}]", f"not a host name: {alias!r}"
                )
            else:
                aliases.append(host)

    def integer(key: str, default: int, low: int, high: int) -> int:
        entry = get(key)
        if entry is None:
            return default
        value = entry[1]
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(
                entry[0], f"{path}.{key}", f"must be a whole number, got {value!r}"
            )
            return default
        if not low <= value <= high:
            problems.add(
                entry[0],
                f"{path}.{key}",
                f"must be between {low} and {high}, got {value}",
            )
            return default
        return value

    def boolean(key: str) -> bool:
        entry = get(key)
        if entry is None:
            return False
        if not isinstance(entry[1], bool):
            problems.add(
                entry[0], f"{path}.{key}", f"must be true or false, got {entry[1]!r}"
            )
            return False
        return entry[1]

    token_ttl = integer("token_ttl", DEFAULT_TOKEN_TTL, *TOKEN_TTL_RANGE)
    max_body = integer("max_body_bytes", DEFAULT_MAX_BODY_BYTES, 1024, 1 << 31)
    hide = boolean("hide_account_existence")
    demo = boolean("demo")
    pending_accepted = boolean("pending_schedule_accepted")
    api_key_max_ttl = integer(
        "api_key_max_ttl", DEFAULT_API_KEY_MAX_TTL, *TOKEN_TTL_RANGE
    )
    colors = {"primary": DEFAULT_PRIMARY_COLOR, "accent": DEFAULT_ACCENT_COLOR}
    colors_entry = get("colors")
    if colors_entry is not None:
        given = (
            _scalar(loader, colors_entry[0])
            if isinstance(colors_entry[0], yaml.MappingNode)
            else None
        )
        if not isinstance(given, dict) or not set(given) <= set(colors):
            problems.add(
                colors_entry[0],
                f"{path}.colors",
                "must be a mapping with primary and/or accent",
            )
        else:
            for which, value in given.items():
                if isinstance(value, str) and COLOR_RE.fullmatch(value):
                    colors[which] = value.lower()
                else:
                    problems.add(
                        colors_entry[0],
                        f"{path}.colors.{which}",
                        f'must be a colour like "#1f6feb", got {value!r}',
                    )

    rate_limits = RateLimits()
    if "rate_limits" in fields:
        rate_limits = _rate_limits(
            loader, fields["rate_limits"][1], f"{path}.rate_limits", problems
        )

    timeout = DEFAULT_UPSTREAM_TIMEOUT
    timeout_entry = get("upstream_timeout")
    if timeout_entry is not None:
        value = timeout_entry[1]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (0 < value <= 600)
        ):
            problems.add(
                timeout_entry[0],
                f"{path}.upstream_timeout",
                f"must be seconds between 0 and 600, got {value!r}",
            )
        else:
            timeout = float(value)

    fm_version = DEFAULT_FM_VERSION
    version_entry = get("flexmeasures_version")
    if version_entry is not None:
        value = str(version_entry[1])
        try:
            Version(value)
            fm_version = value
        except InvalidVersion:
            problems.add(
                version_entry[0],
                f"{path}.flexmeasures_version",
                f"must be a PEP 440 version such as 1.0.1, got {value!r}",
            )

    secret_ref = f"file:{(secrets_dir / subdomain).absolute()}" if subdomain else ""
    secret_node: yaml.Node = node
    secret_entry = get("secret")
    if secret_entry is not None:
        secret_node = secret_entry[0]
        raw = secret_entry[1]
        kind, _, target = raw.partition(":") if isinstance(raw, str) else ("", "", "")
        if kind == "env" and ENV_NAME_RE.match(target):
            secret_ref = raw
        elif kind == "file" and target:
            secret_ref = f"file:{Path(target).expanduser().absolute()}"
        else:
            problems.add(
                secret_node,
                f"{path}.secret",
                f"must be 'env:VARIABLE' or 'file:/path', got {raw!r}",
            )
    secret: Secret | None = None
    if secret_ref and len(problems.items) == before:
        value = _resolve_secret(secret_ref)
        if value is None:
            if check_secrets:
                problems.add(
                    secret_node, f"{path}.secret", f"no secret at {secret_ref}"
                )
        elif len(value) < 16:
            problems.add(
                secret_node, f"{path}.secret", "must be at least 16 characters"
            )
        else:
            secret = Secret(value)

    if len(problems.items) != before:
        return None
    return TenantConfig(
        subdomain=subdomain,
        name=name,
        backends=tuple(backends),
        versions=tuple(versions),
        status=status,
        aliases=tuple(aliases),
        token_ttl=token_ttl,
        hide_account_existence=hide,
        upstream_timeout=timeout,
        max_body_bytes=max_body,
        secret_ref=secret_ref,
        demo=demo,
        flexmeasures_version=fm_version,
        pending_schedule_accepted=pending_accepted,
        primary_color=colors["primary"],
        accent_color=colors["accent"],
        api_key_max_ttl=api_key_max_ttl,
        rate_limits=rate_limits,
        secret=secret,
    )


def _raw_subdomain(node: yaml.Node) -> str | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if getattr(key_node, "value", None) == "subdomain" and isinstance(
            value_node, yaml.ScalarNode
        ):
            return str(value_node.value)
    return None


def parse_tenants(
    text: str,
    *,
    source: str = "tenants.yaml",
    secrets_dir: Path = DEFAULT_SECRETS_DIR,
    check_secrets: bool = True,
) -> TenantsConfig:
    """Validate a whole tenants.yaml text; one ConfigError names every problem."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"{source}: unreadable YAML: {err}"]) from err
    try:
        return _parse_root(loader, source, secrets_dir, check_secrets)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: YAML error: {err.problem or err}"]) from err
    except yaml.YAMLError as err:
        raise ConfigError([f"{source}: YAML error: {err}"]) from err
    finally:
        loader.dispose()


def _parse_root(
    loader: yaml.SafeLoader, source: str, secrets_dir: Path, check_secrets: bool
) -> TenantsConfig:
    problems = _Problems(source)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(
            [f"{where}: YAML syntax error: {err.problem or err}"]
        ) from err
    if root is None:
        raise ConfigError([f"{source}: the file is empty; expected a 'tenants' list"])
    top = _mapping(root, "(top level)", problems)
    if top is None:
        raise ConfigError(problems.items)
    for key, (key_node, _) in top.items():
        if key not in _TOP_KEYS:
            problems.add(key_node, key, "unknown field")

    base_domains: list[str] = list(DEFAULT_BASE_DOMAINS)
    if "base_domains" in top:
        items = _string_list(loader, top["base_domains"][1], "base_domains", problems)
        base_domains = []
        for i, (item_node, domain) in enumerate(items or []):
            host = _hostname(domain)
            if host is None:
                problems.add(
                    item_node, f"base_domains[{i}]", f"not a domain: {domain!r}"
                )
            else:
                base_domains.append(host)

    tenants: list[TenantConfig] = []
    if "tenants" not in top:
        problems.add(root, "tenants", "missing")
    else:
        seq = top["tenants"][1]
        if isinstance(seq, yaml.ScalarNode) and seq.tag.endswith(":null"):
            seq = yaml.SequenceNode("tag:yaml.org,2002:seq", [])
        if not isinstance(seq, yaml.SequenceNode):
            problems.add(seq, "tenants", "must be a list of tenants")
        else:
            seen: dict[str, int] = {}
            hosts: dict[str, str] = {}
            for i, item in enumerate(seq.value):
                raw_sub = _raw_subdomain(item)
                if raw_sub is not None and raw_sub in seen:
                    problems.add(
                        item,
                        f"tenants[{i}].subdomain",
                        f'duplicate "{raw_sub}" (also tenants[{seen[raw_sub]}])',
                    )
                elif raw_sub is not None:
                    seen[raw_sub] = i
                tenant = _tenant(loader, item, i, problems, secrets_dir, check_secrets)
                if tenant is None:
                    continue
                for alias in tenant.aliases:
                    owner = hosts.get(alias)
                    if owner is not None:
                        problems.add(
                            item,
                            f"tenants[{i}].aliases",
                            f'"{alias}" also used by {owner}',
                        )
                    hosts[alias] = tenant.subdomain
                tenants.append(tenant)
            for alias, owner in hosts.items():
                for domain in base_domains:
                    sub = alias.removesuffix("." + domain)
                    if sub != alias and sub in seen and sub != owner:
                        problems.add(
                            None,
                            f"tenants[{seen[owner]}].aliases",
                            f'"{alias}" is the host of tenant "{sub}"',
                        )
    if problems.items:
        raise ConfigError(problems.items)
    return TenantsConfig(base_domains=tuple(base_domains), tenants=tuple(tenants))


def load_tenants(
    path: Path, *, secrets_dir: Path = DEFAULT_SECRETS_DIR, check_secrets: bool = True
) -> TenantsConfig:
    """Read and validate a tenants file; an unreadable file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: cannot read: {err}"]) from err
    return parse_tenants(
        text, source=str(path), secrets_dir=secrets_dir, check_secrets=check_secrets
    )
