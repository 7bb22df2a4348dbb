"""Login, logout and the profile page: real gateway, real backends, real Redis."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.web.views import HOME, safe_next
from tests.helpers.net import free_port
from tests.helpers.pages import (
    ACME,
    COMPANY,
    FRESH_RE,
    LOGIN_FAILED,
    PASSWORD,
    Site,
    SiteFactory,
    api_status,
    fresh_token,
    logged_in,
    post_form,
    post_login,
    session_cookie,
    token_keys,
)


async def test_login_page_is_accessible_html(site: Site) -> None:
    response = await site.client.get("/login", headers={"Host": COMPANY})
    assert response.status == 200
    assert response.content_type == "text/html"
    text = await response.text()
    assert '<html lang="en">' in text
    assert '<label for="email">' in text
    assert '<label for="password">' in text
    assert 'name="viewport"' in text
    assert response.headers["Cache-Control"] == "no-store"


async def test_login_lands_on_the_profile_with_a_host_only_cookie(site: Site) -> None:
    response = await post_login(site.client, "Admin@Company.test")
    assert response.status == 303
    assert response.headers["Location"] == "/logged-in-user"
    cookie = session_cookie(response)
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert not [a for a in attributes if a.startswith("domain")]
    assert "secure" not in attributes
    response = await site.client.get(HOME, headers={"Host": COMPANY})
    assert response.status == 200
    assert "admin@company.test" in await response.text()


@pytest.mark.parametrize("trusted", [True, False])
async def test_cookie_is_secure_only_over_https_from_a_trusted_proxy(
    make_site: SiteFactory, trusted: bool
) -> None:
    site = await make_site(trusted_proxies=("127.0.0.1/32",) if trusted else ())
    scheme = "https" if trusted else "http"
    response = await post_login(
        site.client,
        "admin@company.test",
        headers={
            "Host": COMPANY,
            "X-Forwarded-Proto": "https",
            "Origin": f"{scheme}://{COMPANY}",
        },
    )
    assert response.status == 303
    attributes = [p.strip().lower() for p in session_cookie(response).split(";")]
    assert ("secure" in attributes) is trusted


async def test_a_tenants_cookie_is_not_valid_on_another_tenants_host(
    site: Site,
) -> None:
    await logged_in(site.client)
    # The test client's jar sends the cookie to every host: as a browser would if
    # a cookie leaked. Acme must not accept company's session.
    response = await site.client.get(
        HOME, headers={"Host": ACME}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/logged-in-user"
    assert (await site.client.get(HOME, headers={"Host": COMPANY})).status == 200


async def test_wrong_password_unknown_email_and_inactive_user_look_the_same(
    site: Site,
) -> None:
    pages = []
    for email, password in (
        ("admin@company.test", "wrong"),
        ("nobody@company.test", "wrong"),
        ("gone@company.test", PASSWORD),
    ):
        response = await post_login(site.client, email, password)
        assert response.status == 401
        assert "flexhost_session" not in response.cookies
        text = await response.text()
        assert LOGIN_FAILED in text
        pages.append(text.replace(email, "EMAIL"))
    assert pages[0] == pages[1] == pages[2]


async def test_failed_logins_are_throttled_per_email(
    make_site: SiteFactory, redis: Redis, redis_prefix: str
) -> None:
    site = await make_site(login_failures_per_email=3, login_failure_window=600)
    for _ in range(3):
        response = await post_login(site.client, "admin@company.test", "wrong")
        assert response.status == 401
    # Even the right password, in another case, waits now.
    response = await post_login(site.client, "ADMIN@company.test")
    assert response.status == 429
    assert 590 <= int(response.headers["Retry-After"]) <= 600
    text = await response.text()
    assert "Too many failed login attempts; please try again in 10 minutes." in text
    assert "flexhost_session" not in response.cookies
    # requestAuthToken shares the counter, and says nothing about the account.
    response = await site.client.post(
        "/api/requestAuthToken",
        json={"email": "admin@company.test", "password": PASSWORD},
        headers={"Host": COMPANY},
    )
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    assert await response.json() == {
        "message": "Too many failed login attempts; please try again in 10 minutes.",
        "status": "TOO_MANY_REQUESTS",
    }
    # Unknown emails are throttled alike (no hint of which accounts exist).
    for _ in range(3):
        await post_login(site.client, "nobody@company.test", "wrong")
    assert (await post_login(site.client, "nobody@company.test")).status == 429
    # Others are not affected; only hashes are stored.
    assert (await post_login(site.client, "member@company.test")).status == 303
    keys = [k.decode() async for k in redis.scan_iter(match=f"{redis_prefix}:login:*")]
    assert keys
    assert all("company.test" not in key and "127.0.0.1" not in key for key in keys), (
        keys
    )
    digest = hashlib.sha256(b"admin@company.test").hexdigest()
    assert f"{redis_prefix}:login:email:company:{digest}" in keys


async def test_failed_logins_are_throttled_per_address_across_api_and_page(
    make_site: SiteFactory,
) -> None:
    site = await make_site(login_failures_per_email=100, login_failures_per_address=4)
    for index in range(2):
        response = await site.client.post(
            "/api/requestAuthToken",
            json={"email": f"user{index}@company.test", "password": "x"},
            headers={"Host": COMPANY},
        )
        assert response.status == 404
    for index in range(2, 4):
        response = await post_login(site.client, f"user{index}@company.test", "x")
        assert response.status == 401
    response = await post_login(site.client, "admin@company.test")
    assert response.status == 429
    assert "Retry-After" in response.headers
    response = await site.client.post(
        "/api/requestAuthToken",
        json={"email": "member@company.test", "password": PASSWORD},
        headers={"Host": COMPANY},
    )
    assert response.status == 429
    # Another tenant's counters are its own.
    response = await post_login(site.client, "admin@acme.test", host=ACME)
    assert response.status == 303


async def test_a_successful_login_clears_the_emails_counter(
    make_site: SiteFactory,
) -> None:
    site = await make_site(login_failures_per_email=3)
    for _ in range(2):
        assert (await post_login(site.client, "admin@company.test", "x")).status == 401
    assert (await post_login(site.client, "admin@company.test")).status == 303
    for _ in range(2):
        assert (await post_login(site.client, "admin@company.test", "x")).status == 401
    assert (await post_login(site.client, "admin@company.test")).status == 303


async def test_a_very_long_email_is_refused_before_the_backend(
    site: Site, redis: Redis, redis_prefix: str
) -> None:
    email = "a" * 300 + "@company.test"
    response = await post_login(site.client, email)
    assert response.status == 422
    text = await response.text()
    assert "That email address is too long" in text
    assert "254 characters" in text
    assert email not in text
    assert not [k async for k in redis.scan_iter(match=f"{redis_prefix}:login:*")]


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/ok//evil.example",
        "/x\r\nSet-Cookie: a=b",
        "http:/evil.example",
        "",
        "evil.example",
    ],
)
async def test_next_only_follows_paths_on_this_host(site: Site, next_path: str) -> None:
    response = await post_login(site.client, "admin@company.test", next_path=next_path)
    assert response.status == 303
    assert response.headers["Location"] == "/logged-in-user"
    page = await site.client.get(
        "/login", params={"next": next_path}, headers={"Host": ACME}
    )
    assert 'name="next" value="/logged-in-user"' in await page.text()


async def test_next_to_a_page_of_this_host_is_followed(site: Site) -> None:
    response = await post_login(
        site.client, "admin@company.test", next_path="/dashboard?sensor=3"
    )
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard?sensor=3"
    # Signed in, the login page sends you on.
    response = await site.client.get(
        "/login?next=/logged-in-user", headers={"Host": COMPANY}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/logged-in-user"


@given(st.text(max_size=60))
def test_safe_next_gives_a_local_path(value: str) -> None:
    result = safe_next(value)
    assert result in (HOME, value)
    assert result.startswith("/")
    assert "//" not in result
    assert "\\" not in result
    assert all("!" <= char <= "~" for char in result)


async def test_login_from_another_origin_is_403(site: Site) -> None:
    for headers in (
        {"Host": COMPANY, "Origin": "http://evil.example"},
        {"Host": COMPANY, "Origin": f"http://{ACME}"},
        {"Host": COMPANY},
    ):
        response = await post_login(site.client, "admin@company.test", headers=headers)
        assert response.status == 403
        assert response.content_type == "text/html"
        assert "Nothing was changed" in await response.text()
        assert "flexhost_session" not in response.cookies
    response = await site.client.get(HOME, headers={"Host": COMPANY})
    assert response.url.path == "/login"


@pytest.mark.parametrize(
    ("host", "origin", "accepted"),
    [
        ("company.localhost:8080", "http://company.localhost:8080", True),
        ("company.localhost:8080", "http://Company.Localhost:8080", True),
        ("company.localhost:8080", "http://company.localhost:9999", False),
        ("company.localhost:8080", "http://company.localhost", False),
        ("company.localhost:8080", "https://company.localhost:8080", False),
        ("company.localhost:8080", "http://company.localhost:8080.", False),
        ("company.localhost:8080", "http://company.localhost:99999", False),
        ("company.localhost:8080", "null", False),
        ("company.localhost", "http://company.localhost:80", True),
        ("company.localhost:80", "http://company.localhost", True),
        ("company.localhost", "http://company.localhost:8080", False),
        ("company.localhost", "http://company.localhost:443", False),
    ],
)
async def test_login_origin_must_match_scheme_host_and_port(
    site: Site, host: str, origin: str, accepted: bool
) -> None:
    response = await post_login(
        site.client, "admin@company.test", headers={"Host": host, "Origin": origin}
    )
    assert response.status == (303 if accepted else 403), origin
    # Without Origin the Referer counts, by the same rule.
    response = await post_login(
        site.client,
        "admin@company.test",
        headers={"Host": host, "Referer": f"{origin}/login?next=/"},
    )
    assert response.status == (303 if accepted else 403), origin


@pytest.mark.parametrize(
    ("forwarded", "origin", "accepted"),
    [
        ({"X-Forwarded-Proto": "https"}, "https://company.localhost", True),
        ({"X-Forwarded-Proto": "https"}, "https://company.localhost:443", True),
        ({"X-Forwarded-Proto": "https"}, "http://company.localhost", False),
        ({"X-Forwarded-Proto": "https"}, "https://company.localhost:8443", False),
        (
            {"X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443"},
            "https://company.localhost:8443",
            True,
        ),
        (
            {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "company.localhost:8443",
            },
            "https://company.localhost:8443",
            True,
        ),
        (
            {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "company.localhost:8443",
            },
            "https://company.localhost",
            False,
        ),
    ],
)
async def test_login_origin_behind_a_trusted_proxy(
    make_site: SiteFactory, forwarded: dict[str, str], origin: str, accepted: bool
) -> None:
    site = await make_site(trusted_proxies=("127.0.0.1/32",))
    response = await post_login(
        site.client,
        "admin@company.test",
        headers={
            "Host": "company.localhost",
            "X-Forwarded-For": "203.0.113.9",
            **forwarded,
            "Origin": origin,
        },
    )
    assert response.status == (303 if accepted else 403), (forwarded, origin)


async def test_root_redirects_to_the_dashboard_and_on_to_login(site: Site) -> None:
    for host in (COMPANY, "company.localhost:8080"):
        response = await site.client.get(
            "/", headers={"Host": host}, allow_redirects=False
        )
        assert response.status == 302
        assert response.headers["Location"] == "/dashboard"
        response = await site.client.get(
            "/dashboard", headers={"Host": host}, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == "/login?next=/dashboard"
    head = await site.client.head("/", headers={"Host": COMPANY}, allow_redirects=False)
    assert head.status == 302
    # Signed in, the redirect leads to the dashboard itself.
    await logged_in(site.client)
    response = await site.client.get("/", headers={"Host": COMPANY})
    assert response.status == 200
    assert response.url.path == "/dashboard"
    # A host of no tenant has no root page.
    response = await site.client.get(
        "/", headers={"Host": "nobody.localhost"}, allow_redirects=False
    )
    assert response.status == 404


async def test_redis_down_says_the_service_is_unavailable(
    make_site: SiteFactory,
) -> None:
    site = await make_site(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.2
    )
    response = await site.client.get(
        HOME, headers={"Host": COMPANY, "Cookie": "flexhost_session=abc"}
    )
    assert response.status == 503
    assert response.content_type == "text/html"
    assert "Service unavailable" in await response.text()
    response = await post_login(site.client, "admin@company.test")
    assert response.status == 503
    assert response.headers["Retry-After"]
    text = await response.text()
    assert "Logging in is unavailable right now" in text
    assert "Traceback" not in text


# --- sessions -------------------------------------------------------------------


async def test_the_profile_needs_a_session(site: Site) -> None:
    response = await site.client.get(
        HOME, headers={"Host": COMPANY}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/logged-in-user"


async def test_an_idle_session_expires(make_site: SiteFactory) -> None:
    site = await make_site(session_idle=1)
    await logged_in(site.client)
    await asyncio.sleep(1.3)
    response = await site.client.get(
        HOME, headers={"Host": COMPANY}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/logged-in-user"


async def test_logout_confirms_on_get_and_ends_the_session_on_post(
    site: Site, redis: Redis, redis_prefix: str
) -> None:
    csrf = await logged_in(site.client)
    response = await site.client.get("/logout", headers={"Host": COMPANY})
    assert response.status == 200
    assert 'action="/logout"' in await response.text()
    assert (await site.client.get(HOME, headers={"Host": COMPANY})).url.path == HOME
    assert len(await token_keys(redis, redis_prefix)) == 1
    response = await post_form(site.client, "/logout", {"csrf_token": csrf})
    assert response.status == 303
    assert response.headers["Location"] == "/login?notice=logged-out"
    assert "max-age=0" in session_cookie(response).lower()
    assert not await token_keys(redis, redis_prefix)
    page = await site.client.get(
        response.headers["Location"], headers={"Host": COMPANY}
    )
    assert "You have been logged out." in await page.text()


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/logged-in-user/api-tokens", {}),
        ("/logged-in-user/api-keys", {"name": "ci", "days": "3"}),
        ("/logged-in-user/revoke", {"token": "TOKEN"}),
        ("/logged-in-user/revoke-all", {}),
        ("/logout", {}),
    ],
)
async def test_forms_without_csrf_token_or_from_another_origin_are_403(
    site: Site, redis: Redis, redis_prefix: str, path: str, data: dict[str, str]
) -> None:
    csrf = await logged_in(site.client)
    token = await fresh_token(site.client, csrf)
    digest = hashlib.sha256(token.encode()).hexdigest()
    data = {k: digest if v == "TOKEN" else v for k, v in data.items()}
    before = await token_keys(redis, redis_prefix)
    for form, origin in (
        (data, None),
        ({**data, "csrf_token": "forged"}, None),
        ({**data, "csrf_token": csrf}, "http://evil.example"),
        ({**data, "csrf_token": csrf}, f"http://{ACME}"),
    ):
        response = await post_form(site.client, path, form, origin=origin)
        assert response.status == 403
        assert response.content_type == "text/html"
        assert "Nothing was changed" in await response.text()
        assert "Set-Cookie" not in response.headers
    assert await token_keys(redis, redis_prefix) == before
    assert await api_status(site.client, token) == 200
    assert (await site.client.get(HOME, headers={"Host": COMPANY})).url.path == HOME


# --- the profile ----------------------------------------------------------------


async def test_profile_shows_who_you_are_with_html_escaped(site: Site) -> None:
    await logged_in(site.client)
    response = await site.client.get(HOME, headers={"Host": COMPANY})
    assert response.headers["Cache-Control"] == "no-store"
    text = await response.text()
    assert "<script>alert" not in text
    assert "<img src=x" not in text
    assert (
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;Bob &amp; &lt;b&gt;Co" in text
    )
    assert "Company &lt;img src=x onerror=alert(1)&gt; Inc." in text
    assert f"(id {site.account_id})" in text
    assert "account-admin" in text
    assert "Last login" in text
    assert "admin@company.test" in text


async def test_fresh_token_is_shown_once_works_and_revoke_makes_it_401(
    site: Site,
) -> None:
    csrf = await logged_in(site.client)
    response = await post_form(
        site.client, "/logged-in-user/api-tokens", {"csrf_token": csrf}
    )
    assert response.status == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    text = await response.text()
    found = FRESH_RE.search(text)
    assert found is not None
    token = found.group(1)
    assert "readonly" in text
    assert "copy.js" in text
    assert (
        f"curl -H &#39;Authorization: {token}&#39; http://company.localhost/api/v3_0/users"
        in text
    )
    assert await api_status(site.client, token) == 200
    assert await api_status(site.client, token, host=ACME) == 401
    digest = hashlib.sha256(token.encode()).hexdigest()
    page = await (await site.client.get(HOME, headers={"Host": COMPANY})).text()
    assert token not in page
    assert f"<code>{digest[:8]}</code>" in page
    assert "API token" in page
    response = await post_form(
        site.client, "/logged-in-user/revoke", {"csrf_token": csrf, "token": digest}
    )
    assert response.status == 303
    assert response.headers["Location"] == "/logged-in-user?notice=revoked"
    assert await api_status(site.client, token) == 401
    page = await (await site.client.get(HOME, headers={"Host": COMPANY})).text()
    assert digest[:8] not in page
    assert "The token has been revoked" not in page  # notice only after the redirect


async def test_the_session_is_not_listed_and_cannot_be_revoked_as_a_token(
    site: Site, redis: Redis, redis_prefix: str
) -> None:
    csrf = await logged_in(site.client)
    (key,) = await token_keys(redis, redis_prefix)
    session_digest = key.decode().rsplit(":", 1)[1]
    page = await (await site.client.get(HOME, headers={"Host": COMPANY})).text()
    assert session_digest[:8] not in page
    assert "You have no live API tokens or keys." in page
    response = await post_form(
        site.client,
        "/logged-in-user/revoke",
        {"csrf_token": csrf, "token": session_digest},
    )
    assert response.status == 404
    assert response.content_type == "text/html"


async def test_revoke_refuses_another_users_token(site: Site) -> None:
    member_csrf = await logged_in(site.client, "member@company.test")
    member_token = await fresh_token(site.client, member_csrf)
    site.client.session.cookie_jar.clear()
    csrf = await logged_in(site.client)
    digest = hashlib.sha256(member_token.encode()).hexdigest()
    for value in (digest, "nothex", digest.upper()):
        response = await post_form(
            site.client, "/logged-in-user/revoke", {"csrf_token": csrf, "token": value}
        )
        assert response.status == 404
        assert "You have no such token" in await response.text()
    assert await api_status(site.client, member_token) == 200


async def test_named_api_key_with_a_bounded_lifetime(
    site: Site, redis: Redis, redis_prefix: str
) -> None:
    csrf = await logged_in(site.client)
    before = await token_keys(redis, redis_prefix)
    for name, days, message in (
        ("ci", "8", "The lifetime must be from 1 to 7 days"),
        ("ci", "0", "The lifetime must be from 1 to 7 days"),
        ("ci", "9" * 5000, "The lifetime must be from 1 to 7 days"),
        ("ci", "1.5", "Enter a whole number of days from 1 to 7."),
        ("ci", "", "Enter a whole number of days from 1 to 7."),
        ("", "3", "Please give the key a name."),
        ("x" * 81, "3", "The name is too long: at most 80 characters."),
        ("a\x00b", "3", "The name must not contain control characters."),
    ):
        response = await post_form(
            site.client,
            "/logged-in-user/api-keys",
            {"csrf_token": csrf, "name": name, "days": days},
        )
        assert response.status == 422, (name, days)
        assert message in await response.text()
    assert await token_keys(redis, redis_prefix) == before
    response = await post_form(
        site.client,
        "/logged-in-user/api-keys",
        {"csrf_token": csrf, "name": "  <b>deploy</b> key ", "days": "7"},
    )
    assert response.status == 201
    text = await response.text()
    found = FRESH_RE.search(text)
    assert found is not None
    key = found.group(1)
    assert "&lt;b&gt;deploy&lt;/b&gt; key" in text
    assert "<b>deploy" not in text
    assert await api_status(site.client, key) == 200
    digest = hashlib.sha256(key.encode()).hexdigest()
    ttl = await redis.ttl(f"{redis_prefix}:tok:{digest}")
    assert 7 * 86400 - 10 <= ttl <= 7 * 86400
    record = await redis.hgetall(f"{redis_prefix}:tok:{digest}")
    assert record[b"kind"] == b"api-key"
    assert record[b"name"] == b"<b>deploy</b> key"
    page = await (await site.client.get(HOME, headers={"Host": COMPANY})).text()
    assert key not in page
    assert f"<code>{digest[:8]}</code>" in page


async def test_revoke_all_kills_tokens_keys_and_the_session(site: Site) -> None:
    csrf = await logged_in(site.client)
    page_token = await fresh_token(site.client, csrf)
    response = await site.client.post(
        "/api/requestAuthToken",
        json={"email": "admin@company.test", "password": PASSWORD},
        headers={"Host": COMPANY},
    )
    api_token = (await response.json())["auth_token"]
    cookie = site.client.session.cookie_jar.filter_cookies(site.client.make_url("/"))
    session_id = cookie["flexhost_session"].value
    response = await post_form(
        site.client, "/logged-in-user/revoke-all", {"csrf_token": csrf}
    )
    assert response.status == 303
    assert response.headers["Location"] == "/login?notice=revoked-all"
    assert "max-age=0" in session_cookie(response).lower()
    for token in (page_token, api_token):
        assert await api_status(site.client, token) == 401
    response = await site.client.get(
        HOME,
        headers={"Host": COMPANY, "Cookie": f"flexhost_session={session_id}"},
        allow_redirects=False,
    )
    assert response.status == 303
    page = await site.client.get("/login?notice=revoked-all", headers={"Host": COMPANY})
    assert "All your API tokens, keys and sessions have been revoked" in (
        await page.text()
    )


# --- errors on pages --------------------------------------------------------------


async def test_errors_on_pages_are_html_and_on_the_api_json(site: Site) -> None:
    for path, host, status in (
        ("/no-such-page", COMPANY, 404),
        ("/login", "nobody.localhost", 404),
    ):
        response = await site.client.get(path, headers={"Host": host})
        assert response.status == status, path
        assert response.content_type == "text/html"
        text = await response.text()
        assert "<h1>Not found</h1>" in text
        assert '<html lang="en">' in text
    response = await site.client.delete("/login", headers={"Host": COMPANY})
    assert response.status == 405
    assert response.content_type == "text/html"
    assert "GET" in response.headers["Allow"]
    for host in (COMPANY, "nobody.localhost"):
        response = await site.client.get("/api/nothing", headers={"Host": host})
        assert response.status == 404
        assert response.content_type == "application/json"
