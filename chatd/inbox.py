"""chatd's side of the conversation summaries and unread counters (see core/inbox.py).

The store hands every committed batch to ``Inbox.record``; a flush loop turns
whatever accumulated into one conversations update and one unread-counts
update per conversation and recipient (two ``bulk_write`` calls in flight
together), off the path of the ack, at most every FLUSH_INTERVAL_S (sooner
when a read receipt needs the counts). Under load the interval stretches to
``busy_interval_s``: when a flush's messages came at BUSY_RATE a second or
more (counted from the first of them), the next flush waits the longer interval, so that more
messages of one conversation share one update (every update costs the store
the same, however many it counts); the first flush at a lower rate goes back to
the short interval. Readers on
the node (hello's unread total, read receipts) hurry it either way.

Counters move by deltas, which commute, so the order in which two nodes and a
reader apply them does not matter. A read subtracts exactly what it marked
read (``update_many`` on the unread index range reports it). What can drift:
a node killed between committing messages and flushing their counts leaves
those counts out (an undercount, clamped at zero when read); ``devconnect
migrate --recount-unread`` recomputes every counter from the unread index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiodataloader import DataLoader
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from core.inbox import InboxMessage, commit_updates, slot, unread_range
from core.mongo import CONVERSATIONS, MESSAGES, READ_MARKS, UNREAD_COUNTS, Doc

log = logging.getLogger(__name__)

# Messages taken into one flush (the updates are per conversation and recipient, fewer).
FLUSH_MAX = 2000
# A flush waits this long after the first message it will carry, so that it carries
# many: each bulk_write costs the store and the driver a fixed overhead per call, which
# a flush after every commit paid hundreds of times a second. A read receipt does not
# wait for it (it hurries the flush).
FLUSH_INTERVAL_S = 0.05
# Under load: the longer wait, and the flush size from which the load counts as such.
BUSY_FLUSH_INTERVAL_S = 1.0
BUSY_RATE = 500.0  # messages a second
# Updates per bulk write (see _flush).
WRITE_CHUNK = 16
# More than this many messages waiting for a store that does not answer: shed (counted).
PENDING_MAX = 200_000
# A read waits at most this long for this node's counts to be flushed first, so that
# it subtracts from counts that already hold what it read.
READ_FLUSH_WAIT_S = 1.0
CLOSE_TIMEOUT_S = 5.0


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class Inbox:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        on_error: Callable[[str], None] = lambda what: None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        busy_interval_s: float = BUSY_FLUSH_INTERVAL_S,
    ) -> None:
        self.db = db
        self.flush_interval_s = flush_interval_s
        self.busy_interval_s = max(busy_interval_s, flush_interval_s)
        self._interval_s = flush_interval_s
        self._first_at = 0.0  # loop time of the first message now pending
        self.on_error = on_error
        self._pending: list[InboxMessage] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._hurry = asyncio.Event()
        self._totals: DataLoader[str, int] | None = None

    @property
    def interval_s(self) -> float:
        """How long the next flush lets its batch grow: short, or longer under load."""
        return self._interval_s

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def close(self) -> None:
        """Flush what is pending (bounded), then stop."""
        self._closing = True
        self._hurry.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.warning("inbox: %d message counts not flushed at close", len(self._pending))
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def flushed(self) -> None:
        """Wait until every message recorded so far is counted (or its flush failed)."""
        if self._pending or not self._idle.is_set():
            self._hurry.set()
        while self._pending or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    # -- writes from the commit ---------------------------------------------------------

    def record(self, messages: list[InboxMessage]) -> None:
        """Committed messages to count; never blocks, never raises."""
        if len(self._pending) + len(messages) > PENDING_MAX:
            self.on_error("inbox-shed")
            log.warning("inbox: store behind, %d message counts shed", len(messages))
            return
        if not self._pending:
            self._first_at = asyncio.get_running_loop().time()
        self._pending.extend(messages)
        self._idle.clear()
        self._wake.set()

    async def _flush_loop(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._pending) < FLUSH_MAX and not self._closing:
                # Let the batch grow, unless a reader or close wants it now.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self._interval_s)
            self._hurry.clear()
            now = asyncio.get_running_loop().time()
            window = max(now - self._first_at, self.flush_interval_s)
            batch = self._pending[:FLUSH_MAX]
            del self._pending[:FLUSH_MAX]
            busy = len(batch) >= BUSY_RATE * window
            self._interval_s = self.busy_interval_s if busy else self.flush_interval_s
            self._first_at = now  # what stays pending waits from here
            try:
                await self._flush(batch)
            except Exception:  # the loop must survive anything
                self.on_error("inbox-flush")
                log.exception("inbox: flushing %d message counts failed", len(batch))

    async def _flush(self, batch: list[InboxMessage]) -> None:
        conversations, counts = commit_updates(batch)
        # In small writes, one after another: the embedded store serves one request
        # at a time, and a commit of messages queued behind one large bulk write of
        # counters waited for all of it (a latency tail, measured with chatbench).
        writes = [
            (self.db[name], ops[start : start + WRITE_CHUNK])
            for name, ops in ((CONVERSATIONS, conversations), (UNREAD_COUNTS, counts))
            for start in range(0, len(ops), WRITE_CHUNK)
        ]
        for collection, chunk in writes:
            try:
                await collection.bulk_write(chunk, ordered=False)
            except PyMongoError as exc:
                # Unknown how much applied: retrying could count twice. These counts
                # may be short until a recount (see the module docstring).
                self.on_error("inbox-flush")
                log.warning("inbox: counting %d updates failed: %s", len(chunk), exc)

    # -- reads and read receipts ----------------------------------------------------------

    async def unread_total(self, user_id: str) -> int:
        """The user's unread total, with this node's counts flushed first (at once
        when nothing is pending; otherwise the pending flush is hurried)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flushed(), READ_FLUSH_WAIT_S)
        if self._totals is None:
            # Created on first use, inside the running loop the loader schedules on.
            self._totals = DataLoader(self._load_totals, cache=False, max_batch_size=500)
        return await self._totals.load(user_id)

    async def _load_totals(self, user_ids: list[str]) -> list[int]:
        """Every total asked for in the same loop turn (sockets opening together), in
        one read by primary key (which the embedded store serves from its index)."""
        wanted = list(dict.fromkeys(user_ids))
        found = {
            doc["_id"]: max(0, int(doc.get("total") or 0))
            async for doc in self.db[UNREAD_COUNTS].find(
                {"_id": {"$in": wanted}}, projection={"total": 1}
            )
        }
        return [found.get(u, 0) for u in user_ids]

    async def mark_read(self, user_id: str, conv_id: str, up_to: ObjectId) -> tuple[int, int]:
        """Mark the user's messages of the conversation up to ``up_to`` read.

        Returns (read at, epoch ms; the user's unread total after it). Costs what
        the conversation holds unread, never what it holds in all.
        """
        now = datetime.now(UTC)
        await self._move_watermark(user_id, conv_id, up_to, now)
        result = await self.db[MESSAGES].update_many(
            unread_range(user_id, conv_id, up_to),
            {"$set": {"status": "read", "readAt": now}, "$unset": {"unreadKey": ""}},
        )
        newly_read = result.modified_count
        if not newly_read:
            return _ms(now), await self.unread_total(user_id)
        # Our own counts of what was just read must be in before we subtract.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flushed(), READ_FLUSH_WAIT_S)
        side = slot(conv_id, user_id)
        await self.db[CONVERSATIONS].update_one(
            {"_id": conv_id}, {"$inc": {f"unread{side}": -newly_read}}
        )
        counts = await self.db[UNREAD_COUNTS].find_one_and_update(
            {"_id": user_id},
            {"$inc": {"total": -newly_read}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return _ms(now), max(0, int((counts or {}).get("total") or 0))

    async def _move_watermark(
        self, user_id: str, conv_id: str, up_to: ObjectId, now: datetime
    ) -> None:
        mark_id = f"{user_id}|{conv_id}"
        marks = self.db[READ_MARKS]
        current = await marks.find_one({"_id": mark_id}, projection={"upToMessageId": 1})
        if current is None or current.get("upToMessageId", ObjectId("0" * 24)) < up_to:
            await marks.update_one(
                {"_id": mark_id},
                {
                    "$set": {
                        "userId": user_id,
                        "conversationId": conv_id,
                        "upToMessageId": up_to,
                        "readAt": now,
                    }
                },
                upsert=True,
            )

    async def message_in_conversation(self, message_id: ObjectId, conv_id: str) -> bool:
        doc = await self.db[MESSAGES].find_one(
            {"_id": message_id}, projection={"conversationId": 1}
        )
        return doc is not None and doc.get("conversationId") == conv_id
