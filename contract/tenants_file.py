"""tenants.yaml: its parsing into TenantsConfig, every problem located."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

import yaml
from packaging.version import InvalidVersion, Version
from yarl import URL

from contract.config import ConfigError, Secret, read_secret_file
from contract.names import TENANT_NAME_RULE, valid_tenant_name
from contract.rates import (
    DEFAULT_PER_TOKEN,
    DEFAULT_RATE_LIMITS,
    Rate,
    RateLimits,
    parse_rate,
)

DEFAULT_BASE_DOMAINS: Final = ("flexmeasures.io", "localhost")
DEFAULT_TOKEN_TTL: Final = 21600
DEFAULT_UPSTREAM_TIMEOUT: Final = 30.0
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
DEFAULT_FM_VERSION: Final = "1.0.1"
DEFAULT_SECRETS_DIR: Final = Path(".flexhost/secrets")
KNOWN_VERSIONS: Final = ("v3_0",)
SUNSET_VERSIONS: Final = ("v1", "v1_1", "v1_2", "v1_3", "v2_0")
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
    rate_limits: RateLimits = DEFAULT_RATE_LIMITS
    # The sender of the tenant's mail (password reset); "": GATEWAY_MAIL_FROM.
    mail_from: str = ""
    # The tenant's database for its backends (overrides a pool's TENANT_DATABASE_URL
    # template): a URL without a password, or env:VARIABLE / file:/path holding one
    # (resolve_database). "": the backend's own setting.
    database: str = ""
    secret: Secret | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TenantsConfig:
    """The whole tenants.yaml."""

    base_domains: tuple[str, ...]
    tenants: tuple[TenantConfig, ...]


_TOP_KEYS: Final = frozenset({"base_domains", "tenants"})


# libyaml's parser when PyYAML has it (ten times faster on a big file); its nodes
# carry the same line and column marks.
Loader: TypeAlias = yaml.SafeLoader | yaml.CSafeLoader


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


def _scalar(loader: Loader, node: yaml.Node) -> Any:
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
    loader: Loader, node: yaml.Node, path: str, problems: _Problems
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
    loader: Loader, node: yaml.Node, path: str, problems: _Problems
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


class _Entry:
    """One `tenants[i]` mapping being read: its fields and the values read so far."""

    def __init__(
        self,
        loader: Loader,
        node: yaml.Node,
        path: str,
        fields: dict[str, tuple[yaml.Node, yaml.Node]],
        problems: _Problems,
        secrets_dir: Path,
        check_secrets: bool,
    ) -> None:
        self.loader = loader
        self.node = node
        self.path = path
        self.fields = fields
        self.problems = problems
        self.secrets_dir = secrets_dir
        self.check_secrets = check_secrets
        self.before = len(problems.items)
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> tuple[yaml.Node, Any] | None:
        """(value node, value): a scalar constructed, any other node as it is."""
        if key not in self.fields:
            return None
        value_node = self.fields[key][1]
        if isinstance(value_node, yaml.ScalarNode):
            return value_node, _scalar(self.loader, value_node)
        return value_node, value_node

    def add(self, node: yaml.Node, key: str, message: str) -> None:
        """Record a problem of this tenant's `key`."""
        self.problems.add(node, f"{self.path}.{key}", message)

    @property
    def clean(self) -> bool:
        """Whether no problem of this tenant has been recorded yet."""
        return len(self.problems.items) == self.before


# A field reader returns the field's value, or records a problem and returns the
# default; it runs whether or not the field is given.
_Reader = Callable[[_Entry, str], Any]


def _subdomain(entry: _Entry, key: str) -> str:
    given = entry.get(key)
    if given is None:
        entry.add(entry.node, key, "missing")
        return ""
    node, raw = given
    if not valid_tenant_name(raw):
        entry.add(node, key, f"must be {TENANT_NAME_RULE}, got {raw!r}")
        return ""
    return str(raw)


def _name(entry: _Entry, key: str) -> str:
    subdomain: str = entry.values["subdomain"]
    given = entry.get(key)
    if given is None:
        return subdomain
    if isinstance(given[1], str) and given[1].strip():
        return given[1].strip()
    entry.add(given[0], key, "must be a non-empty string")
    return subdomain


def _backends(entry: _Entry, key: str) -> tuple[str, ...]:
    if key not in entry.fields:
        entry.add(entry.node, key, "missing: give at least one backend URL")
        return ()
    node = entry.fields[key][1]
    items = _string_list(entry.loader, node, f"{entry.path}.{key}", entry.problems)
    if items is not None and not items:
        entry.add(node, key, "must not be empty")
    backends: list[str] = []
    for i, (item_node, url) in enumerate(items or []):
        problem = _backend_problem(url)
        if problem:
            entry.add(item_node, f"{key}[{i}]", problem)
        else:
            backends.append(url.rstrip("/"))
    return tuple(backends)


def _versions(entry: _Entry, key: str) -> tuple[str, ...]:
    if key not in entry.fields:
        return KNOWN_VERSIONS
    node = entry.fields[key][1]
    items = _string_list(entry.loader, node, f"{entry.path}.{key}", entry.problems)
    versions: list[str] = []
    for i, (item_node, version) in enumerate(items or []):
        if version not in KNOWN_VERSIONS:
            entry.add(
                item_node,
                f"{key}[{i}]",
                f"unknown API version {version!r}; known: {', '.join(KNOWN_VERSIONS)}",
            )
        else:
            versions.append(version)
    if items is not None and not items:
        entry.add(node, key, "must not be empty")
    return tuple(versions)


def _status(entry: _Entry, key: str) -> Literal["active", "suspended"]:
    given = entry.get(key)
    if given is None or given[1] == "active":
        return "active"
    if given[1] == "suspended":
        return "suspended"
    entry.add(given[0], key, f"must be 'active' or 'suspended', got {given[1]!r}")
    return "active"


def _aliases(entry: _Entry, key: str) -> tuple[str, ...]:
    if key not in entry.fields:
        return ()
    node = entry.fields[key][1]
    items = _string_list(entry.loader, node, f"{entry.path}.{key}", entry.problems)
    aliases: list[str] = []
    for i, (item_node, alias) in enumerate(items or []):
        host = _hostname(alias)
        if host is None:
            entry.add(item_node, f"{key}[{i}]", f"not a host name: {alias!r}")
        else:
            aliases.append(host)
    return tuple(aliases)


def _integer(default: int, low: int, high: int) -> _Reader:
    """A reader of a whole number from low to high."""

    def read(entry: _Entry, key: str) -> int:
        given = entry.get(key)
        if given is None:
            return default
        node, value = given
        if isinstance(value, bool) or not isinstance(value, int):
            entry.add(node, key, f"must be a whole number, got {value!r}")
            return default
        if not low <= value <= high:
            entry.add(node, key, f"must be between {low} and {high}, got {value}")
            return default
        return value

    return read


def _boolean(entry: _Entry, key: str) -> bool:
    given = entry.get(key)
    if given is None:
        return False
    if not isinstance(given[1], bool):
        entry.add(given[0], key, f"must be true or false, got {given[1]!r}")
        return False
    return given[1]


def _colors(entry: _Entry, key: str) -> dict[str, str]:
    colors = {"primary": DEFAULT_PRIMARY_COLOR, "accent": DEFAULT_ACCENT_COLOR}
    given = entry.get(key)
    if given is None:
        return colors
    node = given[0]
    mapping = (
        _scalar(entry.loader, node) if isinstance(node, yaml.MappingNode) else None
    )
    if not isinstance(mapping, dict) or not set(mapping) <= set(colors):
        entry.add(node, key, "must be a mapping with primary and/or accent")
        return colors
    for which, value in mapping.items():
        if isinstance(value, str) and COLOR_RE.fullmatch(value):
            colors[which] = value.lower()
        else:
            entry.add(
                node,
                f"{key}.{which}",
                f'must be a colour like "#1f6feb", got {value!r}',
            )
    return colors


def _rate_limits_field(entry: _Entry, key: str) -> RateLimits:
    if key not in entry.fields:
        return RateLimits()
    return _rate_limits(
        entry.loader, entry.fields[key][1], f"{entry.path}.{key}", entry.problems
    )


def _upstream_timeout(entry: _Entry, key: str) -> float:
    given = entry.get(key)
    if given is None:
        return DEFAULT_UPSTREAM_TIMEOUT
    node, value = given
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0 < value <= 600)
    ):
        entry.add(node, key, f"must be seconds between 0 and 600, got {value!r}")
        return DEFAULT_UPSTREAM_TIMEOUT
    return float(value)


def _flexmeasures_version(entry: _Entry, key: str) -> str:
    given = entry.get(key)
    if given is None:
        return DEFAULT_FM_VERSION
    value = str(given[1])
    try:
        Version(value)
    except InvalidVersion:
        entry.add(
            given[0], key, f"must be a PEP 440 version such as 1.0.1, got {value!r}"
        )
        return DEFAULT_FM_VERSION
    return value


def _mail_from(entry: _Entry, key: str) -> str:
    """A sender like `Acme <noreply@acme.example>` (one line, with an @)."""
    given = entry.get(key)
    if given is None:
        return ""
    value = given[1]
    if (
        not isinstance(value, str)
        or "@" not in value
        or len(value) > 320
        or any(not char.isprintable() for char in value)
    ):
        entry.add(given[0], key, f"must be a mail address, got {value!r}")
        return ""
    return value.strip()


def _secret(entry: _Entry, key: str) -> tuple[str, Secret | None]:
    """(secret_ref, the secret when found): checked only on an otherwise good entry."""
    subdomain: str = entry.values["subdomain"]
    ref = f"file:{(entry.secrets_dir / subdomain).absolute()}" if subdomain else ""
    node = entry.node
    given = entry.get(key)
    if given is not None:
        node, raw = given
        kind, _, target = raw.partition(":") if isinstance(raw, str) else ("", "", "")
        if kind == "env" and ENV_NAME_RE.match(target):
            ref = raw
        elif kind == "file" and target:
            ref = f"file:{Path(target).expanduser().absolute()}"
        else:
            entry.add(node, key, f"must be 'env:VARIABLE' or 'file:/path', got {raw!r}")
    if not ref or not entry.clean:
        return ref, None
    try:
        value = _resolve_secret(ref)
    except ValueError as err:
        if entry.check_secrets:
            entry.add(node, key, str(err))
        return ref, None
    if value is None:
        if entry.check_secrets:
            entry.add(node, key, f"no secret at {ref}")
        return ref, None
    if len(value) < 16:
        entry.add(node, key, "must be at least 16 characters")
        return ref, None
    return ref, Secret(value)


DATABASE_SCHEMES: Final = ("sqlite+aiosqlite://", "postgresql+asyncpg://")


def database_url_problem(url: str) -> str | None:
    """What is wrong with a tenant database URL (None: nothing)."""
    if not url.startswith(DATABASE_SCHEMES):
        return "must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return "not a database URL"
    if not parsed.path.strip("/"):
        return "must name a database (or a SQLite file)"
    return None


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def plain_database_problem(url: str) -> str | None:
    """What is wrong with a database URL written in clear (tenants.yaml, often in
    git; a command line, seen by `ps`): `database_url_problem`, or a password."""
    problem = database_url_problem(url)
    if problem is None and _has_password(url):
        problem = (
            "must not hold a password (it would be in clear): use env:VARIABLE "
            "or file:/path holding the URL, or PGPASSWORD / ~/.pgpass"
        )
    return problem


def _database(entry: _Entry, key: str) -> str:
    """A URL without password, or an env:/file: reference to one (kept as given).

    tenants.yaml is read by every gateway and often kept in git: a password in it
    would be in clear in both places, so a URL with one must come from the
    environment or a file, like the identity secret (or from ~/.pgpass, which
    asyncpg reads for a URL without password).
    """
    given = entry.get(key)
    if given is None:
        return ""
    node, raw = given
    if not isinstance(raw, str) or not raw.strip():
        entry.add(node, key, "must be a database URL, env:VARIABLE or file:/path")
        return ""
    value = raw.strip()
    kind, _, target = value.partition(":")
    if kind == "env":
        if not ENV_NAME_RE.match(target):
            entry.add(node, key, f"env: needs a variable name, got {value!r}")
            return ""
        return value
    if kind == "file":
        if not target:
            entry.add(node, key, "file: needs a path")
            return ""
        return f"file:{Path(target).expanduser().absolute()}"
    problem = plain_database_problem(value)
    if problem is not None:
        # Not the value itself: it may hold a password.
        entry.add(node, key, problem)
        return ""
    return value


def resolve_database(ref: str) -> str:
    """The URL behind a tenant's `database` (ValueError naming the reference)."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        url = os.environ.get(target, "").strip()
        if not url:
            raise ValueError(f"database {ref}: the variable is unset or empty")
    elif kind == "file":
        try:
            url = read_secret_file(target)
        except OSError as err:
            raise ValueError(f"database {ref}: cannot read: {err.strerror}") from err
    else:
        return ref
    problem = database_url_problem(url)
    if problem is not None:
        raise ValueError(f"database {ref}: {problem}")
    return url


# Each field of a tenant and its reader, in the order problems are reported.
_READERS: Final[dict[str, _Reader]] = {
    "subdomain": _subdomain,
    "name": _name,
    "backends": _backends,
    "versions": _versions,
    "status": _status,
    "aliases": _aliases,
    "token_ttl": _integer(DEFAULT_TOKEN_TTL, *TOKEN_TTL_RANGE),
    "max_body_bytes": _integer(DEFAULT_MAX_BODY_BYTES, 1024, 1 << 31),
    "hide_account_existence": _boolean,
    "demo": _boolean,
    "pending_schedule_accepted": _boolean,
    "api_key_max_ttl": _integer(DEFAULT_API_KEY_MAX_TTL, *TOKEN_TTL_RANGE),
    "colors": _colors,
    "rate_limits": _rate_limits_field,
    "upstream_timeout": _upstream_timeout,
    "flexmeasures_version": _flexmeasures_version,
    "mail_from": _mail_from,
    "database": _database,
    "secret": _secret,
}


def _resolve_secret(ref: str) -> str | None:
    """The secret behind `ref`; None where there is none (ValueError: a file that is
    there but unusable)."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        return os.environ.get(target) or None
    try:
        text = read_secret_file(target)
    except OSError as err:
        if err.errno == errno.EILSEQ:
            raise ValueError(f"{ref}: {err.strerror}") from err
        return None
    return text or None


def _tenant(
    loader: Loader,
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
    entry = _Entry(loader, node, path, fields, problems, secrets_dir, check_secrets)
    for key, (key_node, _) in fields.items():
        if key not in _READERS:
            entry.add(key_node, key, "unknown field")
    for key, read in _READERS.items():
        entry.values[key] = read(entry, key)
    if not entry.clean:
        return None
    values = dict(entry.values)
    colors = values.pop("colors")
    secret_ref, secret = values.pop("secret")
    return TenantConfig(
        **values,
        primary_color=colors["primary"],
        accent_color=colors["accent"],
        secret_ref=secret_ref,
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
        loader: Loader = (
            yaml.CSafeLoader(text) if yaml.__with_libyaml__ else yaml.SafeLoader(text)
        )
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
    loader: Loader, source: str, secrets_dir: Path, check_secrets: bool
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
            # Each tenant's nodes are freed once it is read, not all at the end:
            # freeing 10,000 tenants' nodes at once held the GIL 40-90 ms, which the
            # gateway's event loop waits out while a worker thread parses a reload.
            items = seq.value
            items.reverse()
            i = -1
            while items:
                i += 1
                item = items.pop()
                loader.constructed_objects.clear()  # (it keeps every node read)
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
