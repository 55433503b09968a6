"""E-mail: the notification channel the module ships, over SMTP (the standard library's
``smtplib`` and ``email.message``).

On when ``AFTERSALES_MAIL_SERVER`` is set. Each notification is one e-mail, plain text with an
HTML alternative, in the shop's language, to the buyer or to the shop's active staff, with a
link to the page where they act (the buyer's link signed: ``aftersales.links``). A failure to
reach the server raises, and the outbox retries the message with back-off.
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import escape
from typing import Any, Mapping
from urllib.parse import urlsplit

from flask_babel import force_locale

from .plugins import hookimpl
from .i18n import _ as gettext
from .links import notification_url
from .models import utcnow
from .notifications import Message, Notification, compose, language, recipients
from .services import PermanentDeliveryError

SECURITY_CHOICES = ("none", "starttls", "tls")


def check_mail_settings(settings: Mapping[str, Any]) -> None:
    """Refuse, at startup, mail settings that could only fail at the first message."""
    if not settings.get("AFTERSALES_MAIL_SERVER"):
        return
    security = settings.get("AFTERSALES_MAIL_SECURITY")
    if security not in SECURITY_CHOICES:
        raise RuntimeError(f"AFTERSALES_MAIL_SECURITY: {security!r} is not one of {', '.join(SECURITY_CHOICES)}")
    if not str(settings.get("AFTERSALES_MAIL_SENDER") or "").strip():
        raise RuntimeError("AFTERSALES_MAIL_SENDER: e-mail needs a sender address, e.g. 'Shop <service@shop.example>'")
    base = urlsplit(str(settings.get("AFTERSALES_BASE_URL") or ""))
    if base.scheme not in ("http", "https") or not base.netloc:
        raise RuntimeError("AFTERSALES_BASE_URL: e-mails link to the site; set its address, e.g. https://shop.example.com")
    try:
        int(settings.get("AFTERSALES_MAIL_PORT"))
    except (TypeError, ValueError):
        raise RuntimeError(f"AFTERSALES_MAIL_PORT: {settings.get('AFTERSALES_MAIL_PORT')!r} is not a port number") from None


class EmailChannel:
    """Sends each notification as one e-mail."""

    name = "email"

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = settings
        self._tls_context: ssl.SSLContext | None = None

    def tls_context(self) -> ssl.SSLContext:
        """The system's trusted certificates, loaded once (loading them costs 20 ms)."""
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context()
        return self._tls_context

    def wants(self, notification: Notification) -> bool:
        return True

    def send(self, notification: Notification) -> None:
        addresses = recipients(notification)
        if not addresses:
            return  # a shop with no staff yet, an order without an address: no one to write to
        with force_locale(language(notification, self.settings)):
            message = compose(notification, notification_url(notification))
            email = self.email(message, addresses, gettext("%(label)s: %(url)s", label=message.action_label,
                                                           url=message.action_url))
        self.deliver(email, addresses)

    def email(self, message: Message, addresses: list[str], link_line: str) -> EmailMessage:
        email = EmailMessage()
        email["Subject"] = " ".join(message.subject.split())  # a shop name with a line break must not break the header
        email["From"] = self.settings["AFTERSALES_MAIL_SENDER"]
        email["To"] = ", ".join(addresses)
        email["Date"] = format_datetime(utcnow())
        email["Message-ID"] = make_msgid(domain=urlsplit(self.settings["AFTERSALES_BASE_URL"]).hostname)
        text = "\n\n".join([*message.paragraphs, link_line])
        email.set_content(text + "\n")
        paragraphs = "".join(f"<p>{escape(paragraph)}</p>\n" for paragraph in message.paragraphs)
        email.add_alternative(
            f"<!doctype html>\n<html><body>\n{paragraphs}"
            f'<p><a href="{escape(message.action_url)}">{escape(message.action_label)}</a></p>\n</body></html>\n',
            subtype="html",
        )
        return email

    def deliver(self, email: EmailMessage, addresses: list[str]) -> None:
        settings = self.settings
        host, port = settings["AFTERSALES_MAIL_SERVER"], int(settings["AFTERSALES_MAIL_PORT"])
        timeout = float(settings["AFTERSALES_MAIL_TIMEOUT_SECONDS"])
        security = settings["AFTERSALES_MAIL_SECURITY"]
        if security == "tls":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=self.tls_context())
        else:
            connection = smtplib.SMTP(host, port, timeout=timeout)
        with connection:
            if security == "starttls":
                connection.starttls(context=self.tls_context())
            if settings.get("AFTERSALES_MAIL_USERNAME"):
                connection.login(settings["AFTERSALES_MAIL_USERNAME"], settings.get("AFTERSALES_MAIL_PASSWORD") or "")
            try:
                connection.send_message(email, to_addrs=addresses)
            except smtplib.SMTPRecipientsRefused as error:  # every address refused: retrying changes nothing
                raise PermanentDeliveryError(f"the server refused every recipient: {error.recipients}") from error


class MailPlugin:
    """Registers the e-mail channel (``aftersales.email`` in ``flask aftersales plugins``)."""

    def __init__(self, settings: Mapping[str, Any]):
        self.channel = EmailChannel(settings)

    @hookimpl
    def aftersales_notification_channels(self) -> list[Any]:
        return [self.channel]
