"""Email state with a real worker and the real SMTP sink: a display name with line
breaks reaches the Subject safely (RFC 2047, one line), ``List-Unsubscribe`` goes out
verbatim in the raw bytes (RFC 2369/8058), and a mail that cannot be built ends in a
dead letter at once, its claim failed rather than left ``sending``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path

from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database

from core.mongo import CONNECTION_REQUESTS, DEAD_LETTERS, EMAIL_NOTIFICATIONS, PAYMENTS, USERS, Doc
from core.settings import Settings
from core.tasks import EMAIL_PAYMENT_RECEIPT
from tests.harness import Services
from tests.restd_harness import running_restd
from tests.workers_harness import (
    WAIT_S,
    Mailbox,
    await_until,
    sink,
    wait_until,
    worker,
    worker_settings,
)
from workers.app import make_celery

FROM_NAME = "DevConnect Ünïcode"
MAIL_FROM = f"{FROM_NAME} <no-reply@devconnect.test>"
# U+2028 (line separator), CR/LF, NEL (U+0085) and a TAB, in a name signup accepts.
NASTY_NAME = "Ada\u2028Love\r\nlace\u0085Bcc: eve@evil.test\tÜnïcode"
SAFE_NAME = "Ada Love lace Bcc: eve@evil.test Ünïcode"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@contextmanager
def database(settings: Settings) -> Iterator[Database[Doc]]:
    client: MongoClient[Doc] = MongoClient(settings.mongo_url, tz_aware=True)
    try:
        yield client[settings.mongo_db]
    finally:
        client.drop_database(settings.mongo_db)
        client.close()


def raw_mails(box: Mailbox) -> list[bytes]:
    """The sink's files as they came off the wire, not parsed."""
    return [path.read_bytes() for path in sorted(box.dir.glob("*.eml"))]


def raw_headers(raw: bytes) -> list[tuple[str, bytes]]:
    """(name, raw value) of each header in order; a folded value keeps its CRLF + WSP."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    headers: list[tuple[str, bytes]] = []
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t"):
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
        else:
            name_bytes, sep, value = line.partition(b":")
            assert sep, f"not a header line: {line!r}"
            headers.append((name_bytes.decode("ascii"), value.strip()))
    return headers


def one_header(raw: bytes, name: str) -> bytes:
    (value,) = [v for n, v in raw_headers(raw) if n.lower() == name.lower()]
    return value


def decoded(value: bytes) -> str:
    unfolded = re.sub(rb"\r\n[ \t]", b" ", value).decode("ascii")
    return str(make_header(decode_header(unfolded)))


def paid_order(db: Database[Doc], email: str, name: str) -> tuple[str, str]:
    """A user and a COMPLETED order of theirs, as domain/payments leaves them."""
    user = ObjectId()
    db[USERS].insert_one({"_id": user, "name": name, "email": email})
    order_id = f"DC{ObjectId()}"
    db[PAYMENTS].insert_one(
        {
            "merchantOrderId": order_id,
            "providerOrderId": f"OMO{order_id}",
            "userId": str(user),
            "planId": "pro-monthly",
            "amount": 29_900,
            "currency": "INR",
            "status": "COMPLETED",
            "processedAt": datetime.now(UTC),
        }
    )
    return str(user), order_id


async def test_a_name_with_line_breaks_reaches_the_subject_safely_and_the_link_works(
    services: Services, tmp_path: Path
) -> None:
    box = Mailbox(tmp_path / "mail")
    with sink(box.dir, tmp_path / "smtp.log") as smtp:
        settings = worker_settings(services, smtp_port=smtp.port, mail_from=MAIL_FROM)
        with worker(settings, tmp_path / "worker.log"):
            async with running_restd(settings) as api:
                ada, bob = await api.signup(NASTY_NAME), await api.signup("Bob")
                assert (await ada.http.get("/api/me")).json()["name"] == NASTY_NAME
                sent = await ada.http.post("/api/connection-requests", json={"toUserId": bob.id})
                assert sent.status_code == 201, sent.text
                request_id = sent.json()["id"]
                await await_until(lambda: box.to(bob.email), "the connection-request mail")
                (raw,) = raw_mails(box)

                # One Subject, ASCII on the wire, RFC 2047 for the non-ASCII part, and the
                # line breaks gone: no header of the name's own ("lace", "Bcc") appears.
                names = [name for name, _value in raw_headers(raw)]
                assert len(names) == len(set(names)), names
                assert not {"Bcc", "lace", "Love"} & set(names), names
                subject = one_header(raw, "Subject")
                assert subject.isascii() and b"=?utf-8?" in subject
                assert decoded(subject) == f"{SAFE_NAME} wants to connect with you"
                head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
                for bad in ("\u2028", "\u0085", "\t"):
                    assert bad.encode() not in head
                # The From display name is encoded as RFC 2047 too.
                sender = one_header(raw, "From")
                assert sender.isascii() and b"=?utf-8?" in sender
                assert decoded(sender) == MAIL_FROM
                # The parsed view agrees.
                (mail,) = box.to(bob.email)
                assert mail["Subject"] == f"{SAFE_NAME} wants to connect with you"

                notes = api.stores.db[EMAIL_NOTIFICATIONS]
                note = await notes.find_one({"_id": f"connection-request:{request_id}"})
                assert note is not None and note["state"] == "sent"

                # The verbatim List-Unsubscribe URI is the working one-click link.
                link = one_header(raw, "List-Unsubscribe")
                match = re.fullmatch(rb"<(http://[^>\s]+)>", link)
                assert match, link
                provider = api.client(origin="https://mail.example")
                done = await provider.post(match.group(1).decode(), data=ONE_CLICK)
                assert done.status_code == 200, done.text
                prefs = (await bob.http.get("/api/me")).json()["prefs"]
                assert prefs == {"emailConnections": False}


def test_list_unsubscribe_goes_out_verbatim_in_the_raw_bytes(
    services: Services, tmp_path: Path
) -> None:
    box = Mailbox(tmp_path / "mail")
    # A long public URL, as in production: the header is far past 78 characters, which
    # is where the email package used to fall back to encoded-words.
    public = "https://api.devconnect-production.example.com/edge/eu-west-1/restd"
    with sink(box.dir, tmp_path / "smtp.log") as smtp:
        settings = worker_settings(services, smtp_port=smtp.port, public_restd_url=public)
        with worker(settings, tmp_path / "worker.log"), database(settings) as db:
            user, order_id = paid_order(db, "payer@example.test", "Payer")
            app = make_celery(settings)
            result = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
            assert result.get(timeout=WAIT_S)["outcome"] == "sent"
            app.close()
            (raw,) = wait_until(lambda: raw_mails(box), "the receipt")

    lines = re.split(rb"\r?\n", re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0])
    (start,) = [i for i, line in enumerate(lines) if line.startswith(b"List-Unsubscribe:")]
    header_lines = [lines[start]]
    for line in lines[start + 1 :]:
        if line[:1] not in (b" ", b"\t"):
            break
        header_lines.append(line)
    assert lines[start].startswith(b"List-Unsubscribe: <https://api.devconnect-production")
    assert len(lines[start]) > 78  # long, and still not encoded
    assert all(b"=?" not in line for line in header_lines), header_lines
    token_url = b" ".join(line.strip() for line in header_lines)[len(b"List-Unsubscribe: ") :]
    assert re.fullmatch(
        rb"<" + re.escape(public.encode()) + rb"/api/email/unsubscribe\?token=[\w.%-]+>",
        token_url,
    ), token_url
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert all(len(line) <= 998 for line in lines)


def test_a_mail_that_cannot_be_built_is_dead_lettered_at_once_never_left_sending(
    services: Services, tmp_path: Path
) -> None:
    box = Mailbox(tmp_path / "mail")
    with sink(box.dir, tmp_path / "smtp.log") as smtp:
        # Retries would be quick and many: a permanent failure must still take none.
        settings = worker_settings(
            services,
            smtp_port=smtp.port,
            email_max_retries=5,
            email_retry_backoff_s=0.2,
            email_retry_backoff_max_s=1.0,
        )
        with worker(settings, tmp_path / "worker.log"), database(settings) as db:
            app = make_celery(settings)
            # A record written by an import or an older version: the address carries a
            # header injection. It cannot be a To header, and it is never rewritten.
            user, order_id = paid_order(
                db, "payer@example.test\r\nBcc: everyone@example.test", "Payer"
            )
            result = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
            result.get(timeout=WAIT_S, propagate=False)
            assert result.failed()
            assert type(result.result).__name__ == "EmailUndeliverable"

            key = f"payment-receipt:{order_id}"
            dead = db[DEAD_LETTERS].find_one({"_id": key})
            assert dead is not None, list(db[DEAD_LETTERS].find())
            assert dead["reason"].startswith("cannot build the mail: ValueError"), dead
            assert dead["kind"] == "payments" and dead["userId"] == user
            assert dead["attempts"] == 1  # at once, no retries
            note = db[EMAIL_NOTIFICATIONS].find_one({"_id": key})
            assert note is not None and note["state"] == "failed" and note["leaseUntil"] == 0
            # The same event again is a no-op, not another attempt.
            again = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
            assert again.get(timeout=WAIT_S)["outcome"] == "duplicate"

            # A malformed request record fails before any claim: dead-lettered under the
            # task's name and arguments.
            request = db[CONNECTION_REQUESTS].insert_one(
                {"fromUserId": user, "status": "pending", "message": ""}
            )
            request_id = str(request.inserted_id)
            failed = app.send_task("workers.email.connection_request", args=[request_id])
            failed.get(timeout=WAIT_S, propagate=False)
            assert failed.failed()
            assert type(failed.result).__name__ == "EmailUndeliverable"
            early = db[DEAD_LETTERS].find_one(
                {"_id": f"workers.email.connection_request:{request_id}"}
            )
            assert early is not None and early["reason"].startswith("KeyError"), early
            assert early["kind"] == "connections" and early["attempts"] == 1

            # Nothing is left claimed, nothing was sent, and the worker carries on.
            assert db[EMAIL_NOTIFICATIONS].count_documents({"state": "sending"}) == 0
            assert app.send_task("workers.ping").get(timeout=WAIT_S) == "pong"
            app.close()
    assert box.all() == []
