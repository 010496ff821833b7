"""Room fan-out inside one worker process: one channel-layer subscription per room, not per socket.

Channels' usual pattern puts every socket's channel in the room's group. A message to a room of
50 then becomes 50 channel-layer deliveries in each worker, each woken in its own consumer task,
dispatched, framed by autobahn and written. Here each worker process holds one channel of its own
(`RoomFanout.channel`), which joins the group of every room some local socket is in, and the
sockets register with it instead:

- a `chat.frame` event arrives once per worker and room; its frame is framed as a WebSocket
  message once (autobahn's `PreparedMessage`) and the same bytes are written to each local socket
  of the room, straight to Daphne's protocol (`ChatConsumer.push_frame`);
- any other room event (`chat.room_closed`) is handed to each socket's handler.

Nothing else changes: `chat.events` still sends to `room.<id>` groups, delivery stays at most
once (clients catch up by seq), and the same code runs on every layer (in-memory, Redis,
Redis pub/sub). Measured in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer

from . import events

if TYPE_CHECKING:
    from .consumers import ChatConsumer

logger = logging.getLogger(__name__)


class PreparedFrame:
    """One text frame, framed for the wire at most once however many sockets it goes to."""

    __slots__ = ("text", "_prepared")

    def __init__(self, text: str) -> None:
        self.text = text
        self._prepared = None

    def prepared(self):
        if self._prepared is None:
            from autobahn.websocket.protocol import PreparedMessage

            # A server never masks; Daphne negotiates no compression.
            self._prepared = PreparedMessage(self.text.encode(), False, False, True)
        return self._prepared


class RoomFanout:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.rooms: dict[int, set[ChatConsumer]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._subscribed: set[int] = set()
        self._reader: asyncio.Task | None = None

    async def add(self, room_id: int, consumer: ChatConsumer) -> None:
        """Register a socket in a room. Returns once this worker's subscription to the room is
        in place, so a message committed afterwards reaches the socket live."""
        if self.channel is None:
            self.channel = await self.layer.new_channel()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(), name="chat-room-fanout")
        self.rooms.setdefault(room_id, set()).add(consumer)
        if room_id not in self._subscribed:
            async with self._locks.setdefault(room_id, asyncio.Lock()):
                if room_id not in self._subscribed and self.rooms.get(room_id):
                    await self.layer.group_add(events.room_group(room_id), self.channel)
                    self._subscribed.add(room_id)

    async def discard(self, room_id: int, consumer: ChatConsumer) -> None:
        members = self.rooms.get(room_id)
        if members is None:
            return
        members.discard(consumer)
        if members:
            return
        async with self._locks.setdefault(room_id, asyncio.Lock()):
            if self.rooms.get(room_id) or room_id not in self._subscribed:
                return  # someone joined again meanwhile, or another discard did it
            self.rooms.pop(room_id, None)
            self._subscribed.discard(room_id)
            try:
                await self.layer.group_discard(events.room_group(room_id), self.channel)
            except Exception:  # Redis away: the group expires, and stray events find no socket
                logger.warning("Could not leave the group of room %s", room_id, exc_info=True)

    async def _read(self) -> None:
        backoff = 0.1
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # RedisChannelLayer raises while Redis restarts; clients catch up by seq
                logger.warning("The room fan-out could not read from the channel layer", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            try:
                self.deliver(event)
            except Exception:
                logger.exception("Could not fan out a %s event", event.get("type"))

    def deliver(self, event: dict[str, Any]) -> None:
        members = self.rooms.get(event.get("room_id"))
        if not members:
            return
        if event["type"] == "chat.frame":
            frame, skip = PreparedFrame(event["frame"]), event.get("skip")
            for consumer in list(members):
                if consumer.channel_name != skip:
                    try:
                        consumer.push_frame(event["room_id"], frame)
                    except Exception:  # one broken socket must not cost the others their copy
                        logger.exception("Could not write a frame to %s", consumer.channel_name)
        else:  # chat.room_closed: each socket leaves the room and says so
            for consumer in list(members):
                consumer.spawn(consumer.dispatch(event))


_fanouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RoomFanout] = weakref.WeakKeyDictionary()


def get_fanout() -> RoomFanout:
    """This process' fan-out for the running event loop (Daphne has one; tests start several)."""
    loop = asyncio.get_running_loop()
    fanout = _fanouts.get(loop)
    if fanout is None:
        fanout = _fanouts[loop] = RoomFanout()
    return fanout
