"""bench/conformance.py reads the recorded FlexMeasures exchanges as they were sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from bench.conformance import IMPROVEMENTS, key_paths, parse_cases

# A copy of ../shared/reference/flexmeasures-observed.md (reference data).
OBSERVED: Final = Path(__file__).parent / "data/flexmeasures-observed.md"


def test_parse_cases_finds_the_61_recorded_requests() -> None:
    parsed = parse_cases(OBSERVED.read_text(encoding="utf-8"))
    assert len(parsed) == 61
    assert len({c.title for c in parsed}) == 61
    first = parsed[0]
    assert (first.method, first.target, first.body) == ("GET", "/api", None)
    login = parsed[4]
    assert login.headers == {"Content-Type": "application/json"}
    assert (
        login.body
        == b'{"email": "admin@anchor.example", "password": "anchor-admin-pw"}'
    )
    preflight = [c for c in parsed if c.method == "OPTIONS"]
    assert preflight[0].headers["Access-Control-Request-Method"] == "POST"


def test_parse_cases_rebuilds_elided_value_lists() -> None:
    parsed = {c.title: c for c in parse_cases(OBSERVED.read_text(encoding="utf-8"))}
    fresh = parsed["POST data in kW to the MW sensor (unit conversion)"]
    assert fresh.body is not None
    body = json.loads(fresh.body)
    assert body["values"] == [100.0 * i for i in range(96)]
    assert body["unit"] == "kW"
    short = parsed["95 values for P1D (count does not divide the duration)"]
    assert short.body is not None
    assert len(json.loads(short.body)["values"]) == 95
    malformed = parsed["malformed JSON"]
    assert malformed.body == b'{"values": [1, 2, 3], "start": '


def test_improvements_name_recorded_cases() -> None:
    titles = {c.title for c in parse_cases(OBSERVED.read_text(encoding="utf-8"))}
    assert set(IMPROVEMENTS) <= titles


def test_key_paths_merge_list_items() -> None:
    value = {"a": [{"b": 1}, {"c": {"d": 2}}], "e": None}
    assert key_paths(value) == {"a", "a[].b", "a[].c", "a[].c.d", "e"}
    assert key_paths([1, 2]) == set()
