"""An asset's audit log and data status pages, copying an asset, deleting a
sensor: real gateway, real tenant backend (SQLite), real Redis.

company's account-admin may do all; a plain member of company may read and copy
what has a parent, not delete sensors; an account-admin of another account sees
nothing of company's assets. The API decides; the pages show it.
"""

from __future__ import annotations

import html
import re

from tests.helpers.dashboard import SITE, Dash, seed
from tests.helpers.forms import add_user, page, submit


async def test_asset_page_links_status_auditlog_and_copy(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/assets/{seeded.site}")
    assert status == 200
    assert f'href="/assets/{seeded.site}/status"' in text
    assert f'href="/assets/{seeded.site}/auditlog"' in text
    assert f'action="/assets/{seeded.site}/copy"' in text
    status, text = await page(dash, dash.admin, f"/sensors/{seeded.power}")
    assert f'href="/sensors/{seeded.power}/delete"' in text


async def test_asset_auditlog_page(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/assets/{seeded.battery}/auditlog")
    assert status == 200
    assert "<h1>Audit log of Battery</h1>" in text
    assert '<table class="log">' in text
    assert "Created" in text or "created" in text
    assert f'href="/users/{dash.admin.id}"' in text  # who did it
    # Another account's asset: the API's 403 as a clear message.
    status, text = await page(dash, dash.outsider, f"/assets/{seeded.battery}/auditlog")
    assert status == 403
    assert "not allowed" in text
    status, text = await page(dash, dash.admin, "/assets/999999/auditlog")
    assert status == 404


async def test_asset_status_page_lists_sensors_of_asset_and_children(
    dash: Dash,
) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/assets/{seeded.site}/status")
    print(text)
    assert status == 200
    assert f"Data status of {html.escape(SITE)}" in text
    # The site's price sensor (no data) first, then its child's power sensor.
    price = text.index(f'href="/sensors/{seeded.price}"')
    power = text.index(f'href="/sensors/{seeded.power}"')
    assert price < power
    assert "no data recorded" in text
    # The power sensor's data (January 2026) is long past its two resolutions.
    row = text[power:].split("</tr>")[0]
    assert "user" in row  # the source type
    assert '<strong class="error">stale</strong>' in row
    assert "most recent data is" in row
    assert re.search(r'<time datetime="2026-01-15T', row)
    assert "2 stale" in text
    assert "power &lt;script&gt;" in text
    assert "power <script>" not in text
    status, text = await page(dash, dash.outsider, f"/assets/{seeded.site}/status")
    assert status == 403


async def test_copy_asset_then_its_page(dash: Dash) -> None:
    seeded = await seed(dash)
    status, _, location = await submit(dash, dash.admin, f"/assets/{seeded.site}/copy")
    assert status == 303
    found = re.fullmatch(r"/assets/(\d+)\?notice=copied", location)
    assert found, location
    assert int(found[1]) != seeded.site
    status, text = await page(dash, dash.admin, location)
    assert status == 200
    assert "This is the copy of the asset" in text
    assert html.escape(SITE) in text
    assert "Battery" in text  # its child was copied along


async def test_copy_asset_needs_csrf_and_permission(
    dash: Dash, sqlite_database_url: str
) -> None:
    seeded = await seed(dash)
    status, text, _ = await submit(
        dash, dash.admin, f"/assets/{seeded.site}/copy", csrf="wrong"
    )
    assert status == 403
    assert "could not be verified" in text
    # A member may not place a top-level asset in the account: no button, a 403.
    member = await add_user(sqlite_database_url, dash.admin.account_id, "m", ())
    status, text = await page(dash, member, f"/assets/{seeded.site}")
    assert status == 200
    assert "Copy this asset" not in text
    status, text, _ = await submit(dash, member, f"/assets/{seeded.site}/copy")
    assert status == 403
    assert f"You may not copy asset {seeded.site}" in text
    # ... but may copy a child next to itself (they may add children to its parent).
    status, text = await page(dash, member, f"/assets/{seeded.battery}")
    assert "Copy this asset" in text
    status, _, location = await submit(dash, member, f"/assets/{seeded.battery}/copy")
    assert status == 303, location
    status, _, _ = await submit(dash, dash.outsider, f"/assets/{seeded.site}/copy")
    assert status == 403
    status, _, _ = await submit(dash, dash.admin, "/assets/999999/copy")
    assert status == 404


async def test_delete_sensor_says_what_goes_then_deletes(dash: Dash) -> None:
    seeded = await seed(dash)
    status, text = await page(dash, dash.admin, f"/sensors/{seeded.power}/delete")
    assert status == 200
    assert "8 values" in text
    assert f'action="/sensors/{seeded.power}/delete"' in text
    status, text, _ = await submit(
        dash, dash.admin, f"/sensors/{seeded.power}/delete", csrf="wrong"
    )
    assert status == 403
    assert "could not be verified" in text
    status, _, location = await submit(
        dash, dash.admin, f"/sensors/{seeded.power}/delete"
    )
    assert (status, location) == (
        303,
        f"/assets/{seeded.battery}?notice=sensor-deleted",
    )
    status, text = await page(dash, dash.admin, location)
    assert "The sensor and its data have been deleted." in text
    assert f'href="/sensors/{seeded.power}"' not in text
    status, _ = await page(dash, dash.admin, f"/sensors/{seeded.power}")
    assert status == 404
    status, _, _ = await submit(dash, dash.admin, f"/sensors/{seeded.power}/delete")
    assert status == 404


async def test_delete_sensor_not_allowed(dash: Dash, sqlite_database_url: str) -> None:
    seeded = await seed(dash)
    member = await add_user(sqlite_database_url, dash.admin.account_id, "m", ())
    status, text = await page(dash, member, f"/sensors/{seeded.power}")
    assert "Delete this sensor" not in text
    status, text = await page(dash, member, f"/sensors/{seeded.power}/delete")
    assert status == 200
    assert "You may not delete this sensor" in text
    assert "<form" not in text.split("<main")[-1]
    status, text, _ = await submit(dash, member, f"/sensors/{seeded.power}/delete")
    assert status == 403
    assert f"You may not delete sensor {seeded.power}" in text
    status, text = await page(dash, dash.outsider, f"/sensors/{seeded.power}/delete")
    assert status == 403
    status, _ = await page(dash, dash.admin, f"/sensors/{seeded.power}")
    assert status == 200  # still there
