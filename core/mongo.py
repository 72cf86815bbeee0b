"""MongoDB access: the client, collection names and the indexes of the data model.

Production runs against MongoDB by URL; development and tests against the
embedded nx-27017 server. Both are reached through ``pymongo.AsyncMongoClient``
(Motor reached end of life in May 2026; its maintainers point to this API).

Hot queries use single-field indexes on purpose: nx-27017 does not serve a query
from the prefix of a compound index (see ../shared/notes/embedded-mongo.md), so
each stream key below packs the user id and the position into one string.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymongo import ASCENDING, DESCENDING, TEXT, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

log = logging.getLogger(__name__)

USERS = "users"
MESSAGES = "messages"
CONNECTION_REQUESTS = "connectionRequests"
PAYMENTS = "payments"
READ_MARKS = "readMarks"
REFRESH_TOKENS = "refreshTokens"
BLOCKS = "blocks"
# Email (workers/email.py): one document per notification, keyed by its idempotency
# key; the mails given up on; the unsubscribe tokens already used (restd/unsubscribe.py).
EMAIL_NOTIFICATIONS = "emailNotifications"
DEAD_LETTERS = "deadLetters"
UNSUBSCRIBE_TOKENS = "unsubscribeTokens"

Doc = dict[str, Any]

INDEXES: dict[str, list[IndexModel]] = {
    USERS: [
        IndexModel([("email", ASCENDING)], name="email_unique", unique=True),
        IndexModel(
            [("name", TEXT), ("skills", TEXT), ("bio", TEXT)],
            name="profile_text",
        ),
        IndexModel([("skills", ASCENDING)], name="skills"),
    ],
    MESSAGES: [
        # From the design; serves history on MongoDB.
        IndexModel([("conversationId", ASCENDING), ("createdAt", DESCENDING)], name="conv_created"),
        IndexModel([("fromUserId", ASCENDING), ("toUserId", ASCENDING)], name="from_to"),
        # Single-field: serves history on the embedded store too.
        IndexModel([("conversationId", ASCENDING)], name="conv"),
        # The two per-user streams that `sync` reads (see chatd/store.py). Unique,
        # so two writers can never take the same position.
        IndexModel([("inKey", ASCENDING)], name="in_key", unique=True),
        IndexModel([("outKey", ASCENDING)], name="out_key", unique=True),
        # Idempotent retries: one message per (sender, tempId).
        IndexModel([("dedupKey", ASCENDING)], name="dedup_key", unique=True),
    ],
    CONNECTION_REQUESTS: [
        IndexModel([("toUserId", ASCENDING), ("fromUserId", ASCENDING)], name="to_from"),
        IndexModel([("pairKey", ASCENDING)], name="pair_key"),
        IndexModel([("fromUserId", ASCENDING)], name="from"),
        IndexModel([("toUserId", ASCENDING)], name="to"),
    ],
    PAYMENTS: [
        IndexModel([("providerOrderId", ASCENDING)], name="provider_order_unique", unique=True),
        IndexModel([("userId", ASCENDING)], name="user"),
        # Our own order id: webhooks and the owner's view look orders up by it.
        IndexModel([("merchantOrderId", ASCENDING)], name="merchant_order_unique", unique=True),
        # Reconciliation reads the PENDING orders (single-field, see the module docstring).
        IndexModel([("status", ASCENDING)], name="status"),
        # Completed orders whose membership grant a crash interrupted (reconciliation).
        IndexModel([("grantPending", ASCENDING)], name="grant_pending"),
    ],
    READ_MARKS: [IndexModel([("userId", ASCENDING)], name="user")],
    REFRESH_TOKENS: [
        IndexModel([("tokenHash", ASCENDING)], name="token_hash_unique", unique=True),
        IndexModel([("familyId", ASCENDING)], name="family"),
        IndexModel([("userId", ASCENDING)], name="user"),
        # MongoDB deletes expired refresh tokens; restd checks expiresAt itself too.
        IndexModel([("expiresAt", ASCENDING)], name="expires_ttl", expireAfterSeconds=0),
    ],
    BLOCKS: [
        # "blocker>blocked": one block per direction; both users may block each other.
        IndexModel([("blockKey", ASCENDING)], name="block_key", unique=True),
        IndexModel([("pairKey", ASCENDING)], name="pair_key"),
        # Search hides blocked users in both directions.
        IndexModel([("blockerId", ASCENDING)], name="blocker"),
        IndexModel([("blockedId", ASCENDING)], name="blocked"),
    ],
    # _id is the idempotency key (unique by nature); kept long enough to outlive any
    # redelivery or retry of the same event.
    EMAIL_NOTIFICATIONS: [
        IndexModel([("userId", ASCENDING)], name="user"),
        IndexModel([("expiresAt", ASCENDING)], name="expires_ttl", expireAfterSeconds=0),
    ],
    DEAD_LETTERS: [IndexModel([("kind", ASCENDING)], name="kind")],
    # _id is the token's nonce; a used token is forgotten once it could no longer verify.
    UNSUBSCRIBE_TOKENS: [
        IndexModel([("expiresAt", ASCENDING)], name="expires_ttl", expireAfterSeconds=0)
    ],
}


def make_client(url: str, **kwargs: Any) -> AsyncMongoClient[Doc]:
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": 5000,
        "connectTimeoutMS": 3000,
        "tz_aware": True,
        "appname": "devconnect",
    }
    options.update(kwargs)
    return AsyncMongoClient(url, **options)


async def ensure_indexes(db: AsyncDatabase[Doc]) -> dict[str, list[str]]:
    """Create every index of the data model; safe to run again (create_index is idempotent)."""
    created: dict[str, list[str]] = {}
    for name, models in INDEXES.items():
        created[name] = await db[name].create_indexes(models)
    log.info("indexes ensured", extra={"collections": len(created)})
    return created


async def ensure_indexes_on_start(db: AsyncDatabase[Doc], attempts: int = 3) -> None:
    """What services run at start: ensure indexes, but never refuse to start over it.

    Creating indexes is `devconnect migrate`'s job; services repeat it so that a
    fresh database works at once. nx-27017 can answer "constraint failed" to an
    index it already has while another node writes heavily (seen in the
    rolling-restart test), so a service retries, then starts with what exists.
    """
    for attempt in range(1, attempts + 1):
        try:
            await ensure_indexes(db)
            return
        except OperationFailure as exc:
            log.warning("ensuring indexes failed (attempt %d/%d): %s", attempt, attempts, exc)
            await asyncio.sleep(0.2 * attempt)
    log.error("starting without confirming indexes; run `devconnect migrate`")


async def ping(db: AsyncDatabase[Doc]) -> None:
    await db.command("ping")
