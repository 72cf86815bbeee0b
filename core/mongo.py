"""MongoDB access: the client, collection names and the indexes of the data model.

Production runs against MongoDB by URL; development and tests against the
embedded nx-27017 server. Both are reached through ``pymongo.AsyncMongoClient``
(Motor reached end of life in May 2026; its maintainers point to this API).

Hot queries use single-field indexes on purpose: nx-27017 does not serve a query
from the prefix of a compound index (see docs/embedded-store.md), so
each stream key below packs the user id and the position into one string.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, TEXT, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

log = logging.getLogger(__name__)

USERS = "users"
MESSAGES = "messages"
CONNECTION_REQUESTS = "connectionRequests"
PAYMENTS = "payments"
READ_MARKS = "readMarks"
REFRESH_TOKENS = "refreshTokens"
BLOCKS = "blocks"
# Email (workers/email.py): one document per notification, keyed by its idempotency
# key; the mails given up on; the unsubscribe tokens already used (domain/unsubscribe.py).
EMAIL_NOTIFICATIONS = "emailNotifications"
DEAD_LETTERS = "deadLetters"
UNSUBSCRIBE_TOKENS = "unsubscribeTokens"
# Maintained by chatd beside the messages (core/inbox.py): one summary per pair, and
# one unread total per user, so no connect or list ever counts messages.
CONVERSATIONS = "conversations"
UNREAD_COUNTS = "unreadCounts"
# Each user's connections as one document keyed by the user, a cache of
# connectionRequests that sockets opening together read in one $in (core/relations.py).
CONTACT_LISTS = "contactLists"
# What the feed showed and what came of it: the deployment's own training data.
FEED_EVENTS = "feedEvents"
FEED_EVENTS_TTL_S = 180 * 24 * 3600
# The learned ranker's models (domain/feed/registry.py): _id is the version (1, 2, ...).
FEED_MODELS = "feedModels"
# Data migrations already applied (core/migrations.py), by name.
MIGRATIONS = "migrations"

Doc = dict[str, Any]

INDEXES: dict[str, list[IndexModel]] = {
    USERS: [
        IndexModel([("email", ASCENDING)], name="email_unique", unique=True),
        IndexModel(
            [("name", TEXT), ("skills", TEXT), ("bio", TEXT)],
            name="profile_text",
        ),
        IndexModel([("skills", ASCENDING)], name="skills"),
        # The feed's location pool reads users by their exact location text.
        IndexModel([("location", ASCENDING)], name="feed_location"),
    ],
    MESSAGES: [
        # From the design; serves history on MongoDB.
        IndexModel([("conversationId", ASCENDING), ("createdAt", DESCENDING)], name="conv_created"),
        # Single-field: serves history on the embedded store too.
        IndexModel([("conversationId", ASCENDING)], name="conv"),
        # The two per-user streams that `sync` reads (see chatd/store.py). Unique,
        # so two writers can never take the same position.
        IndexModel([("inKey", ASCENDING)], name="in_key", unique=True),
        IndexModel([("outKey", ASCENDING)], name="out_key", unique=True),
        # Idempotent retries: one message per (sender, tempId).
        IndexModel([("dedupKey", ASCENDING)], name="dedup_key", unique=True),
        # "<to>|<conversation>|<id>" while unread: a conversation's unread messages
        # are one index range (core/inbox.py). Absent once read.
        IndexModel([("unreadKey", ASCENDING)], name="unread_key", sparse=True),
    ],
    # A user's conversations, newest first, one range per side (core/inbox.py).
    CONVERSATIONS: [
        IndexModel([("sort0", ASCENDING)], name="sort0"),
        IndexModel([("sort1", ASCENDING)], name="sort1"),
    ],
    # domain/feed/events.py: kept FEED_EVENTS_TTL_S; read by user (one user's
    # impressions and outcomes) and by time (a training window).
    FEED_EVENTS: [
        IndexModel([("at", ASCENDING)], name="at_ttl", expireAfterSeconds=FEED_EVENTS_TTL_S),
        IndexModel([("userId", ASCENDING)], name="user"),
    ],
    # The served model is the promoted one promoted last: restd's periodic check
    # reads the (few) promoted documents by status.
    FEED_MODELS: [IndexModel([("status", ASCENDING)], name="status")],
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

# Indexes an earlier release created and no query uses: dropped where found (by their
# fields: the embedded store names indexes itself), since every index costs every
# insert. Nothing ever queried messages by sender and recipient.
RETIRED_INDEXES: dict[str, list[tuple[str, ...]]] = {MESSAGES: [("fromUserId", "toUserId")]}


def make_client(url: str, **kwargs: Any) -> AsyncMongoClient[Doc]:
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": 5000,
        "connectTimeoutMS": 3000,
        "tz_aware": True,
        "appname": "devconnect",
    }
    options.update(kwargs)
    return AsyncMongoClient(url, **options)


# -- ensuring indexes ---------------------------------------------------------------
# What ensure_indexes created, one document per collection and index name with its
# key specification. nx-27017 keeps text indexes in SQLite FTS5 tables and never
# lists them, so there listIndexes alone cannot tell whether a text index exists;
# this record can. On MongoDB, which lists them, it is only a second opinion.
SCHEMA_INDEXES = "schemaIndexes"

# MongoDB's answers when an index with that key or that name exists in another form
# (IndexAlreadyExists, IndexOptionsConflict, IndexKeySpecsConflict): it exists, so a
# migration reports it and goes on rather than refusing to start the stack.
_INDEX_EXISTS_CODES = frozenset({68, 85, 86})


def _direction(value: Any) -> Any:
    # MongoDB may list 1 as 1.0; "text", "2dsphere" and "hashed" stay strings.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return int(value) if number and float(value).is_integer() else value


@dataclass(frozen=True)
class _KeySpec:
    """An index as comparable across servers, by key and uniqueness.

    Names cannot be compared: nx-27017 renames every index it lists
    (``idx_<collection>_<field>``).
    """

    keys: tuple[tuple[str, Any], ...]  # the fields other than text ones, in order
    text: frozenset[str]  # a text index's fields; empty for any other index
    unique: bool

    @classmethod
    def of(cls, key: Any, unique: Any = False, weights: Any = None) -> _KeySpec:
        pairs = list(key.items()) if isinstance(key, Mapping) else [tuple(p) for p in key]
        keys: list[tuple[str, Any]] = []
        text: set[str] = set()
        for field, direction in pairs:
            if field in ("_fts", "_ftsx"):
                # MongoDB lists a text index as {_fts: "text", _ftsx: 1}, its fields in weights.
                text.update(str(f) for f in (weights or {}))
            elif direction == TEXT:
                text.add(str(field))
            else:
                keys.append((str(field), _direction(direction)))
        return cls(tuple(keys), frozenset(text), bool(unique))

    def fields(self) -> list[str]:
        return [field for field, _ in self.keys]


def _present(want: _KeySpec, listed: list[_KeySpec], recorded: set[_KeySpec]) -> bool:
    if want.text:
        # nx-27017 hides text indexes, so our record counts as much as the listing.
        listed_text = any(s.text == want.text and s.keys == want.keys for s in listed)
        return listed_text or want in recorded
    if want in listed:
        return True
    # nx-27017 lists every key as ascending ({a: 1, b: -1} comes back as {a: 1, b: 1}),
    # so an index we recorded counts when one with the same fields is listed.
    return want in recorded and any(
        s.fields() == want.fields() and s.unique == want.unique and not s.text for s in listed
    )


async def _recorded(db: AsyncDatabase[Doc]) -> dict[str, set[_KeySpec]]:
    found: dict[str, set[_KeySpec]] = {}
    async for doc in db[SCHEMA_INDEXES].find({}):
        try:
            spec = _KeySpec.of(doc["key"], doc.get("unique", False))
            found.setdefault(str(doc["collection"]), set()).add(spec)
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed %s record: %r", SCHEMA_INDEXES, doc.get("_id"))
    return found


async def _record(
    db: AsyncDatabase[Doc], collection: str, index: Doc, *, assumed: bool = False
) -> None:
    record = {
        "collection": collection,
        "name": index["name"],
        # Pairs, not a document: key order matters and "$**" is no field name.
        "key": [[field, direction] for field, direction in index["key"].items()],
        "unique": bool(index.get("unique", False)),
        # True when the server would not create it and it was taken to exist (see below).
        "assumed": assumed,
        "recordedAt": datetime.now(UTC),
    }
    # Two services starting at once may record the same index; either record will do.
    with contextlib.suppress(DuplicateKeyError):
        await db[SCHEMA_INDEXES].update_one(
            {"_id": f"{collection}.{index['name']}"}, {"$set": record}, upsert=True
        )


async def _ensure_collection_indexes(
    db: AsyncDatabase[Doc], name: str, models: list[IndexModel], recorded: set[_KeySpec]
) -> list[str]:
    coll = db[name]
    existing = [ix async for ix in await coll.list_indexes()]
    for ix in existing:
        if tuple(ix["key"]) in RETIRED_INDEXES.get(name, []):
            await coll.drop_index(ix["name"])
            log.info("retired index dropped", extra={"collection": name, "index": ix["name"]})
    listed = [_KeySpec.of(ix["key"], ix.get("unique", False), ix.get("weights")) for ix in existing]
    created: list[str] = []
    for model in models:
        index: Doc = dict(model.document)
        want = _KeySpec.of(index["key"], index.get("unique", False))
        if _present(want, listed, recorded):
            continue
        options = {k: v for k, v in index.items() if k != "key"}
        try:
            await coll.create_index(list(index["key"].items()), **options)
        except OperationFailure as exc:
            populated = want.text and await coll.find_one({}) is not None
            if populated and "constraint failed" in str(exc):
                # nx-27017 rebuilds a text index's FTS5 table from the documents and
                # fails on the rows it already holds: with documents there, the index
                # exists. Recorded, so this is said once and not on every start.
                log.warning(
                    "text index %s.%s: the server answered %r with documents present; "
                    "taking it as existing",
                    name,
                    index["name"],
                    str(exc.details.get("errmsg") if exc.details else exc),
                )
                await _record(db, name, index, assumed=True)
                continue
            if exc.code in _INDEX_EXISTS_CODES:
                log.warning(
                    "index %s.%s exists in another form and was left as it is: %s",
                    name,
                    index["name"],
                    exc,
                )
                continue
            raise
        await _record(db, name, index)
        created.append(str(index["name"]))
    return created


async def ensure_indexes(db: AsyncDatabase[Doc]) -> dict[str, list[str]]:
    """Create the indexes of the data model that are missing; returns what it created.

    Idempotent on a populated database: it compares INDEXES with what the server
    lists (and, for text indexes, with its own record) by key specification and
    makes one create_index call per missing index. Every collection of INDEXES is
    a key of the result, with the names created there (none on a second run).
    """
    recorded = await _recorded(db)
    created: dict[str, list[str]] = {}
    for name, models in INDEXES.items():
        created[name] = await _ensure_collection_indexes(
            db, name, models, recorded.get(name, set())
        )
    log.info(
        "indexes ensured",
        extra={
            "collections": len(created),
            "indexesCreated": sum(len(names) for names in created.values()),
        },
    )
    return created


async def ensure_indexes_on_start(db: AsyncDatabase[Doc], attempts: int = 3) -> None:
    """What services run at start: ensure indexes, but never refuse to start over it.

    Creating indexes is `devconnect migrate`'s job; services repeat it so that a
    fresh database works at once, and on a populated one it creates nothing (see
    ensure_indexes). A failure other than an existing index (say the server is busy)
    is retried, then the service starts with what exists.
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
