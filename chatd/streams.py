"""The reads of the per-user message streams: stream heads and the runs behind ``sync``.

A stream is a user's inbound (``inKey``) or outbound (``outKey``) positions,
gap-free once every write has settled (see chatd/store.py). A read returns a
contiguous run: it steps over tombstones, stops before a fresh hole (a position
still being written, which may yet become visible), and skips a hole older
than the persist timeout (its write failed half way; its sender got an error,
not an ack).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pymongo.asynchronous.collection import AsyncCollection

from chatd.stored import StoredMessage, _ms
from core import messages
from core.mongo import Doc
from proto.cursor import Cursor


@dataclass
class StreamRead:
    messages: list[StoredMessage]
    cursor: Cursor
    has_more: bool


class StreamReader:
    """Reads the streams of the messages collection (no cache: always the store's view)."""

    def __init__(self, collection: AsyncCollection[Doc], persist_timeout_s: float) -> None:
        self.messages = collection
        self.persist_timeout_s = persist_timeout_s

    async def max_seq(self, field_name: str, user_id: str) -> int:
        """The last position of the user's stream ``field_name`` (0 when empty)."""
        doc = await self.messages.find_one(
            {field_name: {"$gt": f"{user_id}:", "$lt": f"{user_id};"}},
            projection={field_name: 1},
            sort=[(field_name, -1)],
        )
        return messages.seq_of(doc[field_name]) if doc else 0

    async def read_streams(self, user_id: str, after: Cursor, limit: int) -> StreamRead:
        """Messages after ``after`` in both streams, each stream contiguous, merged by time."""
        inbound, in_next, in_more = await self.read_stream("inKey", user_id, after.inbound, limit)
        outbound, out_next, out_more = await self.read_stream(
            "outKey", user_id, after.outbound, limit
        )
        merged: list[tuple[StoredMessage, bool]] = []
        i = j = 0
        while len(merged) < limit and (i < len(inbound) or j < len(outbound)):
            take_in = j >= len(outbound) or (
                i < len(inbound)
                and (inbound[i].created_at_ms, inbound[i].message_id)
                <= (outbound[j].created_at_ms, outbound[j].message_id)
            )
            if take_in:
                merged.append((inbound[i], True))
                i += 1
            else:
                merged.append((outbound[j], False))
                j += 1
        # The cursor covers what is returned, plus any tombstones just before what is not.
        in_cursor = inbound[i - 1].in_seq if i else after.inbound
        out_cursor = outbound[j - 1].out_seq if j else after.outbound
        if i == len(inbound):
            in_cursor = max(in_cursor, in_next)
        if j == len(outbound):
            out_cursor = max(out_cursor, out_next)
        has_more = i < len(inbound) or j < len(outbound) or in_more or out_more
        # A message to oneself is impossible, so no message appears in both lists.
        return StreamRead([m for m, _ in merged], Cursor(in_cursor, out_cursor), has_more)

    async def read_stream(
        self, field_name: str, user_id: str, after: int, limit: int
    ) -> tuple[list[StoredMessage], int, bool]:
        """A contiguous run after ``after``: (messages, last position covered, more beyond)."""
        docs = await (
            self.messages.find(
                {field_name: {"$gt": messages.stream_key(user_id, after), "$lt": f"{user_id};"}}
            )
            .sort(field_name, 1)
            .limit(limit + 1)
            .to_list()
        )
        now_ms = int(time.time() * 1000)
        old_enough_ms = now_ms - int(self.persist_timeout_s * 1000)
        expected = after + 1
        out: list[StoredMessage] = []
        position = after
        stopped_at_gap = False
        for doc in docs:
            seq = messages.seq_of(doc[field_name])
            if seq > expected and _ms(doc["createdAt"]) > old_enough_ms:
                stopped_at_gap = True  # a position still being written: stop before it
                break
            position = seq
            expected = seq + 1
            if doc.get("tombstone"):
                continue
            if len(out) == limit:
                return out, out[-1].in_seq if field_name == "inKey" else out[-1].out_seq, True
            out.append(StoredMessage.from_doc(doc))
        # A fresh gap is not "more": the client is as far as it can be until it fills.
        return out, position, len(docs) > limit and not stopped_at_gap
