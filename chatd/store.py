"""Durable messages: group commit and gap-free stream positions (the writer).

The reads behind ``sync`` are in chatd/streams.py, the types in chatd/stored.py
and one commit's working data in chatd/batch.py; this module re-exports the
names other modules import from it (``__all__``).

Every message occupies one position in two per-user streams: the recipient's
inbound stream (``inKey = "<to>:<seq>"``) and the sender's outbound stream
(``outKey = "<from>:<seq>"``), both unique indexes (see proto/cursor.py).

Why positions are gap-free and visible in commit order (a cursor assigned before the
commit could otherwise become visible out of order, and a reader past it would skip
the message still being written):
- one writer loop per node assigns positions inside each batch and commits
  batches one at a time, so on a node position n+1 is never committed before n;
- the next position of a user comes from what this node has seen committed,
  and the unique indexes arbitrate between nodes: a node holding a stale head
  gets a duplicate-key error, reloads the head and retries the message, so no
  node writes n+1 before it has seen n committed;
- a position allocated but not used (the message turned out to be a retry of
  one already stored, or lost a race to another node) is filled with a
  tombstone, which ``sync`` steps over;
- a hole that still remains (a write that failed half way) is skipped by
  readers once it is older than the persist timeout: by then its sender has
  an error, not an ack.

The batch window adapts to load: the loop takes everything queued while the
previous batch was being committed, and starts a commit no sooner than
``min_interval_s`` after the previous one started. An idle server therefore
commits a lone message at once, while a busy one commits at most every few
milliseconds in batches, which is what the embedded store needs: a commit
costs it about as much for one document as for ten (docs/embedded-store.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from chatd.batch import Outcome, Pending, duplicate_field, written_message
from chatd.heads import StreamHeads
from chatd.inbox import Inbox
from chatd.stored import (
    _LRU,
    PersistError,
    Skipped,
    StoredMessage,
    TempIdReused,
    _advance,
    _as_duplicate,
    _ms,
)
from chatd.streams import StreamRead, StreamReader
from core import messages
from core.heads import Heads
from core.inbox import InboxMessage
from core.mongo import MESSAGES, Doc
from proto.cursor import Cursor

__all__ = [
    "CommitListener",
    "MessageStore",
    "PersistError",
    "Skipped",
    "StoredMessage",
    "StreamRead",
    "TempIdReused",
]

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 20
DEDUP_CACHE_SIZE = 100_000
HEAD_CACHE_SIZE = 200_000
TOMBSTONE_PREFIX = "~tomb:"  # sorts after every "<24 hex>:" stream key


class CommitListener(Protocol):
    """Who hears every commit, in commit order (the node's fan-out)."""

    def fanout(self, stored: list[StoredMessage], skipped: list[Skipped]) -> None: ...


class _NoListener:
    def fanout(self, stored: list[StoredMessage], skipped: list[Skipped]) -> None:
        return None


class MessageStore:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        inbox: Inbox,
        *,
        batch_max: int = 200,
        persist_timeout_s: float = 5.0,
        min_interval_s: float = 0.004,
        observe_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.db = db
        self.inbox = inbox
        self.messages = db[MESSAGES]
        self.batch_max = batch_max
        self.persist_timeout_s = persist_timeout_s
        self.streams = StreamReader(self.messages, persist_timeout_s)
        self.min_interval_s = min_interval_s
        self.observe_batch = observe_batch
        self.listener: CommitListener = _NoListener()
        # Where hello reads committed heads; None: from the store (chatd/heads.py).
        self.heads: StreamHeads | None = None
        self._queue: list[Pending] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Last committed position per user and stream, as this node has seen it.
        self._heads_in: _LRU = _LRU(HEAD_CACHE_SIZE)
        self._heads_out: _LRU = _LRU(HEAD_CACHE_SIZE)
        # Last position committed *and fanned out*: updated in the same step as the
        # fan-out, so a session that registers right after reading it misses nothing.
        self._committed_in: _LRU = _LRU(HEAD_CACHE_SIZE)
        self._committed_out: _LRU = _LRU(HEAD_CACHE_SIZE)
        # (sender, tempId) -> (recipient, the stored message or the future of the one
        # in flight). The recipient tells a retry from a reuse for someone else.
        self._dedup: _LRU = _LRU(DEDUP_CACHE_SIZE)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def close(self) -> None:
        """Finish everything accepted so far, then stop the writer."""
        self._closing = True
        self._wake.set()
        if self._writer:
            await self._writer

    async def flushed(self) -> None:
        """Wait until every message accepted so far has been committed or failed."""
        while self._queue or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- writes -------------------------------------------------------------------------

    def attach(self, listener: CommitListener) -> None:
        """Hand every commit to ``listener`` (chatd/app.py wires the node here)."""
        self.listener = listener

    def keep_heads(self, heads: StreamHeads) -> None:
        """Record every commit's heads there before fanning it out, and read hello's
        heads from there (chatd/app.py, unless ``stream_heads_in_redis`` is off)."""
        self.heads = heads

    async def submit(
        self,
        from_user_id: str,
        to_user_id: str,
        temp_id: str,
        text: str,
        received_at: float,
        origin_session: str = "",
    ) -> StoredMessage:
        """Persist one message; resolves after it is durable and has been fanned out."""
        dedup_key = f"{from_user_id}:{temp_id}"
        known = self._dedup.get(dedup_key)
        if known is not None:
            recipient, entry = known
            if recipient != to_user_id:
                raise TempIdReused(temp_id)
            if isinstance(entry, StoredMessage):
                return _as_duplicate(entry)
            return _as_duplicate(await asyncio.shield(entry))
        if self._closing:
            raise PersistError("server is draining")
        future: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        self._dedup.put(dedup_key, (to_user_id, future))
        self._queue.append(
            Pending(from_user_id, to_user_id, temp_id, text, received_at, origin_session, future)
        )
        self._wake.set()
        try:
            stored = await asyncio.shield(future)
        except (PersistError, TempIdReused):
            if self._dedup.get(dedup_key, (None, None))[1] is future:
                del self._dedup[dedup_key]
            raise
        # Only what a duplicate ack needs: not the text, not the wire dict.
        self._dedup.put(dedup_key, (to_user_id, _as_duplicate(stored, keep_text=False)))
        return stored

    async def _write_loop(self) -> None:
        last_start = 0.0
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._idle.clear()
            wait_s = last_start + self.min_interval_s - time.perf_counter()
            if wait_s > 0 and len(self._queue) < self.batch_max and not self._closing:
                await asyncio.sleep(wait_s)  # busy: let the batch grow a little
            batch = self._queue[: self.batch_max]
            del self._queue[: self.batch_max]
            started = last_start = time.perf_counter()
            try:
                await self._commit(batch)
            except Exception:  # the loop must survive anything; each sender hears of it
                log.exception("persist batch failed unexpectedly")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(PersistError("internal"))
            if self.observe_batch:
                self.observe_batch(len(batch), time.perf_counter() - started)

    async def _commit(self, batch: list[Pending]) -> None:
        """One group commit: positions, one insert, then deliver and answer each sender."""
        # Membership tests, not set difference with keys(): that would walk every cached head.
        await self._load_heads(
            {p.to_user_id for p in batch if p.to_user_id not in self._heads_in},
            {p.from_user_id for p in batch if p.from_user_id not in self._heads_out},
        )
        now = datetime.now(UTC)
        now_ms = _ms(now)
        docs, positions = self._build_documents(batch, now)
        failed = await self._insert(batch, docs)
        if failed is None:
            return
        outcome = Outcome()
        for index, (item, doc) in enumerate(zip(batch, docs, strict=True)):
            err = failed.get(index)
            if err is None:
                message = written_message(item, doc, positions[index], now_ms)
                outcome.stored.append(message)
                outcome.results.append((item, message))
            else:
                await self._classify_failure(item, doc, err, outcome)
        await self._settle(outcome)

    def _build_documents(
        self, batch: list[Pending], now: datetime
    ) -> tuple[list[Doc], list[tuple[int, int]]]:
        """Allocate each message's next inbound and outbound positions and build its document."""
        docs: list[Doc] = []
        positions: list[tuple[int, int]] = []
        for item in batch:
            in_seq = self._heads_in[item.to_user_id] + 1
            out_seq = self._heads_out[item.from_user_id] + 1
            positions.append((in_seq, out_seq))
            self._heads_in.put(item.to_user_id, in_seq)
            self._heads_out.put(item.from_user_id, out_seq)
            docs.append(
                messages.new_document(
                    item.from_user_id,
                    item.to_user_id,
                    item.temp_id,
                    item.text,
                    now,
                    in_seq,
                    out_seq,
                )
            )
        return docs, positions

    async def _insert(
        self, batch: list[Pending], docs: list[Doc]
    ) -> dict[int, dict[str, Any]] | None:
        """Insert the batch: the write errors by index, or None when the whole write failed
        (then every sender has already been told)."""
        try:
            await self.messages.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            return {err["index"]: err for err in exc.details.get("writeErrors", [])}
        except PyMongoError as exc:
            log.warning("persist failed for a batch of %d: %s", len(batch), exc)
            self._forget_heads(batch)
            for item in batch:
                item.future.set_exception(PersistError(str(exc)))
            return None
        return {}

    async def _classify_failure(
        self, item: Pending, doc: Doc, err: dict[str, Any], outcome: Outcome
    ) -> None:
        """A message whose document was refused: a retry, a lost position, or an error."""
        # The positions this document took are now holes: fill them with tombstones.
        outcome.skipped += [
            Skipped(item.to_user_id, True, messages.seq_of(doc["inKey"])),
            Skipped(item.from_user_id, False, messages.seq_of(doc["outKey"])),
        ]
        which = duplicate_field(err)
        if which == "dedupKey":
            existing = await self.messages.find_one({"dedupKey": doc["dedupKey"]})
            if existing is None:
                outcome.results.append((item, PersistError("duplicate vanished")))
            elif existing.get("toUserId") != item.to_user_id:
                outcome.results.append((item, TempIdReused(item.temp_id)))
            else:
                outcome.results.append((item, _as_duplicate(StoredMessage.from_doc(existing))))
        elif which in ("inKey", "outKey") and item.conflicts < MAX_CONFLICT_RETRIES:
            # Another node took this position: reload that head, try again next batch.
            user = item.to_user_id if which == "inKey" else item.from_user_id
            heads = self._heads_in if which == "inKey" else self._heads_out
            heads.pop(user, None)
            item.conflicts += 1
            outcome.retry.append(item)
            # The taken position is not a hole: the other node's message is there.
            outcome.skipped = [
                s
                for s in outcome.skipped
                if not (
                    s.user_id == user
                    and s.inbound == (which == "inKey")
                    and s.seq == messages.seq_of(doc[which])
                )
            ]
        else:
            log.warning("persist failed for one message: %s", err.get("errmsg"))
            outcome.results.append((item, PersistError(str(err.get("errmsg")))))

    async def _settle(self, outcome: Outcome) -> None:
        """Fill the holes, requeue the retries, then persist, deliver, and ack, in that order."""
        stored, skipped = outcome.stored, outcome.skipped
        if skipped:
            skipped = await self._fill_holes(skipped)
        if outcome.retry:
            self._queue[:0] = outcome.retry
        if stored:
            self.inbox.record(
                [
                    InboxMessage(
                        ObjectId(m.message_id),
                        m.conversation_id,
                        m.from_user_id,
                        m.to_user_id,
                        m.text,
                        m.created_at_ms,
                    )
                    for m in stored
                ]
            )
        if self.heads is not None and (stored or skipped):
            # Before anyone hears of the commit, here or on another node (chatd/heads.py).
            await self.heads.record(_heads_of(stored, skipped))
        # Persist, then deliver, then ack.
        for message in stored:
            _advance(self._committed_in, message.to_user_id, message.in_seq)
            _advance(self._committed_out, message.from_user_id, message.out_seq)
        for hole in skipped:
            _advance(
                self._committed_in if hole.inbound else self._committed_out, hole.user_id, hole.seq
            )
        if stored or skipped:
            self.listener.fanout(stored, skipped)
        for item, result in outcome.results:
            if isinstance(result, Exception):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    async def _fill_holes(self, holes: list[Skipped]) -> list[Skipped]:
        """Tombstone unused positions; returns the ones actually filled.

        A position can turn out not to be a hole at all: when a retried message
        also lost its position to another node, the store names only one of the
        two duplicate keys. Such a position holds that node's real message, so
        it must not be reported as skipped (sockets would step over a message).
        """
        tombstones = []
        for hole in holes:
            filler = f"{TOMBSTONE_PREFIX}{ObjectId()}"
            key = messages.stream_key(hole.user_id, hole.seq)
            tombstones.append(
                {
                    "_id": ObjectId(),
                    "tombstone": True,
                    "createdAt": datetime.now(UTC),
                    "inKey": key if hole.inbound else filler,
                    "outKey": filler if hole.inbound else key,
                    "dedupKey": filler,
                }
            )
        try:
            await self.messages.insert_many(tombstones, ordered=False)
        except BulkWriteError as exc:
            refused = {err["index"] for err in exc.details.get("writeErrors", [])}
            for index in refused:  # that position is taken: our head for it is stale
                hole = holes[index]
                (self._heads_in if hole.inbound else self._heads_out).pop(hole.user_id, None)
            return [hole for index, hole in enumerate(holes) if index not in refused]
        except PyMongoError as exc:
            # Readers skip a hole older than the persist timeout; nothing is lost.
            log.warning("could not fill %d stream holes: %s", len(holes), exc)
            return []
        return holes

    def _forget_heads(self, batch: Iterable[Pending]) -> None:
        """After a failed write, what was committed is unknown: reload those heads."""
        for item in batch:
            self._heads_in.pop(item.to_user_id, None)
            self._heads_out.pop(item.from_user_id, None)

    async def _load_heads(self, inbound: set[str], outbound: set[str]) -> None:
        """Load unknown heads from the store, all queries in flight at once."""
        jobs = [("inKey", u, self._heads_in) for u in inbound]
        jobs += [("outKey", u, self._heads_out) for u in outbound]
        if not jobs:
            return
        seqs = await asyncio.gather(*(self.streams.max_seq(f, u) for f, u, _ in jobs))
        for (_, user, heads), seq in zip(jobs, seqs, strict=True):
            if user not in heads:
                heads.put(user, seq)

    async def committed_head(self, user_id: str) -> Cursor:
        """The user's last committed positions, from the recorded heads or the store.

        Register the session for live delivery, and subscribe to the user's
        channel, before reading it: a commit here or on another node after the
        read then reaches the session, and one before it is inside the cursor.
        """
        if self.heads is not None:
            seqs: tuple[int, int] | list[int] = await self.heads.read(user_id)
        else:
            seqs = await asyncio.gather(
                self.streams.max_seq("inKey", user_id), self.streams.max_seq("outKey", user_id)
            )
        for seq, committed, heads in zip(
            seqs,
            (self._committed_in, self._committed_out),
            (self._heads_in, self._heads_out),
            strict=True,
        ):
            # The writer may have advanced it meanwhile: never move it back.
            _advance(committed, user_id, seq)
            if user_id not in committed:
                committed.put(user_id, seq)  # zero: nothing committed yet
            # Nothing allocated here yet either: seed the writer's head, so a
            # connected user's first message needs no store read.
            if user_id not in heads:
                heads.put(user_id, seq)
        return Cursor(self._committed_in[user_id], self._committed_out[user_id])

    # -- reads (chatd/streams.py) ---------------------------------------------------------

    async def read_streams(self, user_id: str, after: Cursor, limit: int) -> StreamRead:
        """Messages after ``after`` in both streams, each stream contiguous, merged by time."""
        return await self.streams.read_streams(user_id, after, limit)


def _heads_of(stored: list[StoredMessage], skipped: list[Skipped]) -> Heads:
    """The highest position each user's streams reached in one commit."""
    heads: dict[str, list[int | None]] = {}
    for user, inbound, seq in [
        *((m.to_user_id, True, m.in_seq) for m in stored),
        *((m.from_user_id, False, m.out_seq) for m in stored),
        *((h.user_id, h.inbound, h.seq) for h in skipped),
    ]:
        entry = heads.setdefault(user, [None, None])
        index = 0 if inbound else 1
        entry[index] = max(entry[index] or 0, seq)
    return {user: (entry[0], entry[1]) for user, entry in heads.items()}
