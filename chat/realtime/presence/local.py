"""Presence in the worker's memory: exact for a single process (no REDIS_URL)."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict

from chat.realtime.presence.snapshot import Snapshot, now_us


class LocalPresence:
    def __init__(self) -> None:
        self._rooms: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._typing: dict[tuple[int, int], float] = {}
        self._version = 0  # the last snapshot's, strictly increasing

    async def add(self, *, room_id: int, room_slug: str, username: str, socket_id: str) -> bool:
        """Record a socket in a room; True if the user was not listed before."""
        sockets = self._rooms[room_id][username]
        was_online = bool(sockets)
        sockets.add(socket_id)
        return not was_online

    async def remove(self, *, room_id: int, username: str, socket_id: str) -> bool:
        """Forget a socket; True if that was the user's last one in the room."""
        users = self._rooms.get(room_id)
        if users is None or username not in users:
            return False
        users[username].discard(socket_id)
        if users[username]:
            return False
        del users[username]
        if not users:
            del self._rooms[room_id]
        return True

    async def users(self, *, room_id: int) -> list[str]:
        return sorted(self._rooms.get(room_id, {}))

    async def count(self, *, room_id: int) -> int:
        return len(self._rooms.get(room_id, {}))

    async def page(self, *, room_id: int, after: str | None, limit: int) -> tuple[list[str], bool]:
        names = sorted(self._rooms.get(room_id, {}))
        start = bisect.bisect_right(names, after) if after is not None else 0
        return names[start : start + limit], start + limit < len(names)

    async def snapshot(self, *, room_id: int, limit: int) -> Snapshot:
        names = sorted(self._rooms.get(room_id, {}))
        self._version = max(self._version + 1, now_us())
        return Snapshot(names[:limit], len(names), self._version)

    async def online_of(self, *, room_id: int, usernames: list[str]) -> tuple[int, set[str]]:
        users = self._rooms.get(room_id, {})
        return len(users), {name for name in usernames if name in users}

    async def ready(self) -> None:
        """Raise if the backend cannot answer (nothing to ask here)."""

    async def typing_allowed(self, *, room_id: int, user_id: int, interval: float) -> bool:
        """At most one typing event per user and room per `interval` seconds."""
        now = time.monotonic()
        key = (room_id, user_id)
        if now - self._typing.get(key, -interval) < interval:
            return False
        self._typing[key] = now
        if len(self._typing) > 10_000:  # forget stale entries now and then
            self._typing = {k: t for k, t in self._typing.items() if now - t < interval}
        return True
