"""tenants.yaml texts and tenant secret files for gateways under test."""

from __future__ import annotations

import secrets
from pathlib import Path


def write_secret(secrets_dir: Path, tenant: str) -> str:
    """Write a fresh secret for `tenant` into `secrets_dir`; the secret."""
    value = secrets.token_urlsafe(32)
    (secrets_dir / tenant).write_text(value)
    return value


def tenants_text(entries: list[dict[str, object]]) -> str:
    """A tenants.yaml text listing `entries`."""
    import yaml

    return yaml.safe_dump({"tenants": entries})
