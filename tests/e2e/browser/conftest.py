"""The browser tests' stack and browser: `flexhost up` on free ports, Debian's Chromium.

Playwright drives Debian's /usr/bin/chromium (Playwright's own browser downloads are
not used) against `flexhost up` on free ports, with the demo tenant `company` reached
as company.localhost:<port> (Chromium resolves *.localhost to loopback). The
fixtures here (`stack`, `browser`, `shots`) serve every test in this directory;
`stack` is this directory's own (the rest of tests/e2e use tests/helpers/stack.py's).
Screenshots go under artifacts/screenshots/<test>/ in the repository.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    async_playwright,
    expect,
)
from playwright.async_api import Error as PlaywrightError

from tests.helpers.launcher import (
    PASSWORD,
    REPO,
    Launcher,
    eventually_login,
    launcher_env,
    tenant_entry,
)
from tests.helpers.net import free_port

CHROMIUM: Final = Path("/usr/bin/chromium")
SHOTS: Final = REPO / "artifacts" / "screenshots"
EMAIL: Final = "admin@company.test"
WAIT_MS: Final = 10_000  # the longest any single wait in a page may take
PHONE: Final = {"width": 390, "height": 844}
DAY_START: Final = "2026-01-15T00:00:00+00:00"
DAY_VALUES: Final = [round(20 + 15 * math.sin(i * math.pi / 48), 2) for i in range(96)]
ASSET: Final = "Browser test site"
SENSOR: Final = "grid power"


@dataclass(frozen=True, slots=True)
class Stack:
    """`flexhost up` serving the demo tenant `company`, and a client for its API."""

    port: int
    http: aiohttp.ClientSession
    token: str  # an API token of the demo admin, from /api/requestAuthToken

    @property
    def origin(self) -> str:
        """The tenant's origin as the browser sees it."""
        return f"http://company.localhost:{self.port}"

    async def call(
        self, method: str, path: str, token: str, body: object = None
    ) -> tuple[int, Any]:
        """An API call through the gateway (on loopback, with the tenant's Host)."""
        headers = {"Host": f"company.localhost:{self.port}", "Authorization": token}
        async with self.http.request(
            method,
            f"http://127.0.0.1:{self.port}{path}",
            json=body,
            headers=headers,
        ) as resp:
            return resp.status, await resp.json(content_type=None)


@dataclass(frozen=True, slots=True)
class Seeded:
    """What `seed` created through the API."""

    asset_id: int
    sensor_id: int


@dataclass(slots=True)
class Shots:
    """Screenshots of one test under artifacts/screenshots/<test>/."""

    folder: Path
    taken: list[Path] = field(default_factory=list)

    async def take(self, page: Page, name: str) -> Path:
        """A full-page screenshot of `page`; its path is printed."""
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        await page.screenshot(path=path, full_page=True, timeout=WAIT_MS)
        self.taken.append(path)
        print(f"screenshot: {path}")
        return path


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole local stack in its own directory, stopped after the test."""
    gateway, company = free_port(), free_port()
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n" + tenant_entry("company", company)
    )
    up = Launcher(tmp_path, gateway)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        await up.start(launcher_env(PASSWORD))
        try:
            await up.wait_for(r"flexhost is up", 60)
            token = await eventually_login(http, gateway, "company", PASSWORD, 15)
            yield Stack(gateway, http, token)
        finally:
            await up.kill()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium under Playwright."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(Playwright's own download is not used); install it with "
            "`apt-get install chromium`.",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, timeout=30_000
        )
        try:
            yield found
        finally:
            await found.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    """An empty screenshot folder named after the test."""
    folder = SHOTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Shots(folder)


async def new_page(
    browser: Browser, **options: Any
) -> tuple[BrowserContext, Page, list[str]]:
    """A page of a fresh context (UTC, en-GB) and a list of what goes wrong on it.

    Console errors, uncaught exceptions and answers of 400 or more are listed.
    """
    context = await browser.new_context(timezone_id="UTC", locale="en-GB", **options)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(2 * WAIT_MS)
    page = await context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # Every error counts (the pages declare an empty icon: no /favicon.ico).
        source = urlsplit(message.location.get("url", "")).path
        if message.type == "error":
            errors.append(f"console error at {page.url}: {message.text} ({source})")

    def on_page_error(error: PlaywrightError) -> None:
        errors.append(f"uncaught at {page.url}: {error.message}")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            errors.append(f"{response.status} for {response.url} at {page.url}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.on("response", on_response)
    return context, page, errors


async def log_in(page: Page, stack: Stack) -> None:
    """Through the login form, onto the profile page."""
    await page.goto(f"{stack.origin}/login")
    await page.get_by_label("Email address", exact=True).fill(EMAIL)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page).to_have_url(f"{stack.origin}/logged-in-user", timeout=WAIT_MS)


async def seed(stack: Stack) -> Seeded:
    """An asset with a 15-minute power sensor and a day of its data."""
    status, types = await stack.call("GET", "/api/v3_0/assets/types", stack.token)
    assert status == 200, types
    battery = next(kind["id"] for kind in types if kind["name"] == "battery")
    status, asset = await stack.call(
        "POST",
        "/api/v3_0/assets",
        stack.token,
        {"name": ASSET, "generic_asset_type_id": battery},
    )
    assert status == 201, asset
    status, sensor = await stack.call(
        "POST",
        "/api/v3_0/sensors",
        stack.token,
        {
            "name": SENSOR,
            "unit": "kW",
            "event_resolution": "PT15M",
            "generic_asset_id": asset["id"],
        },
    )
    assert status == 201, sensor
    status, body = await stack.call(
        "POST",
        f"/api/v3_0/sensors/{sensor['id']}/data",
        stack.token,
        {"values": DAY_VALUES, "start": DAY_START, "duration": "P1D", "unit": "kW"},
    )
    assert status == 200, body
    return Seeded(asset["id"], sensor["id"])


async def show_the_seeded_day(page: Page) -> None:
    """On a sensor page: choose the seeded day as the window; wait for the chart."""
    status = page.locator("#chart-status")
    # The first load (the default window) ends before the form is used.
    await expect(status).not_to_be_empty(timeout=WAIT_MS)
    await expect(status).not_to_have_text("Loading data…", timeout=WAIT_MS)
    await page.get_by_label("From start to end", exact=True).check()
    await page.get_by_label("Start", exact=True).fill("2026-01-15T00:00")
    await page.get_by_label("End", exact=True).fill("2026-01-16T00:00")
    await page.get_by_role("button", name="Show data", exact=True).click()
    await expect(status).to_have_text(
        f"{len(DAY_VALUES)} values shown.", timeout=WAIT_MS
    )
    canvas = page.locator("#chart canvas")
    await expect(canvas).to_have_count(1, timeout=WAIT_MS)
    box = await canvas.bounding_box()
    assert box is not None
    assert box["width"] > 0
    assert box["height"] > 0
    painted = await canvas.evaluate(
        """canvas => {
            const pixels = canvas.getContext("2d")
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 3; i < pixels.length; i += 4) { if (pixels[i]) { count++; } }
            return count;
        }"""
    )
    assert painted > 0, "the chart's canvas is blank"
    await expect(page.locator("#chart-summary")).to_contain_text(
        f"{len(DAY_VALUES)} of {len(DAY_VALUES)} values have data"
    )


async def eventually_status(
    stack: Stack, token: str, wanted: int, seconds: float
) -> tuple[int, Any]:
    """GET /api/v3_0/users with `token` until it answers `wanted` (or time is up)."""
    deadline = time.monotonic() + seconds
    while True:
        status, body = await stack.call("GET", "/api/v3_0/users", token)
        if status == wanted or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.2)


async def horizontal_scroll(page: Page) -> int:
    """How far the page scrolls sideways (0: it fits the viewport's width)."""
    scrolled: int = await page.evaluate(
        """() => {
            const overflow = document.documentElement.scrollWidth
                - document.documentElement.clientWidth;
            window.scrollTo(10000, window.scrollY);
            const moved = window.scrollX;
            window.scrollTo(0, window.scrollY);
            return Math.max(overflow, moved);
        }"""
    )
    return scrolled
