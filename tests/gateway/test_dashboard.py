"""The data dashboard: real gateway, real tenant backend (SQLite), real Redis.

Assets, sensors and data are seeded through the gateway's API with API tokens;
page sessions are issued directly in the gateway's token store, as a login would.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.web.dashboard import (
    MAX_DEPTH,
    build_tree,
    duration_ms,
    resolution_text,
)
from gateway.web.sessions import COOKIE
from tenant_service.timing import format_duration
from tests.helpers.dashboard import (
    COMPANY,
    START,
    VALUES,
    Dash,
    DashFactory,
    api,
    asset_type,
    post,
    seed,
    session,
)


async def test_dashboard_without_session_redirects_to_login(dash: Dash) -> None:
    for headers in (COMPANY, {**COMPANY, "Cookie": f"{COOKIE}=not-a-session"}):
        response = await dash.gateway.get(
            "/dashboard", headers=headers, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == "/login?next=/dashboard"
    response = await dash.gateway.get(
        "/dashboard/sensors/1", headers=COMPANY, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/dashboard/sensors/1"


async def test_dashboard_refuses_another_tenants_session(dash: Dash) -> None:
    acme = await session(dash, dash.admin, tenant="acme")
    response = await dash.gateway.get(
        "/dashboard",
        headers={**COMPANY, "Cookie": acme["Cookie"]},
        allow_redirects=False,
    )
    assert response.status == 303


async def test_dashboard_lists_asset_tree_and_sensors(dash: Dash) -> None:
    seeded = await seed(dash)
    response = await dash.gateway.get(
        "/dashboard", headers=await session(dash, dash.admin)
    )
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    # Names are text, never markup.
    assert "Site &lt;b&gt;A&lt;/b&gt;" in page
    assert "<b>A</b>" not in page
    assert "power &lt;script&gt;" in page
    assert "<script>" not in page
    # The tree: Annex and Site are roots (by name), Battery is within Site.
    assert page.index("Annex") < page.index("Site &lt;b&gt;") < page.index("Battery")
    assert 'aria-label="Assets within Site &lt;b&gt;A&lt;/b&gt;"' in page
    within_site = page.split('aria-label="Assets within Site &lt;b&gt;A&lt;/b&gt;"')[1]
    assert "Battery" in within_site
    assert f'href="/dashboard/sensors/{seeded.power}"' in within_site
    assert f'href="/dashboard/sensors/{seeded.price}"' in page
    for text in ("kW", "15 minutes", "PT15M", "EUR/MWh", "1 hour", "PT1H"):
        assert text in page
    assert "3 assets, 2 sensors" in page
    assert "No sensors on this asset yet." in page  # Annex
    assert "No assets yet" not in page


async def test_dashboard_empty_states(dash: Dash) -> None:
    headers = await session(dash, dash.outsider)
    response = await dash.gateway.get("/dashboard", headers=headers)
    assert response.status == 200
    page = await response.text()
    assert "No assets yet" in page
    assert "POST /api/v3_0/assets" in page
    assert 'href="/api/v3_0/docs"' in page
    assert "data-origin>http://company.localhost</span>/api/v3_0/assets" in page
    auth = await api(dash, dash.outsider)
    kind = await asset_type(dash, auth)
    await post(
        dash, auth, "/api/v3_0/assets", {"name": "Shed", "generic_asset_type_id": kind}
    )
    page = await (await dash.gateway.get("/dashboard", headers=headers)).text()
    assert "No assets yet" not in page
    assert "No sensors yet" in page
    assert "POST /api/v3_0/sensors" in page
    assert "Shed" in page


async def test_dashboard_shows_only_the_users_account(dash: Dash) -> None:
    await seed(dash)
    page = await (
        await dash.gateway.get("/dashboard", headers=await session(dash, dash.outsider))
    ).text()
    assert "Battery" not in page
    assert "No assets yet" in page


async def test_dashboard_backend_down_is_an_html_page(dash: Dash) -> None:
    response = await dash.gateway.get(
        "/dashboard", headers=await session(dash, dash.admin, tenant="acme")
    )
    assert response.status == 502
    assert response.content_type == "text/html"
    assert "The dashboard is unavailable" in await response.text()


async def test_sensor_page_has_chart_container(dash: Dash) -> None:
    seeded = await seed(dash)
    headers = await session(dash, dash.admin)
    response = await dash.gateway.get(
        f"/dashboard/sensors/{seeded.power}", headers=headers
    )
    assert response.status == 200
    page = await response.text()
    chart = re.search(r'<div id="chart"[^>]*>', page)
    assert chart is not None
    tag = chart.group(0)
    assert f'data-sensor-id="{seeded.power}"' in tag
    assert 'data-unit="kW"' in tag
    assert 'data-resolution-ms="900000"' in tag
    assert 'data-sensor-name="power &lt;script&gt;"' in tag
    assert f'data-data-url="/dashboard/api/sensors/{seeded.power}/data"' in tag
    assert 'role="img"' in tag
    # Only external scripts (CSP), the vendored chart library and ours.
    scripts = re.findall(r"<script[^>]*>", page)
    assert len(scripts) == 3
    assert all(" src=" in script for script in scripts)
    assert "/static/vendor/uplot/uPlot.iife.min.js" in page
    assert "/static/timekit.js" in page
    assert "/static/dashboard.js" in page
    # The window form: presets and labelled start/end.
    for preset in ("24h", "7d", "30d", "custom"):
        assert f'name="preset" value="{preset}"' in page
    assert '<label for="window-start">' in page
    assert '<label for="window-end">' in page
    assert "No data in this window yet" in page
    assert f"POST /api/v3_0/sensors/{seeded.power}/data" in page
    # The window is kept from the query, only in the inputs' own format.
    response = await dash.gateway.get(
        f"/dashboard/sensors/{seeded.power}",
        params={"preset": "custom", "start": "2026-01-15T00:00", "end": '"><x>'},
        headers=headers,
    )
    page = await response.text()
    assert 'value="2026-01-15T00:00"' in page
    assert "<x>" not in page
    assert 'name="preset" value="custom" checked' in page


async def test_sensor_page_unknown_and_foreign_sensors(dash: Dash) -> None:
    seeded = await seed(dash)
    response = await dash.gateway.get(
        "/dashboard/sensors/999999", headers=await session(dash, dash.admin)
    )
    assert response.status == 404
    assert "No such sensor" in await response.text()
    response = await dash.gateway.get(
        f"/dashboard/sensors/{seeded.power}", headers=await session(dash, dash.outsider)
    )
    assert response.status == 403
    assert "belongs to another account" in await response.text()


# --- the chart's data ------------------------------------------------------------------


async def test_sensor_data_returns_backend_values(dash: Dash) -> None:
    seeded = await seed(dash)
    headers = await session(dash, dash.admin)
    url = f"/dashboard/api/sensors/{seeded.power}/data"
    query = {"start": START, "duration": "PT2H", "unit": "kW"}
    response = await dash.gateway.get(url, params=query, headers=headers)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["values"] == VALUES
    assert body["unit"] == "kW"
    assert body["resolution"] == "PT15M"
    # The same as the API gives the user with a token.
    direct = await dash.gateway.get(
        f"/api/v3_0/sensors/{seeded.power}/data",
        params=query,
        headers=await api(dash, dash.admin),
    )
    assert await direct.json() == body
    # Without a unit: the sensor's; a coarser resolution averages.
    response = await dash.gateway.get(
        url,
        params={"start": START, "duration": "PT2H", "resolution": "PT1H"},
        headers=headers,
    )
    body = await response.json()
    assert body["unit"] == "kW"
    assert body["values"] == [2.25, 4.25]
    # Another window: no data (the page's empty state).
    response = await dash.gateway.get(
        url,
        params={"start": "2025-01-01T00:00:00Z", "duration": "PT1H", "unit": "kW"},
        headers=headers,
    )
    assert (await response.json())["values"] == [None] * 4


async def test_sensor_data_requires_a_session_of_this_tenant(dash: Dash) -> None:
    seeded = await seed(dash)
    url = f"/dashboard/api/sensors/{seeded.power}/data"
    query = {"start": START, "duration": "PT2H"}
    acme = await session(dash, dash.admin, tenant="acme")
    for headers in (
        COMPANY,
        {**COMPANY, "Cookie": f"{COOKIE}=forged"},
        {**COMPANY, "Cookie": acme["Cookie"]},  # another tenant's session
        await api(dash, dash.admin),  # an API token is no session
    ):
        response = await dash.gateway.get(url, params=query, headers=headers)
        assert response.status == 401
        assert await response.json() == {
            "message": "You could not be properly authenticated for this content "
            "or functionality.",
            "status": "UNAUTHORIZED",
        }


async def test_sensor_data_passes_backend_refusals_through(dash: Dash) -> None:
    seeded = await seed(dash)
    url = f"/dashboard/api/sensors/{seeded.power}/data"
    query = {"start": START, "duration": "PT2H", "unit": "kW"}
    outsider = await session(dash, dash.outsider)
    for params in (query, {"start": START, "duration": "PT2H"}):
        response = await dash.gateway.get(url, params=params, headers=outsider)
        assert response.status == 403
        body = await response.json()
        assert body["status"] == "INVALID_SENDER"
    # The backend's own 403, word for word.
    direct = await dash.gateway.get(
        f"/api/v3_0/sensors/{seeded.power}/data",
        params=query,
        headers=await api(dash, dash.outsider),
    )
    response = await dash.gateway.get(url, params=query, headers=outsider)
    assert await response.json() == await direct.json()
    # A 422 of the backend (no start) passes as well.
    admin = await session(dash, dash.admin)
    response = await dash.gateway.get(
        url, params={"duration": "PT2H", "unit": "kW"}, headers=admin
    )
    assert response.status == 422
    assert (await response.json())["status"] == "UNPROCESSABLE_ENTITY"
    # An unknown sensor: the backend's answer too.
    response = await dash.gateway.get(
        "/dashboard/api/sensors/999999/data", params=query, headers=admin
    )
    assert response.status == 404
    assert response.content_type == "application/json"


async def test_sensor_data_backend_down_is_json(dash: Dash) -> None:
    response = await dash.gateway.get(
        "/dashboard/api/sensors/1/data",
        params={"start": START, "duration": "PT2H", "unit": "kW"},
        headers=await session(dash, dash.admin, tenant="acme"),
    )
    assert response.status == 502
    assert (await response.json())["status"] == "UPSTREAM_UNAVAILABLE"


async def test_sensor_data_is_get_only(dash: Dash) -> None:
    headers = await session(dash, dash.admin)
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        response = await dash.gateway.request(
            method, "/dashboard/api/sensors/1/data", headers=headers
        )
        assert response.status == 405, method
        assert response.headers["Allow"] == "GET"


# --- rate limits ----------------------------------------------------------------------

LIMITED = {
    "message": "You hit a rate limit. The limit you hit allows 3 per 1 minute.",
    "result": "Rejected",
    "status": "TOO_MANY_REQUESTS",
}


async def test_sensor_data_is_rate_limited_per_session(make_dash: DashFactory) -> None:
    dash = await make_dash({"per_token": "3/minute", "per_tenant": "off"})
    headers = await session(dash, dash.admin)
    url = "/dashboard/api/sensors/1/data"  # no such sensor: the backend's 404
    query = {"start": START, "duration": "PT2H", "unit": "kW"}
    for remaining in (2, 1, 0):
        response = await dash.gateway.get(url, params=query, headers=headers)
        assert response.status == 404
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        assert int(response.headers["X-RateLimit-Reset"]) > 0
    response = await dash.gateway.get(url, params=query, headers=headers)
    assert response.status == 429
    assert await response.json() == LIMITED
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(response.headers["Retry-After"]) <= 20
    # The pages of that session count too: the limit's page, with the headers.
    page = await dash.gateway.get("/dashboard/sensors/1", headers=headers)
    assert page.status == 429
    assert page.content_type == "text/html"
    assert "You hit a rate limit" in await page.text()
    assert page.headers["X-RateLimit-Limit"] == "3"
    assert "Retry-After" in page.headers
    # The user's API token and another session of theirs have buckets of their own.
    direct = await dash.gateway.get(
        "/api/v3_0/sensors/1/data", params=query, headers=await api(dash, dash.admin)
    )
    assert direct.status != 429
    assert direct.headers["X-RateLimit-Remaining"] == "2"
    other = await session(dash, dash.admin)
    response = await dash.gateway.get(url, params=query, headers=other)
    assert response.status == 404
    assert response.headers["X-RateLimit-Remaining"] == "2"


async def test_dashboard_and_api_share_the_tenant_bucket(
    make_dash: DashFactory,
) -> None:
    dash = await make_dash({"per_token": "off", "per_tenant": "3/minute"})
    headers = await session(dash, dash.admin)
    token = await api(dash, dash.outsider)
    url = "/dashboard/api/sensors/1/data"
    query = {"start": START, "duration": "PT2H", "unit": "kW"}
    # Wrong or missing sessions are refused before anything is charged.
    for cookie in ({}, {"Cookie": f"{COOKIE}=forged"}):
        for _ in range(4):
            response = await dash.gateway.get(
                url, params=query, headers={**COMPANY, **cookie}
            )
            assert response.status == 401
    first = await dash.gateway.get("/dashboard", headers=headers)
    assert first.status == 200
    assert first.headers["X-RateLimit-Remaining"] == "2"
    second = await dash.gateway.get("/api/v3_0/assets", headers=token)
    assert second.status == 200
    assert second.headers["X-RateLimit-Remaining"] == "1"
    third = await dash.gateway.get(url, params=query, headers=headers)
    assert third.status == 404  # no sensor 1: charged all the same
    assert third.headers["X-RateLimit-Remaining"] == "0"
    for response in (
        await dash.gateway.get(url, params=query, headers=headers),
        await dash.gateway.get("/api/v3_0/assets", headers=token),
    ):
        assert response.status == 429
        assert await response.json() == LIMITED
    page = await dash.gateway.get("/dashboard", headers=headers)
    assert page.status == 429
    assert page.content_type == "text/html"


async def test_dashboard_session_limits_hold_under_concurrency(
    make_dash: DashFactory,
) -> None:
    # 50 requests at once on one test process's loop: under CI's load some waited
    # over the default 1 s for a Redis connection (503); the limit is the point.
    dash = await make_dash(
        {"per_token": "20/minute", "per_tenant": "off"}, redis_timeout=10.0
    )
    headers = await session(dash, dash.admin)
    url = "/dashboard/api/sensors/1/data"
    query = {"start": START, "duration": "PT2H", "unit": "kW"}

    async def one() -> int:
        response = await dash.gateway.get(url, params=query, headers=headers)
        await response.read()
        return response.status

    statuses = await asyncio.gather(*(one() for _ in range(50)))
    assert statuses.count(429) == 30
    assert statuses.count(404) == 20  # the backend's answer: no sensor 1


# --- static files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("/static/vendor/uplot/uPlot.min.css", "text/css"),
        ("/static/dashboard.js", "text/javascript"),
        ("/static/dashboard.css", "text/css"),
    ],
)
async def test_static_files_are_served(
    dash: Dash, path: str, content_type: str
) -> None:
    response = await dash.gateway.get(path, headers=COMPANY)
    assert response.status == 200
    assert response.content_type in (content_type, "application/javascript")
    assert len(await response.read()) > 100


def test_vendored_uplot_is_the_noted_version() -> None:
    folder = Path(__file__).parents[2] / "gateway/web/static/vendor/uplot"
    assert sorted(p.name for p in folder.iterdir()) == [
        "LICENSE",
        "README.md",
        "uPlot.iife.min.js",
        "uPlot.min.css",
    ]
    version = re.search(r"uPlot (\d+\.\d+\.\d+)", (folder / "README.md").read_text())
    assert version is not None
    assert f"(v{version.group(1)})" in (folder / "uPlot.iife.min.js").read_text()[:100]
    assert "MIT License" in (folder / "LICENSE").read_text()


# --- the tree and durations, without a server -----------------------------------------


def asset(asset_id: int, name: str, parent: int | None = None) -> dict[str, object]:
    return {"id": asset_id, "name": name, "parent_asset_id": parent}


def sensor(sensor_id: int, asset_id: int | None) -> dict[str, object]:
    return {
        "id": sensor_id,
        "name": f"s{sensor_id}",
        "unit": "kW",
        "event_resolution": "PT15M",
        "generic_asset_id": asset_id,
    }


def test_build_tree_nests_sorts_and_keeps_loose_sensors() -> None:
    tree = build_tree(
        [asset(1, "b"), asset(2, "A"), asset(3, "c", 1), asset(4, "d", 99), "junk"],
        [sensor(10, 3), sensor(11, 1), sensor(12, 77), {"name": "no id"}],
    )
    assert [node.name for node in tree.roots] == ["A", "b", "d"]
    assert [child.id for child in tree.roots[1].children] == [3]
    assert [s.id for s in tree.roots[1].children[0].sensors] == [10]
    assert [s.id for s in tree.loose_sensors] == [12]
    assert (tree.asset_count, tree.sensor_count) == (4, 3)


def test_build_tree_survives_cycles_and_deep_trees() -> None:
    tree = build_tree([asset(1, "x", 2), asset(2, "y", 1), asset(3, "self", 3)], [])
    # A parent cycle has no root: its first asset by name becomes one.
    assert [node.id for node in tree.roots] == [3, 1]
    assert [child.id for child in tree.roots[1].children] == [2]
    chain = [asset(0, "a0")] + [asset(i, f"a{i}", i - 1) for i in range(1, 100)]
    tree = build_tree(chain, [])
    # Assets deeper than MAX_DEPTH start trees of their own; none is lost.
    assert [node.id for node in tree.roots] == list(range(0, 100, MAX_DEPTH + 1))
    seen: list[int] = []
    stack = list(tree.roots)
    while stack:
        node = stack.pop()
        seen.append(node.id)
        stack.extend(node.children)
    assert sorted(seen) == list(range(100))


@pytest.mark.parametrize(
    ("iso", "text"),
    [
        ("PT15M", "15 minutes"),
        ("PT1H", "1 hour"),
        ("P1D", "1 day"),
        ("PT90M", "90 minutes"),
        ("PT1.5S", "1500 milliseconds"),
        ("P0D", "instantaneous"),
        ("P1M", "P1M"),
        ("", ""),
    ],
)
def test_resolution_text(iso: str, text: str) -> None:
    assert resolution_text(iso) == text


@given(st.integers(min_value=0, max_value=400 * 86_400_000))
def test_duration_ms_reads_the_backends_durations(ms: int) -> None:
    assert duration_ms(format_duration(ms)) == ms
    assert duration_ms(format_duration(ms, days=False)) == ms


@given(st.text(max_size=30))
def test_duration_ms_never_raises(text: str) -> None:
    result = duration_ms(text)
    assert result is None or result >= 0
