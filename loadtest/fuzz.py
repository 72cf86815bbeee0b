"""A websocket frame fuzzer for chatd, driven by Hypothesis strategies (issue 14).

What it sends, on sockets of both codecs (``devconnect.v1.json`` text frames and
``devconnect.v1.msgpack`` binary frames):

- client frames of every type (``private-message``, ``typing``, ``message-read``,
  ``sync``, ``ping``, ``auth``) whose fields hold hostile values: digits of other
  scripts ("²", "٣"), huge and negative numbers, NaN, wrong types, nested junk,
  strings up to and past the 64 KiB frame limit, ids that are not ObjectIds,
  cursors like "1.²", extra and missing fields;
- unknown types, envelopes that are not objects, non-dict JSON;
- raw frames: garbage bytes, truncated or deeply nested documents, text frames
  that are not UTF-8, JSON on the msgpack socket and msgpack on the JSON one.

How Hypothesis generates outside a test: ``generate`` wraps the strategy in a
small ``@given`` function run with ``@seed(seed)``, ``max_examples=n``, only the
generate phase and no example database, and collects what it is called with.
So every value comes from Hypothesis' own strategies (and their bias towards
boundaries), the same seed gives the same frames, and no private Hypothesis
API (``strategy.example()`` is for the REPL) is involved. The driver draws in
batches, so generating 100,000 frames never holds them all.

The oracle, per ``fuzz``'s summary: no ``error`` frame with code ``internal``,
no close with 1011, and afterwards a fresh message between the first two users
is acked and delivered (``servedAfter``). The caller checks chatd's log for
ERROR records and tracebacks (the test captures logging; ``make fuzz`` reads
the daemon's log file). Closes the server may legitimately make (1009 frame
too big, 1013 slow consumer, 4003 too many sockets, an abort after a text
frame that is not UTF-8, a 429 handshake) are counted, and the socket reconnects.
A close with no code and no frame of ours to explain it (no oversize frame, no
text frame that is not UTF-8 since the socket opened) is "unexpected", listed,
and fails ``make fuzz`` unless chatd logged as many slow-consumer disconnects.

    make fuzz                                    # 100,000 frames on its own stack
    python -m loadtest.fuzz --frames 2000 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from proto.client import ChatClient, HandshakeRefused
from proto.codec import JSON, MSGPACK

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtest" / "results"

CLIENT_TYPES = ["private-message", "typing", "message-read", "sync", "ping", "auth"]
FRAME_LIMIT = 64 * 1024  # core/settings.py ws_max_frame_bytes
BATCH = 250  # frames drawn per Hypothesis run, and sent between two ping barriers
BARRIER_TIMEOUT_S = 30.0
# Closes the server may make to a hostile client; None is Tornado aborting the
# TCP connection after a text frame that is not UTF-8.
EXPECTED_CLOSES = {1009, 1013, 4003, None}

# Characters for which str.isdigit() or int() says yes though they are not ASCII
# digits, and other look-alikes (a cursor "1.²" once became an internal error).
UNICODE_DIGITS = "²³¹⁰₀٣٠١۴߀०১੧૨୩௪౫೬൭๘໙༠၁០᠑０𝟘𝟙①⑴⒈ⅠⅫ〇"
NASTY_STRINGS = [
    "",
    " ",
    "\t\n\r",
    "\x00",
    "\u200b",
    "\ufeff",
    "\u202e",
    "null",
    "NaN",
    "-0",
    "0x1f",
    "1e309",
    "__proto__",
    "$where",
    "{'$gt': ''}",
    "../../etc/passwd",
    "%s%n",
    "'; DROP TABLE users; --",
    "\U0001f600",
    "ｔｙｐｉｎｇ",
    "private-message ",
    "PING",
]
BIG_INTS = [
    2**31 - 1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**64,
    10**30,
    -(10**30),
]
IMPOSSIBLE_CURSORS = [
    "1.²",
    "².0",
    "٣.0",
    "0.0.0",
    "-1.0",
    "1.-1",
    "+1.+1",
    "1_0.0",
    " 1.0",
    "1.0\n",
    "1e3.0",
    "0x1.0",
    "999999999999999999999999.0",
    "0.999999999999",
    ".",
    "1.",
]


# -- strategies ---------------------------------------------------------------------------


def hex_ids() -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789abcdef", min_size=24, max_size=24)


def not_object_ids() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet="0123456789abcdefABCDEFgxyz", min_size=0, max_size=30),
        hex_ids().map(str.upper),
        hex_ids().map(lambda s: s[:23] + "²"),
        hex_ids().map(lambda s: " " + s),
        hex_ids().map(lambda s: s + "\n"),
        st.text(alphabet=UNICODE_DIGITS, min_size=24, max_size=24),
        st.sampled_from(NASTY_STRINGS),
    )


def long_strings(max_chars: int = FRAME_LIMIT + 1024) -> st.SearchStrategy[str]:
    """Up to (and a little past) the frame limit, built cheaply from one repeated piece."""
    return st.builds(
        lambda piece, n: (piece * (n // max(1, len(piece)) + 1))[:n],
        st.sampled_from(["a", " ", "é", "²", "\U0001f600", "ab\n", "\x00", "٣."]),
        st.one_of(
            st.integers(0, 300),
            st.integers(0, 5000),
            st.sampled_from([3999, 4000, 4001, 20_000, FRAME_LIMIT // 4 - 16, max_chars]),
        ),
    )


def hostile_strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.text(alphabet=UNICODE_DIGITS + ".-+ 0123456789", max_size=12),
        st.sampled_from(NASTY_STRINGS),
        st.sampled_from(IMPOSSIBLE_CURSORS),
        long_strings(),
    )


def hostile_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from(BIG_INTS),
        st.floats(allow_nan=True, allow_infinity=True),
        hostile_strings(),
        st.binary(max_size=64),
    )


def junk() -> st.SearchStrategy[Any]:
    """Any value, nested: lists and maps (string keys, and sometimes other keys)."""
    names = st.sampled_from(["type", "data", "toUserId", "cursor", ""])
    keys = st.one_of(names, st.text(max_size=6))
    return st.recursive(
        hostile_scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(keys, inner, max_size=3),
            st.dictionaries(st.one_of(st.integers(), st.binary(max_size=4)), inner, max_size=2),
        ),
        max_leaves=5,
    )


def cursors() -> st.SearchStrategy[Any]:
    digits = st.integers(0, 10**13).map(str)
    return st.one_of(
        st.none(),
        st.builds(lambda a, b: f"{a}.{b}", digits, digits),
        st.builds(
            lambda a, b, sep: f"{a}{sep}{b}",
            st.one_of(digits, st.text(alphabet=UNICODE_DIGITS, min_size=1, max_size=3)),
            st.one_of(digits, st.text(alphabet=UNICODE_DIGITS, min_size=1, max_size=3)),
            st.sampled_from([".", "..", ",", ":", " . "]),
        ),
        st.sampled_from(IMPOSSIBLE_CURSORS),
        junk(),
    )


def client_frames(user_ids: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Valid-shaped frames of every client type, with fields hostile or sometimes fine."""
    known = st.sampled_from(list(user_ids)) if user_ids else hex_ids()
    ids = st.one_of(known, hex_ids(), not_object_ids(), junk())
    conversation_ids = st.one_of(
        st.builds(lambda a, b: f"{min(a, b)}-{max(a, b)}", known, known),
        st.builds(lambda a, b: f"{a}-{b}", ids, ids),
        hostile_strings(),
        junk(),
    )
    text = st.one_of(st.text(min_size=1, max_size=200), hostile_strings(), junk())
    temp_ids = st.one_of(st.text(min_size=1, max_size=64), hostile_strings(), junk())
    limits = st.one_of(st.integers(-5, 600), st.sampled_from(BIG_INTS), junk())
    extra = st.dictionaries(st.text(max_size=10), junk(), max_size=2)

    def data(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
        # Every field, a random subset of them, plus (sometimes) unknown ones.
        shaped = st.fixed_dictionaries({}, optional=fields)
        full = st.fixed_dictionaries(fields)
        return st.one_of(
            full,
            shaped,
            st.builds(lambda d, e: {**e, **d}, full, extra),
            junk(),
        )

    payloads = {
        "private-message": data({"toUserId": ids, "tempId": temp_ids, "text": text}),
        "typing": data(
            {"toUserId": ids, "state": st.one_of(st.sampled_from(["start", "stop"]), junk())}
        ),
        "message-read": data({"conversationId": conversation_ids, "upToMessageId": ids}),
        "sync": data({"cursor": cursors(), "limit": limits}),
        "ping": st.one_of(st.just({}), junk()),
        "auth": data({"token": st.one_of(hostile_strings(), junk())}),
    }
    typed = st.one_of(
        *[
            st.builds(lambda t, d: {"type": t, "data": d}, st.just(name), strategy)
            for name, strategy in payloads.items()
        ]
    )
    no_data = st.sampled_from(CLIENT_TYPES).map(lambda t: {"type": t})
    unknown = st.builds(
        lambda t, d: {"type": t, "data": d},
        st.one_of(
            hostile_strings(),
            st.sampled_from(["hello", "pong", "error", "incoming-message", "Ping", "ping "]),
        ),
        junk(),
    )
    odd_envelopes = st.one_of(
        st.builds(lambda t, d: {"type": t, "data": d}, junk(), junk()),
        st.dictionaries(st.text(max_size=8), junk(), max_size=4),
        st.builds(lambda f, e: {**f, **e}, typed, extra),
    )
    return st.one_of(typed, typed, typed, no_data, unknown, odd_envelopes)


@dataclass(frozen=True)
class Outgoing:
    """One frame to send. ``kind``: ``obj`` (encoded with the socket's codec), ``other``
    (encoded with the other codec), ``text`` / ``binary`` (raw), ``bad-utf8`` (bytes in a
    text frame)."""

    kind: str
    value: Any


def _json_text(obj: Any, ascii_only: bool) -> str:
    # The stdlib encoder writes what orjson refuses to: NaN, Infinity, ints past 64 bits,
    # lone surrogates as \\ud800 escapes; and it turns bytes and odd keys into errors.
    return json.dumps(obj, ensure_ascii=ascii_only, default=repr, allow_nan=True, skipkeys=True)


def raw_frames() -> st.SearchStrategy[Outgoing]:
    structural = st.sampled_from(
        [
            "",
            "{",
            "}",
            "[]",
            "null",
            "true",
            "0",
            '"type"',
            '{"type"}',
            '{"type":}',
            '{"type":"ping","data":',
            '{"type":"ping","type":"sync"}',
            '{"type":"sync","data":{"cursor":"1.\\ud800"}}',
            '{"type":"sync","data":{"limit":1e999}}',
            '{"type":"sync","data":{"limit":-1e999}}',
            '{"type":"sync","data":{"limit":100000000000000000000000000000}}',
            '{"type":"ping","data":{}}garbage',
            "\ufeff" + '{"type":"ping","data":{}}',
            '{"type":"ping","data":NaN}',
            "[" * 5000 + "]" * 5000,
            '{"a":' * 3000 + "1" + "}" * 3000,
        ]
    )
    deep_msgpack = st.integers(1, 4000).map(lambda n: b"\x91" * n + b"\xc0")
    return st.one_of(
        st.builds(Outgoing, st.just("text"), st.one_of(structural, st.text(max_size=200))),
        st.builds(
            Outgoing,
            st.just("text"),
            st.builds(_json_text, junk(), st.booleans()),
        ),
        st.builds(Outgoing, st.just("binary"), st.one_of(st.binary(max_size=300), deep_msgpack)),
        st.builds(
            Outgoing,
            st.just("binary"),
            st.sampled_from(
                [
                    b"\xc1",  # never used
                    b"\x81\xa4type",  # a map cut short
                    b"\x82\xa4type\xa4ping\xa4type\xa4sync",  # a repeated key
                    b"\x81\x01\xa4ping",  # an int key
                    b"\x81\xc0\xc0",  # a nil key
                    b"\x82\xa4type\xa4ping\xa4data\xd4\x05\x00",  # an ExtType
                    b"\x82\xa4type\xa4sync\xa4data\xd6\xff\x00\x00\x00\x00",  # a timestamp
                    b"\x82\xa4type\xa4sync\xa4data\x81\xa6cursor\xa3\xff\xfe\xfd",  # bad UTF-8
                    b"\xdd\xff\xff\xff\xff",  # an array claiming 4G items
                    b"\xdf\xff\xff\xff\xff",  # a map claiming 4G pairs
                    b"\xdb\xff\xff\xff\xff",  # a string claiming 4 GiB
                ]
            ),
        ),
        st.builds(
            Outgoing,
            st.just("bad-utf8"),
            st.sampled_from([b"\xff", b"\xc3\x28", b'{"type":"ping","data":{"x":"\xed\xa0\x80"}}']),
        ),
        st.builds(Outgoing, st.just("other"), client_frames(())),
    )


def outgoing(user_ids: Sequence[str]) -> st.SearchStrategy[Outgoing]:
    """Structured frames or raw ones (``fuzz`` draws the two apart, in a fixed ratio)."""
    return st.one_of(structured_frames(user_ids), raw_frames())


def structured_frames(user_ids: Sequence[str]) -> st.SearchStrategy[Outgoing]:
    return st.builds(Outgoing, st.just("obj"), client_frames(user_ids))


RAW_SHARE = 0.2  # of the frames sent: the rest are objects in the socket's own codec


@functools.cache
def _strategies(user_ids: tuple[str, ...]) -> tuple[st.SearchStrategy[Outgoing], ...]:
    return structured_frames(user_ids), raw_frames()


def draw_batch(user_ids: tuple[str, ...], n: int, seed_value: int) -> list[Outgoing]:
    """``n`` frames, ``RAW_SHARE`` of them raw, in an order fixed by the seed.

    A module-level function, so a worker process can draw the next batch while
    this one is being sent."""
    structured, raw = _strategies(user_ids)
    n_raw = round(n * RAW_SHARE)
    batch = generate(structured, n - n_raw, seed_value) + generate(raw, n_raw, seed_value + 1)
    random.Random(seed_value).shuffle(batch)
    return batch


def generate(strategy: st.SearchStrategy[Any], n: int, seed_value: int) -> list[Any]:
    """``n`` values drawn by Hypothesis from ``strategy``, the same ones for the same seed."""
    drawn: list[Any] = []
    if n <= 0:
        return drawn

    @settings(
        max_examples=n,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_value)
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


# -- encoding -----------------------------------------------------------------------------


def _encode(item: Outgoing, binary_socket: bool, rng: random.Random) -> tuple[bytes | str, bool]:
    """(payload, binary) for a socket whose codec is msgpack when ``binary_socket``."""
    if item.kind == "text":
        return str(item.value), False
    if item.kind == "binary":
        return bytes(item.value), True
    if item.kind == "bad-utf8":
        return bytes(item.value), False
    as_msgpack = binary_socket if item.kind == "obj" else not binary_socket
    if as_msgpack:
        try:
            return MSGPACK.encode(item.value), True
        except (OverflowError, TypeError, ValueError):
            # An int past 64 bits or a key msgpack will not pack: send its JSON instead.
            return _json_text(item.value, True).encode(), True
    try:
        return JSON.encode(item.value), False
    except TypeError:
        return _json_text(item.value, rng.random() < 0.5), False


# -- the driver -----------------------------------------------------------------------------


@dataclass
class _Stats:
    sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    unexpected_closes: list[dict[str, Any]] = field(default_factory=list)
    reconnects: int = 0
    handshake_refusals: Counter[str] = field(default_factory=Counter)
    barrier_timeouts: int = 0
    oversize: int = 0
    draw_wait_s: float = 0.0  # waiting for Hypothesis to draw the next batch
    barrier_wait_s: float = 0.0  # waiting for chatd to answer everything sent

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = str(frame.get("type"))
        self.replies[kind] += 1
        if kind == "error":
            self.errors[str(frame.get("data", {}).get("code"))] += 1


class _Socket:
    """One fuzzed connection, reopened whenever the server closes it."""

    def __init__(self, url: str, token: str, codec: str, stats: _Stats) -> None:
        self.url, self.token, self.codec, self.stats = url, token, codec, stats
        self.client: ChatClient | None = None
        self.last_kind = ""
        self.last_size = 0
        # Since this socket opened: frames the server may close it for (the close is
        # seen a few frames later, since frames are sent without waiting for replies).
        self.closable: Counter[str] = Counter()

    async def open(self) -> ChatClient:
        for attempt in range(50):
            try:
                self.client = await ChatClient.connect(
                    self.url, self.token, codec=self.codec, on_frame=self.stats.on_frame
                )
                self.closable.clear()
                return self.client
            except HandshakeRefused as exc:
                self.stats.handshake_refusals[str(exc.status)] += 1
                await asyncio.sleep(min(2.0, 0.05 * (attempt + 1)))
        raise RuntimeError(f"could not reconnect a {self.codec} socket")

    async def ensure_open(self) -> ChatClient:
        if self.client is None:
            return await self.open()
        if self.client.closed.is_set():
            self._record_close(self.client)
            self.stats.reconnects += 1
            return await self.open()
        return self.client

    def _record_close(self, client: ChatClient) -> None:
        code = client.close_code
        self.stats.closes[str(code)] += 1
        expected = code in EXPECTED_CLOSES
        if code is None and not self.closable:
            expected = False  # an abort with no frame that explains it
        if not expected:
            self.stats.unexpected_closes.append(
                {
                    "code": code,
                    "reason": client.close_reason,
                    "codec": self.codec,
                    "lastKind": self.last_kind,
                    "lastSize": self.last_size,
                    "closable": dict(self.closable),
                }
            )

    async def send(self, payload: bytes | str, binary: bool, kind: str) -> None:
        client = await self.ensure_open()
        self.last_kind, self.last_size = kind, len(payload)
        if len(payload) > FRAME_LIMIT:
            self.stats.oversize += 1
            self.closable["oversize"] += 1
        if kind == "bad-utf8":
            self.closable["bad-utf8"] += 1
        # A socket the server just closed refuses the write; the next send reconnects.
        with contextlib.suppress(WebSocketClosedError, StreamClosedError):
            await client.conn.write_message(payload, binary=binary)
        self.stats.sent += 1

    async def barrier(self) -> None:
        """A ping answered by a pong: everything sent before it has been handled."""
        client = await self.ensure_open()
        seen = self.stats.replies["pong"]
        with contextlib.suppress(ConnectionError, OSError):
            await client.send("ping", {})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BARRIER_TIMEOUT_S
        while self.stats.replies["pong"] <= seen and not client.closed.is_set():
            if loop.time() > deadline:
                self.stats.barrier_timeouts += 1
                return
            await asyncio.sleep(0.002)

    async def close(self) -> None:
        if self.client is not None and not self.client.closed.is_set():
            with contextlib.suppress(Exception):
                await self.client.close()


async def fuzz(
    url: str,
    tokens: Sequence[str],
    frames: int,
    seed: int,
    *,
    workers: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Send ``frames`` Hypothesis-drawn frames over a JSON and a msgpack socket per token.

    ``tokens[0]`` and ``tokens[1]`` must belong to two connected users: the run ends
    with a message between them that must be acked and delivered (``servedAfter``).
    Returns counts: frames sent, error codes seen, internal errors, closes by code,
    reconnects, and more. ``workers`` > 0 draws batches in that many processes,
    ahead of the sending (Hypothesis takes a few ms a frame; chatd is faster).
    """
    if len(tokens) < 2:
        raise ValueError("fuzz needs the tokens of two connected users")
    stats = _Stats()
    rng = random.Random(seed)
    sockets = [_Socket(url, t, codec, stats) for t in tokens for codec in ("json", "msgpack")]
    for sock in sockets:
        await sock.open()
    user_ids = tuple(
        sorted({s.client.hello["userId"] for s in sockets if s.client and s.client.hello})
    )
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    pool = (
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        if workers
        else None
    )

    def draw(batch_no: int) -> asyncio.Future[list[Outgoing]]:
        n = max(0, min(BATCH, frames - batch_no * BATCH))
        if pool is None:
            future: asyncio.Future[list[Outgoing]] = loop.create_future()
            future.set_result(draw_batch(user_ids, n, seed * 1_000_003 + 2 * batch_no))
            return future
        return asyncio.wrap_future(
            pool.submit(draw_batch, user_ids, n, seed * 1_000_003 + 2 * batch_no)
        )

    ahead = [draw(i) for i in range(max(1, workers * 2))]
    next_draw = len(ahead)
    try:
        while stats.sent < frames:
            waited = time.monotonic()
            batch = await ahead.pop(0)
            stats.draw_wait_s += time.monotonic() - waited
            ahead.append(draw(next_draw))
            next_draw += 1
            if not batch:
                break
            for item in batch:
                sock = sockets[rng.randrange(len(sockets))]
                payload, binary = _encode(item, sock.codec == "msgpack", rng)
                await sock.send(payload, binary, item.kind)
            waited = time.monotonic()
            await asyncio.gather(*(sock.barrier() for sock in sockets))
            stats.barrier_wait_s += time.monotonic() - waited
            if progress is not None:
                progress(_summary(stats, time.monotonic() - started, None))
        for sock in sockets:  # closes made by the last frames
            await sock.ensure_open()
    finally:
        for pending in ahead:
            pending.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for sock in sockets:
            await sock.close()
    served = await served_after(url, tokens[0], tokens[1])
    return _summary(stats, time.monotonic() - started, served)


async def served_after(url: str, token_a: str, token_b: str) -> bool:
    """A fresh message from a to b, over fresh sockets: acked to a and delivered to b."""
    a = await ChatClient.connect(url, token_a)
    b = await ChatClient.connect(url, token_b, codec="msgpack")
    try:
        text = f"still serving {time.time()}"
        temp_id = await a.private_message(b.hello["userId"], text)
        await a.wait_for("message-delivered", lambda d: d["tempId"] == temp_id, timeout=15)
        await b.wait_for("incoming-message", lambda d: d["text"] == text, timeout=15)
        return True
    except (TimeoutError, ConnectionError):
        return False
    finally:
        await a.close()
        await b.close()


def _summary(stats: _Stats, duration_s: float, served: bool | None) -> dict[str, Any]:
    return {
        "framesSent": stats.sent,
        "oversizeFrames": stats.oversize,
        "errorsByCode": dict(sorted(stats.errors.items())),
        "internalErrors": stats.errors.get("internal", 0),
        "repliesByType": dict(sorted(stats.replies.items())),
        "closesByCode": dict(sorted(stats.closes.items())),
        "unexpectedCloses": stats.unexpected_closes[:50],
        "unexpectedCloseCount": len(stats.unexpected_closes),
        "closes1011": stats.closes.get("1011", 0),
        "reconnects": stats.reconnects,
        "handshakeRefusals": dict(stats.handshake_refusals),
        "barrierTimeouts": stats.barrier_timeouts,
        "servedAfter": served,
        "durationS": round(duration_s, 1),
        "drawWaitS": round(stats.draw_wait_s, 1),
        "barrierWaitS": round(stats.barrier_wait_s, 1),
        "framesPerS": round(stats.sent / duration_s, 1) if duration_s > 0 else None,
    }


def fuzz_overrides() -> dict[str, Any]:
    """Settings that lift every per-user budget, so frames reach the handlers."""
    high = {"rate": 1_000_000.0, "burst": 1_000_000}
    overrides: dict[str, Any] = {"max_sockets_per_user": 1000}
    for name in ("msg", "typing", "read", "sync", "ping", "handshake"):
        overrides[f"{name}_rate_per_s"] = high["rate"]
        overrides[f"{name}_burst"] = high["burst"]
    return overrides


# -- make fuzz: its own stack -----------------------------------------------------------


def _log_notes(path: Path) -> dict[str, int]:
    """chatd's warnings other than the per-frame ``client error`` lines, by message."""
    notes: Counter[str] = Counter()
    if not path.exists():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            entry = json.loads(line)
            message = str(entry.get("msg", ""))
            if entry.get("level") == "warning" and not message.startswith("client error"):
                notes[message[:120]] += 1
    return dict(notes.most_common(20))


def _log_problems(path: Path) -> list[str]:
    """ERROR (or worse) lines and tracebacks in a daemon's log."""
    problems: list[str] = []
    if not path.exists():
        return problems
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # not one of core/logs.py's JSON lines: a raw traceback
            if "Traceback" in line or " ERROR " in line or " CRITICAL " in line:
                problems.append(line[:2000])
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("level") in ("error", "critical") or "exc" in entry:
            problems.append(line[:2000])
    return problems


async def _run(frames: int, seed_value: int, budget_s: float, workers: int) -> dict[str, Any]:
    # Imported here: the module's strategies and driver need neither.
    from core.auth import TokenIssuer
    from loadtest.chatbench.bench import Stack, _make_pairs

    with tempfile.TemporaryDirectory(prefix="devconnect-fuzz-") as tmp:
        workdir = Path(tmp)
        stack = Stack(workdir, overrides=fuzz_overrides())

        def stop(*_: Any) -> None:
            stack.stop()
            raise SystemExit(130)

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            settings_ = stack.start()
            crashes_before = stack.chatd.pid
            (a, b), (c, d) = await _make_pairs(settings_, 2)
            issuer = TokenIssuer(settings_.jwt_secret, 24 * 3600)
            tokens = [issuer.issue_access(u) for u in (a, b, c, d)]
            url = stack.urls()[0]
            last = [time.monotonic()]

            def progress(summary: dict[str, Any]) -> None:
                if time.monotonic() - last[0] > 10:
                    last[0] = time.monotonic()
                    print(
                        f"fuzz: {summary['framesSent']} frames, "
                        f"errors {summary['errorsByCode']}, closes {summary['closesByCode']}",
                        flush=True,
                    )

            summary = await asyncio.wait_for(
                fuzz(url, tokens, frames, seed_value, workers=workers, progress=progress), budget_s
            )
            proc = stack.chatd.proc
            alive = proc is not None and proc.poll() is None
            summary["crashes"] = 0 if alive and stack.chatd.pid == crashes_before else 1
            problems = _log_problems(workdir / "chatd0.log")
            summary["logErrors"] = len(problems)
            summary["logErrorSamples"] = problems[:20]
            summary["serverWarnings"] = _log_notes(workdir / "chatd0.log")
            return summary
        finally:
            signal.signal(signal.SIGTERM, previous)
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "14")))
    parser.add_argument("--budget-s", type=float, default=1800.0, help="stop the run after this")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2, help="processes drawing frames")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    summary = asyncio.run(_run(args.frames, args.seed, args.budget_s, args.workers))
    result = {
        "benchmark": "fuzz",
        "startedAt": started,
        "framesAsked": args.frames,
        "seed": args.seed,
        "python": sys.version.split()[0],
        **summary,
    }
    ok = (
        result["internalErrors"] == 0
        and result["closes1011"] == 0
        and result["crashes"] == 0
        and result["logErrors"] == 0
        and result["unexpectedCloseCount"]
        <= result["serverWarnings"].get("slow consumer disconnected", 0)
        and result["servedAfter"] is True
    )
    # An abort with no frame of ours to explain it counts against the run unless
    # chatd logged a slow-consumer disconnect (1013) for it.
    slow = result["serverWarnings"].get("slow consumer disconnected", 0)
    result["unexplainedCloses"] = max(0, result["unexpectedCloseCount"] - slow)
    result["ok"] = ok
    out = args.out or RESULTS / f"fuzz-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "logErrorSamples"}, indent=2))
    print(f"fuzz: wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
