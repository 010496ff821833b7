"""Conversations on the socket, through the full ASGI stack: the rev of every change (joined, ack,
live frames, pong, join with rev), reactions, threads, and direct conversations."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from chat import events, services
from chat.models import Room
from tests.support.sockets import Socket, assert_frame_shape

pytestmark = pytest.mark.django_db(transaction=True)

Connect = Callable[[User], Awaitable[Socket]]
EMOJI_21 = list("😀😁😂🤣😃😄😅😆😉😊😋😎😍😘🥰😗😙😚🙂🤗🤩")


@pytest.fixture
def lobby(make_room: Callable[..., Room]) -> Room:
    return make_room("lobby", name="Lobby")


@pytest.fixture
def carol(make_user: Callable[..., User]) -> User:
    return make_user("carol")


async def ask(socket: Socket, frame_type: str, **fields: Any) -> dict[str, Any]:
    """The reply to a frame, checked against the contract's shape."""
    reply = await socket.request(frame_type, **fields)
    assert_frame_shape(reply)
    return reply


async def refused(socket: Socket, code: str, frame_type: str, **fields: Any) -> dict[str, Any]:
    error = await ask(socket, frame_type, **fields)
    assert (error["type"], error["code"]) == ("error", code), (frame_type, fields, error)
    assert error["detail"]
    return error


async def heard(socket: Socket, frame_type: str, **match: Any) -> dict[str, Any]:
    """The next live frame of that type, checked against the contract's shape."""
    frame = await socket.expect(frame_type, **match)
    assert_frame_shape(frame)
    assert "ref" not in frame
    return frame


async def live(socket: Socket, count: int) -> list[dict[str, Any]]:
    """The next `count` frames other than presence and typing, each checked."""
    frames: list[dict[str, Any]] = []
    while len(frames) < count:
        frame = await socket.recv()
        if frame["type"] not in {"presence", "typing"}:
            assert_frame_shape(frame)
            frames.append(frame)
    return frames


def by_id(messages: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {message["id"]: message for message in messages}


# rev ----------------------------------------------------------------------------------------


async def test_a_rejoin_with_since_and_rev_brings_every_change_made_while_away(
    alice: User, bob: User, lobby: Room, connect: Connect
) -> None:
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    assert (await b.join("lobby"))["rev"] == 0
    acks = [await ask(a, "send", room="lobby", body=f"m{n}") for n in range(1, 5)]
    held: dict[int, dict[str, Any]] = {}  # what bob's client keeps
    last_seq = last_rev = 0
    for frame in await live(b, 4):
        held[frame["message"]["id"]] = frame["message"]
        last_seq, last_rev = frame["message"]["seq"], frame["rev"]
    assert (last_seq, last_rev) == (4, 4)
    await b.close()

    await ask(a, "edit", room="lobby", id=acks[1]["id"], body="m2, edited")  # rev 5
    await ask(a, "delete", room="lobby", id=acks[2]["id"])  # rev 6
    await ask(a, "react", room="lobby", id=acks[0]["id"], emoji="👍")  # rev 7
    reply = await ask(a, "send", room="lobby", body="in m4's thread", reply_to=acks[3]["id"])  # rev 8, m4 rev 9

    b = await connect(bob)
    joined = await b.join("lobby", since=last_seq, rev=last_rev)
    assert_frame_shape(joined)
    assert (joined["rev"], joined["complete"]) == (9, True)
    # Exactly what changed, each once, in the order of the changes.
    assert [(m["id"], m["rev"]) for m in joined["messages"]] == [
        (acks[1]["id"], 5),
        (acks[2]["id"], 6),
        (acks[0]["id"], 7),
        (reply["id"], 8),
        (acks[3]["id"], 9),
    ]
    changed = by_id(joined["messages"])
    assert (changed[acks[1]["id"]]["body"], changed[acks[1]["id"]]["html"]) == ("m2, edited", "<p>m2, edited</p>")
    assert changed[acks[1]["id"]]["edited_at"] is not None
    assert (changed[acks[2]["id"]]["deleted"], changed[acks[2]["id"]]["body"]) == (True, "")
    assert changed[acks[0]["id"]]["reactions"] == {"👍": ["alice"]}
    assert (changed[reply["id"]]["reply_to"], changed[reply["id"]]["seq"]) == (acks[3]["id"], 5)
    assert (changed[acks[3]["id"]]["reply_count"], changed[acks[3]["id"]]["repliers"]) == (1, ["alice"])
    # Applied to what bob held, his copy is now the room as it is.
    held.update(changed)
    history = await ask(b, "history", room="lobby")
    assert held == by_id(history["messages"])


async def test_a_catch_up_by_rev_comes_in_parts_when_long(
    alice: User, lobby: Room, connect: Connect, settings: Any
) -> None:
    settings.CHAT_CATCHUP_LIMIT = 2
    a = await connect(alice)
    await a.join("lobby")
    acks = [await ask(a, "send", room="lobby", body=f"m{n}") for n in range(1, 4)]
    for ack in reversed(acks):
        await ask(a, "edit", room="lobby", id=ack["id"], body="edited")  # revs 4, 5, 6
    seen: list[tuple[int, int]] = []
    rev, complete = 3, False
    while not complete:
        joined = await a.join("lobby", rev=rev)
        assert_frame_shape(joined)
        assert joined["rev"] == 6 and len(joined["messages"]) <= 2
        seen += [(m["id"], m["rev"]) for m in joined["messages"]]
        rev, complete = seen[-1][1], joined["complete"]
    assert seen == [(acks[2]["id"], 4), (acks[1]["id"], 5), (acks[0]["id"], 6)]


async def test_a_join_with_since_alone_keeps_the_order_of_seqs(alice: User, lobby: Room, connect: Connect) -> None:
    a = await connect(alice)
    await a.join("lobby")
    acks = [await ask(a, "send", room="lobby", body=f"m{n}") for n in range(1, 4)]
    await ask(a, "edit", room="lobby", id=acks[0]["id"], body="m1, edited")  # rev 4
    joined = await a.join("lobby", since=0)
    assert [(m["seq"], m["rev"], m["body"]) for m in joined["messages"]] == [
        (1, 4, "m1, edited"),
        (2, 2, "m2"),
        (3, 3, "m3"),
    ]
    joined = await a.join("lobby", since=0, rev=0)  # with rev: in the order of the changes
    assert [m["seq"] for m in joined["messages"]] == [2, 3, 1]


async def test_ack_and_joined_carry_the_rev(alice: User, bob: User, lobby: Room, connect: Connect) -> None:
    a = await connect(alice)
    await a.join("lobby")
    first = await ask(a, "send", room="lobby", body="once", client_id="c-1")
    assert (first["type"], first["seq"], first["rev"]) == ("ack", 1, 1)
    await ask(a, "react", room="lobby", id=first["id"], emoji="👍")  # rev 2
    # A resend gets the first message's id and seq, and its rev as it is now.
    again = await ask(a, "send", room="lobby", body="once", client_id="c-1")
    assert (again["type"], again["id"], again["seq"], again["rev"]) == ("ack", first["id"], 1, 2)
    b = await connect(bob)
    joined = await b.join("lobby")
    assert joined["rev"] == 2 and joined["messages"][0]["rev"] == 2


async def test_live_frames_carry_consecutive_revs_one_frame_per_rev(
    alice: User, bob: User, lobby: Room, connect: Connect
) -> None:
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    first = await ask(a, "send", room="lobby", body="first")
    edited = await ask(a, "edit", room="lobby", id=first["id"], body="first!")
    reacted = await ask(a, "react", room="lobby", id=first["id"], emoji="🎉")
    reply = await ask(a, "send", room="lobby", body="a reply", reply_to=first["id"])
    deleted = await ask(a, "delete", room="lobby", id=reply["id"])
    unreacted = await ask(a, "react", room="lobby", id=first["id"], emoji="🎉", on=False)
    # The author's replies carry the rev of their change.
    assert [frame["rev"] for frame in (first, edited, reacted, reply, deleted, unreacted)] == [1, 2, 3, 4, 6, 8]

    frames = await live(b, 8)
    assert [(frame["type"], frame["rev"]) for frame in frames] == [
        ("message", 1),
        ("message_edited", 2),
        ("message_updated", 3),
        ("message", 4),
        ("message_updated", 5),  # the thread's summary: one reply
        ("message_deleted", 6),
        ("message_updated", 7),  # no reply left
        ("message_updated", 8),
    ]
    assert all(frame["message"]["rev"] == frame["rev"] for frame in frames)
    assert [frame["message"]["reply_count"] for frame in frames if frame["message"]["id"] == first["id"]] == [
        0,
        0,
        0,
        1,
        0,
        0,
    ]
    await b.nothing("message_updated")


async def test_pong_names_each_joined_rooms_seq_and_rev(
    alice: User, lobby: Room, make_room: Callable[..., Room], connect: Connect
) -> None:
    await database_sync_to_async(make_room)("random")
    a = await connect(alice)
    await a.join("lobby")
    await a.join("random")
    ack = await ask(a, "send", room="lobby", body="hi")
    await ask(a, "react", room="lobby", id=ack["id"], emoji="👍")
    pong = await ask(a, "ping")
    assert (pong["seqs"], pong["revs"]) == ({"lobby": 1, "random": 0}, {"lobby": 2, "random": 0})


# Reactions ----------------------------------------------------------------------------------


async def test_react_on_and_off_reaches_everyone_and_a_no_op_reaches_nobody(
    alice: User, bob: User, lobby: Room, connect: Connect
) -> None:
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    ack = await ask(a, "send", room="lobby", body="react to me")
    await heard(b, "message")

    on = await ask(b, "react", room="lobby", id=ack["id"], emoji="👍")
    assert (on["type"], on["room"], on["rev"]) == ("message_updated", "lobby", 2)
    assert (on["message"]["reactions"], on["message"]["rev"], on["message"]["body"]) == (
        {"👍": ["bob"]},
        2,
        "react to me",
    )
    seen = await heard(a, "message_updated")
    assert (seen["rev"], seen["message"]) == (2, on["message"])

    again = await ask(b, "react", room="lobby", id=ack["id"], emoji="👍", on=True)
    assert (again["type"], again["rev"], again["message"]) == ("message_updated", 2, on["message"])
    await a.nothing("message_updated")

    off = await ask(b, "react", room="lobby", id=ack["id"], emoji="👍", on=False)
    assert (off["rev"], off["message"]["reactions"]) == (3, {})
    assert (await heard(a, "message_updated"))["rev"] == 3
    off_again = await ask(b, "react", room="lobby", id=ack["id"], emoji="👍", on=False)
    assert (off_again["type"], off_again["rev"], off_again["message"]["reactions"]) == ("message_updated", 3, {})
    await a.nothing("message_updated")
    await b.nothing("message_updated")  # the reacting socket got its replies, nothing more


async def test_react_errors(alice: User, bob: User, lobby: Room, connect: Connect) -> None:
    def crowded() -> tuple[int, int]:
        popular = services.message_send(room=lobby, author=alice, body="popular")[0]
        for emoji in EMOJI_21[:20]:
            services.reaction_set(room=lobby, user=alice, message_id=popular["id"], emoji=emoji)
        gone = services.message_send(room=lobby, author=alice, body="gone")[0]
        services.message_delete_own(room=lobby, author=alice, message_id=gone["id"])
        return popular["id"], gone["id"]

    popular, gone = await database_sync_to_async(crowded)()
    b = await connect(bob)
    await b.join("lobby")
    error = await refused(b, "bad_request", "react", room="lobby", id=popular, emoji=EMOJI_21[20])
    assert (error["detail"], error["room"]) == ("A message has at most 20 different reactions.", "lobby")
    assert (await ask(b, "react", room="lobby", id=popular, emoji=EMOJI_21[0]))["type"] == "message_updated"
    for emoji in ["👍👍", ":)", "a", ""]:
        error = await refused(b, "bad_request", "react", room="lobby", id=popular, emoji=emoji)
        assert (error["detail"], error["room"]) == ("'emoji' must be a single emoji.", "lobby")
    bad_fields: list[dict[str, Any]] = [{"emoji": 5}, {"emoji": "👍", "on": "yes"}, {"emoji": "👍" * 33}, {}]
    for bad in bad_fields:
        await refused(b, "bad_request", "react", room="lobby", id=popular, **bad)
    await refused(b, "not_found", "react", room="lobby", id=gone, emoji="👍")
    await refused(b, "not_found", "react", room="lobby", id=gone + 99, emoji="👍")
    await refused(b, "not_joined", "react", room="random", id=popular, emoji="👍")
    assert (await ask(b, "ping"))["revs"] == {"lobby": 24}  # 2 messages, 20 + 1 reactions, 1 deletion


# Threads ------------------------------------------------------------------------------------


async def test_a_reply_goes_out_live_then_its_roots_new_summary(
    alice: User, bob: User, lobby: Room, connect: Connect
) -> None:
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    root = await ask(a, "send", room="lobby", body="thoughts?")
    for socket in (a, b):
        await heard(socket, "message")
    reply = await ask(b, "send", room="lobby", body="**yes**", reply_to=root["id"], client_id="r-1")
    assert (reply["type"], reply["seq"], reply["rev"]) == ("ack", 2, 2)
    message, updated = await live(a, 2)
    assert (message["type"], message["rev"], message["message"]["id"]) == ("message", 2, reply["id"])
    assert (message["message"]["reply_to"], message["message"]["html"]) == (root["id"], "<p><strong>yes</strong></p>")
    assert (updated["type"], updated["rev"], updated["message"]["id"]) == ("message_updated", 3, root["id"])
    summary = updated["message"]
    assert (summary["reply_count"], summary["repliers"]) == (1, ["bob"])
    assert summary["last_reply_at"] == message["message"]["created_at"]

    await refused(b, "bad_request", "send", room="lobby", body="nested", reply_to=reply["id"])
    await refused(b, "not_found", "send", room="lobby", body="to nothing", reply_to=reply["id"] + 99)
    await refused(b, "bad_request", "send", room="lobby", body="x", reply_to=str(root["id"]))
    await ask(a, "delete", room="lobby", id=root["id"])
    await refused(b, "not_found", "send", room="lobby", body="too late", reply_to=root["id"])


async def test_thread_pages_a_threads_replies(alice: User, bob: User, lobby: Room, connect: Connect) -> None:
    def thread() -> tuple[int, list[int]]:
        root = services.message_send(room=lobby, author=alice, body="root")[0]
        services.message_send(room=lobby, author=alice, body="in the room")
        replies = [
            services.message_send(room=lobby, author=bob, body=f"reply {n}", reply_to=root["id"])[0]["id"]
            for n in range(5)
        ]
        return root["id"], replies

    root, replies = await database_sync_to_async(thread)()
    a = await connect(alice)
    await a.join("lobby")
    page = await ask(a, "thread", room="lobby", id=root, limit=3)
    assert (page["type"], page["room"], page["id"], page["has_more"]) == ("thread", "lobby", root, True)
    assert (page["root"]["id"], page["root"]["reply_count"], page["root"]["repliers"]) == (root, 5, ["bob"])
    assert [m["id"] for m in page["messages"]] == replies[2:]
    older = await ask(a, "thread", room="lobby", id=root, limit=3, before=page["messages"][0]["seq"])
    assert ([m["id"] for m in older["messages"]], older["has_more"]) == (replies[:2], False)
    everything = await ask(a, "thread", room="lobby", id=root)
    assert ([m["id"] for m in everything["messages"]], everything["has_more"]) == (replies, False)

    assert (await refused(a, "bad_request", "thread", room="lobby", id=replies[0]))["room"] == "lobby"
    assert (await refused(a, "not_found", "thread", room="lobby", id=replies[-1] + 99))["room"] == "lobby"
    await refused(a, "not_joined", "thread", room="random", id=root)
    bad_fields: list[dict[str, Any]] = [{"limit": 0}, {"limit": 101}, {"before": -1}, {"id": "1"}]
    for bad in bad_fields:
        await refused(a, "bad_request", "thread", room="lobby", **({"id": root} | bad))


# Direct conversations -----------------------------------------------------------------------


async def test_direct_names_the_conversation_of_those_people(
    alice: User, bob: User, make_user: Callable[..., User], connect: Connect
) -> None:
    a, b = await connect(alice), await connect(bob)
    opened = await ask(a, "direct", users=["bob"])
    slug = opened["room"]
    assert opened["type"] == "direct" and slug.startswith("dm-")
    assert opened["info"] == {
        "slug": slug,
        "name": "bob",
        "topic": "",
        "private": True,
        "kind": "direct",
        "members": ["alice", "bob"],
    }
    assert (await ask(a, "direct", users=["bob", "bob", "alice"]))["room"] == slug
    from_bob = await ask(b, "direct", users=["alice"])
    assert (from_bob["room"], from_bob["info"]["name"]) == (slug, "alice")
    joined = await a.join(slug)
    assert_frame_shape(joined)
    assert (joined["info"], joined["messages"], joined["rev"]) == (opened["info"], [], 0)

    await refused(a, "bad_request", "direct", users=[])
    await refused(a, "bad_request", "direct", users=["alice"])
    assert (await refused(a, "not_found", "direct", users=["bob", "zed"]))["detail"] == "No user 'zed'."
    await refused(a, "bad_request", "direct", users="bob")
    await refused(a, "bad_request", "direct", users=[f"user{n}" for n in range(10)])
    await refused(a, "bad_request", "direct")
    eight = [await database_sync_to_async(make_user)(f"user{n}") for n in range(8)]
    crowd = await ask(a, "direct", users=[user.username for user in eight])  # nine people
    assert crowd["type"] == "direct" and len(crowd["info"]["members"]) == 9
    too_many = [user.username for user in eight] + ["bob"]
    assert "at most 9" in (await refused(a, "bad_request", "direct", users=too_many))["detail"]


async def test_a_direct_message_reaches_the_other_members_sockets_whatever_they_joined(
    alice: User, bob: User, carol: User, lobby: Room, connect: Connect
) -> None:
    a, a_elsewhere = await connect(alice), await connect(alice)
    b_in_lobby, b_idle, c = await connect(bob), await connect(bob), await connect(carol)
    await b_in_lobby.join("lobby")
    await a_elsewhere.join("lobby")
    slug = (await ask(a, "direct", users=["bob"]))["room"]
    await a.join(slug)
    ack = await ask(a, "send", room=slug, body="psst")
    for socket in (b_in_lobby, b_idle):
        frame = await heard(socket, "direct_message")
        assert frame["room"] == slug
        assert (frame["info"]["name"], frame["info"]["members"], frame["info"]["kind"]) == (
            "alice",
            ["alice", "bob"],
            "direct",
        )
        assert (frame["message"]["id"], frame["message"]["body"], frame["message"]["author"]) == (
            ack["id"],
            "psst",
            "alice",
        )
    assert (await heard(a, "message"))["message"]["id"] == ack["id"]  # joined: the ordinary frame
    for socket in (a, a_elsewhere, c):
        await socket.nothing("direct_message")
    await b_in_lobby.nothing("message")  # not joined to the conversation: not its live flow


async def test_only_members_get_into_a_direct_conversation(
    alice: User, bob: User, carol: User, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    def conversation() -> tuple[Room, int]:
        room, _ = services.direct_open(user=alice, usernames=["bob"])
        return room, services.message_send(room=room, author=alice, body="between us")[0]["id"]

    room, message = await database_sync_to_async(conversation)()
    a, b, c = await connect(alice), await connect(bob), await connect(carol)
    error = await refused(c, "forbidden", "join", room=room.slug)
    assert error["room"] == room.slug
    # A socket that could not join has no business in the room (as for any room).
    outside: list[tuple[str, dict[str, Any]]] = [
        ("send", {"body": "let me in"}),
        ("history", {}),
        ("thread", {"id": message}),
        ("react", {"id": message, "emoji": "👍"}),
    ]
    for frame_type, fields in outside:
        await refused(c, "not_joined", frame_type, room=room.slug, **fields)

    # Bob leaves the conversation while joined, and the event that would close it for him is lost:
    # each frame is checked again.
    await a.join(room.slug)
    await b.join(room.slug)
    monkeypatch.setattr(events, "_send_now", lambda group, event: None)
    await database_sync_to_async(services.membership_remove)(room=room, user=bob)
    for frame_type, fields in outside:
        error = await refused(b, "forbidden", frame_type, room=room.slug, **fields)
        assert error["room"] == room.slug, error
    history = await ask(a, "history", room=room.slug)
    assert [(m["body"], m["reactions"]) for m in history["messages"]] == [("between us", {})]
