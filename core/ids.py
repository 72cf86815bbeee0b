"""Identifiers shared by chatd and restd."""

from __future__ import annotations

from bson import ObjectId
from bson.errors import InvalidId


def conversation_id(user_a: str, user_b: str) -> str:
    """The conversation of a pair: both ids sorted, so both sides derive the same one."""
    low, high = sorted((user_a, user_b))
    return f"{low}-{high}"


def conversation_members(conv_id: str) -> tuple[str, str] | None:
    parts = conv_id.split("-")
    if len(parts) != 2 or not all(is_object_id(p) for p in parts) or parts[0] >= parts[1]:
        return None
    return parts[0], parts[1]


def pair_key(user_a: str, user_b: str) -> str:
    """An unordered pair, for lookups that do not care who asked whom."""
    return conversation_id(user_a, user_b)


def is_object_id(value: str) -> bool:
    return len(value) == 24 and ObjectId.is_valid(value)


def parse_object_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value) if is_object_id(value) else None
    except InvalidId:
        return None
