"""Property-based API test: every documented operation, generated inputs, no 500.

Schemathesis generates requests from our OpenAPI document and sends them to a real
backend process (its own SQLite file, seeded with an account, users, an asset, a
sensor and data); any 5xx fails the test. Identities are signed per call as the
gateway would, so a password reset generated on the way does not end the run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from contract.identity import Caller, sign_identity
from tenant_service.passwords import hash_password
from tenant_service.store import accounts as account_store
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine, migrate
from tests.helpers.net import free_port

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parents[2] / "tenant_service/api/v3_0/openapi.yaml"
SECRET = "fuzz-secret-0123456789abcdef-0123456789"
TENANT = "fuzz"
schema = schemathesis.openapi.from_dict(yaml.safe_load(SPEC.read_text()))


async def _seed(url: str) -> int:
    await migrate(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            account = await account_store.create_account(conn, name="Fuzz")
            admin = await user_store.create_user(
                conn,
                email="admin@fuzz.test",
                username="admin",
                account_id=account,
                password_hash=hash_password("a fuzz password"),
                role_names=["account-admin"],
            )
            await user_store.create_user(
                conn,
                email="member@fuzz.test",
                username="member",
                account_id=account,
                password_hash=hash_password("a fuzz password"),
                role_names=[],
            )
    finally:
        await engine.dispose()
    return admin


@pytest.fixture(scope="module")
def backend(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[str, int]]:
    """A real tenant backend process on a seeded SQLite file; (base URL, admin id).

    Its schedule triggers go to a queue of its own on the test Redis (no worker).
    """
    workdir = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{workdir / 'fuzz.sqlite3'}"
    admin = asyncio.run(_seed(url))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenant_service"],
        env={
            **os.environ,
            "TENANT_NAME": TENANT,
            "TENANT_DATABASE_URL": url,
            "TENANT_SECRET": SECRET,
            "TENANT_PORT": str(port),
            "TENANT_REDIS_URL": redis_url,
            "TENANT_REDIS_PREFIX": f"fuzz{uuid.uuid4().hex[:12]}",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("the backend did not start")
        yield f"http://127.0.0.1:{port}", admin
    finally:
        proc.terminate()
        proc.wait(10)


def _identity(user_id: int) -> dict[str, str]:
    token = sign_identity(
        secret=SECRET,
        tenant=TENANT,
        caller=Caller(user_id, None, (), int(time.time() * 1000)),
        host="fuzz.localhost",
        scheme="http",
        request_id="fuzz",
    )
    return {"X-FlexHost-Identity": token}


@schema.exclude(path_regex=r"^/api/$|requestAuthToken").parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_operation_answers_a_server_error(
    case: Any, backend: tuple[str, int]
) -> None:
    base_url, admin = backend
    case.headers = {**(case.headers or {}), **_identity(admin)}
    response = case.call(base_url=base_url, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
