"""The Swagger page `/api/v3_0/docs`: strict headers, and no token kept by the browser."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, ConsoleMessage, async_playwright
from playwright.async_api import Error as PlaywrightError

from tenant_service.api.v3_0 import docs
from tests.helpers.stack import COMPANY, Stack

CHROMIUM: Final = Path("/usr/bin/chromium")
WAIT_MS: Final = 15_000
TOKEN: Final = "a-token-typed-into-swagger-ui"


async def test_docs_page_headers_through_the_gateway(
    stack: Stack,
) -> None:
    response = await stack.gateway.get("/api/v3_0/docs", headers=COMPANY)
    assert response.status == 200
    csp = response.headers["Content-Security-Policy"]
    directives = dict([*part.strip().split(" ", 1), ""][:2] for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline scripts, no eval
    assert directives["frame-ancestors"] == "'none'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe-eval" not in csp
    assert "http" not in csp  # no other origin
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = await response.text()
    assert "<script>" not in page  # only files of this origin run
    script = await stack.gateway.get("/api/v3_0/docs/flexhost-init.js", headers=COMPANY)
    text = await script.text()
    assert "persistAuthorization: false" in text
    assert "validatorUrl: null" in text  # no image from validator.swagger.io
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    for name, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
    ):
        response = await stack.gateway.get(f"/api/v3_0/docs/{name}", headers=COMPANY)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert kind in response.content_type


# --- in a real browser ------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium under Playwright."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)", pytrace=False)
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, timeout=30_000
        )
        try:
            yield found
        finally:
            await found.close()


async def docs_server(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> str:
    """The backend's docs routes alone (they need no identity); their base URL."""
    app = web.Application()
    app.cleanup_ctx.append(docs.openapi_ctx)
    app.add_routes(docs.routes)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_docs_page_runs_under_its_policy_and_forgets_the_token(
    browser: Browser, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    base = await docs_server(aiohttp_server)
    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(message.text)  # CSP violations are console errors

    def on_page_error(error: PlaywrightError) -> None:
        problems.append(error.message)

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    await page.goto(f"{base}/api/v3_0/docs")
    await page.wait_for_selector(".swagger-ui .info .title")
    assert await page.locator(".opblock-summary").count() > 10
    # Swagger UI's own styles apply (inline styles allowed, its CSS loaded).
    colour = await page.locator(".swagger-ui .btn.authorize").evaluate(
        "e => getComputedStyle(e).borderColor"
    )
    assert colour not in ("", "rgb(0, 0, 0)")
    # Authorize with a token: it is used, but stored nowhere in the browser.
    await page.locator(".swagger-ui .btn.authorize").first.click()
    await page.locator(".modal-ux input").first.fill(TOKEN)
    await page.locator(".modal-ux button.authorize").first.click()
    await page.locator(".modal-ux button.btn-done").first.click()
    stored = await page.evaluate(
        "JSON.stringify([Object.assign({}, localStorage),"
        " Object.assign({}, sessionStorage), document.cookie])"
    )
    assert TOKEN not in stored
    assert "authorized" not in stored
    # A reload (as after a browser restart) starts unauthorized.
    await page.reload()
    await page.wait_for_selector(".swagger-ui .info .title")
    assert await page.locator(".swagger-ui .btn.authorize.locked").count() == 0
    assert await page.locator(".swagger-ui .btn.authorize.unlocked").count() >= 1
    assert problems == []
    # Another site cannot frame the page.
    framer = web.Application()

    async def frame_page(request: web.Request) -> web.Response:
        return web.Response(
            text=f'<iframe src="{base}/api/v3_0/docs"></iframe>',
            content_type="text/html",
        )

    framer.router.add_get("/", frame_page)
    other = await aiohttp_server(framer)
    await page.goto(str(other.make_url("/")))
    await page.wait_for_timeout(1000)
    (child,) = [frame for frame in page.frames if frame != page.main_frame]
    assert await child.locator(".swagger-ui").count() == 0
    await context.close()
