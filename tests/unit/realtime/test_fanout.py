"""The worker's fan-out (chat.realtime.fanout): one channel-layer subscription per group and worker,
each room frame framed once and written to every local socket of the room, other events handed
to each socket of the group.

These use the in-process layer and stand-in sockets; tests/e2e/test_fanout.py checks the same on
a real Daphne worker (what the socket sees: the frames, their order, and nothing for sockets
that left)."""

import asyncio
import time

import pytest
from channels.layers import get_channel_layer

from chat import events
from chat.realtime.fanout import Fanout


class StandIn:
    """What RoomFanout needs of a ChatConsumer."""

    def __init__(self, name: str) -> None:
        self.socket_id = name
        self.pushed: list[tuple[int, str, bytes]] = []
        self.dispatched: list[dict] = []

    def push_frame(self, room_id, frame) -> None:
        self.pushed.append((room_id, frame.text, frame.prepared().payloadHybi))

    def spawn(self, coroutine) -> None:
        asyncio.get_running_loop().create_task(coroutine)

    async def dispatch(self, event) -> None:
        self.dispatched.append(event)


async def eventually(check, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


@pytest.fixture
async def fanout():
    made = Fanout()
    yield made
    if made._reader is not None:
        made._reader.cancel()


def test_a_chat_socket_gets_no_channel_of_its_own():
    """Channels would give each consumer a channel (and a reader task); the fan-out replaces both."""
    from chat.realtime.consumers import ChatConsumer

    assert get_channel_layer() is not None
    assert get_channel_layer(ChatConsumer.channel_layer_alias) is None


async def test_one_subscription_per_room_however_many_sockets(fanout):
    layer = get_channel_layer()
    a, b, c = StandIn("a"), StandIn("b"), StandIn("c")
    await asyncio.gather(
        fanout.add(events.room_group(101), a),
        fanout.add(events.room_group(101), b),
        fanout.add(events.room_group(102), c),
    )
    assert layer.groups[events.room_group(101)].keys() == {fanout.channel}
    assert layer.groups[events.room_group(102)].keys() == {fanout.channel}

    await fanout.discard(events.room_group(101), a)
    assert fanout.channel in layer.groups[events.room_group(101)], "b is still in room 101"
    await fanout.discard(events.room_group(101), b)
    assert fanout.channel not in layer.groups.get(events.room_group(101), {}), "nobody left: unsubscribed"
    await fanout.discard(events.room_group(101), b)  # twice: harmless
    await fanout.discard(events.room_group(102), c)


async def test_sockets_that_connect_at_once_share_one_channel_and_reader(fanout, monkeypatch):
    # On Redis, new_channel() waits for a SUBSCRIBE: sockets arriving meanwhile must not make a
    # second channel (the reader would wait on one while the groups point at the other).
    from channels.layers import InMemoryChannelLayer

    real = InMemoryChannelLayer.new_channel

    async def slow_new_channel(self, prefix="specific."):
        await asyncio.sleep(0.05)
        return await real(self, prefix)

    monkeypatch.setattr(InMemoryChannelLayer, "new_channel", slow_new_channel)
    sockets = [StandIn(f"s{i}") for i in range(10)]
    await asyncio.gather(*(fanout.add(events.room_group(150 + i % 2), s) for i, s in enumerate(sockets)))
    for room in (150, 151):
        await events._group_send(
            events.room_group(room), {"type": "chat.frame", "room_id": room, "frame": "{}", "skip": None}
        )
    await eventually(lambda: all(s.pushed for s in sockets))


async def test_a_frame_is_framed_once_and_reaches_each_socket_but_the_skipped_one(fanout):
    a, b, c, elsewhere = StandIn("a"), StandIn("b"), StandIn("c"), StandIn("d")
    for socket in (a, b, c):
        await fanout.add(events.room_group(201), socket)
    await fanout.add(events.room_group(202), elsewhere)

    frame = '{"type":"typing","room":"r","username":"a"}'
    await events._group_send(
        events.room_group(201), {"type": "chat.frame", "room_id": 201, "frame": frame, "skip": "a"}
    )
    await eventually(lambda: b.pushed and c.pushed)
    assert a.pushed == [] and elsewhere.pushed == []
    (_, text_b, wire_b), (_, text_c, wire_c) = b.pushed[0], c.pushed[0]
    assert text_b == text_c == frame
    assert wire_b is wire_c, "the same framed bytes for every socket"
    assert wire_b == b"\x81" + bytes([len(frame)]) + frame.encode(), "an unmasked text frame"

    # Other room events go to each socket's own handler.
    closed = {"type": "chat.room_closed", "room_id": 201, "room": "r", "reason": "archived"}
    await events._group_send(events.room_group(201), closed)
    await eventually(lambda: len(a.dispatched) == len(b.dispatched) == len(c.dispatched) == 1)
    assert a.dispatched[0]["reason"] == "archived" and elsewhere.dispatched == []

    # A socket's user group: its events reach that user's sockets only.
    await fanout.add(events.user_group(7), a)
    await events._group_send(events.user_group(7), {"type": "chat.revalidate"})
    await eventually(lambda: len(a.dispatched) == 2)
    assert a.dispatched[1]["type"] == "chat.revalidate" and len(b.dispatched) == len(c.dispatched) == 1


async def test_a_failing_socket_does_not_stop_the_others(fanout):
    class Broken(StandIn):
        def push_frame(self, room_id, frame) -> None:
            raise RuntimeError("boom")

    broken, fine = Broken("x"), StandIn("y")
    await fanout.add(events.room_group(301), broken)
    await fanout.add(events.room_group(301), fine)
    event = {"type": "chat.frame", "room_id": 301, "frame": '{"type":"x"}', "skip": None}
    await events._group_send(events.room_group(301), event)
    await events._group_send(events.room_group(301), event)
    await eventually(lambda: len(fine.pushed) >= 1)
    assert fanout._reader is not None and not fanout._reader.done(), "the reader lives on"


# On a real worker ---------------------------------------------------------------------------
