"""Telling a room who came and went: the whole list in small rooms, the changes in large ones.

While a room has at most CHAT_PRESENCE_LIST_MAX users online, each arrival and departure sends
`presence` with `users`, the whole sorted list, at once. Above that, sending the list to everyone
on every join would cost O(n^2) bytes to fill the room, so each worker collects the changes its own
sockets (and the workers it reaped) made to a room for up to CHAT_PRESENCE_BATCH_SECONDS and then
sends one `presence` {room, joined, left, online} for that room.

At the flush the worker reads, in one round trip, the room's count and which of the batch's users
are online now: a name is sent as joined only if it is online, as left only if it is not, so a
change that another worker overtook (or a join undone within the batch) is not replayed. If the
room has shrunk to the threshold by then, the whole list goes instead: dropping back under the
threshold always ends with a full list, which resets every client's view.

A whole list carries the version of the snapshot it was read in (`presence.version`, and
`joined.presence_version` for the joiner's): lists sent by different workers may arrive in any
order, and a client drops one older than the list it holds. Without that, a joiner whose `joined`
overtook the list announced for the previous arrival would show that older list until the next
change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings

from chat import events

if TYPE_CHECKING:
    from chat.realtime.presence import Presence

logger = logging.getLogger(__name__)

# A change frame stays far below the 64 KiB frame limit: names beyond this many bytes go in another.
CHANGE_FRAME_BUDGET = 32 * 1024


@dataclass
class Batch:
    backend: Presence
    slug: str
    joined: set[str] = field(default_factory=set)
    left: set[str] = field(default_factory=set)


class Announcer:
    """One per worker process."""

    def __init__(self) -> None:
        self.pending: dict[int, Batch] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def changed(
        self,
        backend: Presence,
        *,
        room_id: int,
        room_slug: str,
        joined: list[str] | tuple[str, ...] = (),
        left: list[str] | tuple[str, ...] = (),
        skip_socket: str | None = None,
    ) -> None:
        """Users came online in the room (`joined`) or went offline (`left`). `skip_socket`, a
        joiner that has the list already, gets no list frame."""
        if not joined and not left:
            return
        limit = settings.CHAT_PRESENCE_LIST_MAX
        now = await backend.snapshot(room_id=room_id, limit=limit)
        if now.online <= limit:
            self.pending.pop(room_id, None)  # the list says it all
            await events.presence(
                room_id=room_id, room_slug=room_slug, users=now.names, version=now.version, skip_socket=skip_socket
            )
            return
        batch = self.pending.get(room_id)
        if batch is None:
            batch = self.pending[room_id] = Batch(backend=backend, slug=room_slug)
            asyncio.get_running_loop().call_later(settings.CHAT_PRESENCE_BATCH_SECONDS, self._flush_soon, room_id)
        for name in joined:  # a departure undone within the batch is no change at all
            if name in batch.left:
                batch.left.discard(name)
            else:
                batch.joined.add(name)
        for name in left:
            if name in batch.joined:
                batch.joined.discard(name)
            else:
                batch.left.add(name)

    def _flush_soon(self, room_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self.flush(room_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def flush(self, room_id: int) -> None:
        batch = self.pending.pop(room_id, None)
        if batch is None:
            return
        try:
            await self._send(room_id, batch)
        except Exception:  # Redis or the channel layer away: the next change, or a rejoin, corrects it
            logger.warning("Could not announce presence in room %s", room_id, exc_info=True)

    async def _send(self, room_id: int, batch: Batch) -> None:
        names = sorted(batch.joined | batch.left)
        online, present = await batch.backend.online_of(room_id=room_id, usernames=names)
        limit = settings.CHAT_PRESENCE_LIST_MAX
        if online <= limit:
            now = await batch.backend.snapshot(room_id=room_id, limit=limit)
            if now.online <= limit:
                await events.presence(room_id=room_id, room_slug=batch.slug, users=now.names, version=now.version)
                return
        joined = [name for name in sorted(batch.joined) if name in present]
        left = [name for name in sorted(batch.left) if name not in present]
        for part_joined, part_left in _split(joined, left):
            await events.presence(
                room_id=room_id, room_slug=batch.slug, joined=part_joined, left=part_left, online=online
            )


def _split(joined: list[str], left: list[str]) -> list[tuple[list[str], list[str]]]:
    """The changes in frames of at most about CHANGE_FRAME_BUDGET bytes of names each."""
    parts: list[tuple[list[str], list[str]]] = []
    current: tuple[list[str], list[str]] = ([], [])
    size = 0
    for kind, names in ((0, joined), (1, left)):
        for name in names:
            cost = len(name.encode()) + 3
            if size + cost > CHANGE_FRAME_BUDGET and (current[0] or current[1]):
                parts.append(current)
                current, size = ([], []), 0
            current[kind].append(name)
            size += cost
    if current[0] or current[1]:
        parts.append(current)
    return parts


_announcer: Announcer | None = None


def get_announcer() -> Announcer:
    global _announcer
    if _announcer is None:
        _announcer = Announcer()
    return _announcer


def reset_announcer() -> None:
    """(Tests) forget pending batches."""
    global _announcer
    _announcer = None
