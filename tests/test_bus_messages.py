"""Bus messages (proto/bus.py): a union of one model per kind, discriminated by ``kind``.

Pure unit tests, no services: each kind's exact JSON wire form (the one older
nodes read and write, so mixed-version nodes interoperate), what is refused
(an unknown kind, a missing required field), what is tolerated (unknown
fields, for forward compatibility), and that the router skips a malformed
message with a warning instead of handing it on.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from pydantic import ValidationError

from chatd.router import RedisRouter
from core.keys import Keys
from core.redis import RedisShards
from proto.bus import (
    BusMessage,
    ConnectionChanged,
    Deliver,
    Holder,
    LogoutAll,
    StreamMessage,
    bus_wire,
    encode_bus_message,
    parse_bus_message,
)

FRAME = {"type": "connection-request", "data": {"fromUserId": "a" * 24}}
WIRE_MESSAGE = {
    "messageId": "c" * 24,
    "conversationId": f"{'a' * 24}:{'b' * 24}",
    "fromUserId": "a" * 24,
    "toUserId": "b" * 24,
    "text": "hi",
    "createdAt": 1_700_000_000_000,
}

# (the model as a producer builds it, its exact wire dict)
CASES: list[tuple[BusMessage, dict[str, Any]]] = [
    (
        Deliver(userId="u1", origin="restd", event=FRAME),
        {"kind": "deliver", "userId": "u1", "origin": "restd", "event": FRAME},
    ),
    (
        ConnectionChanged(userId="u1", otherUserId="u2", origin="restd"),
        {"kind": "connection-changed", "userId": "u1", "origin": "restd", "otherUserId": "u2"},
    ),
    (
        LogoutAll(userId="u1", origin="restd"),
        {"kind": "logout-all", "userId": "u1", "origin": "restd"},
    ),
    (
        StreamMessage(
            userId="u1",
            origin="chatd-1",
            event=WIRE_MESSAGE,
            seq=7,
            inbound=True,
            originSession="s-1",
        ),
        {
            "kind": "message",
            "userId": "u1",
            "origin": "chatd-1",
            "event": WIRE_MESSAGE,
            "seq": 7,
            "inbound": True,
            "originSession": "s-1",
        },
    ),
    (
        StreamMessage(userId="u1", event=WIRE_MESSAGE, seq=3, inbound=False),
        {
            "kind": "message",
            "userId": "u1",
            "origin": "",
            "event": WIRE_MESSAGE,
            "seq": 3,
            "inbound": False,
        },
    ),
    (
        Holder(userId="u1", origin="chatd-2", holding=True),
        {"kind": "holder", "userId": "u1", "origin": "chatd-2", "holding": True},
    ),
    (
        Holder(userId="u1", origin="chatd-2", holding=False),
        {"kind": "holder", "userId": "u1", "origin": "chatd-2", "holding": False},
    ),
]


@pytest.mark.parametrize(("message", "wire"), CASES, ids=[w["kind"] for _, w in CASES])
def test_each_kind_round_trips_through_its_exact_wire_form(
    message: BusMessage, wire: dict[str, Any]
) -> None:
    assert bus_wire(message) == wire
    raw = encode_bus_message(message)
    assert orjson.loads(raw) == wire
    # The key order of the old single model, so even the bytes are what old nodes sent.
    assert list(orjson.loads(raw)) == list(wire)
    parsed = parse_bus_message(raw)
    assert type(parsed) is type(message)
    assert parsed == message
    assert parse_bus_message(wire) == message
    assert parse_bus_message(raw.decode()) == message


def test_parsed_messages_carry_their_typed_fields() -> None:
    parsed = parse_bus_message(
        {"kind": "message", "userId": "u", "event": WIRE_MESSAGE, "seq": 2, "inbound": True}
    )
    assert isinstance(parsed, StreamMessage)
    assert (parsed.seq, parsed.inbound, parsed.origin_session, parsed.origin) == (2, True, None, "")
    changed = parse_bus_message({"kind": "connection-changed", "userId": "u", "otherUserId": "v"})
    assert isinstance(changed, ConnectionChanged)
    assert changed.other_user_id == "v"


def test_the_origin_can_be_stamped_by_copy() -> None:
    # What the router does for a message published without an origin.
    message = Holder(userId="u1", holding=True)
    stamped = message.model_copy(update={"origin": "chatd-9"})
    assert isinstance(stamped, Holder)
    assert bus_wire(stamped)["origin"] == "chatd-9"
    assert parse_bus_message(encode_bus_message(stamped)) == stamped


@pytest.mark.parametrize(
    "wire",
    [
        {"kind": "typing", "userId": "u1"},  # unknown kind
        {"kind": "", "userId": "u1"},
        {"userId": "u1", "holding": True},  # no kind at all
        {"kind": "logout-all"},  # no userId
        {"kind": "deliver", "userId": "u1"},  # no event
        {"kind": "connection-changed", "userId": "u1"},  # no otherUserId
        {"kind": "message", "userId": "u1", "event": WIRE_MESSAGE, "inbound": True},  # no seq
        {"kind": "message", "userId": "u1", "event": WIRE_MESSAGE, "seq": 1},  # no inbound
        {"kind": "message", "userId": "u1", "seq": 1, "inbound": True},  # no event
        {"kind": "holder", "userId": "u1", "origin": "n"},  # no holding
        {"kind": "deliver", "userId": "u1", "event": "not an object"},
        {"kind": "message", "userId": "u1", "event": WIRE_MESSAGE, "seq": "x", "inbound": True},
    ],
)
def test_an_unknown_kind_or_a_missing_or_wrong_field_is_rejected(wire: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_bus_message(wire)
    with pytest.raises(ValidationError):
        parse_bus_message(orjson.dumps(wire))


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[]", b"null", b'"deliver"'])
def test_what_is_not_a_json_object_is_rejected(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_bus_message(raw)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    wire = {
        "kind": "holder",
        "userId": "u1",
        "origin": "chatd-3",
        "holding": True,
        "epoch": 4,  # a field a newer node might add
        "event": FRAME,  # a field of another kind
    }
    parsed = parse_bus_message(orjson.dumps(wire))
    assert parsed == Holder(userId="u1", origin="chatd-3", holding=True)
    assert bus_wire(parsed) == {
        "kind": "holder",
        "userId": "u1",
        "origin": "chatd-3",
        "holding": True,
    }


def test_the_old_free_form_shape_of_each_kind_is_read() -> None:
    # The old single model serialized with exclude_none: only the fields its producer set.
    old_deliver = {"kind": "deliver", "userId": "u", "origin": "restd", "event": FRAME}
    assert isinstance(parse_bus_message(old_deliver), Deliver)
    old_logout = {"kind": "logout-all", "userId": "u", "origin": "restd"}
    assert isinstance(parse_bus_message(old_logout), LogoutAll)


class _Recorder:
    def __init__(self) -> None:
        self.heard: list[BusMessage] = []

    def on_bus_message(self, message: BusMessage) -> None:
        self.heard.append(message)


def _router() -> tuple[RedisRouter, _Recorder]:
    shards = cast(RedisShards, SimpleNamespace(clients=[object()]))
    router = RedisRouter(shards, Keys("test:"), "chatd-self")
    recorder = _Recorder()
    router.attach(recorder)
    return router, recorder


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        orjson.dumps({"kind": "typing", "userId": "u1"}),
        orjson.dumps({"kind": "holder", "userId": "u1"}),
        None,
    ],
)
def test_the_router_skips_a_malformed_message_with_a_warning(
    data: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    router, recorder = _router()
    with caplog.at_level(logging.WARNING, logger="chatd.router"):
        router._dispatch({"type": "message", "channel": b"test:u:u1", "data": data})
    assert recorder.heard == []
    assert any("malformed bus message" in r.getMessage() for r in caplog.records)


def test_the_router_hands_on_a_valid_message_and_drops_its_own_echo() -> None:
    router, recorder = _router()
    other = Holder(userId="u1", origin="chatd-other", holding=True)
    mine = Holder(userId="u1", origin="chatd-self", holding=True)
    for message in (other, mine):
        router._dispatch({"type": "message", "channel": b"c", "data": encode_bus_message(message)})
    assert recorder.heard == [other]
