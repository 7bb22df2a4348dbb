"""Mail over SMTP (GATEWAY_SMTP_*): built with the stdlib, sent in a thread.

smtplib blocks, so each mail is sent by `asyncio.to_thread`, bounded by
GATEWAY_SMTP_TIMEOUT per network step. The SMTP password is a Secret and never
logged; neither is a mail's body (it may hold a one-time link).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from .config import Settings


class MailError(Exception):
    """The mail could not be handed to the SMTP server."""


def build_message(
    *, sender: str, recipient: str, subject: str, text: str
) -> EmailMessage:
    """A plain-text mail (UTF-8) with Date and Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = sender.rpartition("@")[2].strip(" >") or None
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message


def _send(settings: Settings, message: EmailMessage) -> None:
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if settings.smtp_tls == "tls":
        client = smtplib.SMTP_SSL(
            settings.smtp_host,
            settings.smtp_port,
            timeout=settings.smtp_timeout,
            context=context,
        )
    else:
        client = smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout
        )
    with client:
        if settings.smtp_tls == "starttls":
            client.starttls(context=context)
        if settings.smtp_username:
            password = settings.smtp_password.get() if settings.smtp_password else ""
            client.login(settings.smtp_username, password)
        client.send_message(message)


async def send_mail(settings: Settings, message: EmailMessage) -> None:
    """Hand `message` to the SMTP server; MailError (without secrets) if it fails."""
    try:
        await asyncio.to_thread(_send, settings, message)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as err:
        # Only the kind of failure: an SMTP reply may echo what was sent.
        raise MailError(f"{type(err).__name__} from {settings.smtp_host}") from None
