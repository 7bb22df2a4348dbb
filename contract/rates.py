"""Request rates ("500/minute") and a tenant's rate limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Request rates: "500/minute", "500 per 1 minute", "10/5 minutes", ...
RATE_RE: Final = re.compile(
    r"(\d{1,12})\s*(?:/|\s+per\s+)\s*(?:(\d{1,6})\s*)?(second|minute|hour|day)s?",
    re.IGNORECASE | re.ASCII,
)
RATE_UNITS: Final = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}
# The Redis script counts in whole numbers of limit x milliseconds; doubles keep
# those exact up to 2**53.
RATE_CAPACITY: Final = 2**53


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


DEFAULT_RATE_LIMITS: Final = RateLimits()  # the defaults: per token only
