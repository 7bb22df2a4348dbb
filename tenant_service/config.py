"""Settings of one tenant backend, read from `TENANT_*` environment variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.version import InvalidVersion, Version

PREFIX: Final = "TENANT_"
TENANT_NAME_RE: Final = re.compile(r"[a-z0-9](-?[a-z0-9])*")
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8101
DEFAULT_FLEXMEASURES_VERSION: Final = "1.0.1"
# FlexMeasures' FLEXMEASURES_MAX_SENSOR_DATA_INGESTION_BYTES default (3.1 MiB).
DEFAULT_MAX_DATA_BYTES: Final = 3_250_585
TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


class ConfigError(Exception):
    """One or more settings are invalid; the message names each problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret string that never shows in reprs or logs."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


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


def default_database_url(tenant: str) -> str:
    """The SQLite file a tenant uses when no database URL is configured."""
    return f"sqlite+aiosqlite:///./.flexhost/{tenant}.sqlite3"


def valid_tenant_name(name: str) -> bool:
    """Whether `name` is a valid subdomain label."""
    return len(name) <= 63 and TENANT_NAME_RE.fullmatch(name) is not None


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Settings from `TENANT_*` variables; one ConfigError names every problem."""
    problems: list[str] = []

    def get(key: str) -> str | None:
        value = environ.get(PREFIX + key)
        return value if value not in (None, "") else None

    name = get("NAME") or ""
    if not name:
        problems.append(f"{PREFIX}NAME: required")
    elif not valid_tenant_name(name):
        problems.append(f"{PREFIX}NAME: {name!r} is not a valid subdomain label")

    database_url = get("DATABASE_URL") or default_database_url(name or "tenant")
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        problems.append(
            f"{PREFIX}DATABASE_URL: must start with sqlite+aiosqlite:// or "
            "postgresql+asyncpg://"
        )

    secret_value: str | None = get("SECRET")
    secret_file = get("SECRET_FILE")
    if secret_value is not None and secret_file is not None:
        problems.append(f"{PREFIX}SECRET, {PREFIX}SECRET_FILE: set only one")
    elif secret_value is None and secret_file is not None:
        try:
            secret_value = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            problems.append(
                f"{PREFIX}SECRET_FILE: cannot read {secret_file!r}: {err.strerror}"
            )
    if secret_value is None:
        if secret_file is None:
            problems.append(f"{PREFIX}SECRET or {PREFIX}SECRET_FILE: required")
    elif len(secret_value.encode()) < 32:
        problems.append(f"{PREFIX}SECRET: must be at least 32 bytes (HS256)")

    host = get("HOST") or DEFAULT_HOST
    port = DEFAULT_PORT
    raw_port = get("PORT")
    if raw_port is not None:
        try:
            port = int(raw_port)
        except ValueError:
            problems.append(f"{PREFIX}PORT: {raw_port!r} is not an integer")
        else:
            if not 1 <= port <= 65535:
                problems.append(f"{PREFIX}PORT: {port} is not in 1..65535")

    version = get("FLEXMEASURES_VERSION") or DEFAULT_FLEXMEASURES_VERSION
    try:
        Version(version)
    except InvalidVersion:
        problems.append(f"{PREFIX}FLEXMEASURES_VERSION: {version!r} is not PEP 440")

    max_data_bytes = DEFAULT_MAX_DATA_BYTES
    raw_max = get("MAX_DATA_BYTES")
    if raw_max is not None:
        try:
            max_data_bytes = int(raw_max)
        except ValueError:
            problems.append(f"{PREFIX}MAX_DATA_BYTES: {raw_max!r} is not an integer")
        else:
            if max_data_bytes < 1:
                problems.append(f"{PREFIX}MAX_DATA_BYTES: must be positive")

    allow_data_overwrite = False
    raw_overwrite = get("ALLOW_DATA_OVERWRITE")
    if raw_overwrite is not None:
        word = raw_overwrite.strip().lower()
        if word in TRUE_WORDS:
            allow_data_overwrite = True
        elif word not in FALSE_WORDS:
            problems.append(
                f"{PREFIX}ALLOW_DATA_OVERWRITE: {raw_overwrite!r} is not true or false"
            )

    if problems:
        raise ConfigError(problems)
    return Settings(
        name=name,
        database_url=database_url,
        secret=Secret(secret_value or ""),
        host=host,
        port=port,
        flexmeasures_version=version,
        max_data_bytes=max_data_bytes,
        allow_data_overwrite=allow_data_overwrite,
    )
