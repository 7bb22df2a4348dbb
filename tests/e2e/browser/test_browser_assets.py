"""The asset, sensor and jobs pages in a real browser (Debian Chromium, Playwright).

The fixtures are test_browser.py's: `flexhost up` serving the demo tenant
`company`, its admin logged in through the form. Screenshots of every page go to
artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import re
from typing import Final

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.browser.conftest import (
    ASSET,
    PHONE,
    SENSOR,
    Shots,
    Stack,
    horizontal_scroll,
    log_in,
    new_page,
    seed,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

CHILD: Final = "Browser child asset"


def expected_422(errors: list[str]) -> list[str]:
    """What went wrong, less the form answers meant to be 422 (the answer, and
    Chromium's console line about it)."""
    return [
        error
        for error in errors
        if not error.startswith("422 for ")
        and "responded with a status of 422" not in error
    ]


async def fits_a_phone(browser: Browser, stack: Stack, paths: list[str]) -> None:
    """Each page fits a 390 px wide phone screen (no sideways scroll)."""
    context, page, errors = await new_page(
        browser, viewport=PHONE, is_mobile=True, has_touch=True
    )
    try:
        await log_in(page, stack)
        for path in paths:
            await page.goto(f"{stack.origin}{path}")
            assert await horizontal_scroll(page) == 0, path
        assert errors == []
    finally:
        await context.close()


async def open_asset(page: Page, stack: Stack, name: str) -> None:
    await page.goto(f"{stack.origin}/assets")
    await page.get_by_role("link", name=name, exact=True).first.click()
    await expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()


async def test_browser_assets_search_edit_sensor_and_delete(
    browser: Browser, stack: Stack, shots: Shots
) -> None:
    seeded = await seed(stack)
    context, page, errors = await new_page(browser)
    try:
        await log_in(page, stack)
        # 1. The nav leads to the tree; search by name without script.
        await page.get_by_role("link", name="Assets", exact=True).click()
        await expect(page).to_have_url(f"{stack.origin}/assets")
        await expect(page.get_by_role("link", name=ASSET, exact=True)).to_be_visible()
        await shots.take(page, "assets-tree")
        await page.get_by_label("Search assets by name").fill("browser test")
        await page.get_by_label("Search assets by name").press("Enter")
        await expect(page).to_have_url(re.compile(r"/assets\?q=browser\+test"))
        await expect(
            page.get_by_role("heading", name=re.compile("1 asset named"))
        ).to_be_visible()
        await shots.take(page, "assets-search")

        # 2. The asset page: properties, its sensor, the controls.
        await page.get_by_role("link", name=ASSET, exact=True).click()
        # the charts keep their time range in the page's query
        await expect(page).to_have_url(
            re.compile(rf"{re.escape(stack.origin)}/assets/{seeded.asset_id}(\?|$)")
        )
        # its sensors table (the charts below link each sensor too)
        sensors_table = page.get_by_role("rowheader")
        await expect(
            sensors_table.get_by_role("link", name=SENSOR, exact=True)
        ).to_be_visible()
        await expect(page.locator("dl.facts")).to_contain_text("battery")
        await shots.take(page, "asset")

        # 3. Edit: the API's 422 next to the field, the input kept; then saved.
        await page.get_by_role("link", name="Edit asset").click()
        await page.get_by_label("Latitude").fill("95")
        await page.get_by_label("Flex-model").fill('{"soc-max": "2 MWh"}')
        await page.get_by_role("button", name="Save changes").click()
        await expect(page.locator("#latitude-error")).to_contain_text(
            "exceeds the maximum latitude"
        )
        await expect(page.get_by_label("Latitude")).to_have_value("95")
        await expect(page.get_by_label("Latitude")).to_have_attribute(
            "aria-invalid", "true"
        )
        await shots.take(page, "asset-edit-422")
        await page.get_by_label("Latitude").fill("52.37")
        await page.get_by_label("Longitude").fill("4.89")
        await page.get_by_role("button", name="Save changes").click()
        await expect(page.locator("p.notice[role=status]")).to_have_text(
            "Your changes have been saved."
        )
        await expect(page.locator("dl.facts")).to_contain_text("52.37, 4.89")
        await expect(page.locator("pre").nth(1)).to_contain_text("soc-max")

        # 4. A new sensor, then its page and its edit form.
        await page.get_by_role("link", name="Add a sensor").click()
        await page.get_by_label("Name").fill("battery state of charge")
        await page.get_by_label("Unit").fill("MWh")
        await page.get_by_label(re.compile("^Resolution")).fill("PT5M")
        await shots.take(page, "sensor-new")
        await page.get_by_role("button", name="Create sensor").click()
        await expect(page.locator("p.notice[role=status]")).to_have_text(
            "The sensor has been created."
        )
        await (
            page.get_by_role("table")
            .get_by_role("link", name="battery state of charge")
            .click()
        )
        await expect(page.locator("dl.facts")).to_contain_text("5 minutes")
        await shots.take(page, "sensor")
        await page.get_by_role("link", name="Edit sensor").click()
        await page.get_by_label(re.compile("^Time zone")).fill("Europe/Amsterdam")
        await shots.take(page, "sensor-edit")
        await page.get_by_role("button", name="Save changes").click()
        await expect(page.locator("dl.facts")).to_contain_text("Europe/Amsterdam")

        # 5. A child asset, then delete it: what goes is listed, then confirmed.
        await open_asset(page, stack, ASSET)
        await page.get_by_role("link", name="Add a child asset").click()
        await page.get_by_label("Name").fill(CHILD)
        await page.get_by_label("Type").select_option(label="battery")
        await shots.take(page, "asset-new")
        await page.get_by_role("button", name="Create asset").click()
        await expect(page.get_by_role("heading", name=CHILD, level=1)).to_be_visible()
        await page.get_by_role("link", name="Delete asset").click()
        await expect(
            page.get_by_role("heading", name=f"Delete {CHILD}?")
        ).to_be_visible()
        await expect(page.locator("main")).to_contain_text("0 child assets")
        await shots.take(page, "asset-delete")
        await page.get_by_role("button", name=re.compile(f"^Delete {CHILD}")).click()
        await expect(page).to_have_url(f"{stack.origin}/assets?notice=deleted")
        await expect(page.get_by_role("link", name=CHILD, exact=True)).to_have_count(0)
        await expect(page.get_by_role("link", name=ASSET, exact=True)).to_be_visible()
        assert expected_422(errors) == []
    finally:
        await context.close()
    await fits_a_phone(
        browser,
        stack,
        [
            "/assets",
            f"/assets/{seeded.asset_id}",
            f"/assets/{seeded.asset_id}/edit",
            f"/sensors/{seeded.sensor_id}",
            f"/assets/{seeded.asset_id}/delete",
        ],
    )


async def test_browser_jobs_page(browser: Browser, stack: Stack, shots: Shots) -> None:
    seeded = await seed(stack)
    status, body = await stack.call(
        "POST",
        f"/api/v3_0/sensors/{seeded.sensor_id}/schedules/trigger",
        stack.token,
        {
            "start": "2026-01-15T00:00:00+00:00",
            "duration": "PT4H",
            "flex-model": {
                "soc-at-start": "0 kWh",
                "soc-max": "10 kWh",
                "power-capacity": "5 kW",
            },
            "flex-context": {"consumption-price": "100 EUR/MWh"},
        },
    )
    assert status == 202, body
    context, page, errors = await new_page(browser)
    try:
        await log_in(page, stack)
        await page.get_by_role("link", name="Jobs", exact=True).click()
        await expect(page).to_have_url(f"{stack.origin}/jobs")
        row = page.locator("table.jobs tbody tr").filter(has_text=body["job"])
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("Schedule")
        await expect(row.get_by_role("link", name=SENSOR)).to_be_visible()
        await shots.take(page, "jobs")
        assert errors == []
    finally:
        await context.close()
    await fits_a_phone(browser, stack, ["/jobs"])
