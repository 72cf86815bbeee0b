"""Issue 14: a bounded sample of the websocket frame fuzzer (loadtest/fuzz.py).

Hypothesis draws hostile frames (valid shapes with hostile fields, unknown
types, non-objects, garbage bytes, text that is not UTF-8, the wrong codec for
the socket) and sends them on a JSON and a msgpack socket of each of two
connected users, against an in-process chatd whose per-user budgets are lifted
so the frames reach the handlers. The oracle: no ``internal`` error, no 1011
close, no unexpected close, no ERROR record or traceback in chatd's logging,
and a fresh message between the two users is acked and delivered afterwards.
``make fuzz`` runs the same driver for 100,000 frames on its own stack.
"""

from __future__ import annotations

import logging

import pytest

from loadtest.fuzz import fuzz, fuzz_overrides, generate, outgoing
from tests.chat_harness import running_chatd
from tests.harness import Services, make_settings

FRAMES = 800  # over the 4 sockets: about 400 per codec


def test_generation_is_hypothesis_driven_and_reproducible() -> None:
    ids = ["0" * 24, "f" * 24]
    first = generate(outgoing(ids), 50, 3)
    again = generate(outgoing(ids), 50, 3)
    assert len(first) == 50
    assert [repr(x) for x in first] == [repr(x) for x in again]
    assert {item.kind for item in generate(outgoing(ids), 300, 4)} >= {"obj", "text", "binary"}


@pytest.mark.timeout(240)
async def test_fuzzed_frames_never_break_chatd(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_chatd(make_settings(services, **fuzz_overrides())) as chat:
        alice, bob = await chat.pair()
        summary = await fuzz(chat.url, [chat.token(alice), chat.token(bob)], FRAMES, seed=14)
    assert summary["framesSent"] >= FRAMES
    assert summary["internalErrors"] == 0, summary
    assert summary["closes1011"] == 0, summary
    # A close with no code and no frame of ours to explain it is allowed only when
    # chatd logged a slow-consumer disconnect (1013) for it.
    slow = [r for r in caplog.records if r.getMessage() == "slow consumer disconnected"]
    assert summary["unexpectedCloseCount"] <= len(slow), summary["unexpectedCloses"]
    assert summary["barrierTimeouts"] == 0, summary
    assert summary["servedAfter"] is True, summary
    # The frames reached the validators and the handlers, not only the decoder.
    assert {"bad-frame", "invalid-payload", "unknown-event"} <= set(summary["errorsByCode"])
    failures = [
        r
        for r in caplog.records
        if r.name.startswith(("chatd", "proto", "core", "tornado"))
        and (r.exc_info or r.levelno >= logging.ERROR)
    ]
    assert failures == [], [r.getMessage() for r in failures]
