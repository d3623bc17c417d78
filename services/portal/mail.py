"""The e-mail a patient receives about new notices, and the channels that carry it.

An e-mail crosses mail servers nobody here controls, and anyone who reads a
shared inbox or a phone's lock screen reads it too. So it says only that
healthgov has news about who used the patient's records and where to read it:
no organisation, no kind of access, no purpose, no name, no record. The detail
(who, why, when, its proof) is in the portal, behind sign-in. Each e-mail has a
stable Message-ID made from the notices it reports, so a message sent twice
(a crash between the server's acceptance and our mark) is one message to a
mail client that de-duplicates.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

from services.portal import i18n
from services.portal.i18n import N_

SUBJECT = N_("healthgov: a new message about your health records")
BODY = N_("""Hello,

healthgov has a new message for you about who used your health records.

For your privacy this e-mail does not say who or why. Sign in to read the message and check its proof:

%(link)s

You receive this e-mail because you asked for it in the healthgov portal. To stop it, remove your address on
the page above.
""")


class Channel(Protocol):
    """Where notice e-mail goes; ``send`` raises on failure so the delivery is tried again later."""

    def send(self, message: EmailMessage) -> None: ...


class SmtpChannel:
    """An SMTP relay (RFC 5321), with STARTTLS and a login when the relay wants them."""

    def __init__(self, host: str, port: int, *, starttls: bool = False, username: str = "", password: str = "",
                 timeout_s: float = 10.0) -> None:
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password, self.timeout_s = username, password, timeout_s

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


def compose(*, to: str, sender: str, lang: str, portal_url: str, event_ids: list[str]) -> EmailMessage:
    """The e-mail for one or more new notices, in the patient's language, naming none of them."""
    words = i18n.translations(lang)
    msg = EmailMessage()
    msg["Subject"] = words.gettext(SUBJECT)
    msg["From"] = sender
    msg["To"] = Address(addr_spec=to)
    msg["Date"] = formatdate(localtime=False)
    digest = hashlib.sha256("|".join(sorted(event_ids)).encode()).hexdigest()[:32]
    msg["Message-ID"] = f"<notice-{digest}@healthgov>"
    msg["Content-Language"] = i18n.HTML_LANG.get(lang, "zh-CN")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a notification
    msg.set_content(words.gettext(BODY) % {"link": portal_url.rstrip("/") + "/me#notices"})
    return msg
