"""Building and sending one mail: Jinja2 templates, RFC 8058 headers, SMTP with timeouts.

Every mail has a plain-text and an HTML part rendered from
``workers/templates/<template>.txt`` and ``.html`` (the HTML autoescaped, so a
user's name or request message cannot inject markup), a ``List-Unsubscribe``
header with the signed one-click link and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (RFC 8058), and a Message-ID derived from the
notification's idempotency key: if a mail must be sent again after a crash
that left its first attempt's fate unknown, the copy carries the same id, which
receiving systems use to drop duplicates.

Header values never carry a line break: a user's name goes into the Subject,
and CR, LF, U+2028 and their kin would either make the email package refuse the
header (ValueError) or, worse, start a header of their own. ``header_text``
turns every control and line/paragraph separator into a space first; non-ASCII
text is then RFC 2047-encoded by the email package as usual.

``List-Unsubscribe`` is written verbatim (RFC 2369: ``<https://...>``, folded
only at whitespace). The email package would otherwise fold the long URL by
turning it into RFC 2047 encoded-words, in which mail clients find no URI, so
the one-click unsubscribe never shows.

``send`` sorts SMTP failures into transient (4xx replies, refused or dropped
connections, timeouts: worth retrying) and permanent (5xx: retrying would
not help).
"""

from __future__ import annotations

import email.policy
import hashlib
import smtplib
import unicodedata
from dataclasses import dataclass
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UniqueUnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate, parseaddr
from typing import Any, ClassVar, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

MESSAGE_ID_DOMAIN = "devconnect.mail"
# Unicode categories that break or control a line: Cc (C0 and C1 controls: CR, LF,
# TAB, NUL, U+0085 NEL...), Zl (U+2028) and Zp (U+2029).
LINE_BREAKING_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# RFC 5322 2.1.1: no line of a message may be longer, folded or not.
HARD_LINE_LIMIT = 998


def header_text(value: str) -> str:
    """``value`` made safe for a header: line breaks and controls become spaces, runs
    of white space one space. What is left is one line of printable text."""
    spaced = "".join(
        " " if unicodedata.category(ch) in LINE_BREAKING_CATEGORIES else ch for ch in value
    )
    return " ".join(spaced.split())


class VerbatimUriHeader(UniqueUnstructuredHeader, BaseHeader):
    """A header of ASCII URIs (``List-Unsubscribe``) written as is, folded only at white
    space: never as RFC 2047 encoded-words, which would hide the URI (RFC 2369)."""

    max_count: ClassVar[Literal[1]] = 1  # one List-Unsubscribe per message

    def fold(self, *, policy: Policy) -> str:
        name, value = self.name, str(self)
        if not value.isascii() or header_text(value) != value:
            raise ValueError(f"{name} takes ASCII URIs in angle brackets, on one line")
        limit = min(policy.max_line_length or HARD_LINE_LIMIT, HARD_LINE_LIMIT)
        lines = [f"{name}:"]
        for word in value.split(" "):
            if len(lines[-1]) + 1 + len(word) > limit and lines[-1] != f"{name}:":
                lines.append("")  # the continuation line starts with the space below
            lines[-1] += " " + word
        if any(len(line) > HARD_LINE_LIMIT for line in lines):
            raise ValueError(f"{name} has a URI longer than a mail line may be")
        return policy.linesep.join(lines) + policy.linesep


def mail_policy() -> Policy:
    """The default policy (RFC 2047 for non-ASCII text), with List-Unsubscribe verbatim."""
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", VerbatimUriHeader)
    return email.policy.default.clone(header_factory=registry)


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
        self.policy = mail_policy()

    def build(self, mail: OutgoingMail) -> EmailMessage:
        """The message for ``mail``. Raises (ValueError, a template error) for data that
        cannot make a mail, such as an address with a line break in it: the recipient
        is never rewritten, a different address is not the one the user gave."""
        context = {**mail.context, "unsubscribe_url": mail.unsubscribe_url}
        text, html = self.templates.render(mail.template, context)
        msg = EmailMessage(policy=self.policy)
        from_name, from_addr = parseaddr(self.smtp.mail_from)
        msg["From"] = Address(display_name=header_text(from_name), addr_spec=from_addr)
        msg["To"] = mail.to
        msg["Subject"] = header_text(mail.subject)
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
