"""`flexhost tenants check` and the command's entry points, run as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.net import free_port, wait_tcp

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
tenants:
  - subdomain: company
    backends: ["http://127.0.0.1:8101"]
  - subdomain: acme
    backends: ["http://127.0.0.1:8102", "http://10.0.0.7:8102"]
    secret: env:FLEXHOST_TEST_NO_SUCH_SECRET
"""

BROKEN = """\
tenants:
  - subdomain: company
    backends: ["http://127.0.0.1:8101"]
  - subdomain: company
    backends: ["http://127.0.0.1:8102"]
  - subdomain: acme
    token_ttl: 5
"""


def flexhost(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `python -m deploy.cli ARGS` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_tenants_check_good_file_prints_summary(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(GOOD)
    done = flexhost("tenants", "check", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == (
        f"{path}: OK, 2 tenant(s), 3 backend(s), secrets not checked"
    )


def test_tenants_check_broken_file_prints_each_problem_with_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(BROKEN)
    done = flexhost("tenants", "check", str(path))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(
        line.startswith(f"{path}:4:") and "duplicate" in line for line in lines
    ), lines
    assert any(
        line.startswith(f"{path}:6:") and "tenants[2].backends" in line
        for line in lines
    ), lines
    assert any(
        line.startswith(f"{path}:7:") and "tenants[2].token_ttl" in line
        for line in lines
    ), lines
    assert "problem(s)" in done.stderr


def test_tenants_check_yaml_error_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text("tenants: [\n  - subdomain: x\n")
    done = flexhost("tenants", "check", str(path))
    assert done.returncode == 1
    assert done.stdout.startswith(str(path)), done.stdout


def test_tenants_check_missing_file_fails(tmp_path: Path) -> None:
    done = flexhost("tenants", "check", str(tmp_path / "nope.yaml"))
    assert done.returncode == 1
    assert "cannot read" in done.stdout


def test_tenants_check_with_secrets_dir_requires_secrets(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(GOOD)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "company").write_text("x" * 43)
    done = flexhost("tenants", "check", str(path), "--secrets-dir", str(secrets))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{path}:6:13: tenants[1].secret: no secret at env:FLEXHOST_TEST_NO_SUCH_SECRET"
    ]


def test_repo_tenants_file_is_valid() -> None:
    done = flexhost("tenants", "check", "tenants.yaml")
    assert done.returncode == 0, done.stdout
    assert "2 tenant(s)" in done.stdout


@pytest.mark.parametrize("module", ["deploy", "deploy.cli"])
def test_entry_points_show_help(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    for command in ("up", "tenants", "admin", "gateway", "tenant"):
        assert command in done.stdout


def test_unknown_command_is_a_usage_error() -> None:
    done = flexhost("frobnicate")
    assert done.returncode == 2
    assert "usage: flexhost" in done.stderr


def test_admin_passes_through_to_the_tenant_cli(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'company.sqlite3'}"
    migrated = flexhost("admin", "--database-url", url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    listed = flexhost("admin", "--database-url", url, "list-users")
    assert listed.returncode == 0, listed.stderr
    assert flexhost("admin", "--help").stdout.startswith("usage: flexhost admin")


@pytest.mark.slow
def test_tenant_command_runs_one_backend_in_the_foreground(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'company.sqlite3'}"
    assert flexhost("admin", "--database-url", url, "migrate").returncode == 0
    secret = tmp_path / "secret"
    secret.write_text("s" * 43)
    port = free_port()
    argv = [sys.executable, "-m", "deploy.cli", "tenant", "company"]
    argv += ["--port", str(port), "--database-url", url, "--secret-file", str(secret)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_")}
    log = tmp_path / "tenant.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        assert wait_tcp("127.0.0.1", port, 20), log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    assert proc.returncode == 0, log.read_text()
