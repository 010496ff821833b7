"""A socket that asked for a change gets the room's frames in rev order: those held back while its
request was handled (ChatConsumer.receive) that carry an earlier rev go out before its reply, the
others after it (a sender's own message after its `ack`)."""

import asyncio
import json

from chat.realtime.consumers import ChatConsumer
from chat.realtime.fanout import PreparedFrame


def frame(room: str, rev: int | None) -> PreparedFrame:
    fields = {"type": "message_updated", "room": room} if rev is not None else {"type": "typing", "room": room}
    return PreparedFrame(json.dumps({**fields, **({"rev": rev} if rev is not None else {})}))


def test_held_frames_with_an_earlier_rev_go_before_the_reply_and_the_rest_after() -> None:
    consumer = ChatConsumer()
    written: list[str] = []
    consumer.closing = False
    consumer.rooms = {1: "lobby", 2: "random"}
    consumer.held = [
        (1, frame("lobby", 7)),  # bob's reaction, committed before alice's edit took rev 8
        (2, frame("random", 30)),  # another room's: its revs are its own
        (1, frame("lobby", None)),  # typing: no rev
        (1, frame("lobby", 8)),  # the change itself, as the room's group sent it
        (1, frame("lobby", 9)),  # a later change
    ]

    def push(room_id: int, prepared: PreparedFrame) -> None:
        if consumer.held is not None:
            consumer.held.append((room_id, prepared))
        else:
            written.append(prepared.text)

    async def send(text: str) -> None:
        written.append(text)

    consumer.push_frame = push  # type: ignore[method-assign]
    consumer.send = send  # type: ignore[method-assign]
    asyncio.run(consumer._reply_at_rev(1, 8, "the reply"))
    assert [json.loads(text).get("rev") if text != "the reply" else "reply" for text in written] == [
        7,
        30,
        None,
        "reply",
    ]
    assert [held.rev() for _, held in consumer.held] == [8, 9]  # sent by receive() once the request is done
