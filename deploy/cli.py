"""The `flexhost` command: local stack, tenants check, admin, services, deploy files."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

DEFAULT_TENANTS: Final = Path("tenants.yaml")
DATA_DIR_NAME: Final = ".flexhost"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flexhost",
        description="Hosted multi-tenant FlexMeasures-compatible API.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="run Redis, the gateway and every local tenant backend"
    )
    up.add_argument(
        "--tenants", type=Path, default=DEFAULT_TENANTS, help="default: ./tenants.yaml"
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where databases, secrets and Redis data live "
        "(default: .flexhost next to the tenants file)",
    )
    up.add_argument("--host", default="127.0.0.1", help="gateway address")
    up.add_argument("--port", type=int, default=8080, help="gateway port")
    up.add_argument(
        "--redis-url",
        default=None,
        help="use this Redis instead of starting one "
        "(default: $FLEXHOST_REDIS_URL, else an embedded server)",
    )
    up.add_argument(
        "--database-url",
        default=None,
        metavar="TEMPLATE",
        help="the tenants' databases, a URL with {tenant} (no password: use "
        "env:VARIABLE, file:/path, PGPASSWORD or ~/.pgpass); PostgreSQL ones are "
        "created when missing (default: $FLEXHOST_DATABASE_URL, else a SQLite "
        "file each in the data dir)",
    )

    tenants = commands.add_parser("tenants", help="work with a tenants file")
    tenants_commands = tenants.add_subparsers(
        dest="tenants_command", required=True, metavar="COMMAND"
    )
    check = tenants_commands.add_parser(
        "check",
        help="validate a tenants file offline",
        description="Print every problem of FILE with its place; exit 1 if any. "
        "Secrets are checked only with --secrets-dir.",
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument(
        "--secrets-dir",
        type=Path,
        default=None,
        help="also require every tenant's secret (default file secrets in DIR, "
        "env: secrets in this environment)",
    )

    commands.add_parser(
        "admin",
        help="tenant database admin: migrate, add-account, add-user, "
        "set-password, list-users (see `flexhost admin --help`)",
        add_help=False,
    )

    gateway = commands.add_parser("gateway", help="run one gateway in the foreground")
    gateway.add_argument("--host", help="GATEWAY_HOST")
    gateway.add_argument("--port", type=int, help="GATEWAY_PORT")
    gateway.add_argument("--redis-url", help="GATEWAY_REDIS_URL")
    gateway.add_argument("--tenants", type=Path, help="GATEWAY_TENANTS_PATH")
    gateway.add_argument("--secrets-dir", type=Path, help="GATEWAY_SECRETS_DIR")

    tenant = commands.add_parser(
        "tenant", help="run one tenant backend in the foreground"
    )
    tenant.add_argument("name", metavar="NAME", help="the tenant's subdomain")
    tenant.add_argument("--host", help="TENANT_HOST")
    tenant.add_argument("--port", type=int, help="TENANT_PORT")
    tenant.add_argument("--database-url", help="TENANT_DATABASE_URL")
    tenant.add_argument("--secret-file", type=Path, help="TENANT_SECRET_FILE")
    tenant.add_argument("--redis-url", help="TENANT_REDIS_URL")

    worker = commands.add_parser(
        "worker", help="run one tenant's scheduling worker in the foreground"
    )
    worker.add_argument("name", metavar="NAME", help="the tenant's subdomain")
    worker.add_argument("--database-url", help="TENANT_DATABASE_URL")
    worker.add_argument("--secret-file", type=Path, help="TENANT_SECRET_FILE")
    worker.add_argument("--redis-url", help="TENANT_REDIS_URL")

    for command, what in (
        ("pool", "run a pool backend (the tenants at ADDRESS) in the foreground"),
        ("pool-worker", "run a pool's scheduling worker in the foreground"),
    ):
        pool = commands.add_parser(command, help=what)
        pool.add_argument(
            "address",
            metavar="ADDRESS",
            nargs="?",
            help="TENANT_ADDRESS: the backend URL as the tenants file writes it",
        )
        pool.add_argument("--tenants", type=Path, help="TENANT_TENANTS_FILE")
        pool.add_argument("--database-url", help="TENANT_DATABASE_URL ({tenant})")
        pool.add_argument("--secrets-dir", type=Path, help="TENANT_SECRETS_DIR")
        pool.add_argument("--redis-url", help="TENANT_REDIS_URL")
        if command == "pool":
            pool.add_argument("--host", help="TENANT_HOST")
            pool.add_argument("--port", type=int, help="TENANT_PORT")

    deploy = commands.add_parser("deploy", help="render production deployment files")
    deploy_commands = deploy.add_subparsers(
        dest="deploy_command", required=True, metavar="TARGET"
    )
    k8s = deploy_commands.add_parser(
        "k8s",
        help="print Kubernetes manifests for a tenants file",
        description="Print multi-document YAML: namespace, the gateway's tenants.yaml "
        "(backends rewritten to the tenants' Services), the gateways, and per tenant "
        "its backends, Service and worker (one set per pool for tenants with the same "
        "backends). A tenants file with problems is refused as "
        "`flexhost tenants check` refuses it. Secrets are referenced, never rendered.",
    )
    k8s.add_argument(
        "--tenants", type=Path, default=DEFAULT_TENANTS, help="default: ./tenants.yaml"
    )
    k8s.add_argument(
        "--image", default=None, help="container image (default: flexhost:<version>)"
    )
    k8s.add_argument("--namespace", default="flexhost", help="default: flexhost")
    k8s.add_argument(
        "--gateway-replicas", type=_positive, default=2, metavar="N", help="default: 2"
    )
    k8s.add_argument(
        "--replicas",
        type=_positive,
        default=None,
        metavar="N",
        help="replicas of every tenant backend (default: one per URL in its backends)",
    )
    k8s.add_argument(
        "--trusted-proxies",
        default="10.0.0.0/8",
        metavar="CIDRS",
        help="GATEWAY_TRUSTED_PROXIES: where the TLS front connects from "
        "(default: 10.0.0.0/8)",
    )
    k8s.add_argument(
        "--redis-host",
        default=None,
        help="add Service `redis`, an ExternalName for this host",
    )
    k8s.add_argument(
        "--postgres-host",
        default=None,
        help="add Service `postgresql`, an ExternalName for this host",
    )
    k8s.add_argument(
        "--redis-sentinels",
        default=None,
        metavar="HOST:PORT,...",
        help="use Redis through these sentinels (*_REDIS_SENTINELS) instead of a URL",
    )
    k8s.add_argument(
        "--redis-sentinel-master",
        default=None,
        metavar="NAME",
        help="the sentinels' master name (*_REDIS_SENTINEL_MASTER)",
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def check_tenants(path: Path, secrets_dir: Path | None) -> int:
    """Print the problems of a tenants file (exit 1) or a one-line summary (exit 0)."""
    from contract.config import ConfigError
    from contract.tenants_file import load_tenants

    try:
        config = load_tenants(
            path,
            secrets_dir=secrets_dir or path.parent / DATA_DIR_NAME / "secrets",
            check_secrets=secrets_dir is not None,
        )
    except ConfigError as err:
        for problem in err.problems:
            print(problem)
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        return 1
    backends = sum(len(t.backends) for t in config.tenants)
    checked = "secrets checked" if secrets_dir else "secrets not checked"
    print(
        f"{path}: OK, {len(config.tenants)} tenant(s), {backends} backend(s), {checked}"
    )
    return 0


def deploy_k8s(args: argparse.Namespace) -> int:
    """Print the Kubernetes manifests (exit 0), or the problems on stderr (exit 1)."""
    from contract.config import ConfigError
    from deploy.k8s import K8sOptions, default_image, render_file

    options = K8sOptions(
        image=args.image or default_image(),
        namespace=args.namespace,
        gateway_replicas=args.gateway_replicas,
        backend_replicas=args.replicas,
        trusted_proxies=tuple(
            p.strip() for p in args.trusted_proxies.split(",") if p.strip()
        ),
        redis_host=args.redis_host,
        postgres_host=args.postgres_host,
        redis_sentinels=args.redis_sentinels,
        redis_sentinel_master=args.redis_sentinel_master,
    )
    try:
        text = render_file(args.tenants, options)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(f"{args.tenants}: {len(err.problems)} problem(s)", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def _exec_module(module: str, env: Mapping[str, str | None]) -> int:
    """Replace this process by `python -m module` with `env` applied."""
    for key, value in env.items():
        if value is not None:
            os.environ[key] = value
    argv = [sys.executable, "-m", module]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 1  # not reached: execv does not return


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _path(value: Path | None) -> str | None:
    return None if value is None else str(value.absolute())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `flexhost` console script."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["admin"]:
        from tenant_service.cli import main as admin_main

        return admin_main(args_in[1:])
    args = build_parser().parse_args(args_in)
    if args.command == "up":
        from deploy.databases import database_template
        from deploy.local import (
            DATABASE_URL_ENV,
            DEMO_PASSWORD_ENV,
            REDIS_URL_ENV,
            UpOptions,
            up,
        )

        raw = args.database_url or os.environ.get(DATABASE_URL_ENV) or None
        template = None
        if raw is not None:
            source = "--database-url" if args.database_url else f"${DATABASE_URL_ENV}"
            try:
                template = database_template(raw)
            except ValueError as err:
                # Not the value itself: it may hold a password.
                print(f"flexhost up: {source}: {err}", file=sys.stderr)
                return 2
        tenants_path: Path = args.tenants.absolute()
        data_dir: Path = args.data_dir or tenants_path.parent / DATA_DIR_NAME
        options = UpOptions(
            tenants_path=tenants_path,
            data_dir=data_dir.absolute(),
            host=args.host,
            port=args.port,
            redis_url=args.redis_url or os.environ.get(REDIS_URL_ENV) or None,
            demo_password=os.environ.get(DEMO_PASSWORD_ENV) or None,
            database_url=template,
        )
        return up(options)
    if args.command == "tenants":
        return check_tenants(args.file, args.secrets_dir)
    if args.command == "deploy":
        return deploy_k8s(args)
    if args.command == "gateway":
        return _exec_module(
            "gateway",
            {
                "GATEWAY_HOST": args.host,
                "GATEWAY_PORT": _text(args.port),
                "GATEWAY_REDIS_URL": args.redis_url,
                "GATEWAY_TENANTS_PATH": _path(args.tenants),
                "GATEWAY_SECRETS_DIR": _path(args.secrets_dir),
            },
        )
    if args.command == "tenant":
        return _exec_module(
            "tenant_service",
            {
                "TENANT_NAME": args.name,
                "TENANT_HOST": args.host,
                "TENANT_PORT": _text(args.port),
                "TENANT_DATABASE_URL": args.database_url,
                "TENANT_SECRET_FILE": _path(args.secret_file),
                "TENANT_REDIS_URL": args.redis_url,
            },
        )
    if args.command == "worker":
        return _exec_module(
            "tenant_service.scheduling.worker",
            {
                "TENANT_NAME": args.name,
                "TENANT_DATABASE_URL": args.database_url,
                "TENANT_SECRET_FILE": _path(args.secret_file),
                "TENANT_REDIS_URL": args.redis_url,
            },
        )
    if args.command in ("pool", "pool-worker"):
        pool = args.command == "pool"
        return _exec_module(
            "tenant_service" if pool else "tenant_service.scheduling.worker",
            {
                "TENANT_ADDRESS": args.address,
                "TENANT_TENANTS_FILE": _path(args.tenants),
                "TENANT_DATABASE_URL": args.database_url,
                "TENANT_SECRETS_DIR": _path(args.secrets_dir),
                "TENANT_REDIS_URL": args.redis_url,
                "TENANT_HOST": args.host if pool else None,
                "TENANT_PORT": _text(args.port) if pool else None,
            },
        )
    return 2  # argparse rejects unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
