"""Accounts and users pages in a real browser, as the demo account-admin.

The whole local stack as in test_browser.py. The flow: the nav's Users link, a new
user (the API's message next to a bad email first), the user's page, deactivate
and reactivate (each confirmed), a password reset, roles, then the accounts list
and the account's page, edited (the API's message next to a bad colour first).
The users list is searched first. Every page is checked by axe-core and by keyboard, on a
desktop and on a 375 px phone, with a screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.browser import conftest as base
from tests.e2e.browser.a11y import VIEWPORTS, check, expected

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]


NEW_EMAIL = "colleague@company.test"


async def confirm(page: Page, shots: base.Shots, name: str, button: str) -> None:
    """On a confirmation page: check it, then press its button."""
    await expect(page.get_by_role("heading", level=1)).to_contain_text("?")
    await check(page, shots, name)
    await page.get_by_role("button", name=button).click()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_browser_users_and_accounts(
    browser: Browser, stack: base.Stack, shots: base.Shots, viewport: str
) -> None:
    context, page, errors = await base.new_page(browser, **VIEWPORTS[viewport])
    try:
        await base.log_in(page, stack)
        await page.get_by_role("link", name="Users", exact=True).click()
        await expect(page).to_have_url(f"{stack.origin}/users")
        await expect(page.get_by_role("cell", name=base.EMAIL)).to_be_visible()
        await check(page, shots, "users")

        # Search by name or email, by keyboard: nothing, then the admin.
        search = page.get_by_label("Search by name or email")
        await search.fill("nobody-here")
        await search.press("Enter")
        await expect(page.get_by_role("status")).to_contain_text(
            "No users match “nobody-here”"
        )
        await check(page, shots, "users-no-match")
        await page.get_by_label("Search by name or email").fill("ADMIN@company")
        await page.get_by_label("Search by name or email").press("Enter")
        await expect(page.get_by_role("cell", name=base.EMAIL)).to_be_visible()
        await expect(page.get_by_role("heading", level=2)).to_contain_text("match")
        await page.get_by_role("link", name="Show all").click()

        # A new user: the API's 422 next to the email field, then created.
        await page.get_by_role("link", name="Create a user").click()
        await check(page, shots, "user-new")
        await page.get_by_label("Email address").fill("not an address")
        await page.get_by_label("Name", exact=True).fill("Colleague")
        await page.get_by_role("button", name="Create user").click()
        email_error = page.locator("#new-email-error")
        await expect(email_error).to_be_visible()
        await expect(page.get_by_label("Email address")).to_have_attribute(
            "aria-invalid", "true"
        )
        expected(errors, 422, "/users/new")
        await check(page, shots, "user-new-invalid")
        await page.get_by_label("Email address").fill(NEW_EMAIL)
        await page.get_by_role("button", name="Create user").click()
        await expect(page).to_have_url(re.compile(r"/users/\d+\?notice=created$"))
        user_url = page.url.split("?")[0]
        await expect(page.get_by_role("status")).to_contain_text(
            "Forgot your password?"
        )
        await expect(page.locator("dl.facts")).to_contain_text(NEW_EMAIL)
        await expect(page.locator("table.log")).to_contain_text("created")
        await check(page, shots, "user-created")

        # Deactivate, confirmed; then reactivate.
        await page.get_by_role("link", name="Deactivate").click()
        await confirm(page, shots, "user-deactivate", "Deactivate Colleague")
        await expect(page.get_by_role("status")).to_contain_text("deactivated")
        await expect(page.locator("dl.facts")).to_contain_text("no (deactivated)")
        await check(page, shots, "user-deactivated")
        await page.get_by_role("link", name="Reactivate").click()
        await confirm(page, shots, "user-reactivate", "Reactivate Colleague")
        await expect(page.get_by_role("status")).to_contain_text("reactivated")

        # A password reset, confirmed.
        await page.get_by_role("link", name="Reset password").click()
        await confirm(page, shots, "user-reset", "Reset the password of Colleague")
        await expect(page.get_by_role("status")).to_contain_text(
            "password has been reset"
        )

        # Roles: account-admin given.
        await page.get_by_label(re.compile(r"^account-admin")).check()
        await page.get_by_role("button", name="Save roles").click()
        await expect(page.get_by_role("status")).to_contain_text("roles have been")
        await expect(page.locator("dl.facts")).to_contain_text("account-admin")
        await check(page, shots, "user-roles")

        # The accounts list and the account's page (users, assets, audit log).
        await page.get_by_role("link", name="Accounts", exact=True).click()
        await expect(page.get_by_role("heading", name="1 account")).to_be_visible()
        await check(page, shots, "accounts")
        await page.get_by_role("link", name="Company demo", exact=True).click()
        await expect(page.get_by_role("heading", name="Company demo")).to_be_visible()
        await expect(page.get_by_role("cell", name=NEW_EMAIL)).to_be_visible()
        await check(page, shots, "account")

        # Edit the account: the API's message next to a bad colour, then saved.
        account_url = page.url
        await page.get_by_label("Primary colour").fill("blue")
        await page.get_by_role("button", name="Save account").click()
        await expect(page.locator("#account-primary_color-error")).to_have_text(
            "#blue is not a valid hex color code."
        )
        await expect(page.get_by_label("Primary colour")).to_have_attribute(
            "aria-invalid", "true"
        )
        expected(errors, 422, account_url.removeprefix(stack.origin))
        await check(page, shots, "account-invalid")
        await page.get_by_label("Primary colour").fill("#1a5fb4")
        await page.get_by_role("button", name="Save account").click()
        await expect(page.get_by_role("status")).to_contain_text("has been saved")
        await expect(page.locator("table.log")).to_contain_text("#1a5fb4")
        await check(page, shots, "account-saved")

        # Not allowed: the demo admin's own roles and flags are not offered.
        await page.goto(user_url)
        await expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        assert errors == []
    finally:
        await context.close()
