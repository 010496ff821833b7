"""Who is online in each room, and the typing throttle.

Presence is counted per socket (its socket id) and shown per user: a user with two tabs is one
entry, and stays listed until their last socket leaves.

Two backends with the same interface, chosen by `get_presence()`:

- `LocalPresence` (no REDIS_URL): the worker's memory, exact for the single-process setup.
- `RedisPresence` (REDIS_URL set): shared by every worker. Entries are held under a lease per
  worker, which its worker pushes forward every CHAT_PRESENCE_TTL / 3 seconds with one script
  call however many sockets it holds; the same call reaps workers whose lease lapsed (they died
  without running any disconnect handler: SIGKILL, a lost host), atomically, and their rooms are
  told, so a ghost disappears from open pages within about 4/3 of the TTL (20 s by default).

What the rooms are told, a whole list or the changes, is chat.realtime.presence.announce's.
"""

from __future__ import annotations

from typing import Protocol

from django.conf import settings

from chat.realtime.presence.announce import reset_announcer
from chat.realtime.presence.local import LocalPresence
from chat.realtime.presence.redis import RedisPresence
from chat.realtime.presence.snapshot import Snapshot

__all__ = ["LocalPresence", "Presence", "RedisPresence", "Snapshot", "get_presence", "reset_presence"]


class Presence(Protocol):
    """What the consumer asks of a presence backend."""

    async def add(self, *, room_id: int, room_slug: str, username: str, socket_id: str) -> bool:
        """Record a socket in a room; True if the user was not listed before."""
        ...

    async def remove(self, *, room_id: int, username: str, socket_id: str) -> bool:
        """Forget a socket; True if that was the user's last one in the room."""
        ...

    async def users(self, *, room_id: int) -> list[str]:
        """The usernames online in the room, sorted."""
        ...

    async def count(self, *, room_id: int) -> int:
        """How many users are online in the room."""
        ...

    async def page(self, *, room_id: int, after: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to `limit` usernames online in the room, sorted, those after `after` (all when None),
        and whether more follow."""
        ...

    async def snapshot(self, *, room_id: int, limit: int) -> Snapshot:
        """The first `limit` usernames online in the room, sorted, with the count and a version,
        read atomically."""
        ...

    async def online_of(self, *, room_id: int, usernames: list[str]) -> tuple[int, set[str]]:
        """The room's count, and which of `usernames` are online in it."""
        ...

    async def ready(self) -> None:
        """Raise if the backend cannot answer."""
        ...

    async def typing_allowed(self, *, room_id: int, user_id: int, interval: float) -> bool:
        """At most one typing event per user and room per `interval` seconds."""
        ...


_backend: Presence | None = None


def get_presence() -> Presence:
    """Redis presence when REDIS_URL is set, the worker's memory otherwise."""
    global _backend
    if _backend is None:
        if settings.REDIS_URL:
            _backend = RedisPresence(settings.REDIS_URL, ttl=settings.CHAT_PRESENCE_TTL)
        else:
            _backend = LocalPresence()
    return _backend


def reset_presence() -> None:
    """(Tests) forget the backend, so the next `get_presence()` makes a new one from the settings."""
    global _backend
    _backend = None
    reset_announcer()
