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
