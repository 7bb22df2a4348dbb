"""An asset's data status and audit log, copying an asset, deleting a sensor, and
the new-account page, in a real browser, as the demo account-admin.

The whole local stack as in test_browser.py. The flow goes by the pages' own links
and buttons; every page is checked by axe-core and by keyboard, on a desktop and on
a phone, with a screenshot under artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.e2e.browser import conftest as base
from tests.e2e.browser.a11y import VIEWPORTS, check, expected

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
