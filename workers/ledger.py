"""The email ledger: at most one mail per notification, even across crashes and retries.

One document per notification in ``emailNotifications``, ``_id`` = its
idempotency key (unique, so two inserts of one key cannot both succeed):

- ``claim`` before sending: insert ``state: "sending"`` with a lease (epoch
  seconds; numbers, not datetimes, so the embedded store compares them
  exactly). Only the holder of an unexpired lease may send.
- ``sent`` after the SMTP server accepted the mail; ``failed`` when given up
  (a dead letter is written beside it); ``release`` after a transient failure,
  so the task's retry can claim again at once.
- A later task for the same key finds ``sent``/``failed`` and does nothing. One
  that finds ``sending`` under a live lease backs off (a concurrent duplicate);
  under an expired lease, the holder died mid-send (a killed worker), so it
  takes the claim over and sends.

The one window this cannot close: a worker killed after the server accepted
the mail and before ``sent`` was written. The takeover then sends again, with
the same Message-ID (workers/mailer.py), which receiving systems deduplicate.
Without the takeover that mail would instead be lost every time a worker died
before or during the SMTP exchange, which is far more likely.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.mongo import DEAD_LETTERS, EMAIL_NOTIFICATIONS, Doc

SENDING, SENT, FAILED = "sending", "sent", "failed"
# How long a notification's key is remembered: far past any retry or redelivery.
KEY_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class Claim:
    outcome: Literal["mine", "done", "busy"]
    attempts: int = 0
    state: str = ""
    busy_for_s: float = 0.0


class Ledger:
    def __init__(self, db: Database[Doc], lease_s: float) -> None:
        self.notes = db[EMAIL_NOTIFICATIONS]
        self.dead = db[DEAD_LETTERS]
        self.lease_s = lease_s

    def claim(self, key: str, user_id: str, kind: str, task_id: str) -> Claim:
        now = time.time()
        try:
            self.notes.insert_one(
                {
                    "_id": key,
                    "userId": user_id,
                    "kind": kind,
                    "state": SENDING,
                    "leaseUntil": now + self.lease_s,
                    "taskId": task_id,
                    "attempts": 1,
                    "createdAt": datetime.now(UTC),
                    "expiresAt": datetime.now(UTC) + KEY_RETENTION,
                }
            )
            return Claim("mine", attempts=1)
        except DuplicateKeyError:
            pass
        taken = self.notes.find_one_and_update(
            {"_id": key, "state": SENDING, "leaseUntil": {"$lt": now}},
            {
                "$set": {"leaseUntil": now + self.lease_s, "taskId": task_id},
                "$inc": {"attempts": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if taken is not None:
            return Claim("mine", attempts=int(taken.get("attempts", 1)))
        doc = self.notes.find_one({"_id": key}) or {}
        state = str(doc.get("state", ""))
        if state == SENDING:
            return Claim("busy", state=state, busy_for_s=float(doc["leaseUntil"]) - now)
        return Claim("done", state=state)

    def sent(self, key: str, message_id: str) -> None:
        self.notes.update_one(
            {"_id": key},
            {"$set": {"state": SENT, "messageId": message_id, "sentAtS": time.time()}},
        )

    def release(self, key: str, reason: str) -> None:
        self.notes.update_one(
            {"_id": key, "state": SENDING}, {"$set": {"leaseUntil": 0.0, "lastError": reason}}
        )

    def fail(self, key: str, reason: str, record: dict[str, Any]) -> None:
        """Give up on this notification and write its dead letter (once per key)."""
        self.notes.update_one(
            {"_id": key}, {"$set": {"state": FAILED, "lastError": reason, "leaseUntil": 0.0}}
        )
        # A redelivered final attempt finds its dead letter already written.
        with contextlib.suppress(DuplicateKeyError):
            self.dead.insert_one(
                {"_id": key, "reason": reason, "createdAt": datetime.now(UTC), **record}
            )
