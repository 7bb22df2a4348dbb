"""Password reset by mail: real gateway, real backends, real Redis, real SMTP."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from redis.asyncio import Redis

from contract.config import ConfigError, Secret
from contract.tenants_file import parse_tenants
from gateway.config import load_settings
from gateway.reset import link_hash
from tests.helpers.net import free_port
from tests.helpers.pages import (
    COMPANY,
    PASSWORD,
    Client,
    SiteFactory,
    api_status,
    fresh_token,
    logged_in,
    page_headers,
    post_login,
)
from tests.helpers.smtp import LoopbackSMTP

LINK_RE = re.compile(r"http://company\.localhost/reset-password\?token=(\S+)")
MEMBER = "member@company.test"
NEW_PASSWORD = "a brand new password"
SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-secret-pw"
SENT = "is on its way"


@dataclass
class Inbox:
    """What the loopback SMTP server received: (recipients, message)."""

    port: int
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(([str(r) for r in envelope.rcpt_tos], message))
        return "250 OK"

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == SMTP_USER.encode()
            and auth_data.password == SMTP_PASSWORD.encode()
        )
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok)

    async def wait(self, count: int = 1) -> EmailMessage:
        """The count-th message, once it arrived (within 15 s)."""
        deadline = time.monotonic() + 15
        while len(self.messages) < count:
            assert time.monotonic() < deadline, "no mail arrived"
            await asyncio.sleep(0.05)
        return self.messages[count - 1][1]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A real SMTP server on loopback (plain, AUTH allowed without TLS)."""
    box = Inbox(free_port())
    controller = LoopbackSMTP(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    yield box
    controller.stop()


def mail_settings(inbox: Inbox, **more: Any) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": inbox.port,
        "smtp_tls": "none",
        "smtp_username": SMTP_USER,
        "smtp_password": Secret(SMTP_PASSWORD),
        "mail_from": "Company <noreply@company.test>",
        **more,
    }


async def ask_reset(
    client: Client, address: str, origin: str | None = None
) -> tuple[int, str]:
    response = await client.post(
        "/forgot-password",
        data={"email": address},
        headers=page_headers(COMPANY, origin),
        allow_redirects=False,
    )
    return response.status, await response.text()


def token_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = LINK_RE.search(body.get_content())
    assert found is not None, body.get_content()
    return found.group(1)


async def set_new(
    client: Client,
    token: str,
    password: str,
    repeat: str | None = None,
    origin: str | None = None,
) -> tuple[int, str]:
    response = await client.post(
        "/reset-password",
        data={"token": token, "password": password, "repeat": repeat or password},
        headers=page_headers(COMPANY, origin),
        allow_redirects=False,
    )
    return response.status, await response.text()


async def link_page(client: Client, token: str) -> int:
    response = await client.get(
        "/reset-password", params={"token": token}, headers={"Host": COMPANY}
    )
    return response.status


async def test_reset_whole_flow(
    make_site: SiteFactory,
    inbox: Inbox,
    redis_url: str,
    redis_prefix: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = await make_site(**mail_settings(inbox))
    client = site.client
    login = await client.get("/login", headers={"Host": COMPANY})
    assert 'href="/forgot-password"' in await login.text()
    csrf = await logged_in(client, MEMBER)
    api_token = await fresh_token(client, csrf)
    assert await api_status(client, api_token) == 200

    status, text = await ask_reset(client, MEMBER)
    assert status == 200
    older = token_of(await inbox.wait())
    status, text = await ask_reset(client, MEMBER.upper())
    assert status == 200
    assert SENT in text
    message = await inbox.wait(2)
    assert inbox.messages[1][0] == [MEMBER]
    assert message["From"] == "Company <noreply@company.test>"
    assert message["To"] == MEMBER
    assert inbox.logins == [SMTP_USER, SMTP_USER]
    token = token_of(message)

    # Redis holds the link's hash only, never the token.
    redis = Redis.from_url(redis_url)
    try:
        found = [k async for k in redis.scan_iter(match=f"{redis_prefix}:*")]
        assert f"{redis_prefix}:reset:{link_hash(token)}".encode() in found
        for key in found:
            assert token.encode() not in key
            if await redis.type(key) == b"string":
                assert token.encode() not in (await redis.get(key) or b"")
    finally:
        await redis.aclose()

    assert await link_page(client, token) == 200
    assert await link_page(client, token) == 200  # looking does not use it
    status, text = await set_new(client, token, NEW_PASSWORD, "something else")
    assert status == 422
    assert "The two passwords differ" in text
    status, text = await set_new(client, token, "short")
    assert status == 422
    assert "Shorter than minimum length 8." in text
    status, text = await set_new(client, token, NEW_PASSWORD)
    assert status == 200, text
    assert "Your password has been changed" in text
    assert 'href="/login"' in text

    # Tokens and sessions revoked; only the new password works.
    assert await api_status(client, api_token) == 401
    profile = await client.get(
        "/logged-in-user", headers={"Host": COMPANY}, allow_redirects=False
    )
    assert profile.status == 303
    assert (await post_login(client, MEMBER, PASSWORD)).status == 401
    assert (await post_login(client, MEMBER, NEW_PASSWORD)).status == 303

    # The link works once; the user's other links end with it.
    assert await link_page(client, token) == 410
    assert await link_page(client, older) == 410
    status, text = await set_new(client, token, "yet another password")
    assert status == 410
    assert "no longer works" in text

    # Audited as FlexMeasures does.
    admin_csrf = await logged_in(client, "admin@company.test")
    admin_token = await fresh_token(client, admin_csrf)
    log = await client.get(
        f"/api/v3_0/users/{site.member_id}/auditlog",
        headers={"Host": COMPANY, "Authorization": admin_token},
    )
    assert log.status == 200, await log.text()
    events = [entry["event"] for entry in await log.json()]
    assert "Password reset for user member" in events

    # No link, token or password in the access lines or the logs.
    printed = capsys.readouterr().out + " ".join(r.getMessage() for r in caplog.records)
    assert "/reset-password" in printed  # the access lines were seen
    for secret in (token, older, NEW_PASSWORD, SMTP_PASSWORD):
        assert secret not in printed


async def test_reset_same_answer_and_no_mail_for_unknown_or_inactive(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    answers = []
    for address in ("nobody@company.test", "gone@company.test", MEMBER):
        started = time.monotonic()
        status, text = await ask_reset(site.client, address)
        answers.append((status, text.replace(address, "ADDRESS")))
        assert time.monotonic() - started < 1.0  # no lookup on the request path
    assert answers[0] == answers[1] == answers[2]
    await inbox.wait(1)
    await asyncio.sleep(0.5)
    assert [rcpt for rcpt, _ in inbox.messages] == [[MEMBER]]


async def test_reset_expired_link_refused(
    make_site: SiteFactory, inbox: Inbox, redis_url: str, redis_prefix: str
) -> None:
    site = await make_site(**mail_settings(inbox))
    await ask_reset(site.client, MEMBER)
    token = token_of(await inbox.wait())
    redis = Redis.from_url(redis_url)
    try:
        await redis.pexpire(f"{redis_prefix}:reset:{link_hash(token)}", 1)
    finally:
        await redis.aclose()
    await asyncio.sleep(0.05)
    assert await link_page(site.client, token) == 410
    status, _ = await set_new(site.client, token, NEW_PASSWORD)
    assert status == 410
    assert (await post_login(site.client, MEMBER, PASSWORD)).status == 303


async def test_reset_forms_checked_by_origin(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    status, _ = await ask_reset(site.client, MEMBER, origin="http://evil.example")
    assert status == 403
    await asyncio.sleep(0.3)
    assert not inbox.messages
    await ask_reset(site.client, MEMBER)
    token = token_of(await inbox.wait())
    status, _ = await set_new(
        site.client, token, NEW_PASSWORD, origin="http://evil.example"
    )
    assert status == 403
    assert await link_page(site.client, token) == 200  # still unused
    assert (await post_login(site.client, MEMBER, PASSWORD)).status == 303
    # A link of one tenant does nothing on another's host.
    response = await site.client.get(
        "/reset-password", params={"token": token}, headers={"Host": "acme.localhost"}
    )
    assert response.status == 410


async def test_reset_requests_throttled(make_site: SiteFactory, inbox: Inbox) -> None:
    site = await make_site(
        **mail_settings(inbox, login_failures_per_email=2, login_failures_per_address=3)
    )
    assert (await ask_reset(site.client, "x@company.test"))[0] == 200
    assert (await ask_reset(site.client, "X@company.test"))[0] == 200
    response = await site.client.post(
        "/forgot-password",
        data={"email": "x@company.test"},
        headers=page_headers(),
    )
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many password reset requests" in await response.text()
    assert (await ask_reset(site.client, "y@company.test"))[0] == 200
    assert (await ask_reset(site.client, "z@company.test"))[0] == 429  # address
    # Logins are not locked by reset requests.
    assert (await post_login(site.client, MEMBER, PASSWORD)).status == 303


async def test_reset_bad_email_message(make_site: SiteFactory, inbox: Inbox) -> None:
    site = await make_site(**mail_settings(inbox))
    for address, message in (
        ("", "Please enter your email address."),
        ("no-at-sign", "Please enter a valid email address."),
        ("a" * 300 + "@x.test", "That email address is too long"),
    ):
        status, text = await ask_reset(site.client, address)
        assert status == 422
        assert message in text


async def assert_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    """Wait for the log of a reset mail not sent; it names no link nor secret."""
    for _ in range(100):
        if any("not sent" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "password reset mail not sent" in logged
    assert "token=" not in logged
    assert SMTP_PASSWORD not in logged


async def test_reset_mail_failure_logged_without_link(
    make_site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    closed = Inbox(free_port())  # nobody listens there
    site = await make_site(**mail_settings(closed))
    with caplog.at_level(logging.INFO):
        status, text = await ask_reset(site.client, MEMBER)
        assert status == 200
        assert SENT in text
        await assert_logged_not_sent(caplog)


async def test_reset_off_without_smtp(make_site: SiteFactory) -> None:
    site = await make_site()
    login = await site.client.get("/login", headers={"Host": COMPANY})
    assert "/forgot-password" not in await login.text()
    for method in ("GET", "POST"):
        response = await site.client.request(
            method, "/forgot-password", headers=page_headers()
        )
        assert response.status == 404
        text = await response.text()
        assert "flexhost admin set-password" in text
        assert response.headers["Cache-Control"] == "no-store"


async def test_reset_internal_routes_not_reachable_from_clients(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    for path in (
        "/internal/users/lookup",
        f"/internal/users/{site.member_id}/password",
    ):
        response = await site.client.post(
            path,
            json={"email": MEMBER, "password": NEW_PASSWORD},
            headers={"Host": COMPANY},
        )
        assert response.status == 404
    response = await site.client.get(
        f"/internal/users/{site.member_id}", headers={"Host": COMPANY}
    )
    assert response.status == 404
    assert MEMBER not in await response.text()
    assert (await post_login(site.client, MEMBER, PASSWORD)).status == 303


def test_parse_tenants_mail_from() -> None:
    entry = "tenants:\n  - subdomain: a\n    backends: [http://x:1]\n"
    config = parse_tenants(
        entry + '    mail_from: "A Inc. <noreply@a.example>"\n', check_secrets=False
    )
    assert config.tenants[0].mail_from == "A Inc. <noreply@a.example>"
    assert parse_tenants(entry, check_secrets=False).tenants[0].mail_from == ""
    for bad in ("nobody", '"a@b\\nBcc: x@y"', "3"):
        with pytest.raises(ConfigError) as caught:
            parse_tenants(entry + f"    mail_from: {bad}\n", check_secrets=False)
        assert "tenants[0].mail_from: must be a mail address" in str(caught.value)


def test_load_settings_smtp(tmp_path: Path) -> None:
    secret = tmp_path / "smtp"
    secret.write_text("pw\n")
    settings = load_settings(
        {
            "GATEWAY_SMTP_HOST": "smtp.example",
            "GATEWAY_SMTP_TLS": "tls",
            "GATEWAY_SMTP_USERNAME": "u",
            "GATEWAY_SMTP_PASSWORD_FILE": str(secret),
            "GATEWAY_MAIL_FROM": "noreply@example.com",
            "GATEWAY_RESET_LINK_TTL": "600",
        }
    )
    assert settings.mail_configured
    assert settings.smtp_port == 465
    assert settings.smtp_password is not None
    assert settings.smtp_password.get() == "pw"
    assert "pw" not in repr(settings)
    assert settings.reset_link_ttl == 600
    assert not load_settings({}).mail_configured


def test_load_settings_smtp_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"GATEWAY_SMTP_HOST": "smtp.example", "GATEWAY_SMTP_TLS": "ssl"})
    text = str(caught.value)
    assert "GATEWAY_SMTP_TLS" in text
    assert "GATEWAY_MAIL_FROM" in text


async def test_reset_mail_under_way_finishes_at_shutdown(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    status, _ = await ask_reset(site.client, MEMBER)
    assert status == 200
    await site.client.close()  # the app's cleanup waits for the mail
    assert len(inbox.messages) == 1


async def invite(client: Client, user_id: int, csrf: str) -> tuple[int, str]:
    response = await client.post(
        f"/users/{user_id}/invite",
        data={"csrf_token": csrf},
        headers=page_headers(),
        allow_redirects=False,
    )
    return response.status, await response.text()


async def test_invite_by_an_admin_mails_a_link_to_set_a_password(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    client = site.client
    csrf = await logged_in(client, "admin@company.test")
    status, text = await invite(client, site.member_id, "wrong")
    assert status == 403
    status, text = await invite(client, site.member_id, csrf)
    assert status == 200, text
    assert "Invitation sent" in text
    assert MEMBER in text
    message = await inbox.wait()
    assert str(message["Subject"]).startswith("Set your password at ")
    body = message.get_body(("plain",))
    assert body is not None
    assert "invites you to set the password" in body.get_content()
    assert (await post_login(client, MEMBER, PASSWORD)).status == 401
    token = token_of(message)
    page = await client.get(
        "/reset-password", params={"token": token}, headers={"Host": COMPANY}
    )
    assert "Set your password" in await page.text()
    status, text = await set_new(client, token, NEW_PASSWORD)
    assert status == 200, text
    assert (await post_login(client, MEMBER, NEW_PASSWORD)).status == 303


async def test_invite_refused_to_a_member(make_site: SiteFactory, inbox: Inbox) -> None:
    site = await make_site(**mail_settings(inbox))
    csrf = await logged_in(site.client, MEMBER)
    status, text = await invite(site.client, site.admin_id, csrf)
    assert status == 403
    assert "You may not reset the password of this user." in text
    status, _ = await invite(site.client, 999999, csrf)
    assert status == 404
    await asyncio.sleep(0.3)
    assert not inbox.messages
    assert (await post_login(site.client, "admin@company.test", PASSWORD)).status == 303


@pytest.fixture
def smtp_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "2",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize(
    ("mode", "trusted"), [("starttls", True), ("tls", True), ("starttls", False)]
)
async def test_reset_mail_over_tls(
    make_site: SiteFactory,
    smtp_cert: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    trusted: bool,
) -> None:
    """STARTTLS and implicit TLS, the server's certificate checked (its own CA)."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*smtp_cert)
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(smtp_cert[0]))
    box = Inbox(free_port())
    # aiosmtpd offers AUTH over implicit TLS only when told TLS is not required
    # (it only counts STARTTLS as TLS).
    tls_options: dict[str, Any] = (
        {"tls_context": server_tls, "require_starttls": True}
        if mode == "starttls"
        else {"ssl_context": server_tls, "auth_require_tls": False}
    )
    controller = LoopbackSMTP(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=box.authenticate,
        **tls_options,
    )
    controller.start()
    try:
        site = await make_site(**mail_settings(box, smtp_tls=mode))
        status, _ = await ask_reset(site.client, MEMBER)
        assert status == 200
        if trusted:
            token_of(await box.wait())
            assert box.logins == [SMTP_USER]
        else:
            for _ in range(100):
                if "not sent" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert "password reset mail not sent: SSLCertVerificationError" in (
                caplog.text
            )
            assert not box.messages
    finally:
        controller.stop()


async def test_a_user_created_on_the_users_page_is_mailed_an_invitation(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    client = site.client
    csrf = await logged_in(client, "admin@company.test")
    response = await client.post(
        "/users/new",
        data={
            "csrf_token": csrf,
            "email": "newcomer@company.test",
            "username": "newcomer",
            "account_id": str(site.account_id),
        },
        headers=page_headers(),
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert re.fullmatch(r"/users/\d+\?notice=invited", location), location
    page = await client.get(location, headers={"Host": COMPANY})
    assert "mailed a link to set their password" in await page.text()
    message = await inbox.wait()
    assert message["To"] == "newcomer@company.test"
    assert str(message["Subject"]).startswith("Set your password at ")
    token = token_of(message)
    status, text = await set_new(client, token, NEW_PASSWORD)
    assert status == 200, text
    assert (
        await post_login(client, "newcomer@company.test", NEW_PASSWORD)
    ).status == 303


async def api_reset(client: Client, token: str, user_id: int) -> tuple[int, object]:
    response = await client.patch(
        f"/api/v3_0/users/{user_id}/password-reset",
        headers={"Host": COMPANY, "Authorization": token},
    )
    return response.status, await response.json()


async def admin_token(client: Client) -> str:
    return await fresh_token(client, await logged_in(client, "admin@company.test"))


async def test_api_password_reset_mails_the_user_a_link(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    client = site.client
    token = await admin_token(client)
    status, body = await api_reset(client, token, site.member_id)
    assert (status, body) == (200, {"status": 200})
    message = await inbox.wait()
    assert inbox.messages[0][0] == [MEMBER]
    assert message["From"] == "Company <noreply@company.test>"
    assert str(message["Subject"]).startswith("Reset your password at ")
    assert (await post_login(client, MEMBER, PASSWORD)).status == 401
    status, text = await set_new(client, token_of(message), NEW_PASSWORD)
    assert status == 200, text
    assert (await post_login(client, MEMBER, NEW_PASSWORD)).status == 303


async def test_api_password_reset_refused_or_inactive_mails_nobody(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    client = site.client
    member_token = await fresh_token(client, await logged_in(client, MEMBER))
    status, _ = await api_reset(client, member_token, site.admin_id)
    assert status == 403
    token = await admin_token(client)
    status, _ = await api_reset(client, token, 999999)
    assert status in (404, 422)
    response = await client.patch(
        f"/api/v3_0/users/{site.member_id}",
        json={"active": False},
        headers={"Host": COMPANY, "Authorization": token},
    )
    assert response.status == 200  # revokes too, but is no password reset
    status, _ = await api_reset(client, token, site.member_id)
    assert status == 200  # the member is inactive now: no mail
    await asyncio.sleep(0.5)
    assert not inbox.messages


async def test_api_password_reset_without_mail_or_with_mail_down(
    make_site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    plain = await make_site()
    status, body = await api_reset(
        plain.client, await admin_token(plain.client), plain.member_id
    )
    assert (status, body) == (200, {"status": 200})
    closed = Inbox(free_port())  # nobody listens there
    site = await make_site(**mail_settings(closed))
    token = await admin_token(site.client)
    with caplog.at_level(logging.INFO):
        status, body = await api_reset(site.client, token, site.member_id)
        assert (status, body) == (200, {"status": 200})
        await assert_logged_not_sent(caplog)


async def test_reset_on_the_user_page_mails_the_user_a_link(
    make_site: SiteFactory, inbox: Inbox
) -> None:
    site = await make_site(**mail_settings(inbox))
    client = site.client
    csrf = await logged_in(client, "admin@company.test")
    response = await client.post(
        f"/users/{site.member_id}/reset-password",
        data={"csrf_token": csrf},
        headers=page_headers(),
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location == f"/users/{site.member_id}?notice=password-reset-mailed"
    page = await client.get(location, headers={"Host": COMPANY})
    assert "mailed a link to set a new one" in await page.text()
    message = await inbox.wait()
    assert message["To"] == MEMBER
    status, text = await set_new(client, token_of(message), NEW_PASSWORD)
    assert status == 200, text
    assert (await post_login(client, MEMBER, NEW_PASSWORD)).status == 303
