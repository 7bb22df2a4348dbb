"""Tenant admin CLI (`flexhost admin ...`): schema, accounts, users and passwords."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from tenant_service import data_cli
from tenant_service.api import FieldError, check_email
from tenant_service.config import (
    TENANT_PLACEHOLDER,
    default_database_url,
    tenant_database_url,
)
from tenant_service.identity import ACCOUNT_ADMIN
from tenant_service.passwords import MIN_PASSWORD_LENGTH, hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine, migrate


class CliError(Exception):
    """A problem to report on stderr (exit code 1)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `flexhost admin`."""
    parser = argparse.ArgumentParser(
        prog="flexhost admin", description="Manage one tenant's database."
    )
    parser.add_argument(
        "--database-url", help="default: TENANT_DATABASE_URL, else from --tenant"
    )
    parser.add_argument("--tenant", help="tenant name, for the default SQLite file")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the schema")

    add_account = sub.add_parser("add-account", help="create an account")
    add_account.add_argument("--name", required=True)
    add_account.add_argument("--role", action="append", default=[], dest="roles")

    add_user = sub.add_parser("add-user", help="create a user")
    add_user.add_argument("--email", required=True)
    add_user.add_argument("--account", required=True, help="account id or name")
    add_user.add_argument("--username")
    add_user.add_argument("--role", action="append", default=[], dest="roles")
    _password_options(add_user)

    set_password = sub.add_parser("set-password", help="set a user's password")
    set_password.add_argument("--email", required=True)
    _password_options(set_password)

    list_users = sub.add_parser("list-users", help="list users")
    list_users.add_argument("--account", help="account id or name")

    import_data = sub.add_parser("import-data", help="import sensor data from CSV")
    import_data.add_argument("--sensor", type=int, required=True)
    import_data.add_argument("--file", required=True, help="CSV: event_start,value")
    import_data.add_argument("--unit", help="unit of the values (the sensor's)")
    import_data.add_argument(
        "--resolution", help="ISO 8601 duration of the rows (the sensor's)"
    )
    import_data.add_argument("--source-name", default=data_cli.DEFAULT_SOURCE)

    export_data = sub.add_parser("export-data", help="export sensor data to CSV")
    export_data.add_argument("--sensor", type=int, required=True)
    export_data.add_argument("--start", help="aware ISO 8601 (first event)")
    export_data.add_argument("--end", help="aware ISO 8601 (after the last event)")
    export_data.add_argument("--unit", help="unit of the values (the sensor's)")
    export_data.add_argument("--file", help="output CSV (stdout)")
    return parser


def _password_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password-stdin", action="store_true")
    group.add_argument("--password-env", metavar="VAR")


def database_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """--database-url, else TENANT_DATABASE_URL, else the tenant's SQLite file.

    A URL with `{tenant}` (a pool's TENANT_DATABASE_URL) needs --tenant.
    """
    given = args.database_url or environ.get("TENANT_DATABASE_URL")
    if given:
        url = str(given)
        if TENANT_PLACEHOLDER not in url:
            return url
        if not args.tenant:
            raise CliError(f"the database URL has {TENANT_PLACEHOLDER}: give --tenant")
        return tenant_database_url(url, args.tenant)
    if args.tenant:
        return default_database_url(args.tenant)
    raise CliError("give --database-url, TENANT_DATABASE_URL or --tenant")


def read_password(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The new password from stdin, an environment variable or a prompt."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password_env:
        if args.password_env not in environ:
            raise CliError(f"environment variable {args.password_env} is not set")
        password = environ[args.password_env]
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            raise CliError("passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CliError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return password


async def _add_account(url: str, name: str, roles: list[str]) -> int:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if await account_store.find_account(conn, name) is not None:
                raise CliError(f"account {name!r} already exists")
            return await account_store.create_account(conn, name=name, role_names=roles)
    finally:
        await engine.dispose()


async def _add_user(
    url: str,
    *,
    email: str,
    account: str,
    username: str | None,
    roles: list[str],
    password_hash: str,
) -> int:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            found = await account_store.find_account(conn, account)
            if found is None:
                raise CliError(f"no account {account!r}")
            if await user_store.get_user_by_email(conn, email) is not None:
                raise CliError(f"user {email} already exists")
            return await user_store.create_user(
                conn,
                email=email,
                username=username or email.split("@", 1)[0],
                account_id=found.id,
                password_hash=password_hash,
                role_names=roles,
            )
    finally:
        await engine.dispose()


async def _set_password(url: str, email: str, password_hash: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            user = await user_store.get_user_by_email(conn, email)
            if user is None:
                raise CliError(f"no user {email}")
            await user_store.set_password_hash(conn, user.id, password_hash)
    finally:
        await engine.dispose()


async def _list_users(url: str, account: str | None) -> list[user_store.UserRecord]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            account_ids: list[int] | None = None
            if account is not None:
                found = await account_store.find_account(conn, account)
                if found is None:
                    raise CliError(f"no account {account!r}")
                account_ids = [found.id]
            records, _ = await user_store.list_users(
                conn, account_ids, include_inactive=True
            )
            return records
    finally:
        await engine.dispose()


def _table(records: list[user_store.UserRecord]) -> str:
    header = ("id", "email", "username", "account", "active", "roles")
    rows = [header] + [
        (
            str(r.id),
            r.email,
            r.username,
            f"{r.account_id} {r.account_name}",
            "yes" if r.active else "no",
            ",".join(r.role_names),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )


def _email(value: str) -> str:
    try:
        return check_email(value)
    except FieldError as err:
        raise CliError(f"{value!r}: {err}") from err


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Execute one parsed command."""
    url = database_url(args, environ)
    command = args.command
    if command == "migrate":
        asyncio.run(migrate(url))
        print("schema is up to date")
    elif command == "add-account":
        account_id = asyncio.run(_add_account(url, args.name, args.roles))
        print(f"created account {account_id} {args.name!r}")
    elif command == "add-user":
        email = _email(args.email)
        password_hash = hash_password(read_password(args, environ))
        user_id = asyncio.run(
            _add_user(
                url,
                email=email,
                account=args.account,
                username=args.username,
                roles=args.roles,
                password_hash=password_hash,
            )
        )
        print(f"created user {user_id} {email}")
    elif command == "set-password":
        email = _email(args.email)
        password_hash = hash_password(read_password(args, environ))
        asyncio.run(_set_password(url, email, password_hash))
        print(f"password of {email} set; older tokens are revoked")
    elif command == "list-users":
        print(_table(asyncio.run(_list_users(url, args.account))))
    elif command == "import-data":
        try:
            count = asyncio.run(
                data_cli.import_data(
                    url,
                    sensor_id=args.sensor,
                    path=args.file,
                    unit=args.unit,
                    resolution=args.resolution,
                    source_name=args.source_name,
                )
            )
        except data_cli.DataCliError as err:
            raise CliError(str(err)) from err
        print(f"stored {count} beliefs")
    elif command == "export-data":
        try:
            rows = asyncio.run(
                data_cli.export_data(
                    url,
                    sensor_id=args.sensor,
                    start=args.start,
                    end=args.end,
                    unit=args.unit,
                )
            )
        except data_cli.DataCliError as err:
            raise CliError(str(err)) from err
        if args.file:
            with Path(args.file).open("w", newline="", encoding="utf-8") as handle:
                data_cli.write_csv(rows, handle)
            print(f"exported {len(rows)} values")
        else:
            data_cli.write_csv(rows, sys.stdout)


def main(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    """Run the admin CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        run(args, os.environ if environ is None else environ)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except IntegrityError as err:
        print(f"error: conflicts with existing data: {err.orig}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as err:
        print(f"error: database: {err}", file=sys.stderr)
        return 1
    return 0


async def ensure_demo_account(database_url: str, tenant: str, password: str) -> bool:
    """Create `<Tenant> demo` and `admin@<tenant>.test` when there are no users yet."""
    await migrate(database_url)
    password_hash = await asyncio.to_thread(hash_password, password)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            if await user_store.count_users(conn) > 0:
                return False
            name = f"{tenant.capitalize()} demo"
            found = await account_store.find_account(conn, name)
            account_id = (
                found.id
                if found is not None
                else await account_store.create_account(conn, name=name)
            )
            await user_store.create_user(
                conn,
                email=f"admin@{tenant}.test",
                username=f"{tenant} admin",
                account_id=account_id,
                password_hash=password_hash,
                role_names=[ACCOUNT_ADMIN],
            )
            return True
    finally:
        await engine.dispose()
