"""`flexhost up --database-url`: the template checked before anything starts, the
backends' databases, and PostgreSQL databases created when missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

from contract.tenants_file import TenantConfig, TenantsConfig
from deploy.cli import main
from deploy.databases import DatabaseSetupError, database_template, ensure_databases
from deploy.local import backend_specs
from tests.helpers.databases import Drops, asyncpg_url, fresh_db_name, pg_admin
from tests.helpers.net import free_port

TEMPLATE = "postgresql+asyncpg://postgres@127.0.0.1/fh_{tenant}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1/flexhost", "must contain {tenant}"),
        ("postgresql+asyncpg://u@127.0.0.1:port/x_{tenant}", "not a database URL"),
        ("mysql://u@127.0.0.1/x_{tenant}", "must start with sqlite+aiosqlite://"),
        ("postgresql+asyncpg://127.0.0.1", "must name a database"),
        ("env:FLEXHOST_TEST_UNSET_URL", "the variable is unset or empty"),
        (
            "postgresql+asyncpg://u:hunter2hunter2@127.0.0.1/x_{tenant}",
            "must not hold a password",
        ),
    ],
)
def test_up_refuses_a_bad_template_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    data = tmp_path / "data"
    argv = ["up", "--tenants", str(tmp_path / "t.yaml"), "--data-dir", str(data)]
    assert main([*argv, "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flexhost up: --database-url: ")
    assert message in err
    assert "hunter2" not in err
    assert not data.exists()  # nothing started


def test_up_reads_the_template_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEXHOST_DATABASE_URL", "sqlite+aiosqlite:////tmp/one.db")
    assert main(["up", "--tenants", str(tmp_path / "t.yaml")]) == 2
    err = capsys.readouterr().err
    assert "$FLEXHOST_DATABASE_URL: must contain {tenant}" in err


def test_a_password_comes_through_a_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "postgresql+asyncpg://u:hunter2hunter2@127.0.0.1/x_{tenant}"
    monkeypatch.setenv("FLEXHOST_TEST_DB", secret)
    assert database_template("env:FLEXHOST_TEST_DB") == secret
    (tmp_path / "db").write_text(secret + "\n")
    assert database_template(f"file:{tmp_path / 'db'}") == secret


def tenant(name: str, port: int, database: str = "") -> TenantConfig:
    """A tenant with one loopback backend."""
    backends = (f"http://127.0.0.1:{port}",)
    return TenantConfig(subdomain=name, name=name, backends=backends, database=database)


def test_backends_get_the_template_or_their_own_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FLEXHOST_TEST_DB", "postgresql+asyncpg://u:pw@db/own")
    monkeypatch.delenv("FLEXHOST_TEST_UNSET_DB", raising=False)
    config = TenantsConfig(
        base_domains=("localhost",),
        tenants=(
            tenant("a", 8101),
            tenant("b", 8101),
            tenant("solo", 8102),
            tenant("own", 8103, "env:FLEXHOST_TEST_DB"),
            tenant("broken", 8104, "env:FLEXHOST_TEST_UNSET_DB"),
        ),
    )
    specs = backend_specs(config, tmp_path, TEMPLATE)
    assert sorted(specs) == ["own", "pool:8101", "solo"]
    assert specs["pool:8101"].database_url == TEMPLATE
    assert specs["solo"].database_url == TEMPLATE.replace("{tenant}", "solo")
    assert specs["own"].database_url == "postgresql+asyncpg://u:pw@db/own"
    assert "broken: database env:FLEXHOST_TEST_UNSET_DB" in caplog.text
    assert "its backend is not started" in caplog.text
    # Without a template: a SQLite file each in the data dir, as before.
    assert specs["own"] == backend_specs(config, tmp_path)["own"]
    solo = backend_specs(config, tmp_path)["solo"]
    assert solo.database_url == f"sqlite+aiosqlite:///{tmp_path}/solo.sqlite3"


@pytest.fixture
async def names(pg_admin_url: str, drops: Drops) -> AsyncIterator[list[str]]:
    """Database names for a test, dropped afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        drops.drop(pg_admin_url, name)


async def exists(admin_url: str, name: str) -> bool:
    """Whether database `name` exists."""
    conn = await asyncpg.connect(admin_url)
    try:
        found: int | None = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", name
        )
    finally:
        await conn.close()
    return found == 1


@pytest.mark.postgres
async def test_missing_databases_are_created_once(
    pg_admin_url: str, names: list[str], tmp_path: Path
) -> None:
    prefix = fresh_db_name()
    names += [f"{prefix}_{t}" for t in ("a-b", "x--y", "c")]
    urls = [asyncpg_url(pg_admin_url, name) for name in names]
    sqlite = f"sqlite+aiosqlite:///{tmp_path}/c.sqlite3"
    assert await ensure_databases([*urls[:2], sqlite]) == sorted(names[:2])
    assert [await exists(pg_admin_url, name) for name in names] == [True, True, False]
    assert await ensure_databases(urls) == [names[2]]  # the others exist
    assert await ensure_databases(urls) == []
    assert not (tmp_path / "c.sqlite3").exists()


@pytest.mark.postgres
async def test_a_name_postgresql_would_cut_is_refused(pg_admin_url: str) -> None:
    name = fresh_db_name() + "_" + "t" * 40
    with pytest.raises(DatabaseSetupError, match="longer than 63 bytes"):
        await ensure_databases([asyncpg_url(pg_admin_url, name)])
    assert not await exists(pg_admin_url, name[:63])  # what CREATE would make


async def test_an_unreachable_server_is_a_clear_error() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/fh_x"
    with pytest.raises(DatabaseSetupError, match=r"PostgreSQL at 127\.0\.0\.1:\d+ is"):
        await ensure_databases([url])


@pytest.mark.postgres
async def test_the_urls_connection_options_reach_the_server(
    pg_admin_url: str, names: list[str]
) -> None:
    """Databases are made as the backends connect: here a URL with two hosts
    (asyncpg tries them in turn), the first of them down."""
    names.append(fresh_db_name())
    url = make_url(asyncpg_url(pg_admin_url, names[0]))
    down = f"127.0.0.1:{free_port()}"
    up = f"{url.host or '127.0.0.1'}:{url.port or 5432}"
    two_hosts = URL.create(
        url.drivername,
        username=url.username,
        password=url.password,
        database=url.database,
        query={"host": [down, up]},
    ).render_as_string(False)
    assert "@/" in two_hosts, two_hosts  # no host but the two of the query
    assert await ensure_databases([two_hosts]) == names
    assert await exists(pg_admin_url, names[0])


@pytest.mark.postgres
async def test_a_role_the_server_refuses_is_a_clear_error(pg_admin_url: str) -> None:
    url = make_url(asyncpg_url(pg_admin_url, fresh_db_name()))
    stranger = url.set(username=f"fh_nobody_{free_port()}", password=None)
    with pytest.raises(DatabaseSetupError, match="refused a connection") as caught:
        await ensure_databases([stranger.render_as_string(False)])
    assert str(stranger.username) in str(caught.value)  # the server's own words


@pytest.mark.postgres
async def test_a_role_without_createdb_is_told_so(pg_admin_url: str) -> None:
    role = fresh_db_name("fhrole")
    await pg_admin(pg_admin_url, f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        url = make_url(asyncpg_url(pg_admin_url, fresh_db_name()))
        plain = url.set(username=role, password=None).render_as_string(False)
        with pytest.raises(DatabaseSetupError, match="the role needs CREATEDB"):
            await ensure_databases([plain])
    finally:
        await pg_admin(pg_admin_url, f'DROP ROLE "{role}"')
