"""Pages and forms of the dashboard's test site, as a browser would use them.

A GET or a form's POST (with the session's CSRF secret, from the site's origin) as
a user of tests/helpers/dashboard.py; a user of company added to its database.
"""

from __future__ import annotations

from typing import Final

from tenant_service.store import users as user_store
from tenant_service.store.db import create_engine
from tests.helpers.dashboard import Dash, User, session

CSRF: Final = "csrf-secret"  # what dashboard.session puts in the session
ORIGIN: Final = {"Origin": "http://company.localhost"}


async def page(dash: Dash, user: User, path: str) -> tuple[int, str]:
    """GET a page as `user`: status and text (redirects not followed)."""
    response = await dash.gateway.get(
        path, headers=await session(dash, user), allow_redirects=False
    )
    assert response.headers["Cache-Control"] == "no-store"
    return response.status, await response.text()


async def submit(
    dash: Dash,
    user: User,
    path: str,
    form: dict[str, str] | None = None,
    *,
    csrf: str = CSRF,
) -> tuple[int, str, str]:
    """POST a form as `user`: status, text, Location."""
    response = await dash.gateway.post(
        path,
        data={"csrf_token": csrf, **(form or {})},
        headers={**await session(dash, user), **ORIGIN},
        allow_redirects=False,
    )
    return response.status, await response.text(), response.headers.get("Location", "")


async def add_user(
    url: str, account_id: int, name: str, roles: tuple[str, ...]
) -> User:
    """A user of an account with `roles`, in the backend's database."""
    email = f"{name}@company.test"
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            user_id = await user_store.create_user(
                conn,
                email=email,
                username=name,
                account_id=account_id,
                password_hash=None,
                role_names=list(roles),
            )
    finally:
        await engine.dispose()
    return User(user_id, account_id, roles, email)
