"""Creating an account on a page: real gateway, real tenant backend, real Redis.

An admin of company creates accounts (and client accounts of a consultancy); the
API's 422 messages stand next to the form's fields; an account-admin is refused.
"""

from __future__ import annotations

import re

from tenant_service.store import accounts as account_store
from tenant_service.store.db import create_engine
from tests.helpers.dashboard import Dash, api
from tests.helpers.forms import add_user, page, submit


async def test_admin_creates_an_account(dash: Dash, sqlite_database_url: str) -> None:
    admin = await add_user(
        sqlite_database_url, dash.admin.account_id, "root", ("admin",)
    )
    status, text = await page(dash, admin, "/accounts")
    assert 'href="/accounts/new"' in text
    status, text = await page(dash, admin, "/accounts/new")
    assert status == 200
    assert 'name="csrf_token"' in text
    assert f'<option value="{dash.admin.account_id}">Company Inc.' in text
    status, _, location = await submit(
        dash, admin, "/accounts/new", {"name": "Client <b>One</b>"}
    )
    assert status == 303
    found = re.fullmatch(r"/accounts/(\d+)\?notice=created", location)
    assert found, location
    status, text = await page(dash, admin, location)
    assert status == 200
    assert "The account has been created." in text
    assert "<h1>Client &lt;b&gt;One&lt;/b&gt;</h1>" in text
    # A client account of company: its consultancy is set.
    status, _, location = await submit(
        dash,
        admin,
        "/accounts/new",
        {"name": "Client Two", "consultancy_account_id": str(dash.admin.account_id)},
    )
    assert status == 303, location
    status, text = await page(dash, admin, location)
    assert f'<a href="/accounts/{dash.admin.account_id}">' in text
    response = await dash.gateway.get(
        "/api/v3_0/accounts?page=1&per_page=50", headers=await api(dash, admin)
    )
    names = {a["name"]: a for a in (await response.json())["data"]}
    assert names["Client Two"]["consultancy_account_id"] == dash.admin.account_id
    # ?consultancy=<id> preselects the consultancy ("Add a client account").
    status, text = await page(
        dash, admin, f"/accounts/new?consultancy={dash.admin.account_id}"
    )
    assert f'<option value="{dash.admin.account_id}" selected>' in text


async def test_account_form_shows_the_apis_messages(
    dash: Dash, sqlite_database_url: str
) -> None:
    admin = await add_user(
        sqlite_database_url, dash.admin.account_id, "root", ("admin",)
    )
    status, text, _ = await submit(dash, admin, "/accounts/new", {"name": "  "})
    assert status == 422
    assert 'id="new-name-error">Account name cannot be empty.' in text
    assert 'aria-invalid="true"' in text
    status, text, _ = await submit(dash, admin, "/accounts/new", {"name": "Other Co."})
    assert status == 422
    assert "already exists" in text
    assert 'value="Other Co."' in text  # kept as typed
    status, text, _ = await submit(
        dash,
        admin,
        "/accounts/new",
        {"name": "Client", "consultancy_account_id": "999999"},
    )
    assert status == 422
    assert "No account found with id 999999." in text
    status, text, _ = await submit(
        dash, admin, "/accounts/new", {"name": "Client"}, csrf="wrong"
    )
    assert status == 403
    assert "could not be verified" in text


async def test_account_form_not_allowed(dash: Dash) -> None:
    status, text = await page(dash, dash.admin, "/accounts")
    assert 'href="/accounts/new"' not in text
    status, text = await page(dash, dash.admin, "/accounts/new")
    assert status == 403
    assert "You may not create accounts" in text
    status, text, _ = await submit(dash, dash.admin, "/accounts/new", {"name": "X"})
    assert status == 403
    assert "You may not create this account: You cannot be authorized" in text
    assert 'value="X"' in text
    response = await dash.gateway.get(
        "/api/v3_0/accounts?page=1&per_page=50", headers=await api(dash, dash.admin)
    )
    assert "X" not in {a["name"] for a in (await response.json())["data"]}


async def test_consultancy_page_offers_a_client_account(
    dash: Dash, sqlite_database_url: str
) -> None:
    admin = await add_user(
        sqlite_database_url, dash.admin.account_id, "root", ("admin",)
    )
    engine = create_engine(sqlite_database_url)
    try:
        async with engine.begin() as conn:
            consultancy = await account_store.create_account(
                conn, name="Advisers", role_names=["consultancy"]
            )
    finally:
        await engine.dispose()
    status, text = await page(dash, admin, f"/accounts/{consultancy}")
    assert status == 200
    assert f'href="/accounts/new?consultancy={consultancy}"' in text
    status, text = await page(dash, admin, f"/accounts/{dash.admin.account_id}")
    assert "/accounts/new?consultancy=" not in text  # not a consultancy
