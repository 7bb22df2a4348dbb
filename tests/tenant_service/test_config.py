"""load_settings and the Secret type."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.config import ConfigError, Secret
from tenant_service.config import load_settings

SECRET = "x" * 32


def test_load_settings_defaults() -> None:
    settings = load_settings({"TENANT_NAME": "acme", "TENANT_SECRET": SECRET})
    assert settings.database_url == "sqlite+aiosqlite:///./.flexhost/acme.sqlite3"
    assert (settings.host, settings.port) == ("127.0.0.1", 8101)
    assert settings.flexmeasures_version == "1.0.1"
    assert repr(settings.secret) == "Secret('***')"
    assert SECRET not in repr(settings)


def test_load_settings_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    settings = load_settings({"TENANT_NAME": "acme", "TENANT_SECRET_FILE": str(path)})
    assert settings.secret == Secret(SECRET)


def test_load_settings_binary_secret_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(bytes(range(200, 232)))
    with pytest.raises(ConfigError) as caught:
        load_settings({"TENANT_NAME": "acme", "TENANT_SECRET_FILE": str(path)})
    assert caught.value.problems == [
        f"TENANT_SECRET_FILE: cannot read {str(path)!r}: not UTF-8 text "
        "(write a secret as text, e.g. `openssl rand -hex 32`)"
    ]


def test_load_settings_collects_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "TENANT_NAME": "Bad_Name",
                "TENANT_PORT": "http",
                "TENANT_DATABASE_URL": "mysql://x",
                "TENANT_FLEXMEASURES_VERSION": "one",
            }
        )
    text = str(caught.value)
    for name in ("NAME", "PORT", "DATABASE_URL", "SECRET", "FLEXMEASURES_VERSION"):
        assert f"TENANT_{name}" in text
    assert len(caught.value.problems) == 5


def test_load_settings_short_secret() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        load_settings({"TENANT_NAME": "acme", "TENANT_SECRET": "short"})


def test_load_settings_job_queue_via_sentinel() -> None:
    base = {"TENANT_NAME": "acme", "TENANT_SECRET": SECRET}
    assert not load_settings(base).job_queue
    settings = load_settings(
        {
            **base,
            "TENANT_REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2",
            "TENANT_REDIS_SENTINEL_MASTER": "flexhost",
            "TENANT_REDIS_PASSWORD": "pw",
        }
    )
    assert settings.job_queue
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert settings.redis_sentinel_master == "flexhost"
    assert "pw" not in repr(settings)
    assert load_settings({**base, "TENANT_REDIS_URL": "redis://a:1/1"}).job_queue


def test_load_settings_job_queue_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "TENANT_NAME": "acme",
                "TENANT_SECRET": SECRET,
                "TENANT_REDIS_URL": "redis://:pw@a:1/1",
                "TENANT_REDIS_PASSWORD": "other",
                "TENANT_REDIS_SENTINELS": "a:b",
            }
        )
    problems = caught.value.problems
    assert sorted(p.split(":")[0] for p in problems) == [
        "TENANT_REDIS_PASSWORD, TENANT_REDIS_URL",
        "TENANT_REDIS_SENTINELS",
        "TENANT_REDIS_SENTINEL_MASTER",
        "TENANT_REDIS_URL, TENANT_REDIS_SENTINELS",
    ]


def test_load_settings_pool(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "TENANT_TENANTS_FILE": str(tmp_path / "tenants.yaml"),
            "TENANT_ADDRESS": "http://127.0.0.1:8201/",
            "TENANT_DATABASE_URL": "postgresql+asyncpg://fh@127.0.0.1/fh_{tenant}",
            "TENANT_IDLE_CLOSE": "30",
            "TENANT_DB_CONNECTIONS": "8",
        }
    )
    assert settings.pooled
    assert settings.address == "http://127.0.0.1:8201"
    assert settings.port == 8201, "the address's port"
    assert settings.database_url.endswith("/fh_{tenant}"), "a template"
    assert (settings.idle_close, settings.db_connections) == (30.0, 8)
    default = load_settings(
        {
            "TENANT_TENANTS_FILE": "t.yaml",
            "TENANT_ADDRESS": "http://127.0.0.1:8201",
        }
    )
    assert default.database_url == "sqlite+aiosqlite:///./.flexhost/{tenant}.sqlite3"


def test_load_settings_dedicated_fills_the_tenant_into_the_url() -> None:
    settings = load_settings(
        {
            "TENANT_NAME": "acme",
            "TENANT_SECRET": SECRET,
            "TENANT_DATABASE_URL": "sqlite+aiosqlite:///./data/{tenant}.db",
        }
    )
    assert settings.database_url == "sqlite+aiosqlite:///./data/acme.db"
    assert not settings.pooled


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TENANT_ADDRESS": ""}, "TENANT_ADDRESS: required with TENANT_TENANTS_FILE"),
        ({"TENANT_ADDRESS": "127.0.0.1:8201"}, "TENANT_ADDRESS: must be a backend URL"),
        ({"TENANT_ADDRESS": "http://h:1/x"}, "TENANT_ADDRESS: must be a base URL"),
        ({"TENANT_NAME": "acme"}, "TENANT_NAME: not with TENANT_TENANTS_FILE"),
        ({"TENANT_SECRET": SECRET}, "TENANT_SECRET: not with TENANT_TENANTS_FILE"),
        ({"TENANT_DB_CONNECTIONS": "0"}, "TENANT_DB_CONNECTIONS: must be at least 1"),
        ({"TENANT_IDLE_CLOSE": "-1"}, "TENANT_IDLE_CLOSE: must be more than 0"),
    ],
)
def test_load_settings_pool_problems(env: dict[str, str], expected: str) -> None:
    base = {"TENANT_TENANTS_FILE": "t.yaml", "TENANT_ADDRESS": "http://h:8201"}
    with pytest.raises(ConfigError) as caught:
        load_settings({**base, **env})
    assert any(expected in problem for problem in caught.value.problems), caught.value


def test_load_settings_address_only_in_a_pool() -> None:
    with pytest.raises(ConfigError, match="TENANT_ADDRESS: only with"):
        load_settings(
            {
                "TENANT_NAME": "acme",
                "TENANT_SECRET": SECRET,
                "TENANT_ADDRESS": "http://h:1",
            }
        )
