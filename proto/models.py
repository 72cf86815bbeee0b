"""Wire models of the chat protocol (pydantic v2). Field names are camelCase on the wire.

Client frames are validated here, once, at the edge (``parse_client_frame``);
server frames are built by ``proto.frames`` as plain dicts for speed, and the
models below describe them exactly (the tests validate every frame they
receive against them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from proto.errors import ErrorCode, ProtocolError

MAX_TEXT_CHARS = 4000
MAX_TEMP_ID_CHARS = 64
MAX_SYNC_LIMIT = 500
OBJECT_ID_PATTERN = r"^[0-9a-f]{24}$"

UserId = Annotated[str, Field(pattern=OBJECT_ID_PATTERN)]
MessageId = Annotated[str, Field(pattern=OBJECT_ID_PATTERN)]


class WireModel(BaseModel):
    """A field's wire name is its name in camelCase (``to_user_id`` is ``toUserId``)."""

    model_config = ConfigDict(
        alias_generator=to_camel, extra="forbid", frozen=True, str_strip_whitespace=False
    )


# -- client -> server ------------------------------------------------------------------


class PrivateMessage(WireModel):
    to_user_id: UserId
    temp_id: Annotated[str, Field(min_length=1, max_length=MAX_TEMP_ID_CHARS)]
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError(ErrorCode.EMPTY_TEXT.value, "text is empty")
        if len(value) > MAX_TEXT_CHARS:
            raise PydanticCustomError(
                ErrorCode.TEXT_TOO_LONG.value,
                "text is longer than {limit} characters",
                {"limit": MAX_TEXT_CHARS},
            )
        return value


class Typing(WireModel):
    to_user_id: UserId
    state: Literal["start", "stop"]


class MessageRead(WireModel):
    conversation_id: Annotated[str, Field(min_length=1, max_length=64)]
    up_to_message_id: MessageId


class Sync(WireModel):
    cursor: Annotated[str, Field(max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_SYNC_LIMIT)] = 100


class Ping(WireModel):
    pass


class Auth(WireModel):
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class PrivateMessageFrame(WireModel):
    type: Literal["private-message"]
    data: PrivateMessage


class TypingFrame(WireModel):
    type: Literal["typing"]
    data: Typing


class MessageReadFrame(WireModel):
    type: Literal["message-read"]
    data: MessageRead


class SyncFrame(WireModel):
    type: Literal["sync"]
    data: Sync = Sync()


class PingFrame(WireModel):
    type: Literal["ping"]
    data: Ping = Ping()


class AuthFrame(WireModel):
    type: Literal["auth"]
    data: Auth


ClientFrame = Annotated[
    PrivateMessageFrame | TypingFrame | MessageReadFrame | SyncFrame | PingFrame | AuthFrame,
    Field(discriminator="type"),
]
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)

_CUSTOM_CODES = {ErrorCode.EMPTY_TEXT.value, ErrorCode.TEXT_TOO_LONG.value}


def parse_client_frame(obj: Any) -> ClientFrame:
    """Validate a decoded frame; raise ``ProtocolError`` with the most precise code."""
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_FRAME, 'a frame is an object {"type", "data"}')
    temp_id = _temp_id_of(obj)
    try:
        return _client_frame.validate_python(obj)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        for err in errors:
            if err["type"] == "union_tag_invalid":
                raise ProtocolError(
                    ErrorCode.UNKNOWN_EVENT, f"unknown event {obj['type']!r}", temp_id=temp_id
                ) from None
            if err["type"] in _CUSTOM_CODES:
                raise ProtocolError(ErrorCode(err["type"]), err["msg"], temp_id=temp_id) from None
        details = [
            {"field": ".".join(str(p) for p in err["loc"][1:]), "problem": err["msg"]}
            for err in errors
        ]
        raise ProtocolError(
            ErrorCode.INVALID_PAYLOAD, "invalid fields", temp_id=temp_id, details=details
        ) from None


def _temp_id_of(obj: dict[str, Any]) -> str | None:
    data = obj.get("data")
    if isinstance(data, dict):
        temp_id = data.get("tempId")
        if isinstance(temp_id, str) and 0 < len(temp_id) <= MAX_TEMP_ID_CHARS:
            return temp_id
    return None


# -- server -> client ------------------------------------------------------------------


class PresenceData(WireModel):
    user_id: UserId
    status: Literal["online", "offline"]
    last_seen: int | None = None  # epoch ms


class HelloData(WireModel):
    user_id: UserId
    session_id: str
    server_time: int  # epoch ms
    cursor: str
    unread_count: int
    presence: list[PresenceData]
    # When this socket's access token expires (epoch s): send `auth` before it.
    token_expires_at: int | None = None


class ChatMessage(WireModel):
    message_id: MessageId
    conversation_id: str
    from_user_id: UserId
    to_user_id: UserId
    text: str
    created_at: int  # epoch ms


class IncomingMessageData(ChatMessage):
    cursor: str


class MessageDeliveredData(WireModel):
    temp_id: str
    message_id: MessageId
    conversation_id: str
    created_at: int
    cursor: str


class MessageReadData(WireModel):
    conversation_id: str
    up_to_message_id: MessageId
    reader_id: UserId
    read_at: int
    unread_count: int | None = None


class TypingData(WireModel):
    from_user_id: UserId
    state: Literal["start", "stop"]


class SyncResultData(WireModel):
    messages: list[ChatMessage]
    cursor: str
    has_more: bool


class ErrorData(WireModel):
    code: ErrorCode
    message: str
    temp_id: str | None = None
    details: Any = None


class PongData(WireModel):
    server_time: int


class AuthOkData(WireModel):
    expires_at: int  # epoch s


SERVER_DATA_MODELS: dict[str, type[WireModel]] = {
    "hello": HelloData,
    "incoming-message": IncomingMessageData,
    "message-delivered": MessageDeliveredData,
    "message-read": MessageReadData,
    "typing": TypingData,
    "presence": PresenceData,
    "sync-result": SyncResultData,
    "pong": PongData,
    "auth-ok": AuthOkData,
    "error": ErrorData,
}


def validate_server_frame(frame: dict[str, Any]) -> WireModel | dict[str, Any]:
    """Check a server frame against its model (used by tests and the client in debug)."""
    model = SERVER_DATA_MODELS.get(frame["type"])
    if model is None:  # connection-request / -accepted carry restd's own view
        return dict(frame["data"])
    return model.model_validate(frame["data"])
