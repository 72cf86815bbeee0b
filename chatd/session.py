"""One connection's state: its user, codec, cursor, and a bounded outgoing buffer.

Tornado-free: the transport module adapts a websocket to ``Transport``.

Live delivery keeps each stream contiguous per session. A message whose
position is the next one is sent at once; one that arrives ahead of a
missing position waits (bounded) while the session reads the missing part
from the store; one at or before the cursor was already seen and is dropped.
So the cursor in every frame is one the client can hand back to ``sync``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from chatd.stored import StoredMessage
from proto import frames
from proto.codec import Codec
from proto.cursor import Cursor
from proto.errors import CloseCode

if TYPE_CHECKING:
    from chatd.metrics import ChatMetrics

log = logging.getLogger(__name__)

CATCH_UP_DELAY_S = 0.2  # let deliveries that are merely late arrive before reading the store
MAX_HELD_PER_STREAM = 1000
# Live frames (connection events, presence, receipts) that arrive while the session is
# being opened wait for hello, then go out in order; more than this and it reconnects.
MAX_EARLY_FRAMES = 1000


class Transport(Protocol):
    def write_frame(self, data: bytes | str, binary: bool) -> None: ...

    def pending_writes(self) -> int: ...

    def keepalive_ping(self) -> None: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


CatchUp = Callable[["Session"], Awaitable[None]]


class Session:
    def __init__(
        self,
        user_id: str,
        codec: Codec,
        transport: Transport,
        *,
        out_buffer_max: int,
        shed_ratio: float,
        metrics: ChatMetrics,
        catch_up: CatchUp,
        token_issued_at_ms: int = 0,
        token_expires_at_s: int = 0,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.user_id = user_id
        # The access token this socket stands on: logout-all revokes tokens issued
        # up to a time, and the socket closes at expiry unless `auth` renews it.
        self.token_issued_at_ms = token_issued_at_ms
        self.token_expires_at_s = token_expires_at_s
        self.codec = codec
        self.transport = transport
        self.out_buffer_max = out_buffer_max
        self.shed_at = max(1, int(out_buffer_max * shed_ratio))
        self.metrics = metrics
        self._catch_up = catch_up
        self.cursor = Cursor()
        self.live = False  # False until hello is sent, and while a sync is being answered
        self.behind = False  # the last sync had more: live messages wait for the next sync
        self.closed = False
        self.heard = True  # a pong or a frame since the last keepalive ping (chatd/keepalive.py)
        self.greeted = False  # hello sent; until then live frames wait in _early
        self._early: list[tuple[dict[str, Any], bool]] = []
        # position -> message (or None for a tombstone) that arrived ahead of a gap
        self._held_in: dict[int, StoredMessage | None] = {}
        self._held_out: dict[int, StoredMessage | None] = {}
        self._catch_up_task: asyncio.Task[None] | None = None

    # -- sending -----------------------------------------------------------------------

    def send(self, frame: dict[str, Any], *, ephemeral: bool = False) -> bool:
        """Queue a frame. Ephemeral frames are shed first when the buffer fills; a client
        that still does not read is disconnected (1013) and recovers with ``sync``."""
        if self.closed:
            return False
        if not self.greeted:
            if len(self._early) >= MAX_EARLY_FRAMES:
                self.disconnect(CloseCode.TRY_AGAIN_LATER, "too many events before hello")
                return False
            self._early.append((frame, ephemeral))
            return True
        pending = self.transport.pending_writes()
        if ephemeral and pending >= self.shed_at:
            self.metrics.shed_frames.inc()
            return False
        if pending >= self.out_buffer_max:
            self.metrics.slow_consumer_drops.inc()
            log.warning(
                "slow consumer disconnected", extra={"userId": self.user_id, "pending": pending}
            )
            self.disconnect(CloseCode.TRY_AGAIN_LATER, "slow consumer: reconnect and sync")
            return False
        self.transport.write_frame(self.codec.encode(frame), self.codec.binary)
        return True

    def ping(self) -> None:
        if not self.closed:
            self.transport.keepalive_ping()

    def disconnect(self, code: CloseCode, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.transport.close(int(code), reason)

    def greet(self, hello: dict[str, Any], cursor: Cursor) -> None:
        """Send hello, then what arrived while opening, then go live from ``cursor``."""
        self.greeted = True
        self.send(hello)
        early, self._early = self._early, []
        for frame, ephemeral in early:
            self.send(frame, ephemeral=ephemeral)
        self.start_live(cursor)

    # -- live delivery of stream positions ------------------------------------------

    def start_live(self, cursor: Cursor) -> None:
        self.cursor = cursor
        self.live = True
        self.behind = False
        self._release_held()

    def pause_live(self) -> None:
        """While a sync is answered, live positions are held, then released against its cursor."""
        self.live = False

    def finish_sync(self, cursor: Cursor, has_more: bool) -> None:
        behind_live = cursor.inbound < self.cursor.inbound or cursor.outbound < self.cursor.outbound
        self.cursor = cursor
        self.behind = has_more
        self.live = True
        if has_more:
            self._held_in.clear()
            self._held_out.clear()
        else:
            self._release_held()
            if behind_live:
                # The read stopped short of positions already sent live (which the
                # client ignores while it syncs): read again and send them.
                self.verify_soon()

    def offer(self, message: StoredMessage | None, inbound: bool, seq: int) -> None:
        """A committed position of this user's inbound or outbound stream (None: tombstone)."""
        if self.closed:
            return
        current = self.cursor.inbound if inbound else self.cursor.outbound
        own = message is not None and not inbound and message.origin_session == self.id
        if own and not (self.live and seq == current + 1):
            # An ack never waits: send it now with the cursor as it stands, and step
            # over its position without a copy once the positions before it arrive.
            assert message is not None
            self.send(message.ack(str(self.cursor)))
            message = None
        if self.behind:
            return
        if seq <= current:
            return  # already seen (by sync or an earlier delivery)
        held = self._held_in if inbound else self._held_out
        if not self.live or seq > current + 1:
            if len(held) >= MAX_HELD_PER_STREAM:
                # Too far behind to hold more: the client catches up by sync instead.
                self.disconnect(CloseCode.TRY_AGAIN_LATER, "too far behind: reconnect and sync")
                return
            held[seq] = message
            if self.live:
                self._schedule_catch_up()
            return
        self._emit(message, inbound, seq)
        self._release_held()

    def _emit(self, message: StoredMessage | None, inbound: bool, seq: int) -> None:
        if inbound:
            self.cursor = Cursor(seq, self.cursor.outbound)
        else:
            self.cursor = Cursor(self.cursor.inbound, seq)
        if message is None:
            return
        cursor = str(self.cursor)
        if not inbound and message.origin_session == self.id:
            self.send(message.ack(cursor))
        else:
            self.send(frames.incoming_message(message.wire(), cursor))
            self.metrics.messages_delivered.inc()

    def _release_held(self) -> None:
        for inbound, held in ((True, self._held_in), (False, self._held_out)):
            while held:
                current = self.cursor.inbound if inbound else self.cursor.outbound
                for seq in [s for s in held if s <= current]:
                    del held[seq]
                if current + 1 not in held:
                    break
                self._emit(held.pop(current + 1), inbound, current + 1)
        if self._held_in or self._held_out:
            self._schedule_catch_up()

    def verify_soon(self) -> None:
        """Read the store once after a short delay, even with nothing held."""
        self._catch_up_task = asyncio.get_running_loop().create_task(self._run_catch_up(True))

    def _schedule_catch_up(self) -> None:
        if self._catch_up_task is None or self._catch_up_task.done():
            self._catch_up_task = asyncio.get_running_loop().create_task(self._run_catch_up())

    async def _run_catch_up(self, always: bool = False) -> None:
        await asyncio.sleep(CATCH_UP_DELAY_S)
        if self.closed or not self.live or not (always or self._held_in or self._held_out):
            return
        try:
            await self._catch_up(self)
        except Exception:  # a failed catch-up is retried on the next delivery
            log.warning("catch-up read failed", exc_info=True, extra={"userId": self.user_id})

    def apply_catch_up(self, messages: list[StoredMessage], cursor: Cursor) -> None:
        """Messages read from the store after this session's cursor, and the cursor they reach."""
        for message in messages:
            inbound = message.to_user_id == self.user_id
            held = self._held_in if inbound else self._held_out
            seq = message.in_seq if inbound else message.out_seq
            held.pop(seq, None)
            current = self.cursor.inbound if inbound else self.cursor.outbound
            if seq > current:
                self._emit(message, inbound, seq)
        # Tombstones and skipped holes up to the read cursor.
        self.cursor = Cursor(
            max(self.cursor.inbound, cursor.inbound), max(self.cursor.outbound, cursor.outbound)
        )
        self._release_held()

    def has_held(self) -> bool:
        return bool(self._held_in or self._held_out)
