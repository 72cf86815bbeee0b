"""The sync cursor: a position in each of the user's two message streams.

Every user has an inbound stream (messages sent to them) and an outbound stream
(messages they sent, from any device). Each stream numbers its messages 1, 2,
3, ... without gaps, in commit order. The cursor a device holds is the pair of
the last positions it has seen, written ``"<in>.<out>"`` (e.g. ``"41.17"``).
Clients treat it as opaque: store the last one seen, send it back to ``sync``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from proto.errors import ErrorCode, ProtocolError

MAX_SEQ = 10**12 - 1  # the stream keys pad positions to 12 digits
# ASCII digits only, and the whole text. str.isdigit() is true for "²" or "٣",
# which int() then refuses (or reads as another number): a client's bad cursor
# became an internal error. [0-9] is ASCII (\d would match every script's digits).
_CURSOR = re.compile(r"([0-9]+)\.([0-9]+)")


class Cursor(NamedTuple):
    inbound: int = 0
    outbound: int = 0

    def __str__(self) -> str:
        return f"{self.inbound}.{self.outbound}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls(0, 0)
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise ProtocolError(ErrorCode.INVALID_CURSOR, "cursor is not one this server issued")
        cursor = cls(int(match.group(1)), int(match.group(2)))
        if cursor.inbound > MAX_SEQ or cursor.outbound > MAX_SEQ:
            raise ProtocolError(ErrorCode.INVALID_CURSOR, "cursor out of range")
        return cursor
