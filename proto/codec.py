"""The two encodings of the chat socket, behind one interface (STYLE 19).

Chosen per connection at the handshake by ``Sec-WebSocket-Protocol``:
``devconnect.v1.json`` (text frames) or ``devconnect.v1.msgpack`` (binary
frames); JSON when the client offers neither.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgpack
import orjson

from proto.errors import ErrorCode, ProtocolError
from proto.events import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK


class Codec(Protocol):
    name: str
    binary: bool

    def encode(self, frame: dict[str, Any]) -> bytes | str: ...

    def decode(self, raw: bytes | str) -> Any: ...


class JsonCodec:
    name = SUBPROTOCOL_JSON
    binary = False

    def encode(self, frame: dict[str, Any]) -> str:
        return orjson.dumps(frame).decode()

    def decode(self, raw: bytes | str) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not valid JSON") from None


class MsgpackCodec:
    name = SUBPROTOCOL_MSGPACK
    binary = True

    def encode(self, frame: dict[str, Any]) -> bytes:
        return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]

    def decode(self, raw: bytes | str) -> Any:
        if isinstance(raw, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "msgpack frames must be binary")
        try:
            return msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not valid msgpack") from None


JSON = JsonCodec()
MSGPACK = MsgpackCodec()
CODECS: dict[str, Codec] = {JSON.name: JSON, MSGPACK.name: MSGPACK}
