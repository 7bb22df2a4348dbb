"""Accessibility checks of a page in the browser tests.

- `assert_accessible(page, name)`: axe-core (vendored under tests/e2e/browser/vendor/axe-core,
  never served by the gateway) runs every rule it has that is not experimental
  (WCAG 2.0/2.1/2.2 A and AA, best practices) on the page as it is; any violation
  fails the test with each rule's id, its help text and the elements it found.
- `assert_keyboard_usable(page, name)`: Tab from the top of the page reaches every
  visible, enabled control, and each shows a visible focus indicator (an outline or
  a box shadow) when reached so.

The script is evaluated through the DevTools protocol, which the page's CSP (no
inline scripts) does not govern, so pages are checked with their real headers.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.async_api import Page

from tests.e2e.browser.conftest import Shots, horizontal_scroll

AXE: Final = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
AXE_VERSION: Final = "4.14.1"
# What a control is, for the keyboard check: what a user can act on.
CONTROLS: Final = (
    "a[href], button, input:not([type=hidden]), select, textarea, summary,"
    " [tabindex]:not([tabindex='-1'])"
)


@cache
def _axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


def describe(violations: list[dict[str, Any]]) -> str:
    """axe's violations as text: rule, impact, help, then each element's target."""
    lines: list[str] = []
    for rule in violations:
        lines.append(
            f"- {rule['id']} ({rule.get('impact')}): {rule.get('help')}"
            f" <{rule.get('helpUrl')}>"
        )
        for node in rule.get("nodes", []):
            target = " ".join(str(part) for part in node.get("target", []))
            summary = " ".join(str(node.get("failureSummary", "")).split())
            lines.append(f"    {target}: {summary}")
            html = str(node.get("html", ""))
            lines.append(f"      {html[:200]}")
    return "\n".join(lines)


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (rules not experimental)."""
    loaded = await page.evaluate("() => typeof window.axe !== 'undefined'")
    if not loaded:
        await page.evaluate(_axe_source())
    version = await page.evaluate("() => window.axe.version")
    assert version == AXE_VERSION, f"axe-core {version} loaded, {AXE_VERSION} wanted"
    result: dict[str, Any] = await page.evaluate(
        """async () => {
            const found = await window.axe.run(document, {
                resultTypes: ["violations"],
            });
            return {violations: found.violations.map(rule => ({
                id: rule.id, impact: rule.impact, help: rule.help,
                helpUrl: rule.helpUrl,
                nodes: rule.nodes.map(node => ({
                    target: node.target, html: node.html,
                    failureSummary: node.failureSummary,
                })),
            }))};
        }"""
    )
    violations: list[dict[str, Any]] = result["violations"]
    return violations


async def assert_accessible(page: Page, name: str) -> None:
    """Fail on any axe-core violation on `page` (`name` says which page it is)."""
    violations = await axe_violations(page)
    if violations:
        pytest.fail(
            f"{name} ({page.url}): {len(violations)} accessibility rule(s) "
            f"violated:\n{describe(violations)}",
            pytrace=False,
        )


async def _controls(page: Page) -> list[str]:
    """A description of each visible, enabled control, in document order."""
    found: list[str] = await page.evaluate(
        """selector => {
            const visible = el => {
                if (el.closest("[hidden], [inert]")) { return false; }
                const style = getComputedStyle(el);
                if (style.visibility === "hidden" || style.display === "none") {
                    return false;
                }
                // The content of a closed <details> is skipped by Tab, though
                // Chromium keeps its boxes (content-visibility: hidden).
                for (let d = el.closest("details"); d;
                     d = d.parentElement && d.parentElement.closest("details")) {
                    const summary = el.closest("summary");
                    if (!d.open && !(summary && summary.parentElement === d)) {
                        return false;
                    }
                }
                return el.getClientRects().length > 0;
            };
            // A radio group is one Tab stop: its checked (or else first) radio.
            const stop = el => {
                if (el.type !== "radio" || !el.name) { return el; }
                const group = [...document.getElementsByName(el.name)];
                return group.find(radio => radio.checked) || group[0];
            };
            const stops = new Set([...document.querySelectorAll(selector)]
                .filter(el => !el.disabled && visible(el)).map(stop));
            window.__a11yIds = window.__a11yIds || new WeakMap();
            return [...stops].map(el => {
                if (!window.__a11yIds.has(el)) {
                    window.__a11yNext = (window.__a11yNext || 0) + 1;
                    window.__a11yIds.set(el, `c${window.__a11yNext}`);
                }
                const label = (el.getAttribute("aria-label") || el.textContent
                    || el.getAttribute("name") || el.id || "").trim();
                return `${window.__a11yIds.get(el)} <${el.tagName.toLowerCase()}> `
                    + label.replace(/\\s+/g, " ").slice(0, 60);
            });
        }""",
        CONTROLS,
    )
    return found


async def assert_keyboard_usable(page: Page, name: str) -> None:
    """Tab reaches every visible control of `page`, each visibly focused."""
    controls = await _controls(page)
    await page.evaluate(
        "() => { document.activeElement && document.activeElement.blur();"
        " window.scrollTo(0, 0); }"
    )
    reached: list[str] = []
    unfocused: list[str] = []
    wanted = {c.split(" ", 1)[0] for c in controls}
    # Date and time fields take a Tab per part (day, month, year, ...).
    for _ in range(8 * len(controls) + 3):
        if wanted <= set(reached):
            break
        await page.keyboard.press("Tab")
        focused: dict[str, Any] | None = await page.evaluate(
            """() => {
                const el = document.activeElement;
                if (!el || el === document.body) { return null; }
                const ids = window.__a11yIds;
                const style = getComputedStyle(el);
                const outline = style.outlineStyle !== "none"
                    && parseFloat(style.outlineWidth) > 0;
                const shadow = style.boxShadow && style.boxShadow !== "none";
                return {id: ids && ids.get(el), visible: outline || shadow,
                        tag: el.tagName.toLowerCase(),
                        text: (el.textContent || el.id || "").trim().slice(0, 60)};
            }"""
        )
        if focused is None:
            continue
        if focused["id"] is not None:
            reached.append(focused["id"])
        if not focused["visible"]:
            unfocused.append(f"<{focused['tag']}> {focused['text']}")
    missing = [c for c in controls if c.split(" ", 1)[0] not in reached]
    problems = []
    if missing:
        problems.append("not reached with Tab: " + "; ".join(missing))
    if unfocused:
        problems.append("no visible focus: " + "; ".join(sorted(set(unfocused))))
    if problems:
        pytest.fail(f"{name} ({page.url}): " + "\n".join(problems), pytrace=False)


DESKTOP: Final[dict[str, Any]] = {"viewport": {"width": 1280, "height": 800}}
PHONE: Final[dict[str, Any]] = {
    "viewport": {"width": 375, "height": 740},
    "is_mobile": True,
    "has_touch": True,
}
VIEWPORTS: Final[dict[str, dict[str, Any]]] = {"desktop": DESKTOP, "phone": PHONE}


def expected(errors: list[str], status: int, path: str) -> None:
    """Drop the one answer a step is meant to get (`status` for `path`) from errors.

    Chromium also logs a failed page load as a console error; that goes too.
    """
    gone = [e for e in errors if re.match(rf"{status} for \S*{re.escape(path)}\b", e)]
    assert gone, f"no {status} for {path}: {errors}"
    errors[:] = [
        e
        for e in errors
        if e not in gone
        and not (e.startswith("console error") and f"status of {status}" in e)
    ]


async def check(page: Page, shots: Shots, name: str) -> None:
    """axe-core, the keyboard, the width; then a screenshot."""
    await shots.take(page, name)
    await assert_accessible(page, name)
    await assert_keyboard_usable(page, name)
    assert await horizontal_scroll(page) == 0, f"{name} scrolls sideways"
