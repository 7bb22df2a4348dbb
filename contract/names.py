"""The tenant-name rule: a tenant's name is its subdomain, one DNS label.

Lower-case letters, digits and hyphens (LDH), 1 to 63 characters, no hyphen
first or last; `--` inside is allowed, so punycode labels (`xn--caf-dma`) are
names. Such a name is safe unquoted in every place it goes: a SQLite file name,
a Redis key, a systemd instance name and a Kubernetes object name. A PostgreSQL
database named after it must be double-quoted in SQL (hyphens), not in a URL.
"""

from __future__ import annotations

import re
from typing import Final

TENANT_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
TENANT_NAME_RULE: Final = "lower-case letters, digits and inner hyphens (max 63)"


def valid_tenant_name(name: object) -> bool:
    """Whether `name` is a lower-case DNS label, the only tenant names there are."""
    return isinstance(name, str) and TENANT_NAME_RE.fullmatch(name) is not None
