"""The admin CLI, end to end on SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tenant_service.cli import ensure_demo_account, main
from tenant_service.passwords import PasswordChecker
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine

ENV = {"NEW_PW": "s3cret-password"}


async def _user(url: str, email: str) -> user_store.UserRecord | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await user_store.get_user_by_email(conn, email)
    finally:
        await engine.dispose()


async def _password_ok(url: str, email: str, password: str) -> bool:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            creds = await user_store.get_credentials(conn, email)
    finally:
        await engine.dispose()
    assert creds is not None
    return (await PasswordChecker().verify(creds.password_hash, password)).ok


def test_cli_end_to_end(
    sqlite_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--database-url", sqlite_database_url]
    assert main([*url, "migrate"], ENV) == 0
    assert (
        main([*url, "add-account", "--name", "Acme", "--role", "Consultancy"], ENV) == 0
    )
    assert main([*url, "add-account", "--name", "Acme"], ENV) == 1
    args = [*url, "add-user", "--email", "Ann@Acme.test", "--account", "Acme"]
    assert (
        main([*args, "--role", "account-admin", "--password-env", "NEW_PW"], ENV) == 0
    )
    assert main([*args, "--password-env", "NEW_PW"], ENV) == 1, "duplicate"
    assert (
        main(
            [
                *url,
                "add-user",
                "--email",
                "b@acme.test",
                "--account",
                "1",
                "--password-env",
                "MISSING",
            ],
            ENV,
        )
        == 1
    )
    assert (
        main(
            [
                *url,
                "add-user",
                "--email",
                "b@acme.test",
                "--account",
                "Nope",
                "--password-env",
                "NEW_PW",
            ],
            ENV,
        )
        == 1
    )
    assert main([*url, "list-users"], ENV) == 0
    out = capsys.readouterr()
    assert "ann@acme.test" in out.out
    assert "account-admin" in out.out
    assert ENV["NEW_PW"] not in out.out + out.err
    assert "$argon2" not in out.out

    user = asyncio.run(_user(sqlite_database_url, "ann@acme.test"))
    assert user is not None
    assert user.tokens_valid_after is None
    assert asyncio.run(
        _password_ok(sqlite_database_url, "ann@acme.test", ENV["NEW_PW"])
    )

    env = {"PW2": "another-password"}
    assert (
        main(
            [*url, "set-password", "--email", "ann@acme.test", "--password-env", "PW2"],
            env,
        )
        == 0
    )
    assert (
        main(
            [*url, "set-password", "--email", "x@acme.test", "--password-env", "PW2"],
            env,
        )
        == 1
    )
    assert (
        main(
            [
                *url,
                "set-password",
                "--email",
                "ann@acme.test",
                "--password-env",
                "SHORT",
            ],
            {"SHORT": "abc"},
        )
        == 1
    )
    user = asyncio.run(_user(sqlite_database_url, "ann@acme.test"))
    assert user is not None
    assert user.tokens_valid_after is not None
    assert asyncio.run(
        _password_ok(sqlite_database_url, "ann@acme.test", "another-password")
    )
    out = capsys.readouterr()
    assert "another-password" not in out.out + out.err
    assert main([*url, "list-users", "--account", "Nope"], env) == 1


def test_cli_database_url_from_env_and_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}"
    assert main(["migrate"], {"TENANT_DATABASE_URL": url}) == 0
    assert (tmp_path / "x.sqlite3").exists()
    monkeypatch.chdir(tmp_path)
    assert main(["--tenant", "demo", "migrate"], {}) == 0
    assert (tmp_path / ".flexhost" / "demo.sqlite3").exists()
    assert main(["migrate"], {}) == 1


def test_cli_database_url_template_needs_the_tenant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"TENANT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/{{tenant}}.db"}
    assert main(["migrate"], env) == 1
    assert "give --tenant" in capsys.readouterr().err
    assert main(["--tenant", "acme", "migrate"], env) == 0
    assert (tmp_path / "acme.db").exists()


async def test_ensure_demo_account(sqlite_database_url: str) -> None:
    assert await ensure_demo_account(sqlite_database_url, "acme", "demo-password")
    assert not await ensure_demo_account(sqlite_database_url, "acme", "other")
    user = await _user(sqlite_database_url, "admin@acme.test")
    assert user is not None
    assert user.account_name == "Acme demo"
    assert user.role_names == ("account-admin",)
