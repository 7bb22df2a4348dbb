"""tenants.yaml and settings validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.config import ConfigError, Secret
from contract.redis import parse_sentinels
from contract.tenants_file import load_tenants, parse_tenants, resolve_database
from gateway.app import redis_target
from gateway.config import Settings, load_settings
from gateway.tenants import normalize_host

FULL = """\
base_domains: [flexmeasures.io, localhost]
tenants:
  - subdomain: company
    name: Company Inc.
    backends: ["http://127.0.0.1:8101", "http://127.0.0.1:8111/"]
    versions: [v3_0]
    status: active
    aliases: [Energy.Company.COM.]
    token_ttl: 3600
    hide_account_existence: true
    upstream_timeout: 2.5
    max_body_bytes: 4096
    secret: env:FH_TEST_SECRET
    demo: true
    flexmeasures_version: "0.33.0"
    pending_schedule_accepted: true
    colors: {primary: "#AA3300", accent: "#004488"}
    api_key_max_ttl: 86400
"""


def problems_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_tenants(text, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


def test_parse_tenants_full_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FH_TEST_SECRET", "s" * 32)
    config = parse_tenants(FULL)
    (tenant,) = config.tenants
    assert tenant.subdomain == "company"
    assert tenant.name == "Company Inc."
    assert tenant.backends == ("http://127.0.0.1:8101", "http://127.0.0.1:8111")
    assert tenant.aliases == ("energy.company.com",)
    assert tenant.token_ttl == 3600
    assert tenant.hide_account_existence is True
    assert tenant.upstream_timeout == 2.5
    assert tenant.max_body_bytes == 4096
    assert tenant.demo is True
    assert tenant.flexmeasures_version == "0.33.0"
    assert tenant.pending_schedule_accepted is True
    assert (tenant.primary_color, tenant.accent_color) == ("#aa3300", "#004488")
    assert tenant.api_key_max_ttl == 86400
    assert tenant.secret == Secret("s" * 32)
    assert "s" * 32 not in repr(tenant)


def test_parse_tenants_defaults(tmp_path: Path) -> None:
    (tmp_path / "acme").write_text("x" * 40)
    config = parse_tenants(
        "tenants:\n  - subdomain: acme\n    backends: http://127.0.0.1:9000\n",
        secrets_dir=tmp_path,
    )
    (tenant,) = config.tenants
    assert config.base_domains == ("flexmeasures.io", "localhost")
    assert tenant.token_ttl == 21600
    assert tenant.versions == ("v3_0",)
    assert tenant.status == "active"
    assert tenant.hide_account_existence is False
    assert tenant.secret_ref == f"file:{(tmp_path / 'acme').absolute()}"


def test_parse_tenants_reports_every_problem_with_its_place() -> None:
    text = """\
tenants:
  - subdomain: company
    backends: [http://127.0.0.1:8101]
  - subdomain: company
    backends: [http://127.0.0.1:8102]
  - subdomain: acme
  - subdomain: widgets
    backends: [ftp://x]
    token_ttl: 10
    colour: red
    status: paused
"""
    found = problems_of(text, check_secrets=False)
    assert (
        'tenants.yaml:4:5: tenants[1].subdomain: duplicate "company" (also tenants[0])'
        in found
    )
    assert (
        "tenants.yaml:6:5: tenants[2].backends: missing: give at least one backend URL"
        in found
    )
    assert any(p.startswith("tenants.yaml:8:16: tenants[3].backends[0]") for p in found)
    assert any(p.startswith("tenants.yaml:9:16: tenants[3].token_ttl") for p in found)
    assert "tenants.yaml:10:5: tenants[3].colour: unknown field" in found
    assert any(p.startswith("tenants.yaml:11:13: tenants[3].status") for p in found)
    assert len(found) == 6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tenants: [\n", "tenants.yaml:2:1: YAML syntax error"),
        ("", "the file is empty"),
        ("- a\n", "(top level): must be a mapping"),
        ("tenants: 5\n", "tenants: must be a list"),
        ("tenantz: []\n", "tenantz: unknown field"),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1/api]\n",
            "without path",
        ),
        ("tenants:\n  - subdomain: a\n    backends: []\n", "must not be empty"),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n    token_ttl: x\n",
            "whole number",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n    token_ttl: true\n",
            "whole number",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n    versions: [v9]\n",
            "unknown API version",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n    secret: plain\n",
            "env:VARIABLE",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
            "    flexmeasures_version: gateway-1\n",
            "PEP 440",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
            "    upstream_timeout: 0\n",
            "seconds",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
            "    hide_account_existence: yes please\n",
            "true or false",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
            "    pending_schedule_accepted: 202\n",
            "true or false",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
            "    colors: {primary: red}\n",
            "must be a colour",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
            "    colors: {background: '#000000'}\n",
            "primary and/or accent",
        ),
        (
            "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
            "  - subdomain: b\n    backends: [http://x:1]\n    aliases: [a.localhost]\n",
            "is the host of tenant",
        ),
        (
            "tenants:\n  - {subdomain: a, backends: [http://x:1], a: 1, a: 2}\n",
            "duplicate key",
        ),
    ],
)
def test_parse_tenants_rejects(text: str, expected: str) -> None:
    found = problems_of(text, check_secrets=False)
    assert any(expected in p for p in found), found


def test_parse_tenants_missing_secret_is_a_problem(tmp_path: Path) -> None:
    found = problems_of(
        "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n", secrets_dir=tmp_path
    )
    assert found == [
        f"tenants.yaml:2:5: tenants[0].secret: no secret at file:{tmp_path / 'a'}"
    ]
    (tmp_path / "a").write_text("short")
    found = problems_of(
        "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n", secrets_dir=tmp_path
    )
    assert "at least 16 characters" in found[0]


def test_parse_tenants_binary_secret_file_is_a_problem_not_a_crash(
    tmp_path: Path,
) -> None:
    """32 bytes from /dev/urandom are no text secret: named, with how to write one."""
    (tmp_path / "a").write_bytes(bytes(range(200, 232)))
    text = "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
    assert problems_of(text, secrets_dir=tmp_path) == [
        f"tenants.yaml:2:5: tenants[0].secret: file:{tmp_path / 'a'}: not UTF-8 text "
        "(write a secret as text, e.g. `openssl rand -hex 32`)"
    ]
    # Where secrets are not checked (resolved later, per tenant) it is no secret.
    config = parse_tenants(text, secrets_dir=tmp_path, check_secrets=False)
    assert config.tenants[0].secret is None


def test_load_tenants_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_tenants(tmp_path / "nope.yaml")


def test_load_settings_from_environment() -> None:
    settings = load_settings(
        {
            "GATEWAY_PORT": "9000",
            "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/3",
            "GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "GATEWAY_TENANTS_PATH": "/etc/flexhost/tenants.yaml",
            "OTHER": "ignored",
        }
    )
    assert settings.port == 9000
    assert settings.redis_url.endswith("/3")
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert settings.tenants_path == Path("/etc/flexhost/tenants.yaml")


def test_load_settings_collects_problems() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            {
                "GATEWAY_PORT": "eighty",
                "GATEWAY_TRUSTED_PROXIES": "not-an-ip",
                "GATEWAY_KEY_PREFIX": "a b",
                "GATEWAY_RELOAD_INTERVAL": "-1",
            }
        )
    assert len(info.value.problems) == 4


def test_load_settings_redis_sentinel_and_cluster() -> None:
    sentinel = load_settings(
        {
            "GATEWAY_REDIS_SENTINELS": "10.0.0.1:26379, sentinel-b, [fd00::3]:26380",
            "GATEWAY_REDIS_SENTINEL_MASTER": "flexhost",
            "GATEWAY_REDIS_PASSWORD": "pw",
        }
    )
    assert sentinel.redis_sentinels == (
        ("10.0.0.1", 26379),
        ("sentinel-b", 26379),
        ("fd00::3", 26380),
    )
    assert sentinel.redis_sentinel_master == "flexhost"
    assert sentinel.redis_password == Secret("pw")
    assert "pw" not in repr(sentinel)
    cluster = load_settings(
        {"GATEWAY_REDIS_CLUSTER": "true", "GATEWAY_REDIS_URL": "redis://node-a:7000"}
    )
    assert cluster.redis_cluster
    assert not cluster.redis_sentinels
    assert not load_settings({}).redis_cluster


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"GATEWAY_REDIS_SENTINELS": "a:1"},
            ["GATEWAY_REDIS_SENTINEL_MASTER: required with GATEWAY_REDIS_SENTINELS"],
        ),
        (
            {"GATEWAY_REDIS_SENTINEL_MASTER": "m"},
            ["GATEWAY_REDIS_SENTINELS: required with GATEWAY_REDIS_SENTINEL_MASTER"],
        ),
        (
            {
                "GATEWAY_REDIS_SENTINELS": "a:1",
                "GATEWAY_REDIS_SENTINEL_MASTER": "m",
                "GATEWAY_REDIS_URL": "redis://x",
                "GATEWAY_REDIS_CLUSTER": "yes",
            },
            [
                "GATEWAY_REDIS_URL, GATEWAY_REDIS_SENTINELS: set only one",
                "GATEWAY_REDIS_CLUSTER: not with GATEWAY_REDIS_SENTINELS",
            ],
        ),
        (
            {
                "GATEWAY_REDIS_SENTINELS": "a:port, b:99999, ::1:5",
                "GATEWAY_REDIS_SENTINEL_MASTER": "m",
            },
            ["GATEWAY_REDIS_SENTINELS: not host:port: 'a:port'"],
        ),
        (
            {"GATEWAY_REDIS_CLUSTER": "true", "GATEWAY_REDIS_URL": "redis://a:1/2"},
            ["GATEWAY_REDIS_URL: a Redis Cluster has only database 0"],
        ),
        (
            {"GATEWAY_REDIS_CLUSTER": "maybe", "GATEWAY_REDIS_URL": "http://a"},
            [
                "GATEWAY_REDIS_CLUSTER: must be true or false",
                "GATEWAY_REDIS_URL: must start with redis://, rediss:// or unix://",
            ],
        ),
        (
            {
                "GATEWAY_REDIS_URL": "redis://:secret@a:1/0",
                "GATEWAY_REDIS_PASSWORD": "other",
            },
            ["GATEWAY_REDIS_PASSWORD, GATEWAY_REDIS_URL: set only one password"],
        ),
    ],
)
def test_load_settings_redis_problems(
    environ: dict[str, str], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ)
    problems = info.value.problems
    assert len(problems) == len(expected), problems
    for problem, start in zip(sorted(problems), sorted(expected), strict=True):
        assert problem.startswith(start), problems
    assert not any("secret" in problem for problem in problems)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
        ("rediss://user:s3cret@redis.internal/1", "rediss://redis.internal/1"),
        ("unix:///run/redis.sock?password=s3cret&db=2", "unix:/run/redis.sock"),
    ],
)
def test_redis_target_shows_no_password(url: str, shown: str) -> None:
    path = Path("tenants.yaml")
    assert redis_target(Settings(tenants_path=path, redis_url=url)) == shown
    cluster = Settings(tenants_path=path, redis_url=url, redis_cluster=True)
    assert redis_target(cluster) == f"cluster node {shown}"
    sentinel = Settings(
        tenants_path=path,
        redis_sentinels=(("a", 26379), ("fd00::1", 26380)),
        redis_sentinel_master="flexhost",
        redis_password=Secret("s3cret"),
    )
    assert "s3cret" not in redis_target(sentinel)


@pytest.mark.parametrize(
    "text", ["", " , ", "host:", "[::1", "[::1]x", ":26379", "::1", "h:0", "h:1:2"]
)
def test_parse_sentinels_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|\[addr\]:port"):
        parse_sentinels(text)


@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
                st.ip_addresses(v=6).map(str),
            ),
            st.integers(1, 65535),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_parse_sentinels_round_trip(nodes: list[tuple[str, int]]) -> None:
    text = ", ".join(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in nodes
    )
    assert parse_sentinels(text) == tuple(nodes)


@given(st.text(max_size=80))
def test_parse_sentinels_arbitrary_text_raises_only_value_error(text: str) -> None:
    try:
        nodes = parse_sentinels(text)
    except ValueError:
        return
    assert all(host and 1 <= port <= 65535 for host, port in nodes)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parse_tenants_arbitrary_text_raises_only_config_error(text: str) -> None:
    problems: list[str] = []
    try:
        parse_tenants(text, check_secrets=False)
    except ConfigError as err:
        problems = err.problems
        assert problems


subdomains = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(subdomains, min_size=1, max_size=5, unique=True),
    st.integers(60, 86400),
    st.booleans(),
)
def test_parse_tenants_round_trip(subs: list[str], ttl: int, hide: bool) -> None:
    entries = [
        {
            "subdomain": sub,
            "backends": [f"http://127.0.0.1:{8100 + i}"],
            "token_ttl": ttl,
            "hide_account_existence": hide,
        }
        for i, sub in enumerate(subs)
    ]
    config = parse_tenants(yaml.safe_dump({"tenants": entries}), check_secrets=False)
    assert [t.subdomain for t in config.tenants] == subs
    assert all(
        t.token_ttl == ttl and t.hide_account_existence is hide for t in config.tenants
    )


@settings(deadline=None)
@given(st.from_regex(r"\A[a-z0-9.-]{1,30}\Z"), st.integers(1, 65535), st.booleans())
def test_normalize_host_ignores_port_case_and_trailing_dot(
    host: str, port: int, dot: bool
) -> None:
    raw = host.upper() + ("." if dot else "") + f":{port}"
    assert normalize_host(raw) == host.rstrip(".")
    assert normalize_host(f"[::1]:{port}") == "::1"


def _with_database(value: str) -> str:
    return (
        "tenants:\n  - subdomain: a\n    backends: [http://127.0.0.1:8101]\n"
        f"    database: {value}\n"
    )


@pytest.mark.parametrize(
    "value",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:5432/fh_a",
        "sqlite+aiosqlite:///./.flexhost/a.sqlite3",
        "env:FH_DB_A",
    ],
)
def test_parse_tenants_database_kept_as_given(value: str) -> None:
    (tenant,) = parse_tenants(_with_database(value), check_secrets=False).tenants
    assert tenant.database == value


def test_parse_tenants_database_file_reference_made_absolute(tmp_path: Path) -> None:
    text = _with_database(f"file:{tmp_path}/db-url")
    (tenant,) = parse_tenants(text, check_secrets=False).tenants
    assert tenant.database == f"file:{tmp_path / 'db-url'}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mysql://h/db", "must start with sqlite+aiosqlite:// or postgresql"),
        ("postgresql+asyncpg://h:port/db", "not a database URL"),
        ("postgresql+asyncpg://h", "must name a database"),
        ("postgresql+asyncpg://u:hunter2hunter2@h/db", "must not hold a password"),
        ("env:1X", "env: needs a variable name"),
        ("'file:'", "file: needs a path"),
        ("5", "must be a database URL"),
    ],
)
def test_parse_tenants_database_rejects(value: str, expected: str) -> None:
    found = problems_of(_with_database(value), check_secrets=False)
    assert len(found) == 1
    assert expected in found[0]
    assert "hunter2" not in found[0]


def test_resolve_database_reads_env_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+asyncpg://u:pw@127.0.0.1/fh_a"
    monkeypatch.setenv("FH_DB_A", url)
    (tmp_path / "db").write_text(url + "\n")
    assert resolve_database("env:FH_DB_A") == url
    assert resolve_database(f"file:{tmp_path / 'db'}") == url
    assert resolve_database("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    monkeypatch.setenv("FH_DB_A", "mysql://u:pw@h/db")
    with pytest.raises(ValueError, match="must start with") as info:
        resolve_database("env:FH_DB_A")
    assert "pw" not in str(info.value)
    with pytest.raises(ValueError, match="cannot read"):
        resolve_database(f"file:{tmp_path / 'none'}")
    monkeypatch.delenv("FH_DB_A")
    with pytest.raises(ValueError, match="unset or empty"):
        resolve_database("env:FH_DB_A")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_parse_tenants_arbitrary_database_raises_only_config_error(
    value: str,
) -> None:
    """Any `database` is kept (a URL or a reference) or refused by ConfigError."""
    text = "tenants:\n  - subdomain: a\n    backends: [http://127.0.0.1:8101]\n"
    text += f"    database: {json.dumps(value)}\n"
    try:
        (tenant,) = parse_tenants(text, check_secrets=False).tenants
    except ConfigError:
        return
    assert tenant.database.startswith(
        ("env:", "file:", "sqlite+aiosqlite://", "postgresql+asyncpg://")
    )
