"""bench/tenant_scale.py's pure helpers: PSS parsing, the process tree, tenants.yaml."""

from __future__ import annotations

import os

from bench.tenant_scale import (
    database_name,
    descendants,
    parse_pss,
    tenant_names,
    tenants_yaml,
    tree_pss_mb,
)
from contract.tenants_file import parse_tenants

ROLLUP = """\
55d1c0a00000-7ffd4b5f1000 ---p 00000000 00:00 0                          [rollup]
Rss:               81232 kB
Pss:               61957 kB
Pss_Dirty:         50113 kB
Pss_Anon:          50021 kB
Shared_Clean:      30484 kB
"""


def test_parse_pss_reads_the_pss_line_only() -> None:
    assert parse_pss(ROLLUP) == 61957
    assert parse_pss("") == 0


def test_descendants_follow_the_parent_links_below_the_root_only() -> None:
    parents = {10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20}
    assert descendants(10, parents) == {10, 11, 12, 13}
    assert descendants(21, parents) == {21}


def test_tree_pss_of_this_process_is_positive() -> None:
    assert tree_pss_mb([os.getpid()]) > 1


def test_tenants_yaml_spreads_tenants_over_the_pools_and_parses() -> None:
    names = tenant_names(10)
    pools = ["http://127.0.0.1:8201", "http://127.0.0.1:8202"]
    config = parse_tenants(tenants_yaml(names, pools), check_secrets=False)
    assert [t.subdomain for t in config.tenants] == names
    assert config.tenants[0].backends == (pools[0],)
    assert config.tenants[3].backends == (pools[1],)
    assert not any(t.demo for t in config.tenants)
    assert sum(t.backends == (pools[0],) for t in config.tenants) == 5


def test_database_names_carry_the_run_prefix() -> None:
    assert database_name("a1b2c3", "t0007") == "fhbench_a1b2c3_t0007"
