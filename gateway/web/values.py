"""Values of the API's JSON as pages read them, and what pages build of them.

Pure functions of their arguments (no request, no backend): page modules and
gateway/web/calls.py share them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

HTTP_DATE_RE: Final = re.compile(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT")


def int_of(value: object) -> int | None:
    """A JSON integer (None for anything else, booleans too)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text_of(value: object) -> str:
    """A JSON string ("" for anything else)."""
    return value if isinstance(value, str) else ""


def when(value: object) -> dt.datetime | None:
    """A time of the API (naive UTC ISO, or an HTTP date) as an aware datetime."""
    text = text_of(value)
    if not text:
        return None
    try:
        if HTTP_DATE_RE.fullmatch(text):
            moment = dt.datetime.strptime(text, "%a, %d %b %Y %H:%M:%S GMT")
        else:
            moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def link(path: str, **query: object) -> str:
    """`path` with the query parameters that have a value (templates page with it)."""
    kept = {k: v for k, v in query.items() if v not in (None, "", False)}
    return f"{path}?{urlencode(kept)}" if kept else path


@dataclass(frozen=True, slots=True)
class Pages:
    """Where a paged list is: page number, count, total."""

    number: int
    per_page: int
    total: int

    @property
    def last(self) -> int:
        """The number of the last page (1 when empty)."""
        return max(1, -(-self.total // self.per_page))

    @property
    def first_shown(self) -> int:
        """The position of the page's first item (1-based; 0 when empty)."""
        return 0 if self.total == 0 else (self.number - 1) * self.per_page + 1

    @property
    def last_shown(self) -> int:
        """The position of the page's last item."""
        return min(self.total, self.number * self.per_page)
