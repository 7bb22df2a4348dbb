"""Property tests of the query parsers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_service.api import MAX_ID, FieldError, parse_bool, parse_int, parse_page
from tenant_service.errors import ValidationError

BOOL_WORDS = st.sampled_from(["true", "false", "True", "False", "1", "0", "TRUE"])


@given(BOOL_WORDS)
def test_parse_bool_words(word: str) -> None:
    assert parse_bool(word) is (word.lower() in ("true", "1"))


@given(st.booleans())
def test_parse_bool_round_trip(value: bool) -> None:
    assert parse_bool(str(value)) is value
    assert parse_bool(str(int(value))) is value


@given(st.text())
def test_parse_bool_only_field_errors(text: str) -> None:
    with contextlib.suppress(FieldError):
        parse_bool(text)


@given(st.integers(min_value=-(10**17), max_value=MAX_ID))
def test_parse_int_round_trip(value: int) -> None:
    assert parse_int(str(value)) == value


@given(st.integers(min_value=MAX_ID + 1))
def test_parse_int_refuses_numbers_no_column_holds(value: int) -> None:
    with pytest.raises(FieldError):
        parse_int(str(value))


@given(
    st.dictionaries(
        st.sampled_from(["page", "per-page", "per_page", "other"]), st.text(max_size=8)
    )
)
def test_parse_page_only_validation_errors(query: dict[str, str]) -> None:
    try:
        page = parse_page(query)
    except ValidationError as err:
        failure: ValidationError | None = err
    else:
        failure = None
        assert page.per_page >= 1
        assert page.offset >= 0
        assert page.number is None or page.number >= 1
    if failure is not None:
        assert failure.location == "query"
        assert set(failure.errors) <= {"page", "per-page", "per_page"}


@given(st.integers(1, 1000), st.integers(1, 100))
def test_parse_page_round_trip(number: int, per_page: int) -> None:
    page = parse_page({"page": str(number), "per_page": str(per_page)})
    assert (page.number, page.per_page) == (number, per_page)
    assert page.offset == (number - 1) * per_page
    assert page.limit == per_page


def test_parse_page_default() -> None:
    page = parse_page({})
    assert (page.number, page.limit, page.offset) == (None, None, 0)


@pytest.mark.parametrize("text", ["", "1.5", "x", "\u0661"])
def test_parse_int_rejects(text: str) -> None:
    with pytest.raises(FieldError):
        parse_int(text)
