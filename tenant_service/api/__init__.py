"""HTTP API of the tenant backend; this module holds its input parsers (no aiohttp)."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from tenant_service.errors import ValidationError

TRUTHY: Final = frozenset({"t", "true", "on", "y", "yes", "1"})
FALSY: Final = frozenset({"f", "false", "off", "n", "no", "0"})
INT_RE: Final = re.compile(r"[+-]?[0-9]{1,18}")
EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
DEFAULT_PER_PAGE: Final = 10
MAX_PER_PAGE: Final = 10_000

NOT_BOOLEAN: Final = "Not a valid boolean."
NOT_INTEGER: Final = "Not a valid integer."
NOT_STRING: Final = "Not a valid string."
NOT_NULL: Final = "Field may not be null."
MISSING: Final = "Missing data for required field."
UNKNOWN_FIELD: Final = "Unknown field."
INVALID_INPUT: Final = "Invalid input type."
# The deepest nesting of lists and objects a JSON body may have: FlexMeasures'
# payloads need 4 (a flex-model's list of SoC targets); parsers and validators
# that walk a body recurse, so a deeper body is refused before any of them runs.
MAX_JSON_DEPTH: Final = 64
TOO_DEEP: Final = f"Nested deeper than {MAX_JSON_DEPTH} levels."


class FieldError(ValueError):
    """One field's value is invalid; the message is marshmallow-style."""


def nested_too_deep(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the lists and dicts of parsed JSON nest deeper than `limit`.

    A walk with an explicit stack: no recursion, whatever the depth.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list)
        )
    return False


def may_nest_too_deep(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text has more brackets than `limit` (a fast, safe pre-check).

    Brackets inside strings count too, so False is certain and True only says
    that `nested_too_deep` must look at the parsed value.
    """
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > limit
    return raw.count(b"[") + raw.count(b"{") > limit


def parse_bool(text: str) -> bool:
    """A boolean as marshmallow reads it from a query string."""
    lowered = text.strip().lower()
    if lowered in TRUTHY:
        return True
    if lowered in FALSY:
        return False
    raise FieldError(NOT_BOOLEAN)


# Ids are 32-bit integer columns in both databases; no integer from a query or a
# path needs to be larger (a bigger one would overflow a column or an OFFSET).
MAX_ID: Final = 2**31 - 1


def parse_int(
    text: str, *, minimum: int | None = None, maximum: int | None = MAX_ID
) -> int:
    """A decimal integer within bounds (at most MAX_ID unless told otherwise)."""
    stripped = text.strip()
    if not INT_RE.fullmatch(stripped):
        raise FieldError(NOT_INTEGER)
    value = int(stripped)
    if minimum is not None and value < minimum:
        raise FieldError(f"Must be greater than or equal to {minimum}.")
    if maximum is not None and value > maximum:
        raise FieldError(f"Must be less than or equal to {maximum}.")
    return value


@dataclass(frozen=True, slots=True)
class Page:
    """A requested page (1-based) of a list; `number` None means "no pagination"."""

    number: int | None
    per_page: int

    @property
    def offset(self) -> int:
        """Rows to skip."""
        return 0 if self.number is None else (self.number - 1) * self.per_page

    @property
    def limit(self) -> int | None:
        """Rows to return (None = all)."""
        return None if self.number is None else self.per_page


def first(query: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first present (name, value) among aliases."""
    for name in names:
        if name in query:
            return name, query[name]
    return None


def parse_page(query: Mapping[str, str]) -> Page:
    """`page` and `per-page` (alias `per_page`); raise a 422 query ValidationError."""
    errors: dict[str, list[str]] = {}
    number: int | None = None
    per_page = DEFAULT_PER_PAGE
    if "page" in query:
        try:
            number = parse_int(query["page"], minimum=1)
        except FieldError as err:
            errors["page"] = [str(err)]
    found = first(query, "per-page", "per_page")
    if found is not None:
        try:
            per_page = parse_int(found[1], minimum=1, maximum=MAX_PER_PAGE)
        except FieldError as err:
            errors[found[0]] = [str(err)]
    if errors:
        raise ValidationError("query", errors)
    return Page(number, per_page)


def parse_path_id(raw: str) -> int:
    """The integer id of a path; a 422 path ValidationError otherwise."""
    try:
        return parse_int(raw, minimum=0, maximum=MAX_ID)
    except FieldError as err:
        raise ValidationError("path", {"id": [str(err)]}) from err


@functools.cache
def timezones() -> frozenset[str]:
    """The IANA time zone names known to this system."""
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone, else a FieldError."""
    if name not in timezones():
        raise FieldError(f"Timezone {name} doesn't exist.")
    return name


def check_email(value: str) -> str:
    """A normalised (stripped, lower-cased) email address."""
    email = value.strip().lower()
    if len(email) > 255 or not EMAIL_RE.fullmatch(email):
        raise FieldError("Not a valid email address.")
    return email
