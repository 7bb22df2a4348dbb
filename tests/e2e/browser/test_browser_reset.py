"""Password reset by mail in a real browser, with a real SMTP server on loopback.

`flexhost up` runs with GATEWAY_SMTP_* pointing at an aiosmtpd server of the
test; the link is read from the mail it received. Screenshots of every page of
the flow go to artifacts/screenshots/<test>/.
"""

# The browser and screenshot fixtures are test_browser.py's, imported (F401) and
from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Final

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from playwright.async_api import Browser, expect

from tests.e2e.browser.conftest import (
    EMAIL,
    WAIT_MS,
    Shots,
    Stack,
    horizontal_scroll,
    new_page,
)
from tests.helpers.launcher import (
    PASSWORD,
    Launcher,
    eventually_login,
    launcher_env,
    tenant_entry,
)
from tests.helpers.net import free_port
from tests.helpers.smtp import LoopbackSMTP

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

NEW_PASSWORD: Final = "my new browser password"
LINK_RE: Final = re.compile(
    r"(http://company\.localhost:\d+/reset-password\?token=\S+)"
)


@dataclass
class Inbox:
    """Mails the loopback SMTP server received."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    async def link(self) -> str:
        """The reset link of the first mail, once it arrived (within 20 s)."""
        deadline = time.monotonic() + 20
        while not self.messages:
            assert time.monotonic() < deadline, "no mail arrived"
            await asyncio.sleep(0.1)
        body = self.messages[0].get_body(("plain",))
        assert body is not None
        found = LINK_RE.search(body.get_content())
        assert found is not None
        return found.group(1)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A real SMTP server on loopback."""
    box = Inbox(free_port())
    controller = LoopbackSMTP(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
async def mail_stack(tmp_path: Path, inbox: Inbox) -> AsyncIterator[Stack]:
    """`flexhost up` with mail over the loopback SMTP server."""
    gateway, company = free_port(), free_port()
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n" + tenant_entry("company", company)
    )
    env = launcher_env(PASSWORD)
    env.update(
        GATEWAY_SMTP_HOST="127.0.0.1",
        GATEWAY_SMTP_PORT=str(inbox.port),
        GATEWAY_SMTP_TLS="none",
        GATEWAY_MAIL_FROM="Company <noreply@company.test>",
    )
    up = Launcher(tmp_path, gateway)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        await up.start(env)
        try:
            await up.wait_for(r"flexhost is up", 60)
            token = await eventually_login(http, gateway, "company", PASSWORD, 15)
            yield Stack(gateway, http, token)
        finally:
            await up.kill()


async def test_browser_password_reset(
    mail_stack: Stack, browser: Browser, shots: Shots, inbox: Inbox
) -> None:
    stack = mail_stack
    context, page, errors = await new_page(browser)
    try:
        await page.goto(f"{stack.origin}/login")
        await shots.take(page, "login-with-forgot-link")
        await page.get_by_role("link", name="Forgot your password?").click()
        await expect(page).to_have_url(f"{stack.origin}/forgot-password")
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Forgot your password?"
        )
        await page.get_by_label("Email address").fill(EMAIL)
        await shots.take(page, "forgot-form")
        await page.get_by_role("button", name="Mail me a link").click()
        await expect(page.get_by_role("status")).to_contain_text("is on its way")
        await shots.take(page, "forgot-sent")

        link = await inbox.link()
        assert link.startswith(f"{stack.origin}/reset-password?token=")
        await page.goto(link)
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Choose a new password"
        )
        await shots.take(page, "reset-form")
        await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        await page.get_by_label("New password again").fill("something else")
        await page.get_by_role("button", name="Set the new password").click()
        await expect(page.locator("#repeat-error")).to_contain_text("differ")
        await expect(page.get_by_label("New password again")).to_have_attribute(
            "aria-invalid", "true"
        )
        await shots.take(page, "reset-mismatch")
        await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        await page.get_by_label("New password again").fill(NEW_PASSWORD)
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Your password has been changed"
        )
        await shots.take(page, "reset-done")

        # The demo admin's API token is revoked; the new password logs in.
        status, _ = await stack.call("GET", "/api/v3_0/users", stack.token)
        assert status == 401
        await page.get_by_role("link", name="Log in with your new password").click()
        await page.get_by_label("Email address", exact=True).fill(EMAIL)
        await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Log in", exact=True).click()
        await expect(page).to_have_url(
            f"{stack.origin}/logged-in-user", timeout=WAIT_MS
        )

        # An admin's invitation (here to themselves: no users page in this test).
        await page.evaluate(
            """() => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = "/users/1/invite";
                form.append(document.querySelector("input[name=csrf_token]").cloneNode());
                document.body.append(form);
                form.submit();
            }"""
        )
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Invitation sent"
        )
        await shots.take(page, "invite-sent")
        for _ in range(100):
            if len(inbox.messages) == 2:
                break
            await asyncio.sleep(0.1)
        assert str(inbox.messages[-1]["Subject"]).startswith("Set your password")

        # The link worked once.
        await page.goto(link)
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "This link no longer works"
        )
        await shots.take(page, "reset-link-used")

        # Readable on a phone.
        await page.set_viewport_size({"width": 375, "height": 812})
        for path in ("/forgot-password", "/reset-password?token=x"):
            await page.goto(f"{stack.origin}{path}")
            assert await horizontal_scroll(page) == 0
        await shots.take(page, "reset-link-used-phone")
    finally:
        await context.close()
    # The mismatch (422) and the used link (410) are answers the flow asks for;
    # Chromium also logs each as a console error.
    expected = re.compile(r"^(422|410) for |status of (422|410) ")
    assert [e for e in errors if not expected.search(e)] == []


async def test_browser_reset_off_without_smtp(
    stack: Stack, browser: Browser, shots: Shots
) -> None:
    context, page, errors = await new_page(browser)
    try:
        await page.goto(f"{stack.origin}/login")
        await expect(
            page.get_by_role("link", name="Forgot your password?")
        ).to_have_count(0)
        await page.goto(f"{stack.origin}/forgot-password")
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Password reset by mail is not available"
        )
        await expect(page.locator("code")).to_contain_text(
            "flexhost admin set-password"
        )
        await shots.take(page, "reset-off")
    finally:
        await context.close()
    assert [e for e in errors if "404" not in e] == []
