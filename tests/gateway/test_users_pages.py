"""Accounts and users pages: real gateway, real tenant backend (SQLite), real Redis.

The backend and its first users come from the dashboard site's fixture (company's
account-admin, and an account-admin of another account); this module adds an admin
and a plain user of company. The API decides what each may do; the pages show it.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway import keys
from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.helpers import dashboard as base
from tests.helpers.forms import CSRF, ORIGIN, page


@dataclass(frozen=True, slots=True)
class People:
    """The gateway and company's users of each kind."""

    dash: base.Dash
    admin: base.User  # role "admin", in company's account
    account_admin: base.User  # company's account-admin
    member: base.User  # no roles, in company's account
    outsider: base.User  # account-admin of "Other Co."


async def add_user(url: str, email: str, account_id: int, *roles: str) -> base.User:
    """A user without a password, named after their email address."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            user_id = await user_store.create_user(
                conn,
                email=email,
                username=email.split("@")[0],
                account_id=account_id,
                password_hash=None,
                role_names=list(roles),
            )
    finally:
        await engine.dispose()
    return base.User(user_id, account_id, roles, email)


@pytest.fixture
async def people(make_dash: base.DashFactory, sqlite_database_url: str) -> People:
    dash = await make_dash()
    company = dash.admin.account_id
    return People(
        dash,
        await add_user(sqlite_database_url, "root@company.test", company, "admin"),
        dash.admin,
        await add_user(sqlite_database_url, "member@company.test", company),
        dash.outsider,
    )


async def submit(
    people: People,
    user: base.User,
    path: str,
    form: dict[str, str] | list[tuple[str, str]],
    *,
    csrf: str | None = CSRF,
) -> tuple[int, str, str]:
    """POST a form (with the session's CSRF secret): status, body, Location."""
    auth = await base.session(people.dash, user)
    data = list(form.items()) if isinstance(form, dict) else list(form)
    if csrf is not None:
        data.append(("csrf_token", csrf))
    response = await people.dash.gateway.post(
        path, data=data, headers={**auth, **ORIGIN}, allow_redirects=False
    )
    return (
        response.status,
        await response.text(),
        response.headers.get("Location", ""),
    )


async def api_get(people: People, path: str) -> object:
    auth = await base.api(people.dash, people.admin)
    response = await people.dash.gateway.get(path, headers=auth)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_users_pages_need_a_login(people: People) -> None:
    for path in ("/accounts", "/accounts/1", "/users", "/users/1", "/users/new"):
        response = await people.dash.gateway.get(
            path, headers=base.COMPANY, allow_redirects=False
        )
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/login?next=/"), path


async def test_users_pages_accounts_list_per_role(people: People) -> None:
    status, body = await page(people.dash, people.admin, "/accounts")
    assert status == 200
    assert "Company Inc." in body
    assert "Other Co." in body
    assert "2 accounts" in body
    status, body = await page(people.dash, people.account_admin, "/accounts")
    assert status == 200
    assert "Company Inc." in body
    assert "Other Co." not in body


async def test_users_pages_account_page(people: People) -> None:
    company = people.admin.account_id
    status, body = await page(people.dash, people.account_admin, f"/accounts/{company}")
    assert status == 200
    assert "<h1>Company Inc.</h1>" in body
    for email in ("admin@company.test", "root@company.test", "member@company.test"):
        assert email in body
    assert re.search(r"<dt>Assets</dt><dd>0</dd>", body)
    assert "Audit log" in body
    assert "/users/new?account_id=" in body
    # Another account's page: the API's 403 as a clear message.
    other = people.outsider.account_id
    status, body = await page(people.dash, people.account_admin, f"/accounts/{other}")
    assert status == 403
    assert "not allowed to see account with ID" in body
    status, body = await page(people.dash, people.admin, "/accounts/999999")
    assert status == 404
    assert "There is no account with ID 999999." in body


async def test_users_pages_account_edit(people: People) -> None:
    company = people.admin.account_id
    path = f"/accounts/{company}"
    _, body = await page(people.dash, people.account_admin, path)
    assert 'id="edit-title">Edit account' in body
    form = {
        "name": "Company Renamed",
        "primary_color": "#1a5fb4",
        "secondary_color": "",
        "logo_url": "",
        "consultancy_account_id": "",
    }
    status, body, location = await submit(people, people.account_admin, path, form)
    assert (status, location) == (303, f"{path}?notice=saved"), body
    _, body = await page(people.dash, people.account_admin, location)
    assert "<h1>Company Renamed</h1>" in body
    assert "The account has been saved." in body
    assert 'value="#1a5fb4"' in body
    assert "name (Company Inc. -&gt; Company Renamed)" in body  # the audit log
    assert "primary_color (None -&gt; #1a5fb4)" in body


async def test_users_pages_account_edit_bad_input(people: People) -> None:
    path = f"/accounts/{people.admin.account_id}"
    form = {
        "name": "",
        "primary_color": "blue",
        "secondary_color": "",
        "logo_url": "not a url",
        "consultancy_account_id": "",
    }
    status, body, _ = await submit(people, people.account_admin, path, form)
    assert status == 422
    assert "#blue is not a valid hex color code." in body
    assert 'id="account-primary_color" name="primary_color" value="blue"' in body
    assert 'aria-describedby="account-primary_color-error account-primary_color' in (
        body
    )
    assert "Account name cannot be empty." in body
    assert "&#39;not a url&#39; is not a valid URL." in body
    _, body = await page(people.dash, people.account_admin, path)
    assert "<h1>Company Inc.</h1>" in body  # nothing changed
    status, body, _ = await submit(people, people.account_admin, path, form, csrf="x")
    assert status == 403


async def test_users_pages_account_edit_not_allowed(
    people: People, sqlite_database_url: str
) -> None:
    company = people.admin.account_id
    path = f"/accounts/{company}"
    form = {"name": "Taken Over"}
    status, body, _ = await submit(people, people.outsider, path, form)
    assert status == 403
    assert "not allowed to see account with ID" in body
    # A member may rename their account (FlexMeasures' rule), but not give it
    # a consultancy: that needs the Consultancy account role.
    form = {"name": "Company Inc.", "consultancy_account_id": "1"}
    status, body, _ = await submit(people, people.member, path, form)
    assert status == 403
    assert "You may not make this change: the API refused (403)." in body
    assert "Consultancy" in body
    # An admin-reader reads every account but edits none but their own.
    reader = await add_user(
        sqlite_database_url,
        "reader@other.test",
        people.outsider.account_id,
        "admin-reader",
    )
    status, body = await page(people.dash, reader, path)
    assert status == 200
    assert "Edit account" not in body
    status, body, _ = await submit(people, reader, path, {"name": "Read Only"})
    assert status == 403
    assert "You may not make this change" in body
    _, body = await page(
        people.dash, people.admin, f"/accounts/{people.outsider.account_id}"
    )
    assert "Edit account" in body  # an admin edits every account


async def test_users_pages_users_list_and_account_picker(people: People) -> None:
    status, body = await page(people.dash, people.account_admin, "/users")
    assert status == 200
    assert "member@company.test" in body
    assert 'id="account"' not in body  # no picker: one account to see
    status, body = await page(
        people.dash,
        people.account_admin,
        f"/users?account_id={people.outsider.account_id}",
    )
    assert status == 403
    status, body = await page(
        people.dash, people.admin, f"/users?account_id={people.outsider.account_id}"
    )
    assert status == 200
    assert "someone@other.test" in body
    assert '<select id="account" name="account_id">' in body
    # A plain member reads their account's users, but is offered no management.
    status, body = await page(people.dash, people.member, "/users")
    assert status == 200
    assert "Create a user" not in body


async def test_users_pages_users_search(people: People) -> None:
    status, body = await page(people.dash, people.account_admin, "/users?q=MEMBER")
    assert status == 200
    assert 'name="q" value="MEMBER"' in body
    assert "member@company.test" in body
    assert "root@company.test" not in body
    assert "1 of 3 users match “MEMBER”" in body
    status, body = await page(
        people.dash, people.account_admin, "/users?q=company+root"
    )
    assert "root@company.test" in body
    assert "member@company.test" not in body
    status, body = await page(
        people.dash, people.account_admin, "/users?q=%3Cnobody%25"
    )
    assert status == 200
    assert "No users match “&lt;nobody%”" in body
    assert "<nobody" not in body
    assert "member@company.test" not in body
    assert 'href="/users?account_id=' in body  # "Show all"


async def test_users_pages_nav_for_managers(people: People) -> None:
    _, body = await page(people.dash, people.account_admin, "/logged-in-user")
    assert '<a href="/users">Users</a>' in body
    _, body = await page(people.dash, people.member, "/logged-in-user")
    assert '<a href="/users">Users</a>' not in body


async def test_users_pages_create_a_user(people: People) -> None:
    status, body = await page(people.dash, people.account_admin, "/users/new")
    assert status == 200
    assert 'name="csrf_token"' in body
    status, body, location = await submit(
        people,
        people.account_admin,
        "/users/new",
        {
            "email": "new@company.test",
            "username": "newbie",
            "account_id": str(people.account_admin.account_id),
            "roles": "account-admin",
        },
    )
    assert status == 303, body
    found = re.fullmatch(r"/users/(\d+)\?notice=created", location)
    assert found, location
    status, body = await page(people.dash, people.account_admin, location)
    assert status == 200
    assert "new@company.test" in body
    assert "Forgot your password?" in body
    assert "flexhost admin set-password" in body
    assert "account-admin" in body
    assert "User newbie created" in body or "created" in body  # the audit log
    user = await api_get(people, f"/api/v3_0/users/{found[1]}")
    assert isinstance(user, dict)
    assert user["email"] == "new@company.test"


async def test_users_pages_create_shows_the_api_messages(people: People) -> None:
    account = str(people.account_admin.account_id)
    # Taken email: the API's 422 next to the email field.
    status, body, _ = await submit(
        people,
        people.account_admin,
        "/users/new",
        {"email": "member@company.test", "username": "x", "account_id": account},
    )
    assert status == 422
    assert 'id="new-email-error"' in body
    assert "already exists" in body
    assert 'value="member@company.test"' in body
    # A malformed email: the API's message.
    status, body, _ = await submit(
        people,
        people.account_admin,
        "/users/new",
        {"email": "not an email", "username": "y", "account_id": account},
    )
    assert status == 422
    assert 'id="new-email-error"' in body
    # Empty fields: said before asking the API.
    status, body, _ = await submit(
        people, people.account_admin, "/users/new", {"account_id": account}
    )
    assert status == 422
    assert "Please enter the user&#39;s email address." in body
    assert "Please enter a name for the user." in body


async def test_users_pages_create_refusals(people: People) -> None:
    # No CSRF secret: refused, nothing created.
    status, _, _ = await submit(
        people,
        people.account_admin,
        "/users/new",
        {"email": "x@company.test", "username": "x"},
        csrf=None,
    )
    assert status == 403
    # A plain member may not create users: the API's 403, said plainly.
    status, body, _ = await submit(
        people,
        people.member,
        "/users/new",
        {"email": "y@company.test", "username": "y"},
    )
    assert status == 403
    assert "not allowed to create this user" in body
    # An account-admin may not give a role they lack (admin).
    status, body, _ = await submit(
        people,
        people.account_admin,
        "/users/new",
        {"email": "z@company.test", "username": "z", "roles": "admin"},
    )
    assert status == 403
    users = await api_get(
        people, f"/api/v3_0/users?account_id={people.admin.account_id}"
    )
    assert isinstance(users, list)
    assert {u["email"] for u in users} == {
        "admin@company.test",
        "root@company.test",
        "member@company.test",
    }


async def test_users_pages_deactivate_and_reactivate(people: People) -> None:
    member = people.member
    tokens = people.dash.gateway.app[keys.TOKENS]
    token = (await base.api(people.dash, member))["Authorization"]
    status, body = await page(people.dash, people.account_admin, f"/users/{member.id}")
    assert status == 200
    assert f'href="/users/{member.id}/deactivate"' in body
    status, body = await page(
        people.dash, people.account_admin, f"/users/{member.id}/deactivate"
    )
    assert status == 200
    assert "Deactivate member?" in body
    assert 'name="csrf_token"' in body
    # Without the CSRF secret nothing happens.
    status, _, _ = await submit(
        people, people.account_admin, f"/users/{member.id}/deactivate", {}, csrf="no"
    )
    assert status == 403
    assert await tokens.lookup(token) is not None
    status, _, location = await submit(
        people, people.account_admin, f"/users/{member.id}/deactivate", {}
    )
    assert status == 303
    assert location == f"/users/{member.id}?notice=deactivated"
    assert await tokens.lookup(token) is None  # revoked at once
    status, body = await page(people.dash, people.account_admin, location)
    assert "no (deactivated)" in body
    assert f'href="/users/{member.id}/reactivate"' in body
    status, _, location = await submit(
        people, people.account_admin, f"/users/{member.id}/reactivate", {}
    )
    assert location == f"/users/{member.id}?notice=reactivated"
    user = await api_get(people, f"/api/v3_0/users/{member.id}")
    assert isinstance(user, dict)
    assert user["active"] is True


async def test_users_pages_refusals_of_actions(people: People) -> None:
    # An account-admin may not deactivate an admin (a role they lack): 403 said.
    status, body, _ = await submit(
        people, people.account_admin, f"/users/{people.admin.id}/deactivate", {}
    )
    assert status == 403
    assert "not allowed to deactivate this user" in body
    # Another account's user: the page itself is refused.
    status, body = await page(
        people.dash, people.account_admin, f"/users/{people.outsider.id}"
    )
    assert status == 403
    assert "not allowed to see user with ID" in body
    status, body = await page(people.dash, people.account_admin, "/users/999999")
    assert status == 404


async def test_users_pages_password_reset(people: People) -> None:
    member = people.member
    tokens = people.dash.gateway.app[keys.TOKENS]
    token = (await base.api(people.dash, member))["Authorization"]
    status, body = await page(
        people.dash, people.account_admin, f"/users/{member.id}/reset-password"
    )
    assert status == 200
    assert "Reset the password of member?" in body
    status, _, location = await submit(
        people, people.account_admin, f"/users/{member.id}/reset-password", {}
    )
    assert status == 303
    assert location == f"/users/{member.id}?notice=password-reset"
    assert await tokens.lookup(token) is None
    _, body = await page(people.dash, people.account_admin, location)
    assert "password has been reset" in body


async def test_users_pages_roles(people: People) -> None:
    member = people.member
    # An account-admin gives account-admin (a role they hold).
    status, _, location = await submit(
        people,
        people.account_admin,
        f"/users/{member.id}/roles",
        [("roles", "account-admin")],
    )
    assert status == 303
    assert location == f"/users/{member.id}?notice=roles"
    _, body = await page(people.dash, people.account_admin, location)
    assert "<dt>Roles</dt><dd>account-admin</dd>" in body
    # ... but not admin, which they lack: the API's 403 said.
    status, body, _ = await submit(
        people,
        people.account_admin,
        f"/users/{member.id}/roles",
        [("roles", "account-admin"), ("roles", "admin")],
    )
    assert status == 403
    assert "not allowed to give these roles" in body
    # An admin gives any role; an unknown role is the API's 422.
    status, _, _ = await submit(
        people, people.admin, f"/users/{member.id}/roles", [("roles", "admin")]
    )
    assert status == 303
    status, body, _ = await submit(
        people, people.admin, f"/users/{member.id}/roles", [("roles", "wizard")]
    )
    assert status == 422
    assert "Unknown role: wizard." in body
    # Nobody changes their own roles.
    status, body, _ = await submit(
        people,
        people.account_admin,
        f"/users/{people.account_admin.id}/roles",
        [("roles", "account-admin")],
    )
    assert status == 403


async def test_users_pages_audit_log_pages(people: People) -> None:
    member = people.member
    # A member sees no audit log of others (the API refuses): said, no error.
    status, body = await page(people.dash, people.member, f"/users/{people.admin.id}")
    assert status == 200
    assert "You are not allowed to see this audit log." in body
    for index in range(20):  # 21 events with the creation
        role = "account-admin" if index % 2 == 0 else "admin"
        status, _, _ = await submit(
            people, people.admin, f"/users/{member.id}/roles", [("roles", role)]
        )
        assert status == 303
    _, body = await page(people.dash, people.admin, f"/users/{member.id}")
    assert "Page 1 of 2" in body
    assert f'href="/users/{member.id}?log_page=2"' in body
    _, body = await page(people.dash, people.admin, f"/users/{member.id}?log_page=2")
    assert "Page 2 of 2" in body
    assert "Events 21 to 21 of 21." in body
    assert "User member created" in body  # the oldest comes last


async def test_users_pages_edit_details(people: People) -> None:
    member = people.member
    path = f"/users/{member.id}/details"
    status, _, location = await submit(
        people,
        people.account_admin,
        path,
        {"email": "Member2@company.test", "username": "member two", "timezone": ""},
    )
    assert status == 303
    assert location == f"/users/{member.id}?notice=details"
    user = await api_get(people, f"/api/v3_0/users/{member.id}")
    assert isinstance(user, dict)
    assert (user["email"], user["username"]) == ("member2@company.test", "member two")
    # The API's messages next to the fields: a bad time zone, a taken email.
    status, body, _ = await submit(
        people, people.account_admin, path, {"timezone": "Mars/Olympus"}
    )
    assert status == 422
    assert 'id="edit-timezone-error"' in body
    assert "Timezone Mars/Olympus doesn&#39;t exist." in body
    status, body, _ = await submit(
        people, people.account_admin, path, {"email": "root@company.test"}
    )
    assert status == 400
    assert 'id="edit-email-error"' in body
    assert "already exists" in body
    # A user edits their own details; an outsider may not.
    status, _, _ = await submit(people, people.member, path, {"username": "me"})
    assert status == 303
    status, body, _ = await submit(people, people.outsider, path, {"username": "x"})
    assert status == 403


@pytest.mark.parametrize(
    "path",
    [
        "/users?page=abc&account_id=-1&include_inactive=maybe",
        "/users?account_id=99999999999999&page=0",
        "/accounts?page=99999999999",
        "/users/1?log_page=%00",
        "/accounts/1?log_page=-5",
        "/users/new?account_id=x",
        "/users/999999999/deactivate",
    ],
)
async def test_users_pages_bad_input_is_no_fault(people: People, path: str) -> None:
    status, body = await page(people.dash, people.admin, path)
    assert status < 500, body
    assert "Traceback" not in body


async def test_users_pages_bad_form_input_is_no_fault(people: People) -> None:
    status, body, _ = await submit(
        people,
        people.admin,
        "/users/new",
        [
            ("email", "a@b.test"),
            ("username", "x" * 400),
            ("account_id", "99999999999"),
            ("roles", "nonsense"),
        ],
    )
    assert status == 422, body
    status, body, _ = await submit(
        people, people.admin, f"/users/{people.member.id}/roles", [("roles", "é" * 300)]
    )
    assert status == 422, body


async def test_a_page_with_a_query_comes_back_whole_after_login(
    people: People,
) -> None:
    """The way back through the login page keeps every query parameter."""
    path = f"/users?account_id={people.admin.account_id}&q=member&page=1"
    response = await people.dash.gateway.get(
        path, headers=base.COMPANY, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Cache-Control"] == "no-store"
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": [path]}
    login = await people.dash.gateway.get(
        response.headers["Location"], headers=base.COMPANY
    )
    assert login.status == 200
    assert f'name="next" value="{html.escape(path)}"' in await login.text()
