"""What travels on a user's Redis channel between services and chatd nodes.

Every live event for a user goes to that user's channel on the user's shard
(``core.keys.Keys.user_channel``); chatd nodes subscribe only to the channels of
the users connected to them. A bus message is a JSON object whose ``kind``
says which of five models it is (``BusMessage``, a union discriminated by
``kind``); every kind carries ``userId`` and ``origin`` (the node id of the
publisher, so a node can drop its own echo), and only the fields it needs:

- ``deliver`` (``Deliver``): a server-to-client frame (``event`` = {"type",
  "data"}) for every socket of the user, e.g. ``connection-request`` published
  by restd.
- ``connection-changed`` (``ConnectionChanged``): the pair (user,
  ``otherUserId``) gained or lost an accepted connection or a block; chatd
  drops its cached permission and re-reads the user's contacts (presence
  follows them).
- ``logout-all`` (``LogoutAll``): close every socket of the user (close code 4001).
- ``message`` (``StreamMessage``): a committed chat message (``event`` = its
  wire form) at position ``seq`` of the user's inbound (``inbound`` true) or
  outbound stream, for the user's sockets on other nodes; ``originSession``,
  when present, is the session that sent it (it gets the ack, not a copy).
- ``holder`` (``Holder``): the ``origin`` node now holds (``holding`` true) or
  no longer holds sockets of the user, so nodes that also hold them know to
  publish that user's live events instead of serving them locally only.

The wire form is ``encode_bus_message`` (aliases, no null fields) and is read
by ``parse_bus_message``; unknown fields are ignored, so a newer node's extra
fields do not break an older one. An unknown ``kind`` or a missing required
field is a ``pydantic.ValidationError``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Envelope(BaseModel):
    """What every kind carries; ``kind`` is narrowed to one literal by each model."""

    model_config = ConfigDict(extra="ignore")

    kind: str
    user_id: str = Field(alias="userId")
    origin: str = ""  # node id of the publisher, so a node can drop its own echo


class Deliver(_Envelope):
    kind: Literal["deliver"] = "deliver"
    event: dict[str, Any]


class ConnectionChanged(_Envelope):
    kind: Literal["connection-changed"] = "connection-changed"
    other_user_id: str = Field(alias="otherUserId")


class LogoutAll(_Envelope):
    kind: Literal["logout-all"] = "logout-all"


class StreamMessage(_Envelope):
    kind: Literal["message"] = "message"
    event: dict[str, Any]
    # The stream position, so the receiving node can tell a gap.
    seq: int
    inbound: bool
    # Which session sent it (that session gets the ack, not a copy).
    origin_session: str | None = Field(default=None, alias="originSession")


class Holder(_Envelope):
    kind: Literal["holder"] = "holder"
    holding: bool


BusMessage: TypeAlias = Annotated[
    Deliver | ConnectionChanged | LogoutAll | StreamMessage | Holder,
    Field(discriminator="kind"),
]

_ADAPTER: TypeAdapter[BusMessage] = TypeAdapter(BusMessage)


def parse_bus_message(raw: bytes | str | dict[str, Any]) -> BusMessage:
    """One bus message from its JSON text or its decoded object.

    Raises ``pydantic.ValidationError`` when it is not JSON, has an unknown
    ``kind`` or lacks a field its kind requires.
    """
    if isinstance(raw, dict):
        return _ADAPTER.validate_python(raw)
    return _ADAPTER.validate_json(raw)


def bus_wire(message: BusMessage) -> dict[str, Any]:
    """The JSON object a bus message travels as (aliases, no null fields)."""
    return message.model_dump(by_alias=True, exclude_none=True)


def encode_bus_message(message: BusMessage) -> bytes:
    return orjson.dumps(bus_wire(message))
