"""The chat WebSocket, frame by frame, through the full ASGI stack (origin check, session auth,
router) with channels' WebsocketCommunicator."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client

from chat import group_commit, services
from chat.models import Membership, Message, Room
from tests.support.outages import take_down
from tests.support.sockets import assert_frame_shape, open_socket, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lobby(make_room):
    return make_room("lobby", name="Lobby", topic="Say hello")


def post_messages(room: Room, author, count: int) -> None:
    for i in range(count):
        services.message_send(room=room, author=author, body=f"message {i + 1}")


# Handshake and authentication ---------------------------------------------------------------


async def test_anonymous_handshake_is_accepted_then_closed_4401():
    socket, connected, _ = await open_socket(cookie=None)
    assert connected
    assert await socket.closed_with() == 4401


async def test_invalid_session_cookie_is_closed_4401():
    socket, connected, _ = await open_socket(cookie="not-a-session")
    assert connected
    assert await socket.closed_with() == 4401


async def test_deactivated_user_is_closed_4403(alice):
    cookie = await database_sync_to_async(session_cookie)(alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    socket, connected, _ = await open_socket(cookie)
    assert connected
    assert await socket.closed_with() == 4403


@pytest.mark.parametrize("origin", ["http://evil.example", None, "null"])
async def test_foreign_or_missing_origin_is_refused_at_handshake(alice, origin):
    cookie = await database_sync_to_async(session_cookie)(alice)
    _, connected, _ = await open_socket(cookie, origin=origin)
    assert not connected


async def test_unknown_websocket_path_is_refused(alice):
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    cookie = await database_sync_to_async(session_cookie)(alice)
    headers = [(b"host", b"testserver"), (b"cookie", f"sessionid={cookie}".encode()), (b"origin", b"http://testserver")]
    connected, _ = await WebsocketCommunicator(application, "/ws/elsewhere/", headers=headers).connect()
    assert not connected


async def test_allowed_origin_with_session_is_accepted(alice, lobby, connect):
    socket = await connect(alice)
    reply = await socket.request("ping")
    assert reply["type"] == "pong"


# join / leave / presence --------------------------------------------------------------------


async def test_join_returns_room_info_latest_50_and_presence(alice, lobby, connect):
    await database_sync_to_async(post_messages)(lobby, alice, 60)
    socket = await connect(alice)
    joined = await socket.join("lobby")
    assert_frame_shape(joined)
    assert joined["room"] == "lobby"
    assert joined["info"] == {"slug": "lobby", "name": "Lobby", "topic": "Say hello", "private": False, "kind": "room"}
    assert [m["seq"] for m in joined["messages"]] == list(range(11, 61))
    assert joined["complete"] is True
    assert joined["presence"] == ["alice"]
    assert joined["messages"][-1]["author"] == "alice"
    assert joined["messages"][-1]["body"] == "message 60"
    assert joined["messages"][-1]["created_at"].endswith("Z")


async def test_join_since_returns_everything_after_and_flags_incomplete(alice, lobby, connect, settings):
    settings.CHAT_MAX_FRAME_BYTES = 1024 * 1024  # the count limit, not the size one (next test)
    await database_sync_to_async(post_messages)(lobby, alice, 20)
    socket = await connect(alice)
    joined = await socket.join("lobby", since=15)
    assert [m["seq"] for m in joined["messages"]] == [16, 17, 18, 19, 20]
    assert joined["complete"] is True

    def bulk():
        Message.objects.bulk_create(
            Message(room=lobby, author=alice, body=f"bulk {seq}", seq=seq) for seq in range(21, 621)
        )
        Room.objects.filter(pk=lobby.pk).update(last_seq=620)

    await database_sync_to_async(bulk)()
    catch_up = await socket.join("lobby", since=20)  # a join on a joined room is a catch-up
    assert len(catch_up["messages"]) == settings.CHAT_CATCHUP_LIMIT == 500
    assert catch_up["messages"][0]["seq"] == 21 and catch_up["messages"][-1]["seq"] == 520
    assert catch_up["complete"] is False
    rest = await socket.join("lobby", since=520)
    assert [m["seq"] for m in rest["messages"]] == list(range(521, 621))
    assert rest["complete"] is True


async def test_no_reply_is_larger_than_a_frame_may_be(alice, lobby, connect):
    """Daphne's 64 KiB limit (bin/daphne-worker) holds for what the server sends too: a catch-up
    or a history page that would be larger comes in parts, flagged as the protocol says."""

    def bulk():
        Message.objects.bulk_create(
            Message(room=lobby, author=alice, body=f"{seq:04} " + "é" * 1500, seq=seq) for seq in range(1, 201)
        )
        Room.objects.filter(pk=lobby.pk).update(last_seq=200)

    await database_sync_to_async(bulk)()
    socket = await connect(alice)
    output = await socket.request("join", room="lobby")  # the latest ones, as many as fit
    assert output["type"] == "joined"
    seqs = [m["seq"] for m in output["messages"]]
    assert 10 < len(seqs) < 50 and seqs == list(range(201 - len(seqs), 201))

    seen, since, complete, sizes = [], 0, False, []
    while not complete:
        await socket.send("join", room="lobby", since=since, ref="c")
        raw = await socket.communicator.receive_output(3)
        sizes.append(len(raw["text"].encode()))
        frame = json.loads(raw["text"])
        seen += [m["seq"] for m in frame["messages"]]
        since, complete = seen[-1], frame["complete"]
    assert seen == list(range(1, 201)) and len(sizes) > 3
    assert max(sizes) <= settings.CHAT_MAX_FRAME_BYTES == 65536

    await socket.send("history", room="lobby", limit=100, ref="h")
    raw = await socket.communicator.receive_output(3)
    page = json.loads(raw["text"])
    assert len(raw["text"].encode()) <= 65536 and page["has_more"] is True
    assert [m["seq"] for m in page["messages"]] == list(range(201 - len(page["messages"]), 201))


async def test_join_errors(alice, bob, make_room, connect):
    await database_sync_to_async(make_room)("attic", archived=True)
    await database_sync_to_async(make_room)("secret", private=True)
    banned = await database_sync_to_async(make_room)("banned")
    await database_sync_to_async(services.ban_create)(room=banned, user=alice, reason="spam")
    socket = await connect(alice)

    for slug, code in [
        ("nowhere", "not_found"),
        ("attic", "not_found"),
        ("secret", "forbidden"),
        ("banned", "forbidden"),
    ]:
        reply = await socket.request("join", room=slug)
        assert reply["type"] == "error", reply
        assert reply["code"] == code, (slug, reply)
        assert reply["room"] == slug
        assert reply["detail"]


async def test_private_room_member_can_join_and_non_member_cannot_send(alice, bob, make_room, connect):
    secret = await database_sync_to_async(make_room)("secret", private=True)
    await database_sync_to_async(services.membership_add)(room=secret, user=alice)
    a, b = await connect(alice), await connect(bob)
    assert (await a.join("secret"))["info"]["private"] is True
    refused = await b.request("send", room="secret", body="let me in")
    assert refused["code"] == "not_joined"
    refused = await b.request("history", room="secret")
    assert refused["code"] == "not_joined"
    assert await database_sync_to_async(Message.objects.filter(room=secret).count)() == 0


async def test_presence_lists_each_user_once_and_updates_on_leave_and_disconnect(alice, bob, lobby, connect):
    a = await connect(alice)
    await a.join("lobby")
    b1, b2 = await connect(bob), await connect(bob)
    joined = await b1.join("lobby")
    assert joined["presence"] == ["alice", "bob"]
    came = await a.expect("presence")
    assert came["users"] == ["alice", "bob"]
    # Each list carries the version of the read it came from: later reads, larger versions.
    assert came["version"] > joined["presence_version"]
    joined = await b2.join("lobby")  # a second tab: still one entry
    assert joined["presence"] == ["alice", "bob"] and joined["presence_version"] > came["version"]

    left = await b1.request("leave", room="lobby")
    assert left == {"type": "left", "room": "lobby", "ref": left["ref"]}
    await a.nothing("presence")  # bob is still here through b2
    await b2.close()
    presence = await a.expect("presence")
    assert presence == {"type": "presence", "room": "lobby", "users": ["alice"], "version": presence["version"]}
    assert presence["version"] > joined["presence_version"]


async def test_leave_unjoined_room_is_not_joined(alice, lobby, connect):
    socket = await connect(alice)
    reply = await socket.request("leave", room="lobby")
    assert reply["type"] == "error" and reply["code"] == "not_joined"


# send / ack / message ----------------------------------------------------------------------


async def test_send_is_acked_and_broadcast_after_storing(alice, bob, lobby, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    ack = await a.request("send", room="lobby", body="hello <b>bob</b>\nsecond line", client_id="c-1")
    assert_frame_shape(ack)
    assert ack["type"] == "ack" and ack["client_id"] == "c-1" and ack["seq"] == 1
    message = await b.expect("message")
    assert_frame_shape(message)
    assert message["room"] == "lobby"
    assert message["message"]["id"] == ack["id"]
    assert message["message"]["body"] == "hello <b>bob</b>\nsecond line"
    assert message["message"]["author"] == "alice"
    assert message["message"]["client_id"] == "c-1"
    stored = await database_sync_to_async(Message.objects.get)(pk=ack["id"])
    assert stored.body == "hello <b>bob</b>\nsecond line" and stored.seq == 1

    ack2 = await a.request("send", room="lobby", body="no client id")
    assert ack2["seq"] == 2 and ack2["client_id"] is None


async def test_send_with_same_client_id_is_idempotent(alice, bob, lobby, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    first = await a.request("send", room="lobby", body="once", client_id="retry-me")
    await b.expect("message")
    # The client reconnects and resends: nothing new is stored or broadcast.
    a2 = await connect(alice)
    await a2.join("lobby", since=0)
    again = await a2.request("send", room="lobby", body="once", client_id="retry-me")
    assert (again["id"], again["seq"]) == (first["id"], first["seq"])
    await b.nothing("message")
    assert await database_sync_to_async(Message.objects.count)() == 1


async def test_send_errors_keep_the_socket_usable(alice, lobby, connect):
    socket = await connect(alice)
    await socket.join("lobby")
    too_long = await socket.request("send", room="lobby", body="x" * (settings.CHAT_MAX_BODY + 1))
    assert too_long["code"] == "too_large" and too_long["room"] == "lobby"
    empty = await socket.request("send", room="lobby", body="   ")
    assert empty["code"] == "bad_request"
    not_joined = await socket.request("send", room="random", body="hi")
    assert not_joined["code"] == "not_joined"
    exactly_max = await socket.request("send", room="lobby", body="y" * settings.CHAT_MAX_BODY)
    assert exactly_max["type"] == "ack" and exactly_max["seq"] == 1


async def test_edit_own_message_is_shown_to_everyone_and_kept(alice, bob, lobby, connect):
    a, a_other_tab, b = await connect(alice), await connect(alice), await connect(bob)
    for socket in (a, a_other_tab, b):
        await socket.join("lobby")
    ack = await a.request("send", room="lobby", body="helo", client_id="e-1")
    await b.expect("message")
    reply = await a.request("edit", room="lobby", id=ack["id"], body="hello")
    assert_frame_shape(reply)
    assert reply["type"] == "message_edited"
    assert reply["message"]["body"] == "hello" and reply["message"]["seq"] == ack["seq"]
    assert reply["message"]["edited_at"] is not None
    for other in (a_other_tab, b):
        seen = await other.expect("message_edited")
        assert "ref" not in seen and seen["message"] == reply["message"]
    await a.nothing("message_edited")  # the editor got it once, as the reply
    # A client catching up later gets the edited text and the seq stays put: no gap, no new message.
    late = await connect(bob)
    joined = await late.join("lobby", since=0)
    assert [(m["seq"], m["body"], m["edited_at"] is not None) for m in joined["messages"]] == [(1, "hello", True)]
    stored = await database_sync_to_async(Message.objects.get)(pk=ack["id"])
    assert stored.body == "hello" and stored.edited_at is not None


async def test_delete_own_message_leaves_a_tombstone_for_everyone(alice, bob, lobby, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    first = await a.request("send", room="lobby", body="oops")
    await a.request("send", room="lobby", body="kept")
    reply = await a.request("delete", room="lobby", id=first["id"])
    tombstone = reply.pop("message")
    assert reply == {
        "type": "message_deleted",
        "room": "lobby",
        "id": first["id"],
        "seq": 1,
        "rev": 3,
        "ref": reply["ref"],
    }
    assert (tombstone["body"], tombstone["html"], tombstone["deleted"], tombstone["rev"]) == ("", "", True, 3)
    seen = await b.expect("message_deleted")
    assert (seen["id"], seen["seq"]) == (first["id"], 1)
    history = await b.request("history", room="lobby")
    assert [(m["seq"], m["body"], m.get("deleted", False)) for m in history["messages"]] == [
        (1, "", True),
        (2, "kept", False),
    ]


async def test_edit_and_delete_are_refused_for_others_messages_and_bad_input(alice, bob, lobby, make_room, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    ack = await a.request("send", room="lobby", body="alice's words")
    for frame_type, extra in (("edit", {"body": "bob's words"}), ("delete", {})):
        refused = await b.request(frame_type, room="lobby", id=ack["id"], **extra)
        assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
    assert (await a.request("edit", room="lobby", id=ack["id"], body="  "))["code"] == "bad_request"
    too_long = await a.request("edit", room="lobby", id=ack["id"], body="x" * (settings.CHAT_MAX_BODY + 1))
    assert too_long["code"] == "too_large"
    assert (await a.request("edit", room="lobby", id=ack["id"] + 99, body="x"))["code"] == "not_found"
    assert (await a.request("edit", room="lobby", id="1", body="x"))["code"] == "bad_request"
    assert (await a.request("edit", room="random", id=ack["id"], body="x"))["code"] == "not_joined"
    # a message of another room, even one's own, is not found through this room
    await database_sync_to_async(make_room)("random")
    await a.join("random")
    other = await a.request("send", room="random", body="elsewhere")
    assert (await a.request("edit", room="lobby", id=other["id"], body="x"))["code"] == "not_found"
    await a.request("delete", room="lobby", id=ack["id"])
    assert (await a.request("edit", room="lobby", id=ack["id"], body="back"))["code"] == "not_found"
    assert (await a.request("delete", room="lobby", id=ack["id"]))["code"] == "not_found"
    stored = await database_sync_to_async(Message.objects.get)(pk=ack["id"])
    assert stored.body == "alice's words" and stored.deleted


async def test_concurrent_senders_get_gapless_unique_seqs(alice, bob, make_user, lobby, connect):
    carol = await database_sync_to_async(make_user)("carol")
    sockets = [await connect(user) for user in (alice, bob, carol, alice, bob, carol)]
    for socket in sockets:
        await socket.join("lobby")

    async def burst(socket, n):
        acks = []
        for i in range(8):
            acks.append(await socket.request("send", room="lobby", body=f"{n}-{i}"))
        return acks

    results = await asyncio.gather(*(burst(s, n) for n, s in enumerate(sockets)))
    seqs = sorted(ack["seq"] for acks in results for ack in acks)
    assert seqs == list(range(1, 49))
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(room=lobby).values_list("seq", flat=True))
    )()
    assert sorted(stored) == list(range(1, 49))


# history / typing / read / ping --------------------------------------------------------------


async def test_history_pages_backwards(alice, lobby, connect):
    await database_sync_to_async(post_messages)(lobby, alice, 30)
    socket = await connect(alice)
    await socket.join("lobby")
    page = await socket.request("history", room="lobby", before=21, limit=10)
    assert_frame_shape(page)
    assert [m["seq"] for m in page["messages"]] == list(range(11, 21))
    assert page["has_more"] is True
    last = await socket.request("history", room="lobby", before=11, limit=100)
    assert [m["seq"] for m in last["messages"]] == list(range(1, 11))
    assert last["has_more"] is False
    newest = await socket.request("history", room="lobby")
    assert [m["seq"] for m in newest["messages"]] == list(range(1, 31))
    for bad in ({"limit": 0}, {"limit": 101}, {"before": -1}, {"limit": "10"}):
        reply = await socket.request("history", room="lobby", **bad)
        assert reply["code"] == "bad_request", bad


async def test_typing_reaches_others_throttled(alice, bob, lobby, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    await a.send("typing", room="lobby")
    typing = await b.expect("typing")
    assert typing == {"type": "typing", "room": "lobby", "username": "alice"}
    await a.send("typing", room="lobby")  # within 2 s: dropped
    await b.nothing("typing", wait=0.5)
    await a.nothing("typing", wait=0.1)  # the typist never hears itself


async def test_read_marker_moves_forward_only(alice, lobby, connect):
    await database_sync_to_async(post_messages)(lobby, alice, 5)
    socket = await connect(alice)
    await socket.join("lobby")
    await socket.send("read", room="lobby", seq=4)
    await socket.send("read", room="lobby", seq=2)
    await socket.send("read", room="lobby", seq=999)  # capped at the newest message
    await socket.request("ping")  # frames are handled in order: the reads are done

    def marker():
        return Membership.objects.get(user=alice, room=lobby).last_read_seq

    assert await database_sync_to_async(marker)() == 5


async def test_ping_answers_pong_with_newest_seqs(alice, lobby, connect):
    await database_sync_to_async(post_messages)(lobby, alice, 3)
    socket = await connect(alice)
    pong = await socket.request("ping")
    assert pong["type"] == "pong"
    await socket.join("lobby")
    pong = await socket.request("ping")
    assert pong["seqs"] == {"lobby": 3}


# Bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,code",
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('"just a string"', "bad_request"),
        ("{}", "bad_request"),
        ('{"type": 5}', "bad_request"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"type": "join"}', "bad_request"),
        ('{"type": "join", "room": 7}', "bad_request"),
        ('{"type": "join", "room": "lobby", "since": "3"}', "bad_request"),
        ('{"type": "join", "room": "lobby", "since": true}', "bad_request"),
        ('{"type": "join", "room": "lobby", "since": 1e400}', "bad_request"),
        ('{"type": "send", "room": "lobby", "body": ["x"]}', "bad_request"),
        ('{"type": "send", "room": "lobby", "body": "x", "client_id": "' + "c" * 65 + '"}', "bad_request"),
        ('{"type": "ping", "ref": "' + "r" * 65 + '"}', "bad_request"),
        ('{"type": "read", "room": "lobby"}', "bad_request"),
        ("[" * 5000 + "]" * 5000, "bad_request"),
        ('{"type": "send", "room": "lobby", "body": "lone \\ud800 surrogate"}', "bad_request"),
        ('{"type": "send", "room": "lobby", "body": "nul \\u0000 byte"}', "bad_request"),
        ('{"type": "join", "room": "lobby", "since": ' + "9" * 5000 + "}", "bad_request"),
        ('{"type": "join", "room": "lobby", "since": 99999999999999999999999}', "bad_request"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_lives_on(alice, lobby, connect, text, code):
    socket = await connect(alice)
    await socket.send_text(text)
    error = await socket.recv()
    assert_frame_shape(error)
    assert error["type"] == "error" and error["code"] == code, error
    assert error["detail"]
    assert (await socket.request("ping"))["type"] == "pong"


async def test_error_reply_echoes_ref(alice, connect):
    socket = await connect(alice)
    await socket.send("shout", ref="abc")
    error = await socket.recv()
    assert error == {"type": "error", "code": "unknown_type", "detail": error["detail"], "ref": "abc"}


async def test_binary_frame_is_bad_request(alice, connect):
    socket = await connect(alice)
    await socket.communicator.send_to(bytes_data=b"\x00\x01binary")
    error = await socket.recv()
    assert error["code"] == "bad_request"
    assert (await socket.request("ping"))["type"] == "pong"


async def test_unknown_fields_are_ignored(alice, lobby, connect):
    socket = await connect(alice)
    await socket.send("join", room="lobby", ref="j", colour="blue", extra={"deep": [1, 2]})
    assert (await socket.expect("joined"))["ref"] == "j"


async def test_rate_limit_refuses_beyond_burst_then_recovers(alice, connect):
    socket = await connect(alice)
    for i in range(30):
        await socket.send("ping", ref=str(i))
    frames = [await socket.recv() for _ in range(30)]
    pongs = [f for f in frames if f["type"] == "pong"]
    limited = [f for f in frames if f["type"] == "error"]
    # The bucket refills at 10 a second while the 30 frames are handled: a slow machine may
    # let one or two more through.
    assert settings.CHAT_RATE_BURST <= len(pongs) <= settings.CHAT_RATE_BURST + 2
    assert len(limited) == 30 - len(pongs) >= 8
    assert {f["code"] for f in limited} == {"rate_limited"}
    await asyncio.sleep(0.3)  # 10 tokens a second refill
    assert (await socket.request("ping"))["type"] == "pong"


async def test_persistent_abuse_is_closed_4429(alice, connect):
    socket = await connect(alice)
    for _ in range(settings.CHAT_ABUSE_LIMIT):
        await socket.send_text("garbage")
        assert (await socket.recv())["code"] in {"bad_request", "rate_limited"}
        await asyncio.sleep(0.1)  # stay under the rate limit: these are all invalid, not fast
    await socket.send_text("garbage")
    assert await socket.closed_with() == 4429


async def test_frame_over_64_kib_closes_4009_when_daphne_did_not(alice, connect):
    socket = await connect(alice)
    await socket.send_text(json.dumps({"type": "ping", "pad": "x" * 65_600}))
    assert await socket.closed_with() == 4009


# Session end --------------------------------------------------------------------------------


async def test_logout_closes_that_sessions_sockets_4401(alice, lobby):
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    other_cookie = await database_sync_to_async(session_cookie)(alice)
    mine, _, _ = await open_socket(cookie)
    other, _, _ = await open_socket(other_cookie)
    await mine.join("lobby")
    await other.join("lobby")
    response = await database_sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await mine.closed_with(timeout=5) == 4401
    assert (await other.request("ping"))["type"] == "pong"  # another session of alice lives on
    await other.close()


async def test_password_change_closes_other_sessions_4401(alice, bob, lobby):
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    other_cookie = await database_sync_to_async(session_cookie)(alice)
    other, _, _ = await open_socket(other_cookie)
    bobs, _, _ = await open_socket(await database_sync_to_async(session_cookie)(bob))
    await other.join("lobby")
    response = await database_sync_to_async(client.post)(
        "/accounts/password_change/",
        {
            "old_password": "correct-horse-42",
            "new_password1": "new-horse-staple-9",
            "new_password2": "new-horse-staple-9",
        },
    )
    assert response.status_code == 302, response.content
    assert await other.closed_with(timeout=5) == 4401
    assert (await bobs.request("ping"))["type"] == "pong"
    await bobs.close()


async def test_a_lost_session_end_event_is_caught_by_the_sweep(alice, lobby, settings, monkeypatch):
    """The channel layer may drop the logout event; the worker's periodic session check
    closes the socket anyway."""
    from chat import events

    settings.CHAT_SESSION_SWEEP_SECONDS = 0.3
    monkeypatch.setattr(events, "session_ended", lambda **kwargs: None)  # the event is lost
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    socket, _, _ = await open_socket(client.cookies[settings.SESSION_COOKIE_NAME].value)
    other, _, _ = await open_socket(await database_sync_to_async(session_cookie)(alice))
    await socket.join("lobby")
    await other.join("lobby")
    await database_sync_to_async(client.post)("/accounts/logout/")
    assert await socket.closed_with(timeout=3) == 4401
    await asyncio.sleep(0.7)  # two more sweeps: the valid session stays open
    assert (await other.request("ping"))["type"] == "pong"
    await other.close()


async def test_deactivation_closes_sockets_4401(alice, lobby, connect):
    socket = await connect(alice)
    await socket.join("lobby")
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    assert await socket.closed_with(timeout=5) == 4401


async def test_user_deletion_closes_sockets_4401(alice, connect):
    socket = await connect(alice)
    await database_sync_to_async(alice.delete)()
    assert await socket.closed_with(timeout=5) == 4401


# Staff actions act live ----------------------------------------------------------------------


@pytest.fixture
def staff_client(django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(admin)
    return client


async def test_admin_delete_pushes_message_deleted(alice, bob, lobby, staff_client, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    ack = await a.request("send", room="lobby", body="oops")
    await b.expect("message")
    response = await database_sync_to_async(staff_client.post)(
        "/admin/chat/message/", {"action": "delete_messages", "_selected_action": [ack["id"]]}
    )
    assert response.status_code == 302
    deleted = await b.expect("message_deleted")
    assert_frame_shape(deleted)
    assert deleted.pop("message")["deleted"] is True
    assert deleted == {
        "type": "message_deleted",
        "room": "lobby",
        "id": ack["id"],
        "seq": ack["seq"],
        "rev": ack["rev"] + 1,
    }
    # Catch-up keeps the seq (no gap) but not the body.
    joined = await b.join("lobby", since=0)
    assert joined["messages"][0]["seq"] == 1
    assert joined["messages"][0]["deleted"] is True and joined["messages"][0]["body"] == ""


async def test_admin_delete_of_a_direct_message_pushes_message_deleted(alice, bob, staff_client, connect):
    """Staff cannot read a direct message, but can delete it by id, and its members see that live."""
    room, _ = await database_sync_to_async(services.direct_open)(user=alice, usernames=["bob"])
    a, b = await connect(alice), await connect(bob)
    await a.join(room.slug)
    await b.join(room.slug)
    ack = await a.request("send", room=room.slug, body="buy this now: http://spam.example")
    await b.expect("message", room=room.slug)
    response = await database_sync_to_async(staff_client.post)(
        "/admin/chat/message/", {"action": "delete_messages", "_selected_action": [ack["id"]]}
    )
    assert response.status_code == 302
    deleted = await b.expect("message_deleted")
    assert_frame_shape(deleted)
    tombstone = deleted.pop("message")
    assert deleted == {
        "type": "message_deleted",
        "room": room.slug,
        "id": ack["id"],
        "seq": ack["seq"],
        "rev": ack["rev"] + 1,
    }
    assert tombstone["deleted"] is True and tombstone["body"] == "" and tombstone["html"] == ""
    joined = await b.join(room.slug, rev=ack["rev"])
    assert [(m["id"], m["rev"], m.get("deleted")) for m in joined["messages"]] == [(ack["id"], ack["rev"] + 1, True)]


async def test_admin_archive_closes_room_for_everyone(alice, bob, lobby, staff_client, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    response = await database_sync_to_async(staff_client.post)(
        "/admin/chat/room/", {"action": "archive_rooms", "_selected_action": [lobby.pk]}
    )
    assert response.status_code == 302
    for socket in (a, b):
        closed = await socket.expect("room_closed")
        assert_frame_shape(closed)
        assert closed == {"type": "room_closed", "room": "lobby", "reason": "archived"}
    # Unsubscribed: sending now is refused, and a new join finds no room.
    assert (await a.request("send", room="lobby", body="hello?"))["code"] == "not_joined"
    assert (await a.request("join", room="lobby"))["code"] == "not_found"


async def test_admin_ban_closes_room_for_that_user_only(alice, bob, lobby, staff_client, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    response = await database_sync_to_async(staff_client.post)(
        "/admin/chat/ban/add/", {"user": bob.pk, "room": lobby.pk, "reason": "spam"}
    )
    assert response.status_code == 302, response.content
    assert await b.expect("room_closed") == {"type": "room_closed", "room": "lobby", "reason": "banned"}
    await a.expect("presence", users=["alice"])
    assert (await b.request("join", room="lobby"))["code"] == "forbidden"
    assert (await a.request("send", room="lobby", body="still here"))["type"] == "ack"


async def test_admin_removing_private_member_closes_room_for_them(alice, bob, make_room, staff_client, connect):
    secret = await database_sync_to_async(make_room)("secret", private=True)
    await database_sync_to_async(services.membership_add)(room=secret, user=alice)
    membership = await database_sync_to_async(services.membership_add)(room=secret, user=bob)
    a, b = await connect(alice), await connect(bob)
    await a.join("secret")
    await b.join("secret")
    response = await database_sync_to_async(staff_client.post)(
        f"/admin/chat/membership/{membership.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert await b.expect("room_closed") == {"type": "room_closed", "room": "secret", "reason": "removed"}
    assert (await b.request("join", room="secret"))["code"] == "forbidden"
    await a.nothing("room_closed")


async def test_admin_deleting_room_closes_it(alice, lobby, staff_client, connect):
    socket = await connect(alice)
    await socket.join("lobby")
    response = await database_sync_to_async(staff_client.post)(f"/admin/chat/room/{lobby.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert await socket.expect("room_closed") == {"type": "room_closed", "room": "lobby", "reason": "deleted"}


# Nothing is lost ----------------------------------------------------------------------------


async def test_reconnect_with_since_gets_every_missed_message_once(alice, bob, lobby, connect):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    await a.request("send", room="lobby", body="before")
    seen = (await b.expect("message"))["message"]["seq"]
    await b.close()
    for i in range(5):
        await a.request("send", room="lobby", body=f"missed {i}")
    b2 = await connect(bob)
    joined = await b2.join("lobby", since=seen)
    assert [m["body"] for m in joined["messages"]] == [f"missed {i}" for i in range(5)]
    assert [m["seq"] for m in joined["messages"]] == [2, 3, 4, 5, 6]


async def test_message_dropped_by_the_layer_is_recovered_by_seq(alice, bob, lobby, connect, monkeypatch):
    """The channel layer may drop a broadcast; a client seeing the next seq's gap, or a pong
    with a higher seq, catches up from the database."""
    from chat import events

    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    real_send_now, real_publish = events._send_now, events.publish

    async def dropped(sends):
        pass

    monkeypatch.setattr(events, "_send_now", lambda group, event: None)  # the layer drops it
    monkeypatch.setattr(events, "publish", dropped)  # (a batch of sends' frames)
    lost = await a.request("send", room="lobby", body="dropped on the floor")
    monkeypatch.setattr(events, "_send_now", real_send_now)
    monkeypatch.setattr(events, "publish", real_publish)
    await b.nothing("message", wait=0.3)
    pong = await b.request("ping")
    assert pong["seqs"]["lobby"] == lost["seq"]  # b notices it is behind
    await a.request("send", room="lobby", body="next one")
    live = await b.expect("message")
    assert live["message"]["seq"] == lost["seq"] + 1  # a gap: b rejoins with since
    catch_up = await b.join("lobby", since=lost["seq"] - 1)
    assert [m["body"] for m in catch_up["messages"]] == ["dropped on the floor", "next one"]


async def test_admin_room_form_inline_removal_and_archive_checkbox_act_live(
    alice, bob, make_room, staff_client, connect
):
    secret = await database_sync_to_async(make_room)("secret", name="Secret", private=True)
    alice_member = await database_sync_to_async(services.membership_add)(room=secret, user=alice)
    bob_member = await database_sync_to_async(services.membership_add)(room=secret, user=bob)
    a, b = await connect(alice), await connect(bob)
    await a.join("secret")
    await b.join("secret")

    def change_form(*, delete_bob: bool, archived: bool) -> dict:
        data = {
            "slug": "secret",
            "name": "Secret",
            "topic": "",
            "private": "on",
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "2",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
        }
        if archived:
            data["archived"] = "on"
        for i, membership in enumerate([alice_member, bob_member]):
            data.update(
                {
                    f"memberships-{i}-id": str(membership.pk),
                    f"memberships-{i}-room": str(secret.pk),
                    f"memberships-{i}-user": str(membership.user_id),
                    f"memberships-{i}-role": "member",
                    f"memberships-{i}-invited": "on",  # as the form shows them: invited
                }
            )
        if delete_bob:
            data["memberships-1-DELETE"] = "on"
        return data

    url = f"/admin/chat/room/{secret.pk}/change/"
    response = await database_sync_to_async(staff_client.post)(url, change_form(delete_bob=True, archived=False))
    assert response.status_code == 302, response.content[:3000]
    assert await b.expect("room_closed") == {"type": "room_closed", "room": "secret", "reason": "removed"}
    await a.nothing("room_closed")

    response = await database_sync_to_async(staff_client.post)(
        url,
        {
            **change_form(delete_bob=False, archived=True),
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    assert await a.expect("room_closed") == {"type": "room_closed", "room": "secret", "reason": "archived"}


async def test_a_room_deleted_while_joined_answers_not_found(alice, lobby, connect, monkeypatch):
    """Even when the `room_closed` event is lost, frames for a deleted room get a clear error."""
    from chat import events

    socket = await connect(alice)
    await socket.join("lobby")
    monkeypatch.setattr(events, "_send_now", lambda group, event: None)
    await database_sync_to_async(services.room_delete)(room=lobby)
    for frame in ({"type": "send", "body": "hello?"}, {"type": "history"}, {"type": "read", "seq": 1}):
        await socket.send(room="lobby", ref="x", **frame)
        reply = await socket.recv()
        assert reply["type"] == "error" and reply["code"] == "not_found" and reply["room"] == "lobby", (frame, reply)


async def test_a_database_outage_answers_internal_and_keeps_the_socket(alice, bob, lobby, connect, monkeypatch):
    """PostgreSQL down (bench/faults.py restarts it for real): a send is answered with an
    `internal` error that says the database is not answering, nothing is acked or broadcast,
    the socket stays open, and the next send after the outage is stored and acked once."""
    from django.db import OperationalError

    from chat.realtime.consumers import DATABASE_DOWN

    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    real_send = group_commit.messages_send  # the socket's sends are stored in batches (chat.realtime.batcher)

    def database_down(**kwargs):
        raise OperationalError("connection failed: server closed the connection unexpectedly")

    monkeypatch.setattr(group_commit, "messages_send", database_down)
    refused = await a.request("send", room="lobby", body="during the outage", client_id="c-1")
    assert refused["type"] == "error" and refused["code"] == "internal"
    assert refused["detail"] == DATABASE_DOWN and refused["room"] == "lobby"
    await b.nothing("message", wait=0.3)
    monkeypatch.setattr(group_commit, "messages_send", real_send)
    acked = await a.request("send", room="lobby", body="during the outage", client_id="c-1")  # the Retry
    assert acked["type"] == "ack" and acked["seq"] == 1
    assert (await b.expect("message"))["message"]["body"] == "during the outage"
    assert await database_sync_to_async(Message.objects.filter(client_id="c-1").count)() == 1


@pytest.mark.parametrize("backend", ["redis", "database"])
async def test_a_handshake_while_a_backend_is_down_closes_with_4503(alice, lobby, monkeypatch, backend):
    """Redis down (the fan-out cannot subscribe the user's group) or the database down (the session
    cannot be read): the handshake is accepted and closed with 4503 at once, not answered with
    HTTP 500 (which a browser sees as 1006); bench/faults.py measures it on a real cluster."""
    cookie = await database_sync_to_async(session_cookie)(alice)
    take_down(monkeypatch, backend)
    socket, connected, _ = await open_socket(cookie)
    assert connected
    assert await socket.closed_with() == 4503
