"""The inbox's flush stretches under load and comes back when it passes, counting all."""

from __future__ import annotations

import time

from bson import ObjectId

from chatd.inbox import Inbox
from core.ids import conversation_id
from core.inbox import InboxMessage, slot
from core.mongo import CONVERSATIONS, UNREAD_COUNTS, ensure_indexes
from core.runtime import open_stores
from core.settings import Settings

PAIRS = 50


def _messages(count: int, users: list[tuple[str, str]]) -> list[InboxMessage]:
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(count):
        sender, recipient = users[i % len(users)]
        out.append(
            InboxMessage(
                ObjectId(),
                conversation_id(sender, recipient),
                sender,
                recipient,
                f"message {i}",
                now_ms + i,
            )
        )
    return out


async def test_a_burst_stretches_the_flush_and_a_trickle_brings_it_back(
    settings: Settings,
) -> None:
    stores = open_stores(settings)
    await ensure_indexes(stores.db)
    pairs = [(str(ObjectId()), str(ObjectId())) for _ in range(PAIRS)]
    inbox = Inbox(stores.db, flush_interval_s=0.02, busy_interval_s=0.5)
    inbox.start()
    try:
        assert inbox.interval_s == 0.02
        # 1,000 messages at once: far above the busy rate.
        inbox.record(_messages(1000, pairs))
        await inbox.flushed()
        assert inbox.interval_s == 0.5
        # Readers still get every count at once: flushed() hurries the long wait.
        inbox.record(_messages(PAIRS, pairs))
        await inbox.flushed()
        for sender, recipient in pairs[:5]:
            assert await inbox.unread_total(recipient) == 1000 // PAIRS + 1
            assert await inbox.unread_total(sender) == 0
        conv = conversation_id(*pairs[0])
        summary = await stores.db[CONVERSATIONS].find_one({"_id": conv})
        assert summary is not None
        assert summary[f"last{slot(conv, pairs[0][0])}"]["text"] == "message 0"  # the newest
        # A trickle: back to the short interval.
        inbox.record(_messages(1, pairs))
        await inbox.flushed()
        assert inbox.interval_s == 0.02
        assert await stores.db[UNREAD_COUNTS].count_documents({}) == PAIRS
    finally:
        await inbox.close()
        await stores.mongo.drop_database(settings.mongo_db)
        await stores.close()
