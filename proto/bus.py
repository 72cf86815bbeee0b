"""What travels on a user's Redis channel between services and chatd nodes.

Every live event for a user goes to that user's channel on the user's shard
(``core.keys.Keys.user_channel``); chatd nodes subscribe only to the channels of
the users connected to them. Five kinds of bus message:

- ``deliver``: a server-to-client frame (``event`` = {"type", "data"}) for every
  socket of the user, e.g. ``connection-request`` published by restd.
- ``connection-changed``: the pair (user, ``otherUserId``) gained or lost an
  accepted connection or a block; chatd drops its cached permission and
  re-reads the user's contacts (presence follows them).
- ``logout-all``: close every socket of the user (close code 4001).
- ``message``: a committed chat message (``event`` = its wire form) at position
  ``seq`` of the user's inbound (``inbound`` true) or outbound stream, for
  the user's sockets on other nodes.
- ``holder``: the ``origin`` node now holds (``holding`` true) or no longer
  holds sockets of the user, so nodes that also hold them know to publish
  that user's live events instead of serving them locally only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class BusMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["deliver", "connection-changed", "logout-all", "message", "holder"]
    user_id: str = Field(alias="userId")
    origin: str = ""  # node id of the publisher, so a node can drop its own echo
    event: dict[str, Any] | None = None
    other_user_id: str | None = Field(default=None, alias="otherUserId")
    # For "message": the stream position, so the receiving node can tell a gap.
    seq: int | None = None
    inbound: bool | None = None
    # For "message": which session sent it (that session gets the ack, not a copy).
    origin_session: str | None = Field(default=None, alias="originSession")
    # For "holder".
    holding: bool | None = None
