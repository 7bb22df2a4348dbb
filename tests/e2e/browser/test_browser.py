"""The pages in a real browser: headless Chromium on the whole local stack.

Playwright drives Debian's /usr/bin/chromium (Playwright's own browser downloads are
not used) against `flexhost up` on free ports, with the demo tenant `company` reached
as company.localhost:<port> (Chromium resolves *.localhost to loopback). Each test
saves screenshots of the pages it sees under artifacts/screenshots/<test>/ in the
repository and prints their paths.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import (
    Browser,
    expect,
)

from gateway.auth import token_hash
from tests.e2e.browser.conftest import (
    ASSET,
    EMAIL,
    PHONE,
    SENSOR,
    Shots,
    Stack,
    eventually_status,
    horizontal_scroll,
    log_in,
    new_page,
    seed,
    show_the_seeded_day,
)
from tests.helpers.launcher import (
    PASSWORD,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


async def test_browser_login_tokens_dashboard_chart_and_logout(
    browser: Browser, stack: Stack, shots: Shots
) -> None:
    context, page, errors = await new_page(browser)
    try:
        # 1. Log in through the form; land on the profile showing the email.
        await page.goto(f"{stack.origin}/logged-in-user")
        await expect(page).to_have_url(re.compile(r"/login\?next="))
        await expect(
            page.get_by_role("heading", name="Log in", exact=True)
        ).to_be_visible()
        await shots.take(page, "login")
        await page.get_by_label("Email address", exact=True).fill(EMAIL)
        await page.get_by_label("Password", exact=True).fill(PASSWORD)
        await page.get_by_role("button", name="Log in", exact=True).click()
        await expect(page).to_have_url(f"{stack.origin}/logged-in-user")
        await expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
        await expect(page.locator("dl.facts")).to_contain_text(EMAIL)
        await shots.take(page, "profile")

        # 2. A fresh API token, read from the page, works on the API.
        await page.get_by_role("button", name="Create a fresh API token").click()
        field = page.get_by_label("Token", exact=True)
        await expect(field).to_have_value(re.compile(r"\S{20,}"))
        token = await field.input_value()
        await expect(page.locator("#fresh-curl")).to_contain_text(token)
        await shots.take(page, "token-shown")
        status, users = await stack.call("GET", "/api/v3_0/users", token)
        assert status == 200, users
        assert EMAIL in [user["email"] for user in users]

        # 3. Its Revoke button in the table; then the API refuses it.
        revoke = page.get_by_role(
            "button", name=f"Revoke API token ({token_hash(token)[:8]})"
        )
        await expect(revoke).to_have_count(1)
        await revoke.click()
        await expect(page).to_have_url(f"{stack.origin}/logged-in-user?notice=revoked")
        await expect(page.get_by_role("status")).to_have_text(
            "The token has been revoked; it no longer works."
        )
        await expect(revoke).to_have_count(0)
        status, body = await eventually_status(stack, token, 401, 10)
        assert status == 401, body
        assert body["status"] == "UNAUTHORIZED"
        status, _ = await stack.call("GET", "/api/v3_0/users", stack.token)
        assert status == 200  # only that token was revoked

        # 4. Seeded data: the dashboard lists it; the sensor page charts it.
        seeded = await seed(stack)
        await page.get_by_role("link", name="Dashboard", exact=True).click()
        await expect(page).to_have_url(f"{stack.origin}/dashboard")
        await expect(
            page.get_by_role("heading", name="1 asset, 1 sensor")
        ).to_be_visible()
        await expect(page.locator(".asset-name")).to_have_text(ASSET)
        link = page.get_by_role("link", name=SENSOR, exact=True)
        await expect(link).to_have_attribute(
            "href", f"/dashboard/sensors/{seeded.sensor_id}"
        )
        await shots.take(page, "dashboard")
        await link.click()
        await expect(page).to_have_url(
            re.compile(rf"/dashboard/sensors/{seeded.sensor_id}(\?|$)")
        )
        await expect(
            page.get_by_role("heading", name=SENSOR, exact=True)
        ).to_be_visible()
        await show_the_seeded_day(page)
        await expect(page).to_have_url(re.compile(r"[?&]preset=custom(&|$)"))
        await shots.take(page, "sensor-chart")
        assert errors == []

        # 5. Log out with the page's button; the profile then needs a login.
        await page.get_by_role("button", name="Log out", exact=True).click()
        await expect(page).to_have_url(f"{stack.origin}/login?notice=logged-out")
        await expect(page.get_by_role("status")).to_have_text(
            "You have been logged out."
        )
        await page.goto(f"{stack.origin}/logged-in-user")
        await expect(page).to_have_url(f"{stack.origin}/login?next=/logged-in-user")
        await expect(page.get_by_label("Email address", exact=True)).to_be_visible()
        assert errors == []
    finally:
        await context.close()


async def test_browser_login_page_is_keyboard_usable(
    browser: Browser, stack: Stack, shots: Shots
) -> None:
    context, page, errors = await new_page(browser)
    try:
        await page.goto(f"{stack.origin}/login")
        email = page.get_by_label("Email address", exact=True)
        password = page.get_by_label("Password", exact=True)
        submit = page.get_by_role("button", name="Log in", exact=True)
        # Labels name their fields (for= an id), which getByLabel relies on.
        await expect(email).to_have_id("email")
        await expect(password).to_have_id("password")
        labels = await page.locator("form label").evaluate_all(
            "labels => labels.map(label => [label.textContent.trim(), label.control?.id])"
        )
        assert labels == [["Email address", "email"], ["Password", "password"]]
        await expect(email).to_be_focused()  # autofocus

        # Only the skip link comes before the email field; then Tab goes email,
        # password, submit.
        await page.keyboard.press("Shift+Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        order = []
        for _ in range(3):
            await page.keyboard.press("Tab")
            order.append(
                await page.evaluate(
                    "() => { const el = document.activeElement;"
                    " return el.id || el.textContent.trim() || el.tagName; }"
                )
            )
        assert order == ["email", "password", "Log in"], order
        await expect(submit).to_be_focused()
        outline = await submit.evaluate("el => getComputedStyle(el).outlineStyle")
        assert outline != "none", "no visible focus on the submit button"

        # Typing and Enter alone log in.
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Shift+Tab")
        await expect(email).to_be_focused()
        await page.keyboard.type(EMAIL)
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Tab")
        await expect(submit).to_be_focused()
        await shots.take(page, "login-by-keyboard")
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(f"{stack.origin}/logged-in-user")
        await expect(page.locator("dl.facts")).to_contain_text(EMAIL)
        assert errors == []
    finally:
        await context.close()


async def test_browser_dashboard_fits_a_phone(
    browser: Browser, stack: Stack, shots: Shots
) -> None:
    seeded = await seed(stack)
    context, page, errors = await new_page(
        browser, viewport=PHONE, is_mobile=True, has_touch=True
    )
    try:
        await log_in(page, stack)
        assert await page.evaluate("() => window.innerWidth") == PHONE["width"]
        await page.goto(f"{stack.origin}/dashboard")
        await expect(page.get_by_role("link", name=SENSOR, exact=True)).to_be_visible()
        await shots.take(page, "phone-dashboard")
        assert await horizontal_scroll(page) == 0

        await page.goto(f"{stack.origin}/dashboard/sensors/{seeded.sensor_id}")
        await show_the_seeded_day(page)
        await shots.take(page, "phone-sensor-chart")
        assert await horizontal_scroll(page) == 0
        assert errors == []
    finally:
        await context.close()
