"""`flexhost deploy k8s`: Kubernetes manifests for the tenants of a tenants file.

Tenants whose `backends` are the same addresses share a pool: one backend
Deployment (`flexhost pool`, which serves every tenant the tenants file names at
its address), one Service and one worker Deployment for all of them, named after
the addresses (`flexhost-pool-<hash>`), so adding a tenant to a pool renders no
new Deployment. A tenant alone on its addresses gets its own, as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

import yaml

from contract.config import ConfigError
from contract.tenants_file import TenantConfig, TenantsConfig, load_tenants

DEFAULT_NAMESPACE: Final = "flexhost"
DEFAULT_GATEWAY_REPLICAS: Final = 2
DEFAULT_TRUSTED_PROXIES: Final = ("10.0.0.0/8",)
GATEWAY_PORT: Final = 8080
BACKEND_PORT: Final = 8101
RUN_AS: Final = 10001  # the image's `flexhost` user and group
TENANTS_DIR: Final = "/etc/flexhost/config"
SECRETS_DIR: Final = "/etc/flexhost/secrets"
BACKEND_SECRET_DIR: Final = "/etc/flexhost/secret"
# The gateway's Deployment, Service and Secret; keys of the Secrets the operator
# creates (never part of the rendered manifests).
GATEWAY_NAME: Final = "flexhost-gateway"
IDENTITY_KEY: Final = "identity-secret"
DATABASE_KEY: Final = "database-url"
REDIS_KEY: Final = "redis-url"
REDIS_PASSWORD_KEY: Final = "redis-password"
# The worker may finish the job at hand after SIGTERM: TENANT_JOB_TIMEOUT + a margin.
WORKER_GRACE_S: Final = 180 + 30
PRESTOP_SLEEP_S: Final = 5  # until the endpoints no longer route to a stopping pod
# After SIGTERM, gateway and backend give requests in flight this long (their
# *_SHUTDOWN_GRACE); the pod's grace period covers the preStop sleep, this and a margin.
SHUTDOWN_GRACE_S: Final = 15
POD_GRACE_S: Final = PRESTOP_SLEEP_S + SHUTDOWN_GRACE_S + 10
DNS_LABEL_RE: Final = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
APP_LABELS: Final = {
    "app.kubernetes.io/name": "flexhost",
    "app.kubernetes.io/part-of": "flexhost",
    "app.kubernetes.io/managed-by": "flexhost-deploy",
}
TENANT_LABEL: Final = "flexhost/tenant"
POOL_LABEL: Final = "flexhost/pool"


def default_image() -> str:
    """The image of the installed flexhost version, as the Containerfile tags it."""
    try:
        return f"flexhost:{version('flexhost')}"
    except PackageNotFoundError:
        return "flexhost:latest"


@dataclass(frozen=True, slots=True)
class K8sOptions:
    """What `flexhost deploy k8s` renders besides the tenants."""

    image: str
    namespace: str = DEFAULT_NAMESPACE
    gateway_replicas: int = DEFAULT_GATEWAY_REPLICAS
    # Replicas of every tenant backend; None: one per URL in the tenant's `backends`.
    backend_replicas: int | None = None
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES
    # Hosts outside the cluster behind the Services `redis` and `postgresql`.
    redis_host: str | None = None
    postgres_host: str | None = None
    # Redis through Sentinel (host:port list and master name) instead of a URL; the
    # Secrets then hold the password under `redis-password` (optional).
    redis_sentinels: str | None = None
    redis_sentinel_master: str | None = None


def backend_name(subdomain: str) -> str:
    """A tenant's backend Deployment, Service and Secret name."""
    return f"flexhost-{subdomain}"


def service_name(subdomain: str) -> str:
    """A tenant's Service: `flexhost-<tenant>`, shortened to a 63-character label."""
    name = backend_name(subdomain)
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(subdomain.encode()).hexdigest()[:8]
    return f"{name[:54]}-{digest}"


def worker_name(subdomain: str) -> str:
    """A tenant's worker Deployment name."""
    return f"flexhost-{subdomain}-worker"


@dataclass(frozen=True, slots=True)
class Pool:
    """Tenants sharing their backend addresses: one Deployment serves them all."""

    addresses: tuple[str, ...]  # sorted, lower case
    tenants: tuple[TenantConfig, ...]

    @property
    def key(self) -> str:
        """The pool's name suffix: stable while tenants come and go."""
        return hashlib.sha256("\n".join(self.addresses).encode()).hexdigest()[:8]

    @property
    def name(self) -> str:
        """Its Deployment, Service and Secret name."""
        return f"flexhost-pool-{self.key}"

    @property
    def worker(self) -> str:
        """Its worker Deployment name."""
        return f"{self.name}-worker"


def address_groups(config: TenantsConfig) -> tuple[list[Pool], list[str]]:
    """The pools of `config` (tenants with the same `backends`, two or more) and the
    problems: tenants that share some addresses but not all."""
    groups: dict[tuple[str, ...], list[TenantConfig]] = {}
    for tenant in config.tenants:
        key = tuple(sorted({url.lower() for url in tenant.backends}))
        groups.setdefault(key, []).append(tenant)
    problems = []
    owner: dict[str, tuple[str, ...]] = {}
    for key, members in groups.items():
        for address in key:
            other = owner.setdefault(address, key)
            if other != key:
                names = [t.subdomain for t in (*groups[other], *members)]
                problems.append(
                    f"tenants {', '.join(names[:4])}: share {address} but not all "
                    "their backends; a pool is the tenants with the same backends"
                )
    pools = [Pool(k, tuple(m)) for k, m in groups.items() if len(m) > 1]
    return pools, problems


def _pools_by_tenant(config: TenantsConfig) -> dict[str, Pool]:
    pools, _problems = address_groups(config)
    return {t.subdomain: pool for pool in pools for t in pool.tenants}


def backend_url(subdomain: str, namespace: str) -> str:
    """The URL the gateway reaches a tenant's backends at: its Service."""
    return f"http://{service_name(subdomain)}.{namespace}.svc:{BACKEND_PORT}"


def pool_url(pool: Pool, namespace: str) -> str:
    """The URL of a pool's Service: its tenants' backend in the cluster, and the
    address the pool serves (TENANT_ADDRESS)."""
    return f"http://{pool.name}.{namespace}.svc:{BACKEND_PORT}"


def _option_problems(options: K8sOptions) -> list[str]:
    problems = []
    if not DNS_LABEL_RE.fullmatch(options.namespace):
        problems.append(
            f"--namespace: must be a DNS label (a-z, 0-9, inner -), "
            f"got {options.namespace!r}"
        )
    if not options.image.strip() or any(c.isspace() for c in options.image):
        problems.append(f"--image: must be an image reference, got {options.image!r}")
    for proxy in options.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            problems.append(f"--trusted-proxies: not an address or network: {proxy!r}")
    if (options.redis_sentinels is None) != (options.redis_sentinel_master is None):
        problems.append(
            "--redis-sentinels, --redis-sentinel-master: give both or neither"
        )
    return problems


def _name_problems(config: TenantsConfig, source: str) -> list[str]:
    """Tenants whose objects would have another object's name (same kind)."""
    owners: dict[tuple[str, str], str] = {
        ("Deployment", GATEWAY_NAME): "the gateway's",
        ("Service", GATEWAY_NAME): "the gateway's",
        ("Secret", GATEWAY_NAME): "the gateway's",
    }
    pools, problems = address_groups(config)
    for pool in pools:
        owners.update(
            {
                ("Deployment", pool.name): "a pool's backend",
                ("Service", pool.name): "a pool's backend",
                ("Secret", pool.name): "a pool's",
                ("Deployment", pool.worker): "a pool's worker",
            }
        )
    pooled = {t.subdomain for pool in pools for t in pool.tenants}
    for i, tenant in enumerate(config.tenants):
        sub = tenant.subdomain
        if sub in pooled:
            continue  # its only object is its Secret, named after it: no clash
        wanted = [
            ("Deployment", backend_name(sub), f'tenant "{sub}"\'s backend'),
            ("Service", service_name(sub), f'tenant "{sub}"\'s backend'),
            ("Secret", backend_name(sub), f'tenant "{sub}"\'s'),
            ("Deployment", worker_name(sub), f'tenant "{sub}"\'s worker'),
        ]
        clash = next(((k, n) for k, n, _o in wanted if (k, n) in owners), None)
        if clash is not None:
            kind, name = clash
            problems.append(
                f'{source}: tenants[{i}].subdomain: "{sub}" cannot run on '
                f"Kubernetes: {kind} {name} is also {owners[clash]}"
            )
            continue
        owners.update(((k, n), o) for k, n, o in wanted)
    return problems


# --- the gateway's tenants.yaml -------------------------------------------------

_NOT_COPIED: Final = frozenset(
    {"subdomain", "name", "backends", "secret", "secret_ref"}
)


def _tenant_entry(
    tenant: TenantConfig, namespace: str, pool: Pool | None = None
) -> dict[str, Any]:
    defaults = TenantConfig(
        subdomain=tenant.subdomain, name=tenant.subdomain, backends=()
    )
    url = (
        backend_url(tenant.subdomain, namespace)
        if pool is None
        else pool_url(pool, namespace)
    )
    entry: dict[str, Any] = {
        "subdomain": tenant.subdomain,
        "name": tenant.name,
        "backends": [url],
    }
    colors: dict[str, str] = {}
    for field in dataclasses.fields(TenantConfig):
        value = getattr(tenant, field.name)
        if field.name in _NOT_COPIED or value == getattr(defaults, field.name):
            continue
        if field.name in ("primary_color", "accent_color"):
            colors[field.name.removesuffix("_color")] = value
        elif field.name == "rate_limits":
            entry[field.name] = value.as_yaml()
        else:
            entry[field.name] = list(value) if isinstance(value, tuple) else value
    if colors:
        entry["colors"] = colors
    return entry


def gateway_tenants_yaml(config: TenantsConfig, namespace: str) -> str:
    """tenants.yaml for the gateway (and the pools) in the cluster: backends are the
    tenants' or pools' Services.

    `secret` is left out: every tenant's secret is the default file, named after the
    tenant in GATEWAY_SECRETS_DIR, where the tenant's Secret is mounted.
    """
    pools = _pools_by_tenant(config)
    document = {
        "base_domains": list(config.base_domains),
        "tenants": [
            _tenant_entry(t, namespace, pools.get(t.subdomain)) for t in config.tenants
        ],
    }
    header = (
        "# The gateway's tenants.yaml, generated by `flexhost deploy k8s`:\n"
        "# backends are the tenants' Services, secrets are files in\n"
        "# GATEWAY_SECRETS_DIR.\n"
    )
    return header + _dump(document)


# --- manifests ------------------------------------------------------------------


def _owner(tenant: str | None) -> dict[str, str]:
    """The label of a tenant's objects, or (`pool:<key>`) of a pool's."""
    if tenant is None:
        return {}
    if tenant.startswith("pool:"):
        return {POOL_LABEL: tenant.removeprefix("pool:")}
    return {TENANT_LABEL: tenant}


def _labels(component: str, tenant: str | None = None) -> dict[str, str]:
    return {**APP_LABELS, "app.kubernetes.io/component": component, **_owner(tenant)}


def _selector(component: str, tenant: str | None = None) -> dict[str, str]:
    selector = {
        "app.kubernetes.io/name": "flexhost",
        "app.kubernetes.io/component": component,
    }
    return {**selector, **_owner(tenant)}


def _meta(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _redis_env(prefix: str, secret: str, options: K8sOptions) -> list[dict[str, Any]]:
    """A URL from the Secret, or the Sentinel settings (password from the Secret)."""
    if options.redis_sentinels is None:
        return [_secret_env(f"{prefix}_REDIS_URL", secret, REDIS_KEY)]
    password = _secret_env(f"{prefix}_REDIS_PASSWORD", secret, REDIS_PASSWORD_KEY)
    password["valueFrom"]["secretKeyRef"]["optional"] = True
    return [
        *_env(
            {
                f"{prefix}_REDIS_SENTINELS": options.redis_sentinels,
                f"{prefix}_REDIS_SENTINEL_MASTER": options.redis_sentinel_master or "",
            }
        ),
        password,
    ]


def _env(pairs: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in pairs.items()]


_POD_SECURITY: Final = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CONTAINER_SECURITY: Final = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
_TMP_VOLUME: Final = {
    "name": "tmp",
    "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"},
}
_TMP_MOUNT: Final = {"name": "tmp", "mountPath": "/tmp"}
_PRESTOP: Final = {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_S)]}}}


def _http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _spread(selector: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
    ]


def _pod_spec(
    container: dict[str, Any], volumes: list[dict[str, Any]], grace: int
) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _POD_SECURITY,
        "terminationGracePeriodSeconds": grace,
        "containers": [container],
        "volumes": [*volumes, _TMP_VOLUME],
    }


def _deployment(
    name: str,
    namespace: str,
    component: str,
    tenant: str | None,
    replicas: int,
    pod: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    template_meta: dict[str, Any] = {"labels": _labels(component, tenant)}
    if annotations:
        template_meta["annotations"] = annotations
    if component != "worker":
        pod = {
            **pod,
            "topologySpreadConstraints": _spread(_selector(component, tenant)),
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, _labels(component, tenant)),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _selector(component, tenant)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": template_meta, "spec": pod},
        },
    }


def _service(
    name: str,
    namespace: str,
    component: str,
    tenant: str | None,
    port: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, _labels(component, tenant)),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(component, tenant),
            "ports": [
                {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def _external_service(name: str, namespace: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, _labels(name)),
        "spec": {"type": "ExternalName", "externalName": host},
    }


def _gateway(config: TenantsConfig, options: K8sOptions) -> Iterator[dict[str, Any]]:
    ns = options.namespace
    secrets_volume: dict[str, Any] = {"name": "secrets"}
    if config.tenants:
        # Each tenant's identity secret, as the file GATEWAY_SECRETS_DIR/<tenant>.
        secrets_volume["projected"] = {
            "defaultMode": 0o440,
            "sources": [
                {
                    "secret": {
                        "name": backend_name(t.subdomain),
                        "items": [{"key": IDENTITY_KEY, "path": t.subdomain}],
                    }
                }
                for t in config.tenants
            ],
        }
    else:
        secrets_volume["emptyDir"] = {}
    container = {
        "name": "gateway",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["gateway"],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "env": [
            *_env(
                {
                    "GATEWAY_HOST": "0.0.0.0",
                    "GATEWAY_PORT": str(GATEWAY_PORT),
                    # One process per pod: scale with replicas.
                    "GATEWAY_WORKERS": "1",
                    "GATEWAY_TENANTS_PATH": f"{TENANTS_DIR}/tenants.yaml",
                    "GATEWAY_SECRETS_DIR": SECRETS_DIR,
                    "GATEWAY_TRUSTED_PROXIES": ",".join(options.trusted_proxies),
                    "GATEWAY_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE_S),
                }
            ),
            *_redis_env("GATEWAY", GATEWAY_NAME, options),
        ],
        "readinessProbe": _http_probe("/readyz", period=5, failures=2),
        "livenessProbe": _http_probe("/healthz", period=10, failures=3),
        "lifecycle": _PRESTOP,
        "resources": {
            "requests": {"cpu": "250m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [
            # A directory, not subPath: the kubelet's updates reach the gateway, which
            # reloads tenants.yaml by itself.
            {"name": "tenants", "mountPath": TENANTS_DIR, "readOnly": True},
            {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
            _TMP_MOUNT,
        ],
    }
    volumes = [
        {"name": "tenants", "configMap": {"name": "flexhost-tenants"}},
        secrets_volume,
    ]
    yield _deployment(
        GATEWAY_NAME,
        ns,
        "gateway",
        None,
        options.gateway_replicas,
        _pod_spec(container, volumes, grace=POD_GRACE_S),
        annotations={
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(GATEWAY_PORT),
            "prometheus.io/path": "/metrics",
        },
    )
    yield _service(GATEWAY_NAME, ns, "gateway", None, 80)
    yield {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(GATEWAY_NAME, ns, _labels("gateway")),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": _selector("gateway")},
        },
    }


def _tenant_env(tenant: TenantConfig, options: K8sOptions) -> list[dict[str, Any]]:
    secret = backend_name(tenant.subdomain)
    return [
        *_env(
            {
                "TENANT_SECRET_FILE": f"{BACKEND_SECRET_DIR}/{IDENTITY_KEY}",
                "TENANT_FLEXMEASURES_VERSION": tenant.flexmeasures_version,
                "TENANT_PENDING_SCHEDULE_ACCEPTED": str(
                    tenant.pending_schedule_accepted
                ).lower(),
            }
        ),
        _secret_env("TENANT_DATABASE_URL", secret, DATABASE_KEY),
        *_redis_env("TENANT", secret, options),
    ]


def _backend_container(
    options: K8sOptions, args: list[str], env: list[dict[str, Any]], mounts: list[Any]
) -> dict[str, Any]:
    # /readyz and /healthz sit outside /api, so they need no gateway identity (the
    # backend's /api/v3_0/health/ready does). /readyz fails while the backend drains.
    return {
        "name": "backend",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [{"name": "http", "containerPort": BACKEND_PORT, "protocol": "TCP"}],
        "env": [
            *_env(
                {
                    "TENANT_HOST": "0.0.0.0",
                    "TENANT_PORT": str(BACKEND_PORT),
                    "TENANT_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE_S),
                }
            ),
            *env,
        ],
        # Migrations run before the backend listens: give them two minutes.
        "startupProbe": _http_probe("/healthz", period=2, failures=60),
        "readinessProbe": _http_probe("/readyz", period=5, failures=2),
        "livenessProbe": _http_probe("/healthz", period=10, failures=3),
        "lifecycle": _PRESTOP,
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }


def _worker_container(
    options: K8sOptions, args: list[str], env: list[dict[str, Any]], mounts: list[Any]
) -> dict[str, Any]:
    return {
        "name": "worker",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "2Gi"},
        },
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }


def _tenant(tenant: TenantConfig, options: K8sOptions) -> Iterator[dict[str, Any]]:
    ns = options.namespace
    sub = tenant.subdomain
    secret_volume = {
        "name": "secret",
        "secret": {
            "secretName": backend_name(sub),
            "defaultMode": 0o440,
            "items": [{"key": IDENTITY_KEY, "path": IDENTITY_KEY}],
        },
    }
    mounts = [
        {"name": "secret", "mountPath": BACKEND_SECRET_DIR, "readOnly": True},
        _TMP_MOUNT,
    ]
    env = _tenant_env(tenant, options)
    backend = _backend_container(options, ["tenant", sub], env, mounts)
    replicas = options.backend_replicas or len(tenant.backends)
    yield _deployment(
        backend_name(sub),
        ns,
        "backend",
        sub,
        replicas,
        _pod_spec(backend, [secret_volume], grace=POD_GRACE_S),
    )
    yield _service(service_name(sub), ns, "backend", sub, BACKEND_PORT)
    worker = _worker_container(options, ["worker", sub], env, mounts)
    yield _deployment(
        worker_name(sub),
        ns,
        "worker",
        sub,
        1,
        _pod_spec(worker, [secret_volume], grace=WORKER_GRACE_S),
    )


def _pool(pool: Pool, options: K8sOptions) -> Iterator[dict[str, Any]]:
    """A pool's backend Deployment, Service and worker: they read the tenants
    (the ConfigMap) and every tenant's identity secret (projected, like the
    gateway's); an added tenant changes the projection, which rolls them."""
    ns = options.namespace
    owner = f"pool:{pool.key}"
    secrets_volume = {
        "name": "secrets",
        "projected": {
            "defaultMode": 0o440,
            "sources": [
                {
                    "secret": {
                        "name": backend_name(t.subdomain),
                        "items": [{"key": IDENTITY_KEY, "path": t.subdomain}],
                    }
                }
                for t in pool.tenants
            ],
        },
    }
    volumes = [
        {"name": "tenants", "configMap": {"name": "flexhost-tenants"}},
        secrets_volume,
    ]
    mounts = [
        # A directory, not subPath: the kubelet's updates reach the pool, which
        # follows its tenants in the file by itself.
        {"name": "tenants", "mountPath": TENANTS_DIR, "readOnly": True},
        {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
        _TMP_MOUNT,
    ]
    env = [
        *_env(
            {
                "TENANT_TENANTS_FILE": f"{TENANTS_DIR}/tenants.yaml",
                "TENANT_ADDRESS": pool_url(pool, ns),
                "TENANT_SECRETS_DIR": SECRETS_DIR,
            }
        ),
        # A template: {tenant} is each tenant's subdomain.
        _secret_env("TENANT_DATABASE_URL", pool.name, DATABASE_KEY),
        *_redis_env("TENANT", pool.name, options),
    ]
    backend = _backend_container(options, ["pool"], env, mounts)
    replicas = options.backend_replicas or len(pool.addresses)
    yield _deployment(
        pool.name,
        ns,
        "backend",
        owner,
        replicas,
        _pod_spec(backend, volumes, grace=POD_GRACE_S),
    )
    yield _service(pool.name, ns, "backend", owner, BACKEND_PORT)
    worker = _worker_container(options, ["pool-worker"], env, mounts)
    yield _deployment(
        pool.worker,
        ns,
        "worker",
        owner,
        1,
        _pod_spec(worker, volumes, grace=WORKER_GRACE_S),
    )


def manifests(config: TenantsConfig, options: K8sOptions) -> list[dict[str, Any]]:
    """Every object, in the order `kubectl apply` should create them."""
    ns = options.namespace
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": dict(APP_LABELS)},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("flexhost-tenants", ns, _labels("gateway")),
            "data": {"tenants.yaml": gateway_tenants_yaml(config, ns)},
        },
    ]
    if options.redis_host:
        docs.append(_external_service("redis", ns, options.redis_host))
    if options.postgres_host:
        docs.append(_external_service("postgresql", ns, options.postgres_host))
    docs.extend(_gateway(config, options))
    docs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("flexhost-backends", ns, _labels("backend")),
            "spec": {
                # Backends and workers take connections from the gateways only.
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "flexhost"},
                    "matchExpressions": [
                        {
                            "key": "app.kubernetes.io/component",
                            "operator": "In",
                            "values": ["backend", "worker"],
                        }
                    ],
                },
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": _selector("gateway")}}
                        ],
                        "ports": [{"protocol": "TCP", "port": BACKEND_PORT}],
                    }
                ],
            },
        }
    )
    pools = _pools_by_tenant(config)
    rendered: set[str] = set()
    for tenant in config.tenants:
        pool = pools.get(tenant.subdomain)
        if pool is None:
            docs.extend(_tenant(tenant, options))
        elif pool.name not in rendered:
            rendered.add(pool.name)
            docs.extend(_pool(pool, options))
    return docs


def command_line(options: K8sOptions, source: str) -> str:
    """The `flexhost deploy k8s` command that renders these options again."""
    words = ["flexhost deploy k8s", f"--tenants {Path(source).name}"]
    words.append(f"--image {options.image}")
    if options.namespace != DEFAULT_NAMESPACE:
        words.append(f"--namespace {options.namespace}")
    if options.gateway_replicas != DEFAULT_GATEWAY_REPLICAS:
        words.append(f"--gateway-replicas {options.gateway_replicas}")
    if options.backend_replicas is not None:
        words.append(f"--replicas {options.backend_replicas}")
    if options.trusted_proxies != DEFAULT_TRUSTED_PROXIES:
        words.append(f"--trusted-proxies {','.join(options.trusted_proxies)}")
    if options.redis_host:
        words.append(f"--redis-host {options.redis_host}")
    if options.postgres_host:
        words.append(f"--postgres-host {options.postgres_host}")
    return " ".join(words)


def _header(config: TenantsConfig, options: K8sOptions, source: str) -> str:
    ns = options.namespace
    lines = [
        "# flexhost on Kubernetes, rendered by",
        f"#   {command_line(options, source)}",
        "# Do not edit: change the tenants file, render again, then",
        "#   kubectl apply -f THIS-FILE",
        "# The gateways reload their tenants.yaml (the ConfigMap) by themselves;",
        "# an added or removed tenant also changes their secrets volume, which",
        "# rolls them.",
        "#",
        "# No secret is in this file. Create these Secrets (pods wait for them);",
        "# URLs may name the Services redis and postgresql when rendered with",
        "# --redis-host and --postgres-host. An identity secret is >= 32 bytes, e.g.",
        "# `head -c 48 /dev/urandom | base64 > company.secret`.",
        f"#   kubectl -n {ns} create secret generic {GATEWAY_NAME} \\",
        f"#     --from-literal={REDIS_KEY}='redis://:PASSWORD@redis:6379/0'",
    ]
    pools = _pools_by_tenant(config)
    for pool in dict.fromkeys(pools.values()):
        names = ", ".join(t.subdomain for t in pool.tenants[:3])
        more = "..." if len(pool.tenants) > 3 else ""
        lines += [
            f"#   # the pool of {names}{more}: {{tenant}} is each one's subdomain",
            f"#   kubectl -n {ns} create secret generic {pool.name} \\",
            f"#     --from-literal={DATABASE_KEY}="
            "'postgresql+asyncpg://USER:PASSWORD@postgresql:5432/flexhost_{tenant}' \\",
            f"#     --from-literal={REDIS_KEY}='redis://:PASSWORD@redis:6379/0'",
        ]
    for tenant in config.tenants:
        sub = tenant.subdomain
        if sub in pools:  # the pool holds the database and Redis URLs
            lines += [
                f"#   kubectl -n {ns} create secret generic {backend_name(sub)} \\",
                f"#     --from-file={IDENTITY_KEY}={sub}.secret",
            ]
            continue
        lines += [
            f"#   kubectl -n {ns} create secret generic {backend_name(sub)} \\",
            f"#     --from-file={IDENTITY_KEY}={sub}.secret \\",
            f"#     --from-literal={DATABASE_KEY}="
            f"'postgresql+asyncpg://USER:PASSWORD@postgresql:5432/{sub}' \\",
            f"#     --from-literal={REDIS_KEY}='redis://:PASSWORD@redis:6379/0'",
        ]
    lines += [
        "#",
        f"# Service {GATEWAY_NAME} (port 80) is where a TLS front (ingress",
        "# controller, cloud load balancer, deploy/nginx/flexhost.conf) sends",
        "# *.flexmeasures.io; its addresses must be in --trusted-proxies",
        f"# ({','.join(options.trusted_proxies)}).",
        "# Requests without CPU limits on purpose: throttling shows up as latency.",
    ]
    return "\n".join(lines) + "\n"


class _Dumper(yaml.SafeDumper):
    """Block style, keys in insertion order, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        # Shared dicts (security contexts, probes) are written out, not as &anchors.
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(document: Any) -> str:
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096
    )


def render(config: TenantsConfig, options: K8sOptions, source: str) -> str:
    """The manifests as one multi-document YAML text, with a how-to header."""
    problems = _option_problems(options) + _name_problems(config, source)
    if problems:
        raise ConfigError(problems)
    body = yaml.dump_all(
        manifests(config, options),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=4096,
        explicit_start=True,
    )
    return _header(config, options, source) + body


def render_file(path: Path, options: K8sOptions) -> str:
    """Validate a tenants file as the gateway does (secrets aside) and render it."""
    config = load_tenants(path, check_secrets=False)
    return render(config, options, source=str(path))
