"""FlexMeasures entity addresses: `ea1.<YYYY-MM>.<reversed host>:fm1.<id>`."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

# FLEXMEASURES_HOSTS_AND_AUTH_START's default: hosts under flexmeasures.io date from
# 2021-01; any other host gets the first month after today, as FlexMeasures does.
HOSTS_AND_AUTH_START: Final = {"flexmeasures.io": "2021-01"}
ENTITY_ADDRESS_RE: Final = re.compile(
    r"ea1\.[0-9]{4}-[0-9]{2}\.[^:\s]+:fm1\.([0-9]{1,18})"
)


def naming_month(host: str, today: dt.date) -> str:
    """The `YYYY-MM` naming authority month of a host."""
    for domain, month in HOSTS_AND_AUTH_START.items():
        if host == domain or host.endswith("." + domain):
            return month
    year, month_number = (
        (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    )
    return f"{year:04d}-{month_number:02d}"


def reverse_host(host: str) -> str:
    """`company.flexmeasures.io:443` -> `io.flexmeasures.company`."""
    bare = host.strip().lower()
    if bare.startswith("["):  # an IPv6 literal keeps its form
        bare = bare.split("]", 1)[0] + "]"
    else:
        bare = bare.split(":", 1)[0]
    return ".".join(reversed(bare.split(".")))


def entity_address(host: str, sensor_id: int, today: dt.date) -> str:
    """The fm1 entity address of a sensor on `host`."""
    bare = host.strip().lower().split(":", 1)[0]
    return f"ea1.{naming_month(bare, today)}.{reverse_host(host)}:fm1.{sensor_id}"


def parse_entity_address(text: str) -> int:
    """The sensor id of an fm1 entity address; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("Not a valid entity address.")
    match = ENTITY_ADDRESS_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"Could not parse entity address {text}.")
    return int(match.group(1))
