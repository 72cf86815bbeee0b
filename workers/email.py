"""Email notification tasks, on the ``email`` queue.

- ``sweep_offline`` (beat, every ``email_sweep_interval_s``): claims the users
  whose quiet period is over and queues ``offline_messages`` for each
  (workers/sweep.py says who gets what).
- ``offline_messages(user_id)``: one "N unread messages from ..." mail.
- ``connection_request(request_id)`` / ``connection_accepted(request_id)``:
  queued by restd (domain/notify.py) after the write.
- ``payment_receipt(user_id, order_id)``: queued by the payments code when an
  order completes.

Every mail goes through ``deliver``: the user's prefs, then the ledger's claim
on the notification's idempotency key (workers/ledger.py), then SMTP. A
transient failure (SMTP trouble, a store outage, the soft time limit) is
retried with exponential backoff and equal jitter (never sooner than half the
step, never more than ``email_max_retries`` times); then, or at once on a
permanent failure, the notification is recorded as failed with a dead letter
and the task fails with ``EmailUndeliverable``, which the worker's metrics
count as an email failure (workers/metrics.py). Permanent is a 5xx reply and
anything else that goes wrong: data that cannot make a mail, a template error,
a bug. Those fail the same way on every attempt, so retrying only delays the
dead letter, and a claim left ``sending`` would block the notification until
its lease ran out. Tasks are acknowledged late, so a task whose worker died
runs again, and the ledger makes that harmless.

Each task returns ``{"kind", "userId", "outcome", ...}`` with outcome one of
``sent``, ``duplicate``, ``skipped_online``, ``skipped_no_unread``,
``skipped_opted_out``, ``skipped_no_user``, ``skipped_stale``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import quote

from bson import ObjectId
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TaskPredicate
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from core.emailprefs import EmailKind, email_enabled
from core.mongo import CONNECTION_REQUESTS, PAYMENTS, USERS
from core.settings import Settings
from core.tasks import (
    EMAIL_CONNECTION_ACCEPTED,
    EMAIL_CONNECTION_REQUEST,
    EMAIL_OFFLINE_MESSAGES,
    EMAIL_PAYMENT_RECEIPT,
    EMAIL_SWEEP_OFFLINE,
)
from workers.context import WorkerContext, context_of
from workers.ledger import Claim, Ledger
from workers.mailer import OutgoingMail, PermanentMailError, TransientMailError
from workers.sweep import claim_due, is_online, senders_text, unread_digest

log = logging.getLogger(__name__)

# Hard limits kill the process running the task; soft ones raise inside it first.
# A send is a few SMTP round trips, each bounded by smtp_timeout_s.
SEND_TIME_LIMIT_S = 90
SEND_SOFT_TIME_LIMIT_S = 75
SWEEP_TIME_LIMIT_S = 60
SWEEP_SOFT_TIME_LIMIT_S = 50
SWEEP_ROUNDS_MAX = 20  # batches per shard per run; the rest waits for the next run
UNSUBSCRIBE_PATH = "/api/email/unsubscribe"
STORE_ERRORS = (PyMongoError, RedisError)


class EmailUndeliverable(Exception):
    """Given up on a mail: its dead letter is written. Args stay picklable for the pool."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(kind, reason)
        self.email_kind = kind
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.email_kind} email undeliverable: {self.reason}"


@dataclass(frozen=True)
class Notification:
    key: str  # the idempotency key: one mail per key, ever
    kind: EmailKind
    user_id: str
    template: str
    subject: str
    context: dict[str, Any] = field(default_factory=dict)


def backoff_s(retries: int, base_s: float, max_s: float) -> float:
    """Wait before retry number ``retries + 1``: half the step plus up to half at random."""
    step = min(max_s, base_s * 2.0**retries)
    return step / 2 + random.uniform(0, step / 2)


def restd_url(settings: Settings) -> str:
    if settings.public_restd_url:
        return settings.public_restd_url.rstrip("/")
    return f"http://{settings.host}:{settings.restd_port}"


def _result(
    note: Notification | None, kind: str, user_id: str, outcome: str, **extra: Any
) -> dict[str, Any]:
    return {"kind": note.kind if note else kind, "userId": user_id, "outcome": outcome, **extra}


def _retry(
    task: Task[Any, Any], settings: Settings, exc: Exception, countdown: float | None = None
) -> Exception:
    """The Retry to raise; the countdown stays under the broker's visibility timeout,
    or the held message would be handed to a second worker meanwhile."""
    if countdown is None:
        countdown = backoff_s(
            task.request.retries, settings.email_retry_backoff_s, settings.email_retry_backoff_max_s
        )
    countdown = min(countdown, settings.celery_visibility_timeout_s / 2)
    return task.retry(exc=exc, countdown=countdown, max_retries=settings.email_max_retries)  # type: ignore[no-any-return]


def deliver(task: Task[Any, Any], ctx: WorkerContext, note: Notification) -> dict[str, Any]:
    """Send ``note`` to its user at most once; see the module docstring."""
    s = ctx.settings
    if not ObjectId.is_valid(note.user_id):
        return _result(note, note.kind, note.user_id, "skipped_no_user")
    user = ctx.db[USERS].find_one(
        {"_id": ObjectId(note.user_id)}, projection={"email": 1, "name": 1, "prefs": 1}
    )
    if user is None or not user.get("email"):
        return _result(note, note.kind, note.user_id, "skipped_no_user")
    if not email_enabled(user.get("prefs"), note.kind):
        return _result(note, note.kind, note.user_id, "skipped_opted_out")
    ledger = Ledger(ctx.db, s.email_send_lease_s)
    claim = ledger.claim(note.key, note.user_id, note.kind, str(task.request.id))
    if claim.outcome == "done":
        return _result(note, note.kind, note.user_id, "duplicate", state=claim.state)
    if claim.outcome == "busy":
        # Another task holds a live claim on this very notification (a duplicate
        # event); look again once its lease is over, unless out of retries.
        if task.request.retries < s.email_max_retries:
            raise _retry(task, s, RuntimeError("claim busy"), countdown=claim.busy_for_s + 1)
        return _result(note, note.kind, note.user_id, "duplicate", state=claim.state)

    try:
        token = ctx.tokens.issue(note.user_id, note.kind)
        mail = OutgoingMail(
            to=str(user["email"]),
            subject=note.subject,
            template=note.template,
            context={"name": user.get("name") or "there", "app_url": s.web_url, **note.context},
            unsubscribe_url=f"{restd_url(s)}{UNSUBSCRIBE_PATH}?token={quote(token)}",
            idempotency_key=note.key,
        )
        msg = ctx.mailer.build(mail)
    except SoftTimeLimitExceeded as exc:
        _transient(task, s, ledger, note, exc, claim)
    except Exception as exc:
        # Rendering is pure: what fails here fails again on every attempt.
        _give_up(task, ledger, note, f"cannot build the mail: {_describe(exc)}", claim, exc)
    try:
        ctx.mailer.send(msg)
    except (TransientMailError, SoftTimeLimitExceeded) as exc:
        _transient(task, s, ledger, note, exc, claim)
    except PermanentMailError as exc:
        _give_up(task, ledger, note, str(exc), claim)
    except Exception as exc:
        _give_up(task, ledger, note, f"sending failed: {_describe(exc)}", claim, exc)
    try:
        ledger.sent(note.key, mail.message_id)
    except PyMongoError as exc:
        # The mail is out: retrying the task would send it again. The claim stays
        # "sending" under its lease, which only a duplicate event could take over.
        log.error("%s email to %s sent but not recorded: %s", note.kind, note.user_id, exc)
    log.info("%s email sent to %s", note.kind, note.user_id, extra={"key": note.key})
    return _result(note, note.kind, note.user_id, "sent", attempts=task.request.retries + 1)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _transient(
    task: Task[Any, Any],
    s: Settings,
    ledger: Ledger,
    note: Notification,
    exc: Exception,
    claim: Claim,
) -> NoReturn:
    """Release the claim so the retry can take it at once; out of retries, give up."""
    reason = str(exc) or type(exc).__name__
    if task.request.retries >= s.email_max_retries:
        _give_up(task, ledger, note, reason, claim)
    ledger.release(note.key, reason)
    log.warning(
        "%s email to %s: transient failure (attempt %d): %s",
        note.kind,
        note.user_id,
        task.request.retries + 1,
        reason,
        extra={"key": note.key},
    )
    raise _retry(task, s, exc) from exc


def _give_up(
    task: Task[Any, Any],
    ledger: Ledger,
    note: Notification,
    reason: str,
    claim: Claim,
    exc: BaseException | None = None,
) -> NoReturn:
    """Mark the notification failed, write its dead letter, and fail the task."""
    ledger.fail(
        note.key,
        reason,
        {
            "kind": note.kind,
            "userId": note.user_id,
            "task": task.name,
            "args": list(task.request.args or []),
            "attempts": task.request.retries + 1,
            "claims": claim.attempts,
        },
    )
    # An unexpected exception gets its traceback in the log; an SMTP refusal does not.
    log.error(
        "%s email to %s dead-lettered: %s",
        note.kind,
        note.user_id,
        reason,
        extra={"key": note.key},
        exc_info=exc,
    )
    raise EmailUndeliverable(note.kind, reason)


def _run(task: Task[Any, Any], kind: EmailKind, build: Any) -> dict[str, Any]:
    """Run one notification task: every failure ends in a retry or a dead letter.

    ``deliver`` settles failures after its claim itself; what reaches here came
    before any claim (or from a store that failed while settling one). Store
    outages and the soft time limit are retried like SMTP trouble; anything else
    is dead-lettered at once under the task's name and arguments.
    """
    ctx = context_of(task.app)
    try:
        result: dict[str, Any] = build(ctx)
        return result
    except (TaskPredicate, EmailUndeliverable):
        raise  # a retry already scheduled, or a failure already dead-lettered
    except (*STORE_ERRORS, SoftTimeLimitExceeded) as exc:
        if task.request.retries < ctx.settings.email_max_retries:
            raise _retry(task, ctx.settings, exc) from exc
        _dead_letter_task(task, ctx, kind, f"out of retries: {_describe(exc)}", exc)
    except Exception as exc:
        _dead_letter_task(task, ctx, kind, _describe(exc), exc)


def _dead_letter_task(
    task: Task[Any, Any], ctx: WorkerContext, kind: EmailKind, reason: str, exc: Exception
) -> NoReturn:
    """A dead letter for a task that failed before it had a notification to record."""
    args = [str(arg) for arg in task.request.args or []]
    key = f"{task.name}:{','.join(args)}"
    log.error("%s failed; dead-lettered as %s: %s", task.name, key, reason, exc_info=exc)
    try:
        Ledger(ctx.db, ctx.settings.email_send_lease_s).fail(
            key,
            reason,
            {"kind": kind, "task": task.name, "args": args, "attempts": task.request.retries + 1},
        )
    except STORE_ERRORS as store_exc:
        # The store that failed the task may well be the one that keeps dead letters.
        log.error("dead letter %s not written: %s", key, store_exc)
    raise EmailUndeliverable(kind, reason) from exc


# -- the tasks -----------------------------------------------------------------------


def _send_task(name: str) -> Any:
    """The decorator of a task that sends one mail: bound, under the send time limits."""
    return shared_task(
        name=name,
        bind=True,
        time_limit=SEND_TIME_LIMIT_S,
        soft_time_limit=SEND_SOFT_TIME_LIMIT_S,
    )


@shared_task(
    name=EMAIL_SWEEP_OFFLINE,
    bind=True,
    time_limit=SWEEP_TIME_LIMIT_S,
    soft_time_limit=SWEEP_SOFT_TIME_LIMIT_S,
)
def sweep_offline(self: Task[Any, Any]) -> dict[str, int]:
    ctx = context_of(self.app)
    started = time.monotonic()
    batch = ctx.settings.email_sweep_batch
    claimed = 0
    for shard in ctx.shards:
        for _ in range(SWEEP_ROUNDS_MAX):
            users = claim_due(shard, ctx.keys, time.time(), batch)
            for user in users:
                self.app.send_task(EMAIL_OFFLINE_MESSAGES, args=[user])
            claimed += len(users)
            if len(users) < batch:
                break
    elapsed_ms = (time.monotonic() - started) * 1000
    level = logging.INFO if claimed else logging.DEBUG
    log.log(
        level,
        "email sweep: %d users due, in %.0f ms",
        claimed,
        elapsed_ms,
        extra={"claimed": claimed},
    )
    return {"claimed": claimed}


@_send_task(EMAIL_OFFLINE_MESSAGES)
def offline_messages(self: Task[Any, Any], user_id: str) -> dict[str, Any]:
    def build(ctx: WorkerContext) -> dict[str, Any]:
        if is_online(ctx.redis_for(user_id), ctx.keys, user_id):
            return _result(None, "messages", user_id, "skipped_online")
        digest = unread_digest(ctx.db, user_id)
        if digest is None:
            return _result(None, "messages", user_id, "skipped_no_unread")
        who = senders_text(ctx.db, digest.sender_ids)
        noun = "message" if digest.count == 1 else "messages"
        note = Notification(
            key=f"messages:{user_id}:{digest.newest_id}",
            kind="messages",
            user_id=user_id,
            template="messages",
            subject=f"{who} sent you {digest.count} {noun}",
            context={"count": digest.count, "senders_text": who},
        )
        return {**deliver(self, ctx, note), "unread": digest.count}

    return _run(self, "messages", build)


def _request_note(
    ctx: WorkerContext, request_id: str, accepted: bool
) -> Notification | dict[str, Any]:
    kind: EmailKind = "connections"
    doc = (
        ctx.db[CONNECTION_REQUESTS].find_one({"_id": ObjectId(request_id)})
        if ObjectId.is_valid(request_id)
        else None
    )
    if doc is None:
        return _result(None, kind, "", "skipped_stale", reason="no such request")
    # The state may have moved on since the event: a withdrawn request mails no one.
    wanted = "accepted" if accepted else "pending"
    recipient, other = (
        (doc["fromUserId"], doc["toUserId"]) if accepted else (doc["toUserId"], doc["fromUserId"])
    )
    if doc.get("status") != wanted:
        return _result(None, kind, recipient, "skipped_stale", status=doc.get("status"))
    person = (
        ctx.db[USERS].find_one({"_id": ObjectId(other)}, projection={"name": 1, "headline": 1})
        or {}
    )
    name = person.get("name") or "Someone"
    if accepted:
        key, template = f"connection-accepted:{request_id}", "connection_accepted"
        subject = f"{name} accepted your connection request"
        context: dict[str, Any] = {"by_name": name}
    else:
        key, template = f"connection-request:{request_id}", "connection_request"
        subject = f"{name} wants to connect with you"
        context = {
            "from_name": name,
            "from_headline": person.get("headline") or "",
            "message": doc.get("message") or "",
        }
    return Notification(
        key=key, kind=kind, user_id=recipient, template=template, subject=subject, context=context
    )


def _send_request_note(task: Task[Any, Any], request_id: str, accepted: bool) -> dict[str, Any]:
    def build(ctx: WorkerContext) -> dict[str, Any]:
        note = _request_note(ctx, request_id, accepted)
        return note if isinstance(note, dict) else deliver(task, ctx, note)

    return _run(task, "connections", build)


@_send_task(EMAIL_CONNECTION_REQUEST)
def connection_request(self: Task[Any, Any], request_id: str) -> dict[str, Any]:
    return _send_request_note(self, request_id, accepted=False)


@_send_task(EMAIL_CONNECTION_ACCEPTED)
def connection_accepted(self: Task[Any, Any], request_id: str) -> dict[str, Any]:
    return _send_request_note(self, request_id, accepted=True)


def _when(value: object) -> str:
    # The embedded store reads a $set datetime back as text (docs/embedded-store.md).
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)[:16].replace("T", " ") + " UTC" if value else ""


def _money(amount_paise: object, currency: object) -> str:
    amount = int(amount_paise) if isinstance(amount_paise, int | float) else 0
    symbol = "₹" if currency in (None, "INR") else f"{currency} "
    return f"{symbol}{amount // 100:,}.{amount % 100:02d}"


@_send_task(EMAIL_PAYMENT_RECEIPT)
def payment_receipt(self: Task[Any, Any], user_id: str, order_id: str) -> dict[str, Any]:
    def build(ctx: WorkerContext) -> dict[str, Any]:
        order = ctx.db[PAYMENTS].find_one({"merchantOrderId": order_id})
        if order is None or str(order.get("userId")) != user_id:
            return _result(None, "payments", user_id, "skipped_stale", reason="no such order")
        if order.get("status") != "COMPLETED":
            return _result(None, "payments", user_id, "skipped_stale", status=order.get("status"))
        plan = ctx.settings.payment_plans.get(str(order.get("planId")))
        note = Notification(
            key=f"payment-receipt:{order_id}",
            kind="payments",
            user_id=user_id,
            template="payment_receipt",
            subject="Your DevConnect receipt",
            context={
                "plan_name": plan.name if plan else str(order.get("planId")),
                "amount": _money(order.get("amount"), order.get("currency")),
                "order_id": order_id,
                "paid_at": _when(order.get("processedAt") or order.get("updatedAt")),
            },
        )
        return deliver(self, ctx, note)

    return _run(self, "payments", build)
