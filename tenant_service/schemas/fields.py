"""Field readers that handlers share: typed fields with marshmallow-style errors."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence
from typing import Any, Final

from tenant_service.api import TOO_DEEP, FieldError, first, nested_too_deep
from tenant_service.errors import DataValidationError
from tenant_service.timing import (
    TimingError,
    parse_datetime,
    parse_duration,
    to_epoch_ms,
)

MISSING: Final = "Missing data for required field."
NOT_A_NUMBER: Final = "Not a valid number."
NOT_A_STRING: Final = "Not a valid string."
NOT_AN_INTEGER: Final = "Not a valid integer."
UNKNOWN_FIELD: Final = "Unknown field."
LEGACY_TYPES: Final = frozenset(
    {
        "PostSensorDataRequest",
        "PostMeterDataRequest",
        "PostPrognosisRequest",
        "PostPriceDataRequest",
        "PostWeatherDataRequest",
        "GetSensorDataRequest",
    }
)
NOT_JSON: Final = "Not a valid JSON string."
NOT_OBJECT: Final = "Must be a JSON object."
NOT_LIST: Final = "Must be a JSON list."
MAX_JSON_TEXT: Final = 1_000_000
SORT_DIRS: Final = ("asc", "desc")


class Fields:
    """Collects field errors while reading typed fields of one request."""

    def __init__(self, data: dict[str, Any], names: dict[str, str]) -> None:
        self.errors: dict[str, list[str]] = {}
        self.data: dict[str, Any] = {}
        for key, value in data.items():
            name = names.get(key)
            if name is None:
                self.errors[key] = [UNKNOWN_FIELD]
            else:
                self.data[name] = value

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.fail(name, MISSING)
            return None
        if not isinstance(value, str):
            self.fail(name, NOT_A_STRING)
            return None
        return value

    def datetime_ms(self, name: str, *, required: bool = False) -> tuple[int, str]:
        text = self.string(name, required=required)
        if text is None:
            return 0, ""
        try:
            moment = parse_datetime(text)
        except TimingError as err:
            self.fail(name, str(err))
            return 0, ""
        return to_epoch_ms(moment), moment.isoformat()

    def duration_ms(
        self, name: str, *, required: bool = False, positive: bool = False
    ) -> int | None:
        text = self.string(name, required=required)
        if text is None:
            return None
        try:
            return parse_duration(
                text, allow_zero=not positive, allow_negative=not positive
            )
        except TimingError as err:
            self.fail(name, str(err))
            return None

    def integer(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(name, NOT_AN_INTEGER)
            return None
        if isinstance(value, str):
            if not value.strip().isdigit() or len(value.strip()) > 18:
                self.fail(name, NOT_AN_INTEGER)
                return None
            return int(value)
        return value

    def legacy_type(self) -> str | None:
        value = self.string("type")
        if value is not None and value not in LEGACY_TYPES:
            self.fail("type", f"Must be one of: {', '.join(sorted(LEGACY_TYPES))}.")
            return None
        return value

    def check(self) -> None:
        if self.errors:
            raise DataValidationError(self.errors)


# --- JSON-ish fields -----------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _finite(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return value is None or isinstance(value, bool | int | str)


def json_text(value: object, *, kind: type[dict[str, Any]] | type[list[Any]]) -> str:
    """Canonical JSON text (json.dumps, as FlexMeasures) of a JSON string or object."""
    if isinstance(value, str):
        if len(value) > MAX_JSON_TEXT:
            raise FieldError(NOT_JSON)
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except (ValueError, RecursionError) as err:
            raise FieldError(NOT_JSON) from err
    if not isinstance(value, kind):
        raise FieldError(NOT_OBJECT if kind is dict else NOT_LIST)
    # Stored, then walked by the scheduler's flex-model parsers: no deeper than
    # a body may be.
    if nested_too_deep(value):
        raise FieldError(TOO_DEEP)
    try:
        if not _finite(value):
            raise FieldError(NOT_JSON)
        return json.dumps(value, allow_nan=False)
    except (ValueError, RecursionError) as err:
        raise FieldError(NOT_JSON) from err


# --- query fields ---------------------------------------------------------------


def search_terms(text: str) -> list[str]:
    """Search terms of `filter`; double quotes group words ('solar "ACME corp"')."""
    try:
        terms = shlex.split(text)
    except ValueError:
        terms = text.split()
    return [term for term in terms if term][:20]


def parse_sort(
    query: Any, allowed: Sequence[str], errors: dict[str, list[str]]
) -> tuple[str | None, str]:
    """`sort-by`/`sort_by` and `sort-dir`/`sort_dir`."""
    sort_by: str | None = None
    sort_dir = "asc"
    found = first(query, "sort-by", "sort_by")
    if found is not None:
        if found[1] in allowed:
            sort_by = found[1]
        else:
            errors[found[0]] = [f"Must be one of: {', '.join(allowed)}."]
    found = first(query, "sort-dir", "sort_dir")
    if found is not None:
        if found[1] in SORT_DIRS:
            sort_dir = found[1]
        else:
            errors[found[0]] = [f"Must be one of: {', '.join(SORT_DIRS)}."]
    return sort_by, sort_dir
