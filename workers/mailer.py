"""Building and sending one mail: Jinja2 templates, RFC 8058 headers, SMTP with timeouts.

Every mail has a plain-text and an HTML part rendered from
``workers/templates/<template>.txt`` and ``.html`` (the HTML autoescaped, so a
user's name or request message cannot inject markup), a ``List-Unsubscribe``
header with the signed one-click link and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (RFC 8058), and a Message-ID derived from the
notification's idempotency key: if a mail must be sent again after a crash
that left its first attempt's fate unknown, the copy carries the same id, which
receiving systems use to drop duplicates.

``send`` sorts SMTP failures into transient (4xx replies, refused or dropped
connections, timeouts: worth retrying) and permanent (5xx: retrying would
not help).
"""

from __future__ import annotations

import hashlib
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

MESSAGE_ID_DOMAIN = "devconnect.mail"


class TransientMailError(Exception):
    """The server may accept the mail later (4xx, connection trouble, timeout)."""


class PermanentMailError(Exception):
    """The server refused the mail for good (5xx)."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    timeout_s: float
    mail_from: str


@dataclass(frozen=True)
class OutgoingMail:
    to: str
    subject: str
    template: str
    context: dict[str, Any]
    unsubscribe_url: str
    idempotency_key: str

    @property
    def message_id(self) -> str:
        digest = hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:32]
        return f"<{digest}@{MESSAGE_ID_DOMAIN}>"


class MailTemplates:
    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("workers", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, template: str, context: dict[str, Any]) -> tuple[str, str]:
        """(plain text, HTML) for one mail."""
        text = self.env.get_template(f"{template}.txt").render(context)
        html = self.env.get_template(f"{template}.html").render(context)
        return text, html


class Mailer:
    def __init__(self, smtp: SmtpConfig, templates: MailTemplates) -> None:
        self.smtp = smtp
        self.templates = templates

    def build(self, mail: OutgoingMail) -> EmailMessage:
        context = {**mail.context, "unsubscribe_url": mail.unsubscribe_url}
        text, html = self.templates.render(mail.template, context)
        msg = EmailMessage()
        msg["From"] = self.smtp.mail_from
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = mail.message_id
        msg["List-Unsubscribe"] = f"<{mail.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        return msg

    def send(self, msg: EmailMessage) -> None:
        """Hand one message to the SMTP server; raises Transient/PermanentMailError."""
        try:
            with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.smtp.timeout_s) as smtp:
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _text in exc.recipients.values()]
            reason = f"recipients refused: {exc.recipients}"
            if all(400 <= code < 500 for code in codes):
                raise TransientMailError(reason) from exc
            raise PermanentMailError(reason) from exc
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error
            )
            reason = f"{exc.smtp_code} {text}"
            if 400 <= exc.smtp_code < 500:
                raise TransientMailError(reason) from exc
            raise PermanentMailError(reason) from exc
        except (smtplib.SMTPException, OSError) as exc:  # OSError covers timeouts
            # Refused or dropped connections, timeouts, a server that hung up mid-way.
            raise TransientMailError(f"{type(exc).__name__}: {exc}") from exc
