"""Reading timestamps back from the store.

Written as tz-aware UTC datetimes (standard MongoDB code). The embedded
nx-27017 server keeps a datetime given to ``insert_one`` but turns one given
through ``$set`` into naive ISO text ("2026-01-02 03:04:05.678000"); so every
timestamp restd reads goes through ``as_utc``. On MongoDB it is a no-op.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def required_utc(value: object, fallback: datetime) -> datetime:
    return as_utc(value) or fallback
