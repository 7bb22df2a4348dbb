"""Gateway process settings, read from `GATEWAY_*` environment variables."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from yarl import URL

from contract.config import ConfigError, Env, Secret
from contract.rates import DEFAULT_TOKENS_PER_USER, Rate, parse_rate
from contract.redis import SCHEMES as REDIS_SCHEMES
from contract.redis import RedisSettings, parse_sentinels
from contract.tenants_file import DEFAULT_SECRETS_DIR

PREFIX: Final = "GATEWAY_"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
# Seconds idle before a pooled Redis connection is pinged.
REDIS_HEALTH_CHECK_INTERVAL: Final = 30


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
    # Metrics labelled by tenant instead of by pool (backend addresses): series grow
    # with the tenants, so for a few hundred, not ten thousand.
    metrics_per_tenant: bool = False
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
    # Mail (password reset links) over SMTP; no host: no reset by mail. `smtp_tls`:
    # "none", "starttls" or "tls" (implicit TLS). `mail_from`: the sender, unless a
    # tenant names its own (tenants.yaml `mail_from`). A reset link lives
    # `reset_link_ttl` seconds.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str = ""
    smtp_password: Secret | None = None
    smtp_timeout: float = 10.0
    mail_from: str = ""
    reset_link_ttl: int = 1800
    # An admin's invitation (or reset) link to set a password lives longer.
    invite_link_ttl: int = 3 * 24 * 3600

    @property
    def mail_configured(self) -> bool:
        """Whether mail can be sent (password reset by mail is on)."""
        return bool(self.smtp_host and self.mail_from)

    @property
    def redis(self) -> RedisSettings:
        """Where Redis is: a URL (a server or a cluster node) or the sentinels."""
        return RedisSettings(
            url=self.redis_url,
            sentinels=self.redis_sentinels,
            sentinel_master=self.redis_sentinel_master,
            cluster=self.redis_cluster,
            password=self.redis_password,
            timeout=self.redis_timeout,
            connect_timeout=self.redis_timeout,
            health_check_interval=REDIS_HEALTH_CHECK_INTERVAL,
        )


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
    env = Env(environ, PREFIX)
    problems = env.problems
    given = env.values
    proxies = tuple(
        p.strip() for p in given.get("TRUSTED_PROXIES", "").split(",") if p.strip()
    )
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            problems.append(
                f"GATEWAY_TRUSTED_PROXIES: not an address or network: {proxy!r}"
            )
    failure = given.get("RATE_LIMIT_FAILURE", "open")
    if failure not in ("open", "closed"):
        problems.append(
            f"GATEWAY_RATE_LIMIT_FAILURE: must be open or closed, got {failure!r}"
        )
    metrics_token = env.text("METRICS_TOKEN")
    if metrics_token is not None and len(metrics_token) < 16:
        problems.append("GATEWAY_METRICS_TOKEN: must be at least 16 characters")
    sentinels: tuple[tuple[str, int], ...] = ()
    if given.get("REDIS_SENTINELS", "").strip():
        try:
            sentinels = parse_sentinels(given["REDIS_SENTINELS"])
        except ValueError as err:
            problems.append(f"GATEWAY_REDIS_SENTINELS: {err}")
    redis_password = env.text("REDIS_PASSWORD")
    tokens_per_user: Rate | None = DEFAULT_TOKENS_PER_USER
    raw_tokens = given.get("TOKENS_PER_USER", "").strip()
    if raw_tokens.lower() == "off":
        tokens_per_user = None
    elif raw_tokens:
        try:
            tokens_per_user = parse_rate(raw_tokens)
        except ValueError as err:
            problems.append(f"GATEWAY_TOKENS_PER_USER: {err}")
    smtp_tls = given.get("SMTP_TLS", "starttls").strip().lower()
    if smtp_tls not in ("none", "starttls", "tls"):
        problems.append(
            f"GATEWAY_SMTP_TLS: must be none, starttls or tls, got {smtp_tls!r}"
        )
    smtp_host = given.get("SMTP_HOST", "").strip()
    mail_from = given.get("MAIL_FROM", "").strip()
    if smtp_host and not mail_from:
        problems.append("GATEWAY_MAIL_FROM: required with GATEWAY_SMTP_HOST")
    if mail_from and ("@" not in mail_from or any(c in mail_from for c in "\r\n")):
        problems.append(f"GATEWAY_MAIL_FROM: not a mail address: {mail_from!r}")
    settings = Settings(
        tenants_path=Path(given.get("TENANTS_PATH", "tenants.yaml")),
        redis_url=given.get("REDIS_URL", DEFAULT_REDIS_URL),
        key_prefix=given.get("KEY_PREFIX", "flexhost"),
        secrets_dir=Path(given.get("SECRETS_DIR", str(DEFAULT_SECRETS_DIR))),
        host=given.get("HOST", "127.0.0.1"),
        port=env.integer("PORT", 8080),
        trusted_proxies=proxies,
        reload_interval=env.number("RELOAD_INTERVAL", 0.5),
        redis_timeout=env.number("REDIS_TIMEOUT", 1.0),
        connect_timeout=env.number("CONNECT_TIMEOUT", 3.0),
        access_log=env.flag("ACCESS_LOG", True),
        workers=env.integer("WORKERS", os.cpu_count() or 1),
        session_idle=env.integer("SESSION_IDLE", 1800),
        session_max=env.integer("SESSION_MAX", 12 * 3600),
        login_failures_per_email=env.integer("LOGIN_FAILURES_PER_EMAIL", 5),
        login_failures_per_address=env.integer("LOGIN_FAILURES_PER_ADDRESS", 20),
        login_failure_window=env.integer("LOGIN_FAILURE_WINDOW", 900),
        login_checks_per_email=env.integer("LOGIN_CHECKS_PER_EMAIL", 2),
        tokens_per_user=tokens_per_user,
        health_interval=env.number("HEALTH_INTERVAL", 5.0),
        shutdown_grace=env.number("SHUTDOWN_GRACE", 15.0),
        metrics_dir=Path(given["METRICS_DIR"]) if given.get("METRICS_DIR") else None,
        metrics_token=Secret(metrics_token) if metrics_token else None,
        metrics_per_tenant=env.flag("METRICS_PER_TENANT", False),
        rate_limit_failure="closed" if failure == "closed" else "open",
        redis_sentinels=sentinels,
        redis_sentinel_master=given.get("REDIS_SENTINEL_MASTER", "").strip(),
        redis_cluster=env.flag("REDIS_CLUSTER", False),
        redis_password=Secret(redis_password) if redis_password else None,
        header_timeout=env.number("HEADER_TIMEOUT", 10.0),
        body_timeout=env.number("BODY_TIMEOUT", 20.0),
        body_min_rate=env.integer("BODY_MIN_RATE", 500, minimum=0),
        upstream_connections=env.integer("UPSTREAM_CONNECTIONS", 256),
        upstream_share_per_token=env.number("UPSTREAM_SHARE_PER_TOKEN", 0.25, high=1.0),
        upstream_share_per_address=env.number(
            "UPSTREAM_SHARE_PER_ADDRESS", 0.5, high=1.0
        ),
        upstream_wait=env.number("UPSTREAM_WAIT", 5.0),
        smtp_host=smtp_host,
        smtp_port=env.integer("SMTP_PORT", 465 if smtp_tls == "tls" else 587),
        smtp_tls="tls"
        if smtp_tls == "tls"
        else "none"
        if smtp_tls == "none"
        else "starttls",
        smtp_username=given.get("SMTP_USERNAME", "").strip(),
        smtp_password=env.secret("SMTP_PASSWORD"),
        smtp_timeout=env.number("SMTP_TIMEOUT", 10.0),
        mail_from=mail_from,
        reset_link_ttl=env.integer("RESET_LINK_TTL", 1800, minimum=60),
        invite_link_ttl=env.integer("INVITE_LINK_TTL", 3 * 24 * 3600, minimum=60),
    )
    problems += _redis_problems(given, settings)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", settings.key_prefix):
        problems.append(
            f"GATEWAY_KEY_PREFIX: letters, digits, _ . - only: {settings.key_prefix!r}"
        )
    if problems:
        raise ConfigError(problems)
    return settings
