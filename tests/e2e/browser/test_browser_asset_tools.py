"""An asset's data status and audit log, copying an asset, deleting a sensor, and
the new-account page, in a real browser, as the demo account-admin.

The whole local stack as in test_browser.py. The flow goes by the pages' own links
and buttons; every page is checked by axe-core and by keyboard, on a desktop and on
a phone, with a screenshot under artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest
from playwright.async_api import Browser, expect

from tenant_service.passwords import hash_password
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.e2e.browser import conftest as base
from tests.e2e.browser.a11y import VIEWPORTS, check, expected
from tests.helpers.launcher import PASSWORD

ROOT: Final = "root@company.test"

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_browser_asset_status_auditlog_copy_and_sensor_delete(
    browser: Browser, stack: base.Stack, shots: base.Shots, viewport: str
) -> None:
    seeded = await base.seed(stack)
    context, page, errors = await base.new_page(browser, **VIEWPORTS[viewport])
    try:
        await base.log_in(page, stack)
        asset_url = f"{stack.origin}/assets/{seeded.asset_id}"

        # The data status of the asset's sensors (its day of data is long past).
        await page.goto(asset_url)
        await page.get_by_role("link", name="Data status").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(
            "Data status of"
        )
        await expect(page.locator("table.status")).to_contain_text(base.SENSOR)
        await expect(page.locator("table.status")).to_contain_text("stale")
        await check(page, shots, "asset-status")

        # The asset's audit log: its creation.
        await page.goto(asset_url)
        await page.get_by_role("link", name="Audit log").click()
        await expect(page.locator("table.log")).to_contain_text(base.ASSET)
        await check(page, shots, "asset-auditlog")

        # Copy the asset: to the copy's page, with a notice.
        await page.goto(asset_url)
        await page.get_by_role("button", name="Copy this asset").click()
        await expect(page.locator("p.notice")).to_contain_text("copy of the asset")
        assert page.url != asset_url
        copy_url = page.url.split("?")[0]
        await check(page, shots, "asset-copied")

        # Delete the copy's sensor: confirmed, then back on the copy's page.
        sensors = page.locator("table.sensors")
        await sensors.get_by_role("link", name=base.SENSOR, exact=True).click()
        await page.get_by_role("link", name="Delete this sensor").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("?")
        await check(page, shots, "sensor-delete")
        await page.get_by_role("button", name=re.compile(r"^Delete ")).click()
        await expect(page).to_have_url(re.compile(r"\?notice=sensor-deleted$"))
        assert page.url.startswith(copy_url)
        await expect(page.locator("p.notice")).to_contain_text("deleted")
        await expect(page.get_by_text("No sensors on this asset yet.")).to_be_visible()
        await check(page, shots, "sensor-deleted")

        # The original keeps its sensor.
        await page.goto(asset_url)
        await expect(sensors.get_by_role("link", name=base.SENSOR)).to_be_visible()

        # An account-admin may not create accounts: the page says so.
        await page.goto(f"{stack.origin}/accounts/new")
        expected(errors, 403, "/accounts/new")
        await expect(page.get_by_role("alert")).to_contain_text(
            "You may not create accounts"
        )
        await check(page, shots, "account-new-refused")
        assert errors == []
    finally:
        await context.close()


def company_database(workdir: Path) -> Path:
    """company's SQLite file of the stack running in `workdir`."""
    (database,) = workdir.rglob("company.sqlite3")
    return database


async def add_admin(database: Path) -> None:
    """An admin (role "admin") in company's database of the running stack."""
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with engine.begin() as conn:
            await user_store.create_user(
                conn,
                email=ROOT,
                username="root",
                account_id=1,
                password_hash=hash_password(PASSWORD),
                role_names=["admin"],
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_browser_admin_creates_an_account(
    browser: Browser,
    stack: base.Stack,
    shots: base.Shots,
    tmp_path: Path,
    viewport: str,
) -> None:
    await add_admin(company_database(tmp_path))
    context, page, errors = await base.new_page(browser, **VIEWPORTS[viewport])
    try:
        await page.goto(f"{stack.origin}/login")
        await page.get_by_label("Email address", exact=True).fill(ROOT)
        await page.get_by_label("Password", exact=True).fill(PASSWORD)
        await page.get_by_role("button", name="Log in", exact=True).click()
        await expect(page).to_have_url(f"{stack.origin}/logged-in-user")
        await page.get_by_role("link", name="Accounts", exact=True).click()
        await page.get_by_role("link", name="Create an account").click()
        await check(page, shots, "account-new")

        # No name: the API's message next to the field.
        await page.get_by_role("button", name="Create account").click()
        await expect(page.locator("#new-name-error")).to_contain_text("name")
        await expect(page.get_by_label("Name", exact=True)).to_have_attribute(
            "aria-invalid", "true"
        )
        expected(errors, 422, "/accounts/new")
        await check(page, shots, "account-new-invalid")

        # A client account of the demo account.
        await page.get_by_label("Name", exact=True).fill("Client <b>B</b>")
        await page.get_by_label("Consultancy account").select_option(
            label="Company demo (ID 1)"
        )
        await page.get_by_role("button", name="Create account").click()
        await expect(page).to_have_url(re.compile(r"/accounts/\d+\?notice=created$"))
        await expect(page.locator("p.notice")).to_contain_text("has been created")
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Client <b>B</b>"
        )
        await check(page, shots, "account-created")
        assert errors == []
    finally:
        await context.close()
