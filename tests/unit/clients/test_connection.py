"""clients.connection.ChatClient's bookkeeping over stand-in sockets: what it sends, resends and
asks for again across reconnects, gaps and refusals (the protocol itself is tested against real
workers in tests/e2e)."""

import asyncio
import json
from typing import Any

import pytest

from clients.connection import ChatClient, RequestError
from clients.endpoint import ClientError


class StandInSocket:
    """What ChatClient needs of a websockets connection; the test plays the server."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.incoming: asyncio.Queue[str | None] = asyncio.Queue()
        self.close_code: int | None = None
        self.close_reason = ""

    async def __aenter__(self) -> "StandInSocket":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.close_code is None:
            self.close_code = 1000

    def __aiter__(self) -> "StandInSocket":
        return self

    async def __anext__(self) -> str:
        text = await self.incoming.get()
        if text is None:
            raise StopAsyncIteration
        return text

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.drop(code, reason)

    def feed(self, frame: dict[str, Any]) -> None:
        self.incoming.put_nowait(json.dumps(frame))

    def drop(self, code: int = 1006, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.incoming.put_nowait(None)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.sent if frame["type"] == kind]


class StandInClient(ChatClient):
    """A ChatClient whose connections are stand-in sockets, handed out in order."""

    def __init__(self, **options: Any) -> None:
        super().__init__("ws://chat.test/ws/chat/", token="t", reconnect_max=0.01, ping_interval=None, **options)
        self.sockets: list[StandInSocket] = []
        self.failures: list[ClientError] = []  # the next attempts fail with these

    async def _connect(self) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        self.sockets.append(StandInSocket())
        return self.sockets[-1]

    @property
    def socket(self) -> StandInSocket:
        return self.sockets[-1]


def message(seq: int, body: str = "", **fields: Any) -> dict[str, Any]:
    return {"seq": seq, "id": 100 + seq, "author": "bob", "body": body or f"m{seq}", **fields}


def joined(room: str, *seqs: int, complete: bool = True, presence: tuple[str, ...] = ("alice",)) -> dict[str, Any]:
    return {
        "type": "joined",
        "room": room,
        "info": {"slug": room},
        "messages": [message(seq) for seq in seqs],
        "complete": complete,
        "presence": list(presence),
    }


async def connected(client: StandInClient, sockets: int = 1) -> StandInSocket:
    await client.wait_for(lambda: len(client.sockets) >= sockets and client.socket.of("join"), 2, "a join")
    return client.socket


@pytest.fixture
async def client():
    chat = StandInClient(rooms=["lobby"])
    task = asyncio.create_task(chat.run())
    yield chat
    await chat.close()
    for socket in chat.sockets:
        socket.drop()
    await asyncio.wait_for(task, 2)


async def test_every_message_from_seq_1_once_and_in_order(client):
    socket = await connected(client)
    assert socket.of("join") == [{"type": "join", "room": "lobby", "since": 0, "ref": socket.of("join")[0]["ref"]}]
    socket.feed(joined("lobby", 1, 2))
    socket.feed({"type": "message", "room": "lobby", "message": message(2)})  # live and caught up: once
    socket.feed({"type": "message", "room": "lobby", "message": message(3)})
    await client.wait_for(lambda: client.newest("lobby") == 3, 2, "three messages")
    assert client.bodies("lobby") == ["m1", "m2", "m3"]
    assert client.live == 2 and client.presence == {"lobby": ["alice"]} and client.connected


async def test_a_gap_or_a_pong_ahead_is_caught_up_with_since(client):
    socket = await connected(client)
    socket.feed(joined("lobby", 1))
    socket.feed({"type": "message", "room": "lobby", "message": message(4)})  # 2 and 3 were lost
    socket.feed({"type": "message", "room": "lobby", "message": message(5)})
    await client.wait_for(lambda: len(socket.of("join")) == 2, 2, "a catch-up join")
    await asyncio.sleep(0.05)
    assert socket.of("join")[1]["since"] == 1 and len(socket.of("join")) == 2  # one catch-up in flight at a time
    assert client.bodies("lobby") == ["m1"]  # 4 and 5 held back until the gap is filled
    socket.feed(joined("lobby", 2, 3, 4, 5))
    await client.wait_for(lambda: client.newest("lobby") == 5, 2, "the gap filled")
    assert client.bodies("lobby") == ["m1", "m2", "m3", "m4", "m5"]

    socket.feed({"type": "pong", "seqs": {"lobby": 7}})  # the last messages never came
    await client.wait_for(lambda: len(socket.of("join")) == 3, 2, "a join after the pong")
    assert socket.of("join")[2]["since"] == 5


async def test_a_batch_short_of_complete_asks_for_the_next(client):
    socket = await connected(client)
    socket.feed(joined("lobby", 1, 2, complete=False))
    await client.wait_for(lambda: len(socket.of("join")) == 2, 2, "the next batch")
    assert socket.of("join")[1]["since"] == 2


async def test_unacked_messages_are_sent_again_on_the_next_socket_with_the_same_client_id(client):
    client_id = await client.send("lobby", "queued before joining", wait=False)
    socket = await connected(client)
    assert socket.of("send") == []  # not before the room is joined on this socket
    socket.feed(joined("lobby"))
    await client.wait_for(lambda: socket.of("send"), 2, "the send")
    assert socket.of("send")[0]["client_id"] == client_id and socket.of("send")[0]["body"] == "queued before joining"

    socket.drop()  # no ack: lost with the connection
    second = await connected(client, sockets=2)
    assert second.of("join")[0]["since"] == 0 and client.reconnects == 1 and client.closes == [1006]
    second.feed(joined("lobby"))
    await client.wait_for(lambda: second.of("send"), 2, "the send again")
    assert second.of("send")[0]["client_id"] == client_id  # the server stores it once
    second.feed({"type": "ack", "room": "lobby", "client_id": client_id, "id": 101, "seq": 1})
    await client.wait_for(lambda: client_id in client.acks, 2, "the ack")
    assert client.pending == {} and client.recoveries


async def test_send_waits_for_the_ack_or_says_why_not(client):
    socket = await connected(client)
    socket.feed(joined("lobby"))
    await client.wait_for(lambda: client.connected, 2, "the join")

    async def answer(frame: dict[str, Any]) -> None:
        await client.wait_for(lambda: socket.of("send"), 2, "a send")
        socket.feed({**frame, "client_id": socket.of("send")[-1]["client_id"], "ref": socket.of("send")[-1]["ref"]})

    asyncio.get_running_loop().create_task(answer({"type": "ack", "room": "lobby", "id": 101, "seq": 1}))
    client_id = await client.send("lobby", "hello", timeout=2)
    assert client.acks[client_id]["seq"] == 1

    socket.sent.clear()
    refusal = {"type": "error", "code": "too_large", "detail": "The message is too long.", "room": "lobby"}
    asyncio.get_running_loop().create_task(answer(refusal))
    with pytest.raises(ClientError) as caught:
        await client.send("lobby", "x" * 5000, timeout=2)
    assert caught.value.message == "Message not sent to 'lobby': The message is too long." and caught.value.fixable
    [failed] = client.failed
    await client.retry(failed)  # the page's Retry button: the same client_id
    assert socket.of("send")[-1]["client_id"] == failed


async def test_a_rate_limited_send_goes_again_by_itself(client, monkeypatch):
    monkeypatch.setattr("clients.connection.RESEND_DELAY", 0.0)
    monkeypatch.setattr("clients.connection.random.random", lambda: 0.0)
    socket = await connected(client)
    socket.feed(joined("lobby"))
    client_id = await client.send("lobby", "busy", wait=False)
    await client.wait_for(lambda: socket.of("send"), 2, "the send")
    socket.feed({"type": "error", "code": "rate_limited", "detail": "Slow down.", "ref": socket.of("send")[0]["ref"]})
    await client.wait_for(lambda: len(socket.of("send")) == 2, 2, "the resend")
    assert socket.of("send")[1]["client_id"] == client_id and client.failed == {}


async def test_a_room_refused_for_good_is_dropped(client):
    socket = await connected(client)
    refused: list[str] = []
    client.on_join_failed = lambda room, frame: refused.append(room)
    socket.feed(
        {
            "type": "error",
            "code": "forbidden",
            "detail": "Private.",
            "room": "lobby",
            "ref": socket.of("join")[0]["ref"],
        }
    )
    await client.wait_for(lambda: refused, 2, "the refusal")
    assert "lobby" not in client.rooms and refused == ["lobby"]


async def test_a_deletion_leaves_a_tombstone(client):
    socket = await connected(client)
    socket.feed(joined("lobby", 1, 2))
    socket.feed({"type": "message_deleted", "room": "lobby", "id": 101, "seq": 1})
    await client.wait_for(lambda: client.messages["lobby"].get(1, {}).get("deleted"), 2, "the tombstone")
    assert client.messages["lobby"][1]["body"] == "" and client.bodies("lobby") == ["", "m2"]


async def test_a_final_close_ends_the_connection_and_says_why():
    client = StandInClient(rooms=["lobby"])
    task = asyncio.create_task(client.start())
    socket = await connected(client)
    socket.drop(4401)
    with pytest.raises(ClientError) as caught:
        await task
    assert "rejected the API token (close 4401)" in caught.value.message and caught.value.fixable
    assert client.reconnects == 0 and client.closes == [4401]


async def test_incoming_yields_new_messages_and_ends_at_a_final_close():
    client = StandInClient(rooms=["lobby"], backlog=1)
    starting = asyncio.create_task(client.start())
    socket = await connected(client)
    assert "since" not in socket.of("join")[0]  # the latest messages, not the whole room
    socket.feed(joined("lobby", 7, 8, 9))
    await starting
    received = []

    async def read() -> None:
        async for room, message in client.incoming():
            received.append((room, message["seq"]))

    reader = asyncio.create_task(read())
    socket.feed({"type": "message", "room": "lobby", "message": message(10)})
    await client.wait_for(lambda: client.newest("lobby") == 10, 2, "message 10")
    socket.drop(4403)
    with pytest.raises(ClientError, match="deactivated"):
        await asyncio.wait_for(reader, 2)
    assert client.bodies("lobby") == ["m9", "m10"] and received == [("lobby", 10)]


async def test_a_refused_handshake_to_fix_stops_at_once_and_others_are_retried():
    client = StandInClient(rooms=["lobby"])
    client.failures = [ClientError("busy"), ClientError("no such path", fixable=True)]
    with pytest.raises(ClientError, match="no such path"):
        await asyncio.wait_for(client.run(), 2)
    assert client.closes == [1006] and client.reconnects == 1


# Revs: edits, deletions, reactions and thread summaries converge ---------------------------------


def revised(seq: int, rev: int, body: str = "", **fields: Any) -> dict[str, Any]:
    return message(seq, body, **{"rev": rev, "reactions": {}, "reply_count": 0, **fields})


def joined_at(room: str, rev: int, *messages: dict[str, Any], complete: bool = True) -> dict[str, Any]:
    return {**joined(room, complete=complete), "messages": list(messages), "rev": rev}


class Recorder(StandInClient):
    """Writes down which hook saw which change."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: list[tuple[str, int | None, str]] = []
        self.direct_messages: list[tuple[str, str]] = []

    def on_message(self, room: Any, message: dict[str, Any]) -> None:
        self.seen.append(("new", message["seq"], message["body"]))

    def on_message_edited(self, room: Any, message: dict[str, Any]) -> None:
        self.seen.append(("edited", message["seq"], message["body"]))

    def on_message_deleted(self, room: Any, seq: int | None, message: dict[str, Any] | None) -> None:
        self.seen.append(("deleted", seq, ""))

    def on_message_updated(self, room: Any, message: dict[str, Any], before: dict[str, Any] | None) -> None:
        self.seen.append(("updated", message["seq"], ",".join(sorted(message.get("reactions") or {}))))

    def on_direct_message(self, room: str, info: dict[str, Any], message: dict[str, Any]) -> None:
        self.direct_messages.append((info.get("name", ""), message["body"]))


@pytest.fixture
async def recorder():
    chat = Recorder(rooms=["lobby"])
    task = asyncio.create_task(chat.run())
    yield chat
    await chat.close()
    for socket in chat.sockets:
        socket.drop()
    await asyncio.wait_for(task, 2)


async def test_each_change_is_applied_once_and_the_newest_copy_wins(recorder):
    socket = await connected(recorder)
    socket.feed(joined_at("lobby", 2, revised(1, 1), revised(2, 2)))
    edited = revised(1, 3, "m1 fixed", edited_at="2026-12-01T20:06:00Z")
    socket.feed({"type": "message_edited", "room": "lobby", "message": edited, "rev": 3})
    socket.feed({"type": "message_edited", "room": "lobby", "message": edited, "rev": 3})  # twice: once
    thumbs = revised(2, 4, reactions={"👍": ["bob"]})
    socket.feed({"type": "message_updated", "room": "lobby", "message": thumbs, "rev": 4})
    # A history read before the edit: its copy is older than the one held.
    socket.feed({"type": "history", "room": "lobby", "messages": [revised(1, 1)], "has_more": False})
    await recorder.wait_for(lambda: recorder.frames_of("history"), 2, "the history")
    assert recorder.seen == [("new", 1, "m1"), ("new", 2, "m2"), ("edited", 1, "m1 fixed"), ("updated", 2, "👍")]
    assert recorder.rooms["lobby"].rev == 4 and recorder.bodies("lobby") == ["m1 fixed", "m2"]
    assert recorder.messages["lobby"][2]["reactions"] == {"👍": ["bob"]}
    assert len(socket.of("join")) == 1  # nothing was missed


async def test_a_skipped_rev_joins_again_from_the_last_rev_applied(recorder):
    socket = await connected(recorder)
    socket.feed(joined_at("lobby", 2, revised(1, 1), revised(2, 2)))
    tombstone = {**revised(2, 5), "body": "", "deleted": True}
    socket.feed({"type": "message_deleted", "room": "lobby", "id": 102, "seq": 2, "rev": 5, "message": tombstone})
    await recorder.wait_for(lambda: len(socket.of("join")) == 2, 2, "a join after the gap")
    assert {k: v for k, v in socket.of("join")[1].items() if k != "ref"} == {
        "type": "join",
        "room": "lobby",
        "since": 2,
        "rev": 2,  # 3 and 4 never came: applied after this one, they are fetched
    }
    assert recorder.messages["lobby"][2]["deleted"] is True  # applied all the same
    assert recorder.rooms["lobby"].rev == 2
    # The catch-up, in rev order: an edit of 1 (rev 3), a new message (4), the deletion again (5).
    socket.feed(
        joined_at(
            "lobby",
            5,
            revised(1, 3, "m1 fixed", edited_at="2026-12-01T20:06:00Z"),
            revised(3, 4, "m3"),
            tombstone,
        )
    )
    await recorder.wait_for(lambda: recorder.rooms["lobby"].rev == 5, 2, "rev 5")
    assert recorder.seen[2:] == [("deleted", 2, ""), ("edited", 1, "m1 fixed"), ("new", 3, "m3")]
    assert recorder.bodies("lobby") == ["m1 fixed", "", "m3"]


async def test_a_pong_ahead_in_rev_and_a_reconnect_join_with_rev_and_since(recorder):
    socket = await connected(recorder)
    socket.feed(joined_at("lobby", 7, revised(1, 6), revised(2, 7)))
    socket.feed({"type": "pong", "seqs": {"lobby": 2}, "revs": {"lobby": 7}})  # up to date
    socket.feed({"type": "pong", "seqs": {"lobby": 2}, "revs": {"lobby": 8}})  # a reaction never came
    await recorder.wait_for(lambda: len(socket.of("join")) == 2, 2, "a join after the pong")
    assert (socket.of("join")[1]["since"], socket.of("join")[1]["rev"]) == (2, 7)
    socket.feed(joined_at("lobby", 8, revised(1, 8, reactions={"🎉": ["carol"]})))
    await recorder.wait_for(lambda: recorder.rooms["lobby"].rev == 8, 2, "rev 8")

    socket.drop()
    second = await connected(recorder, sockets=2)
    assert {k: v for k, v in second.of("join")[0].items() if k != "ref"} == {
        "type": "join",
        "room": "lobby",
        "since": 2,
        "rev": 8,
    }


async def test_a_partial_catch_up_asks_for_the_changes_after_the_last_one_received(recorder):
    socket = await connected(recorder)
    socket.feed(joined_at("lobby", 30, revised(3, 12), revised(2, 17), complete=False))  # 1 changed later
    await recorder.wait_for(lambda: len(socket.of("join")) == 2, 2, "the next batch")
    assert (socket.of("join")[1]["rev"], socket.of("join")[1]["since"]) == (17, 3)
    assert recorder.bodies("lobby") == []  # 2 and 3 wait for 1
    socket.feed(joined_at("lobby", 30, revised(1, 30)))
    await recorder.wait_for(lambda: recorder.newest("lobby") == 3, 2, "the three messages")
    assert recorder.rooms["lobby"].rev == 30


async def test_requests_that_answer_wait_for_their_answer(recorder):
    socket = await connected(recorder)
    socket.feed(joined_at("lobby", 1, revised(1, 1)))
    await recorder.wait_for(lambda: recorder.connected, 2, "the join")

    async def answer(kind: str, **frame: Any) -> None:
        await recorder.wait_for(lambda: socket.of(kind), 2, f"a {kind}")
        socket.feed({**frame, "ref": socket.of(kind)[-1]["ref"]})

    loop = asyncio.get_running_loop()
    thumbs = revised(1, 2, reactions={"👍": ["alice"]})
    loop.create_task(answer("react", type="message_updated", room="lobby", message=thumbs, rev=2))
    assert (await recorder.react("lobby", 101, "👍"))["reactions"] == {"👍": ["alice"]}
    assert {k: v for k, v in socket.of("react")[0].items() if k != "ref"} == {
        "type": "react",
        "room": "lobby",
        "id": 101,
        "emoji": "👍",
        "on": True,
    }
    assert recorder.messages["lobby"][1]["reactions"] == {"👍": ["alice"]} and recorder.rooms["lobby"].rev == 2

    refusal = {"type": "error", "code": "bad_request", "detail": "'emoji' must be a single emoji.", "room": "lobby"}
    loop.create_task(answer("react", **refusal))
    with pytest.raises(RequestError) as caught:
        await recorder.react("lobby", 101, "no", on=False)
    assert (caught.value.code, caught.value.message) == ("bad_request", "'emoji' must be a single emoji.")

    info = {"slug": "dm-0123456789abcdef", "kind": "direct", "name": "bob", "members": ["alice", "bob"]}
    loop.create_task(answer("direct", type="direct", room="dm-0123456789abcdef", info=info))
    assert await recorder.direct(["bob"]) == ("dm-0123456789abcdef", info)
    assert socket.of("direct")[0]["users"] == ["bob"]

    reply = revised(2, 3, "in a thread", reply_to=101)
    loop.create_task(
        answer("thread", type="thread", room="lobby", id=101, root=thumbs, messages=[reply], has_more=False)
    )
    thread = await recorder.thread("lobby", 101, limit=10)
    assert [m["body"] for m in thread["messages"]] == ["in a thread"]
    assert {k: v for k, v in socket.of("thread")[0].items() if k != "ref"} == {
        "type": "thread",
        "room": "lobby",
        "id": 101,
        "limit": 10,
    }
    assert [kind for kind, _room, _extra in recorder.requests.values()] == ["join"]  # the rest answered

    await recorder.send("lobby", "me too", reply_to=101, wait=False)
    assert socket.of("send")[0]["reply_to"] == 101

    socket.drop()  # a request on no socket says so at once
    await recorder.wait_for(lambda: recorder.ws is None, 2, "the drop")
    with pytest.raises(ClientError, match="Not connected"):
        await recorder.edit("lobby", 101, "text")


async def test_a_direct_message_reaches_its_hook(recorder):
    socket = await connected(recorder)
    socket.feed(joined_at("lobby", 0))
    info = {"slug": "dm-0123456789abcdef", "kind": "direct", "name": "bob", "members": ["alice", "bob"]}
    socket.feed(
        {"type": "direct_message", "room": "dm-0123456789abcdef", "info": info, "message": revised(1, 1, "psst")}
    )
    await recorder.wait_for(lambda: recorder.direct_messages, 2, "the direct message")
    assert recorder.direct_messages == [("bob", "psst")] and "dm-0123456789abcdef" not in recorder.rooms


async def test_start_with_another_room_while_connected_joins_it():
    client = StandInClient(rooms=["lobby"])
    starting = asyncio.create_task(client.start())
    socket = await connected(client)
    socket.feed(joined("lobby"))
    await starting

    async def answer() -> None:
        await client.wait_for(lambda: len(socket.of("join")) == 2, 2, "the second join")
        socket.feed(joined("random"))

    try:
        asyncio.get_running_loop().create_task(answer())
        await client.start("random", timeout=2)
        assert socket.of("join")[1]["room"] == "random" and client.rooms["random"].joined_here
    finally:
        await client.stop()


async def test_presence_changes_amend_the_list_and_a_whole_list_replaces_it(client):
    socket = await connected(client)
    capped = {**joined("lobby", presence=("alice", "ann")), "online": 5, "presence_complete": False}
    socket.feed(capped)
    await client.wait_for(lambda: client.presence.get("lobby") == ["alice", "ann"], 2, "the capped list")
    room = client.rooms["lobby"]
    assert (room.online, room.presence_complete) == (5, False)
    socket.feed({"type": "presence", "room": "lobby", "joined": ["zoe"], "left": ["ann", "nobody"], "online": 5})
    await client.wait_for(lambda: client.presence.get("lobby") == ["alice", "zoe"], 2, "the changes")
    assert room.online == 5
    socket.feed({"type": "presence", "room": "lobby", "users": ["alice", "bob"]})
    await client.wait_for(lambda: client.presence.get("lobby") == ["alice", "bob"], 2, "the whole list")
    assert (room.online, room.presence_complete) == (2, True)


async def test_a_whole_list_read_before_the_one_held_is_dropped(client):
    """Two workers announce in turn, and the older list arrives after the joiner's `joined`: the
    client keeps the newer one instead of showing someone as offline until the next change."""
    socket = await connected(client)
    socket.feed({**joined("lobby", presence=("alice", "bob", "carol")), "presence_version": 200})
    await client.wait_for(lambda: client.presence.get("lobby") == ["alice", "bob", "carol"], 2, "the list")
    socket.feed({"type": "presence", "room": "lobby", "users": ["alice", "bob"], "version": 150})  # late
    socket.feed({"type": "presence", "room": "lobby", "joined": ["dan"], "online": 4})  # in order after it
    await client.wait_for(lambda: client.presence.get("lobby") == ["alice", "bob", "carol", "dan"], 2, "dan")
    socket.feed({"type": "presence", "room": "lobby", "users": ["alice", "dan"], "version": 300})
    await client.wait_for(lambda: client.presence.get("lobby") == ["alice", "dan"], 2, "bob and carol gone")
    assert client.rooms["lobby"].presence_version == 300
