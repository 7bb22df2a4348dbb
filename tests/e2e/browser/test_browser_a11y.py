"""Every page, checked by axe-core and by keyboard, on a desktop and on a phone.

The whole local stack as in test_browser.py; each page is shown signed in (or out,
for the login page), then: no axe-core violation, every control reached with Tab
and visibly focused, no horizontal scroll, no console error. Screenshots under
artifacts/screenshots/<test>/.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.e2e.browser import conftest as base
from tests.e2e.browser.a11y import VIEWPORTS, check, expected

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_browser_every_page_is_accessible(
    browser: Browser, stack: base.Stack, shots: base.Shots, viewport: str
) -> None:
    seeded = await base.seed(stack)
    options: dict[str, Any] = VIEWPORTS[viewport]
    context, page, errors = await base.new_page(browser, **options)
    try:
        await page.goto(f"{stack.origin}/login")
        await check(page, shots, "login")
        await page.get_by_label("Password", exact=True).fill("wrong")
        await page.get_by_label("Email address", exact=True).fill(base.EMAIL)
        await page.get_by_role("button", name="Log in", exact=True).click()
        await expect(page.get_by_role("alert")).to_be_visible()
        expected(errors, 401, "/login")  # the wrong password's answer
        await check(page, shots, "login-failed")

        await base.log_in(page, stack)
        await check(page, shots, "profile")
        await page.get_by_role("button", name="Create a fresh API token").click()
        await expect(page.get_by_label("Token", exact=True)).not_to_be_empty()
        await check(page, shots, "profile-fresh-token")

        await page.goto(f"{stack.origin}/dashboard")
        await expect(page.locator(".asset-name")).to_have_text(base.ASSET)
        await check(page, shots, "dashboard")

        await page.goto(f"{stack.origin}/dashboard/sensors/{seeded.sensor_id}")
        await base.show_the_seeded_day(page)
        await check(page, shots, "dashboard-sensor")

        await page.goto(f"{stack.origin}/logout")
        await check(page, shots, "logout")

        await page.goto(f"{stack.origin}/dashboard/sensors/999999")
        await expect(page.get_by_role("heading", name="No such sensor")).to_be_visible()
        expected(errors, 404, "/dashboard/sensors/999999")
        await check(page, shots, "dashboard-error")

        await page.goto(f"{stack.origin}/no-such-page")
        expected(errors, 404, "/no-such-page")
        await check(page, shots, "error-page")
        assert errors == []
    finally:
        await context.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_browser_asset_pages_are_accessible(
    browser: Browser, stack: base.Stack, shots: base.Shots, viewport: str
) -> None:
    seeded = await base.seed(stack)
    context, page, errors = await base.new_page(browser, **VIEWPORTS[viewport])
    try:
        await base.log_in(page, stack)
        for name, path in (
            ("assets", "/assets"),
            ("asset", f"/assets/{seeded.asset_id}"),
            ("asset-charts", f"/assets/{seeded.asset_id}/charts"),
            ("asset-new", "/assets/new"),
            ("asset-edit", f"/assets/{seeded.asset_id}/edit"),
            ("asset-delete", f"/assets/{seeded.asset_id}/delete"),
            ("sensor-new", f"/assets/{seeded.asset_id}/sensors/new"),
            ("sensor", f"/sensors/{seeded.sensor_id}"),
            ("sensor-edit", f"/sensors/{seeded.sensor_id}/edit"),
            ("jobs", "/jobs"),
        ):
            await page.goto(f"{stack.origin}{path}")
            await page.wait_for_load_state("networkidle")
            await check(page, shots, name)
        # the charts' actions, folded away until asked for
        await page.goto(f"{stack.origin}/assets/{seeded.asset_id}/charts")
        await page.wait_for_load_state("networkidle")
        await page.locator("#act > summary").click()
        await check(page, shots, "asset-charts-actions")
        assert errors == []
    finally:
        await context.close()
