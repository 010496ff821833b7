"""Fan-out inside one worker process: one channel-layer subscription per group, not per socket.

Channels' usual pattern gives every socket a channel and puts it in its groups. A message to a
room of 50 then becomes 50 channel-layer deliveries in each worker, each woken in its own
consumer task, dispatched, framed by autobahn and written; and every socket holds a channel, a
queue and a task that wait on the layer. Here each worker process holds one channel
(`Fanout.channel`), which joins every group (`room.<id>`, `user.<id>`) some local socket is in;
the sockets register with it and have no channel of their own:

- a `chat.frame` event arrives once per worker and room; its frame is framed as a WebSocket
  message once (autobahn's `PreparedMessage`) and the same bytes are written to each local socket
  of the room, straight to Daphne's protocol (`ChatConsumer.push_frame`);
- any other event (`chat.room_closed`, `chat.session_ended`, ...) is handed to each socket's
  handler for that group.

`chat.events` names the group in each event it sends; delivery
stays at most once (clients catch up by seq), and the same code runs on every layer (in-memory,
Redis, Redis pub/sub). Measured in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import TYPE_CHECKING, Any

from chat.events import channel_layer
from chat.ops import metrics
from chat.realtime.daphne import prepare_frame

if TYPE_CHECKING:
    from autobahn.websocket.protocol import PreparedMessage

    from chat.realtime.consumers import ChatConsumer

logger = logging.getLogger(__name__)


class PreparedFrame:
    """One text frame, framed for the wire at most once however many sockets it goes to."""

    __slots__ = ("text", "_prepared", "_kind")

    def __init__(self, text: str) -> None:
        self.text = text
        self._prepared: PreparedMessage | None = None
        self._kind: str | None = None

    def count_sent(self) -> None:
        """Count one copy of this frame sent (its type read from the text once, not per socket)."""
        if self._kind is None:
            self._kind = metrics.frame_kind(self.text)
            if self._kind is None:  # an error frame (never a room's): counted with its code
                metrics.frame_sent(self.text)
                return
        metrics.frames_sent(self._kind)

    def prepared(self) -> PreparedMessage:
        if self._prepared is None:
            self._prepared = prepare_frame(self.text)
        return self._prepared

    def rev(self) -> int | None:
        """The rev the frame carries (a change to a message), read only when a socket holds it
        back (ChatConsumer.receive): never on the way to every socket."""
        rev = json.loads(self.text).get("rev")
        return rev if isinstance(rev, int) else None


class Fanout:
    def __init__(self) -> None:
        self.layer = channel_layer()
        self.channel: str | None = None
        self.members: dict[str, set[ChatConsumer]] = {}  # group -> this worker's sockets in it
        self._locks: dict[str, asyncio.Lock] = {}
        self._subscribed: set[str] = set()
        self._reader: asyncio.Task | None = None
        self._channel_lock = asyncio.Lock()

    async def add(self, group: str, consumer: ChatConsumer) -> None:
        """Put a socket in a group. Returns once this worker's subscription to the group is in
        place, so an event sent afterwards reaches the socket live."""
        self.members.setdefault(group, set()).add(consumer)
        try:
            if self.channel is None or self._reader is None or self._reader.done():
                async with self._channel_lock:  # many sockets connect at once: one channel, one reader
                    if self.channel is None:
                        self.channel = await self.layer.new_channel()
                    if self._reader is None or self._reader.done():
                        self._reader = asyncio.get_running_loop().create_task(
                            self._read(self.channel), name="chat-fanout"
                        )
            if group not in self._subscribed:
                async with self._locks.setdefault(group, asyncio.Lock()):
                    if group not in self._subscribed and self.members.get(group):
                        await self.layer.group_add(group, self.channel)
                        self._subscribed.add(group)
        except BaseException:  # Redis is away: not in the group (the next add tries again)
            members = self.members.get(group, set())
            members.discard(consumer)
            if not members and group not in self._subscribed:
                self.members.pop(group, None)
            raise

    def forget(self, group: str, consumer: ChatConsumer) -> None:
        """Stop handing the group's events to a socket, at once and without waiting on anything.
        The worker's subscription stays until `discard` (which a socket that ends calls next)
        finds the group empty."""
        members = self.members.get(group)
        if members is not None:
            members.discard(consumer)

    async def discard(self, group: str, consumer: ChatConsumer) -> None:
        members = self.members.get(group)
        if members is None:
            return
        members.discard(consumer)
        if members:
            return
        async with self._locks.setdefault(group, asyncio.Lock()):
            if self.members.get(group) or group not in self._subscribed:
                return  # someone joined again meanwhile, or another discard did it
            self.members.pop(group, None)
            self._subscribed.discard(group)
            self._locks.pop(group, None)
            try:
                assert self.channel is not None  # a group is subscribed through the channel
                await self.layer.group_discard(group, self.channel)
            except Exception:  # Redis away: the group expires, and stray events find no socket
                logger.warning("Could not leave the group %s", group, exc_info=True)

    async def _read(self, channel: str) -> None:
        backoff = 0.1
        while True:
            try:
                event = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # RedisChannelLayer raises while Redis restarts; clients catch up by seq
                logger.warning("The fan-out could not read from the channel layer", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            try:
                self.deliver(event)
            except Exception:
                logger.exception("Could not fan out a %s event", event.get("type"))

    def deliver(self, event: dict[str, Any]) -> None:
        members = self.members.get(event.get("group", ""))
        if not members:
            return
        if event["type"] == "chat.frame":
            frame, skip = PreparedFrame(event["frame"]), event.get("skip")
            for consumer in list(members):
                if consumer.socket_id != skip:
                    try:
                        consumer.push_frame(event["room_id"], frame)
                    except Exception:  # one broken socket must not cost the others their copy
                        logger.exception("Could not write a frame to %s", consumer.socket_id)
        else:  # room_closed, session_ended, token_revoked, revalidate: each socket's handler
            for consumer in list(members):
                consumer.spawn(consumer.dispatch(event))


_fanouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Fanout] = weakref.WeakKeyDictionary()


def get_fanout() -> Fanout:
    """This process' fan-out for the running event loop (Daphne has one; tests start several)."""
    loop = asyncio.get_running_loop()
    fanout = _fanouts.get(loop)
    if fanout is None:
        fanout = _fanouts[loop] = Fanout()
    return fanout
