"""restd's wire models: every request body, query and response.

The one place input is validated (STYLE 3) and the source of the OpenAPI
document (restd/openapi.py). Field names are the JSON names (camelCase), so
there is no alias layer between the code and the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    PlainValidator,
    StringConstraints,
    UrlConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_snake
from pydantic_core import PydanticCustomError

OBJECT_ID_PATTERN = r"^[0-9a-f]{24}$"
ObjectIdStr = Annotated[
    str, Field(pattern=OBJECT_ID_PATTERN, examples=["65f0c0ffee0123456789abcd"])
]

MAX_SKILLS = 30
MAX_SKILL_CHARS = 40
MAX_LINKS = 10
MAX_URL_CHARS = 500
# Prefs live inside the user document, which every profile read loads: these caps
# bound what a client can make it carry (about 50 * (64 + 200) bytes at most).
MAX_PREFS = 50  # keys in the merged map, not only in one request
MAX_PREF_KEY_CHARS = 64
PREF_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"  # also keeps '$' and '.' out of field names
MAX_PREF_TEXT_CHARS = 200
# Integers a JavaScript client reads back exactly; also well inside BSON's int64.
MAX_PREF_INT = 2**53 - 1
MAX_REQUEST_MESSAGE_CHARS = 500

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
Url = Annotated[HttpUrl, UrlConstraints(max_length=MAX_URL_CHARS)]


# How each kind of pref is bounded: its measure, the limit, the error's type and message.
PREF_BOUNDS: dict[type, tuple[Callable[[Any], int], int, str, str]] = {
    int: (abs, MAX_PREF_INT, "pref_int_range", "an integer pref is at most {limit} in magnitude"),
    str: (len, MAX_PREF_TEXT_CHARS, "pref_too_long", "a text pref has at most {limit} characters"),
}


def pref_value(value: object) -> object:
    """A pref is a JSON scalar: a short string, a boolean, a safe integer, or null to remove it.

    A plain validator rather than a union of types, so an error names the pref
    (``prefs.<key>``) and not a member of the union.
    """
    if value is None or isinstance(value, bool):
        return value
    for kind, (measure, limit, error, message) in PREF_BOUNDS.items():
        if isinstance(value, kind):
            if measure(value) > limit:
                raise PydanticCustomError(error, message, {"limit": limit})
            return value
    raise PydanticCustomError(
        "pref_type", "a pref is a string, an integer, a boolean, or null to remove it"
    )


PrefKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PREF_KEY_CHARS, pattern=PREF_KEY_PATTERN),
]
PrefValue = Annotated[Any, PlainValidator(pref_value)]
Prefs = Annotated[
    dict[PrefKey, PrefValue],
    Field(max_length=MAX_PREFS),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_PREFS,
            "propertyNames": {"pattern": PREF_KEY_PATTERN, "maxLength": MAX_PREF_KEY_CHARS},
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "maxLength": MAX_PREF_TEXT_CHARS},
                    {"type": "boolean"},
                    {"type": "integer", "minimum": -MAX_PREF_INT, "maximum": MAX_PREF_INT},
                    {"type": "null"},
                ]
            },
        }
    ),
]


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_skills(values: list[str]) -> list[str]:
    """Trim, case-fold and de-duplicate in order; empty entries are dropped."""
    seen: dict[str, None] = {}
    for raw in values:
        skill = " ".join(raw.split()).casefold()
        if not skill:
            continue
        if len(skill) > MAX_SKILL_CHARS:
            raise ValueError(f"a skill has at most {MAX_SKILL_CHARS} characters")
        seen.setdefault(skill, None)
    if len(seen) > MAX_SKILLS:
        raise ValueError(f"at most {MAX_SKILLS} skills")
    return list(seen)


class Input(BaseModel):
    """Request bodies refuse unknown fields: a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Query(BaseModel):
    """Query strings ignore parameters they do not know (caches add their own)."""

    model_config = ConfigDict(extra="ignore")


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """A page of a list; ``nextCursor``, present while more remain, asks for the next one."""

    items: list[ItemT]
    nextCursor: str | None = None


# -- errors -------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- users --------------------------------------------------------------------


class UserSummary(BaseModel):
    id: str
    name: str
    headline: str = ""
    avatarUrl: str | None = None


class MembershipView(BaseModel):
    """Paid membership (domain/payments); ``active`` until ``expiresAt``."""

    tier: str
    planId: str
    active: bool
    since: datetime | None = None
    expiresAt: datetime | None = None


class PublicUser(UserSummary):
    skills: list[str] = []
    location: str = ""
    bio: str = ""
    links: list[str] = []
    createdAt: datetime | None = None
    # "pro" while a paid membership is active.
    badges: list[str] = []


class MeUser(PublicUser):
    email: str
    prefs: dict[str, Any] = {}
    membership: MembershipView | None = None


class ProfilePatch(Input):
    """Only the fields sent change; ``null`` clears headline, location, bio and avatarUrl."""

    name: Name | None = None
    headline: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    skills: Annotated[list[str], Field(max_length=MAX_SKILLS * 4)] | None = None
    location: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    bio: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None
    avatarUrl: Url | None = None
    links: Annotated[list[Url], Field(max_length=MAX_LINKS)] | None = None
    prefs: Prefs | None = None

    @field_validator("skills")
    @classmethod
    def _skills(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else normalize_skills(value)

    @field_validator("name", "skills", "links", "prefs", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Runs only for fields that were sent: leaving one out is fine, null is not.
        if value is None:
            raise ValueError("may not be null")
        return value


class SearchQuery(Query):
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    skill: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_SKILL_CHARS)] = ""
    location: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    cursor: ObjectIdStr | None = None
    limit: Annotated[int, Field(ge=1, le=50)] = 20


class UserPage(Page[PublicUser]): ...


# -- auth ---------------------------------------------------------------------


class SignupBody(Input):
    name: Name
    email: Annotated[EmailStr, Field(max_length=254), AfterValidator(normalize_email)]
    password: Password


class LoginBody(Input):
    # Not EmailStr: a login answers the same for every unknown address.
    email: Annotated[
        str, StringConstraints(min_length=3, max_length=254), AfterValidator(normalize_email)
    ]
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class AuthResult(BaseModel):
    user: MeUser
    accessToken: str


# -- connections --------------------------------------------------------------

RequestStatus = Literal["pending", "accepted", "rejected", "withdrawn", "removed"]


class ConnectionRequestBody(Input):
    toUserId: ObjectIdStr
    message: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class ConnectionRequestAnswer(Input):
    status: Literal["accepted", "rejected"]


class ConnectionRequestView(BaseModel):
    id: str
    fromUserId: str
    toUserId: str
    status: RequestStatus
    message: str = ""
    createdAt: datetime
    updatedAt: datetime
    fromUser: UserSummary | None = None
    toUser: UserSummary | None = None


class ConnectionRequestQuery(Query):
    direction: Literal["incoming", "outgoing"] = "incoming"
    status: RequestStatus | None = None
    cursor: ObjectIdStr | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class ConnectionRequestPage(Page[ConnectionRequestView]): ...


class ConnectionView(BaseModel):
    user: UserSummary
    conversationId: str
    connectedAt: datetime


class ConnectionList(BaseModel):
    items: list[ConnectionView]


# -- conversations ------------------------------------------------------------


class MessageView(BaseModel):
    # Read from a core.messages.Message (from_attributes), whose fields are these in
    # snake_case; its JSON Schema is the JSON it is sent as.
    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_snake),
        validate_by_name=True,
        json_schema_mode_override="serialization",
    )

    id: str
    conversationId: str
    fromUserId: str
    toUserId: str
    text: str = ""
    attachments: list[Any] = []
    status: str = "sent"
    createdAt: datetime


class HistoryQuery(Query):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    before: ObjectIdStr | None = None


class MessagePage(BaseModel):
    messages: list[MessageView]
    nextCursor: str | None = None


class ConversationView(BaseModel):
    id: str
    user: UserSummary
    lastMessage: MessageView
    unreadCount: int


class ConversationQuery(Query):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    # The previous page's nextCursor: conversations whose newest message is older.
    before: ObjectIdStr | None = None


class ConversationList(Page[ConversationView]): ...
