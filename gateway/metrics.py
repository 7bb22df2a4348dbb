"""Prometheus metrics of the gateway, summed over its worker processes.

With several workers (`python -m gateway`, GATEWAY_WORKERS > 1) the supervisor
points PROMETHEUS_MULTIPROC_DIR at a directory before it forks: each worker writes
its values to files there and GET /metrics on any worker reads all of them
(prometheus-client's multiprocess mode). A single process keeps them in memory.

Label values are bounded: the tenant's pool (the backend addresses it names in
tenants.yaml, shared by the tenants there; "-" when there is no tenant), a route
name (never a path), a status class, a known method; no user ids, no tokens. The
pool label keeps the number of series flat in the number of tenants; with
GATEWAY_METRICS_PER_TENANT the label is the tenant's subdomain instead (about 18
series per tenant and route: for a few hundred tenants, not ten thousand).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
NO_TENANT: Final = "-"
# Seconds; a cached answer takes well under a millisecond, a backend tens of them.
DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Typed views of what prometheus-client leaves untyped.
_file_values: Final[Callable[[], type]] = values.MultiProcessValue
_file_collector: Final[Callable[..., object]] = multiprocess.MultiProcessCollector
_mark_process_dead: Final[Callable[[int, str], None]] = multiprocess.mark_process_dead
STATUS_CLASSES: Final = ("", "1xx", "2xx", "3xx", "4xx", "5xx")


def route_name(canonical: str | None) -> str:
    """The bounded route label of a matched resource ("other" when none matched)."""
    if canonical is None:
        return "other"
    if canonical.startswith("/api/{version}"):
        return "api_proxy"
    if canonical in ("/api/requestAuthToken", "/login", "/logout"):
        return "login"
    if canonical.startswith("/api/ops/"):
        return "api_ops"
    if canonical in ("/api", "/api/"):
        return "api_versions"
    if canonical in ("/healthz", "/readyz"):
        return "probe"
    if canonical == "/metrics":
        return "metrics"
    if canonical.startswith("/static"):
        return "static"
    if canonical.startswith("/dashboard/api/"):
        return "dashboard_api"
    return "page"


def _use_files() -> None:
    """Make metrics made from now on in this process write to the multiprocess dir.

    prometheus-client picks its value class when it is imported; the supervisor
    imports it before it sets PROMETHEUS_MULTIPROC_DIR and forks.
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = _file_values()


def _no_pools(subdomain: str) -> str | None:
    return None


class Metrics:
    """The gateway's metrics, with label children cached for the per-request path.

    Every method takes the tenant's subdomain; the first label of each metric is
    its pool (`pool_of(subdomain)`, "-" when unknown) or, `per_tenant`, the
    subdomain itself (label `tenant`).
    """

    def __init__(
        self,
        multiprocess_dir: str | None = None,
        *,
        per_tenant: bool = False,
        pool_of: Callable[[str], str | None] = _no_pools,
    ) -> None:
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            _use_files()
        self.per_tenant = per_tenant
        self.pool_of = pool_of
        who = "tenant" if per_tenant else "pool"
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "flexhost_gateway_requests",
            "Requests answered, by pool (or tenant), method, status class and route.",
            (who, "method", "status", "route"),
            registry=registry,
        )
        self.duration = Histogram(
            "flexhost_gateway_request_duration_seconds",
            "Time from request to answer, by pool (or tenant) and route.",
            (who, "route"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "flexhost_gateway_upstream_errors",
            "Backend failures answered 502/504: unreachable, timeout or failed.",
            (who, "kind"),
            registry=registry,
        )
        self.tokens_issued = Counter(
            "flexhost_gateway_tokens_issued",
            "Tokens minted: api (requestAuthToken, profile page), api-key, session.",
            (who, "kind"),
            registry=registry,
        )
        self.login_failures = Counter(
            "flexhost_gateway_login_failures",
            "Token requests and page logins refused, by reason.",
            (who, "reason"),
            registry=registry,
        )
        self.login_throttled = Counter(
            "flexhost_gateway_login_throttled",
            "Logins refused with 429 by the failed-login throttle.",
            (who,),
            registry=registry,
        )
        self.rate_limited = Counter(
            "flexhost_gateway_rate_limited",
            "API requests refused with 429 by a rate limit, by scope (token, tenant).",
            (who, "scope"),
            registry=registry,
        )
        self.rate_limit_store_errors = Counter(
            "flexhost_gateway_rate_limit_store_errors",
            "Rate-limit checks that could not reach Redis (see "
            "GATEWAY_RATE_LIMIT_FAILURE).",
            registry=registry,
        )
        self.config_reloads = Counter(
            "flexhost_gateway_config_reloads",
            "tenants.yaml changes swapped in (each worker reloads on its own).",
            registry=registry,
        )
        self.config_reload_failures = Counter(
            "flexhost_gateway_config_reload_failures",
            "tenants.yaml changes rejected; the last good config stayed in force.",
            registry=registry,
        )
        self.config_ok = Gauge(
            "flexhost_gateway_config_ok",
            "1 while the tenants file on disk is the config in force, 0 while a "
            "rejected change waits (the lowest of the live workers).",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.config_ok.set(1)
        self._per_request: dict[
            tuple[str, str, int, str], tuple[Counter, Histogram]
        ] = {}
        self._routes: dict[web.AbstractResource | None, str] = {}

    def route(self, resource: web.AbstractResource | None) -> str:
        """The route label of a matched resource, cached (there are a handful)."""
        name = self._routes.get(resource)
        if name is None:
            canonical = resource.canonical if resource is not None else None
            name = self._routes[resource] = route_name(canonical)
        return name

    def label(self, tenant: str) -> str:
        """The first label value for a tenant's subdomain ("-": none)."""
        if self.per_tenant or tenant == NO_TENANT:
            return tenant
        return self.pool_of(tenant) or NO_TENANT

    def request_done(
        self, tenant: str, method: str, status: int, route: str, seconds: float
    ) -> None:
        """Count one answered request and its duration."""
        if method not in METHODS:
            method = "OTHER"
        who = self.label(tenant)
        key = (who, method, status, route)
        children = self._per_request.get(key)
        if children is None:
            status_class = (
                STATUS_CLASSES[status // 100] if 100 <= status < 600 else "other"
            )
            children = self._per_request[key] = (
                self.requests.labels(who, method, status_class, route),
                self.duration.labels(who, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def upstream_error(self, tenant: str, kind: str) -> None:
        """A backend was unreachable, too slow ("timeout") or broke ("failed")."""
        self.upstream_errors.labels(self.label(tenant), kind).inc()

    def token_issued(self, tenant: str, kind: str) -> None:
        self.tokens_issued.labels(self.label(tenant), kind).inc()

    def login_failed(self, tenant: str, reason: str) -> None:
        who = self.label(tenant)
        self.login_failures.labels(who, reason).inc()
        if reason == "throttled":
            self.login_throttled.labels(who).inc()

    def rate_limit_hit(self, tenant: str, scope: str) -> None:
        self.rate_limited.labels(self.label(tenant), scope).inc()

    def config_reloaded(self) -> None:
        self.config_reloads.inc()
        self.config_ok.set(1)

    def config_rejected(self) -> None:
        self.config_reload_failures.inc()
        self.config_ok.set(0)

    def config_restored(self) -> None:
        """The file is back to the config in force."""
        self.config_ok.set(1)

    def exposition(self) -> bytes:
        """The text format of every metric (of all workers in multiprocess mode).

        Reads files in multiprocess mode, and takes a while per tenant: call it off
        the event loop.
        """
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        _file_collector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def close(self) -> None:
        """At a worker's exit: drop its live gauges from the sums of the others."""
        if self.multiprocess_dir is not None:
            _mark_process_dead(os.getpid(), self.multiprocess_dir)


def open_multiprocess_dir(configured: Path | None) -> Path:
    """Prepare the workers' metric files: `configured` (emptied of old files) or a
    new temporary directory; exported as PROMETHEUS_MULTIPROC_DIR for the workers."""
    if configured is None:
        path = Path(tempfile.mkdtemp(prefix="flexhost-metrics-"))
    else:
        path = configured
        path.mkdir(parents=True, exist_ok=True)
        _remove_files(path)
    os.environ[MULTIPROCESS_ENV] = str(path)
    return path


def close_multiprocess_dir(path: Path, configured: Path | None) -> None:
    """At the supervisor's exit: remove the temporary dir or empty `configured`."""
    if configured is None:
        shutil.rmtree(path, ignore_errors=True)
    else:
        _remove_files(path)


def _remove_files(path: Path) -> None:
    for old in path.glob("*.db"):
        old.unlink(missing_ok=True)


def worker_exited(pid: int | None) -> None:
    """The supervisor's bookkeeping for a worker that died without cleaning up."""
    path = os.environ.get(MULTIPROCESS_ENV)
    if pid is not None and path:
        _mark_process_dead(pid, path)
