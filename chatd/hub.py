"""The local index of connections: user id -> this node's sessions of that user."""

from __future__ import annotations

from collections.abc import Iterator

from chatd.session import Session


class Hub:
    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, Session]] = {}

    def add(self, session: Session) -> bool:
        """Register a session; True if it is the user's first on this node."""
        sessions = self._by_user.setdefault(session.user_id, {})
        sessions[session.id] = session
        return len(sessions) == 1

    def remove(self, session: Session) -> bool:
        """Unregister a session; True if it was the user's last on this node."""
        sessions = self._by_user.get(session.user_id)
        if not sessions or sessions.pop(session.id, None) is None:
            return False
        if not sessions:
            del self._by_user[session.user_id]
            return True
        return False

    def sessions(self, user_id: str) -> list[Session]:
        found = self._by_user.get(user_id)
        return list(found.values()) if found else []

    def has_user(self, user_id: str) -> bool:
        return user_id in self._by_user

    def users(self) -> list[str]:
        return list(self._by_user)

    def all_sessions(self) -> Iterator[Session]:
        for sessions in list(self._by_user.values()):
            yield from list(sessions.values())

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_user.values())
