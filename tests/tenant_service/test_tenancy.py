"""The pool's parts on their own: the connection budget and the tenants it serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contract.config import ConfigError, Secret
from tenant_service.config import Settings
from tenant_service.errors import DatabaseBusyError
from tenant_service.tenancy import ConnectionBudget, Directory

ADDRESS = "http://127.0.0.1:8201"
LONG = "s" * 40


async def test_budget_hands_a_closed_connection_to_the_first_waiter() -> None:
    budget = ConnectionBudget(limit=1, wait=5.0)
    await budget.acquire()
    first = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0.01)
    budget.release()
    await first
    assert not second.done()
    assert budget.held == 1
    budget.release()
    await second
    budget.release()
    assert budget.held == 0


async def test_budget_gives_up_after_its_wait() -> None:
    budget = ConnectionBudget(limit=1, wait=0.1)
    await budget.acquire()
    with pytest.raises(DatabaseBusyError):
        await budget.acquire()
    assert budget.held == 1
    budget.release()
    await budget.acquire()  # nobody left waiting: the place is free


async def test_budget_waiter_cancelled_takes_no_place() -> None:
    budget = ConnectionBudget(limit=1, wait=5.0)
    await budget.acquire()
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release()
    assert budget.held == 0


async def test_budget_makes_room_before_waiting() -> None:
    closed: list[int] = []
    budget = ConnectionBudget(limit=1, wait=5.0)

    async def make_room() -> bool:
        if closed:
            return False
        closed.append(1)
        budget.release()  # an idle engine closed: its connection ends
        return True

    budget.make_room = make_room
    await budget.acquire()
    await asyncio.wait_for(budget.acquire(), 1.0)
    assert closed == [1]
    assert budget.held == 1


def pool(tmp_path: Path, text: str) -> Settings:
    """A pool's settings on this tenants file (secrets under tmp_path/secrets)."""
    (tmp_path / "tenants.yaml").write_text(text)
    return Settings(
        name="",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/{{tenant}}.sqlite3",
        secret=Secret(""),
        tenants_file=tmp_path / "tenants.yaml",
        address=ADDRESS,
        secrets_dir=tmp_path / "secrets",
    )


async def test_directory_serves_the_tenants_at_its_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("a", "b", "c", "e", "f"):
        (secrets / name).write_text(LONG)
    (secrets / "short").write_text("x" * 20)
    monkeypatch.setenv("FH_DB_F", "postgresql+asyncpg://fh@db/fh_f")
    text = f"""\
tenants:
  - {{subdomain: a, backends: ["{ADDRESS}"], flexmeasures_version: "0.30.0"}}
  - {{subdomain: b, backends: ["HTTP://127.0.0.1:8201/", "http://10.0.0.2:8201"]}}
  - {{subdomain: c, backends: ["http://127.0.0.1:8202"]}}
  - {{subdomain: nosecret, backends: ["{ADDRESS}"]}}
  - {{subdomain: short, backends: ["{ADDRESS}"]}}
  - {{subdomain: e, backends: ["{ADDRESS}"], database: "env:FH_DB_UNSET"}}
  - {{subdomain: f, backends: ["{ADDRESS}"], database: "env:FH_DB_F"}}
"""
    directory = Directory(pool(tmp_path, text))
    await directory.refresh(force=True)
    assert sorted(directory._tenants) == ["a", "b", "f"]
    a = directory.get("a")
    assert a is not None
    assert a.settings.name == "a"
    assert a.settings.secret == Secret(LONG)
    assert a.settings.flexmeasures_version == "0.30.0"
    assert a.settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/a.sqlite3"
    f = directory.get("f")
    assert f is not None
    assert f.settings.database_url == "postgresql+asyncpg://fh@db/fh_f"
    assert await directory.lookup("c") is None, "another pool's tenant"
    assert await directory.lookup("Not A Name") is None


async def test_directory_start_refuses_a_bad_file_then_keeps_the_last_good(
    tmp_path: Path,
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "a").write_text(LONG)
    settings = pool(tmp_path, "tenants: [")
    with pytest.raises(ConfigError):
        await Directory(settings).start()
    settings = pool(tmp_path, f'tenants: [{{subdomain: a, backends: ["{ADDRESS}"]}}]\n')
    directory = Directory(settings)
    await directory.start()
    (tmp_path / "tenants.yaml").write_text("tenants: [\n")
    await directory.refresh()
    assert directory.get("a") is not None


async def test_directory_serves_a_tenant_whose_secret_appears_after_the_file(
    tmp_path: Path,
) -> None:
    """The file names the tenant before its secret file exists (a launcher writes
    them in that order): the tenant's first assertion re-reads the unchanged file."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "a").write_text(LONG)
    text = (
        f'tenants: [{{subdomain: a, backends: ["{ADDRESS}"]}},'
        f' {{subdomain: late, backends: ["{ADDRESS}"]}}]\n'
    )
    directory = Directory(pool(tmp_path, text))
    await directory.start()
    assert directory.get("late") is None
    assert directory.waiting
    (tmp_path / "secrets" / "late").write_text(LONG)
    late = await directory.lookup("late")
    assert late is not None
    assert late.settings.secret == Secret(LONG)
    assert not directory.waiting


async def test_new_tenants_arriving_together_each_get_their_own_schema(
    tmp_path: Path,
) -> None:
    """First requests of six new tenants at once: each database is migrated, by
    one migration at a time (alembic's state is process-wide: two at once in two
    threads ran each other's statements on the wrong database)."""
    names = [f"t{i}" for i in range(6)]
    (tmp_path / "secrets").mkdir()
    for name in names:
        (tmp_path / "secrets" / name).write_text(LONG)
    entries = ", ".join(f'{{subdomain: {n}, backends: ["{ADDRESS}"]}}' for n in names)
    directory = Directory(pool(tmp_path, f"tenants: [{entries}]\n"))
    await directory.start()

    async def first_request(name: str) -> list[str]:
        state = directory.get(name)
        assert state is not None
        async with directory.using(state) as used, used.engine.connect() as conn:
            rows = await conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
            return sorted(row[0] for row in rows)

    try:
        tables = await asyncio.wait_for(
            asyncio.gather(*(first_request(name) for name in names)), 120
        )
    finally:
        await directory.close_all()
    assert "alembic_version" in tables[0]
    assert "sensors" in tables[0] or "sensor" in tables[0]
    assert all(found == tables[0] for found in tables), "every schema complete"
