"""Unread state: mentions stored at send and edit, the counts the sidebar shows (own, deleted and
thread replies left out), notification settings, and the watch/activity/unread/notify frames."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from chat import mentions, selectors, services, unread
from chat.errors import ChatError
from chat.models import Mention, Room
from tests.support.sockets import Socket, assert_frame_shape

Connect = Callable[[User], Awaitable[Socket]]


def send(room: Room, author: User, body: str, **extra: Any) -> dict[str, Any]:
    return services.message_send(room=room, author=author, body=body, **extra)[0]


@pytest.fixture
def carol(make_user: Callable[..., User]) -> User:
    return make_user("carol")


# Mentions -----------------------------------------------------------------------------------


def test_mentions_follow_the_pages_rules() -> None:
    html = (
        '<p>@bob and @Carol. mail me@bob.example, <a href="https://x.example">@dave</a> '
        "<code>@erin</code> (@frank) @bob again @a.b-c_</p><pre><code>@gina</code></pre>"
    )
    assert mentions.mentioned_names(html=html) == ["bob", "Carol", "frank", "a.b-c_"]


@pytest.mark.django_db
def test_a_mention_counts_for_people_who_may_read_the_room_and_never_the_author(
    alice: User, bob: User, carol: User, make_user: Callable[..., User], make_room: Callable[..., Room]
) -> None:
    make_user("dave", is_active=False)
    lobby = make_room("lobby")
    staff = make_room("staff", private=True)
    services.membership_add(room=staff, user=alice)
    services.ban_create(room=lobby, user=carol)
    message = send(lobby, alice, "@BOB @carol @dave @alice @nobody `@bob`")
    assert mentions.mentions_of(message_id=message["id"]) == ["bob"]
    assert mentions.mentions_of(message_id=send(staff, alice, "@bob see this")["id"]) == []

    services.message_edit(room=lobby, author=alice, message_id=message["id"], body="no one now")
    assert mentions.mentions_of(message_id=message["id"]) == []
    services.message_edit(room=lobby, author=alice, message_id=message["id"], body="@bob after all")
    assert list(mentions.mentions_after(user=bob, room=lobby, seq=0).values_list("seq", flat=True)) == [1]
    assert Mention.objects.filter(message_id=message["id"]).count() == 1


# Counts -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_carol_sees_only_what_others_wrote_in_the_rooms_flow(
    alice: User, bob: User, carol: User, make_room: Callable[..., Room]
) -> None:
    """163 messages after her read marker, 120 of them her own (sent over HTTP, without ever
    opening the room, so her marker never moved): 43 unread, less the deleted one; the thread reply
    is not unread, but its mention is."""
    lobby = make_room("lobby", name="Lobby")
    client = Client()
    client.force_login(carol)
    for n in range(120):
        response = client.post("/api/rooms/lobby/messages/", {"body": f"mine {n}"}, content_type="application/json")
        assert response.status_code == 201
    others = [send(lobby, alice, f"alice {n}") for n in range(42)]
    send(lobby, bob, "hey @carol")
    services.message_delete_own(room=lobby, author=alice, message_id=others[0]["id"])
    send(lobby, bob, "@carol in a thread", reply_to=others[1]["id"])
    assert Room.objects.get(pk=lobby.pk).last_seq == 164  # 163 in the flow, one reply

    [summary] = selectors.room_list_for(user=carol)
    assert (summary.last_seq, summary.unread, summary.mentions, summary.notify) == (164, 42, 2, "all")
    page = client.get("/")
    assert b'data-unread="42"' in page.content
    api = client.get("/api/rooms/").json()["rooms"][0]
    assert (api["unread"], api["mentions"], api["notify"]) == (42, 2, "all")
    [counts] = client.get("/api/unread/").json()["rooms"]
    assert counts == {
        "room": "lobby",
        "kind": "room",
        "unread": 42,
        "mentions": 2,
        "last_seq": 164,
        "read": 0,
        "notify": "all",
    }

    services.room_enter(slug="lobby", user=carol)
    services.read_mark(room=lobby, user=carol, seq=164)
    assert unread.room_counts(user=carol, room_ids=[lobby.pk])[0]["unread"] == 0


@pytest.mark.django_db
def test_a_direct_message_counts_as_a_mention(alice: User, bob: User) -> None:
    room, _ = services.direct_open(user=alice, usernames=["bob"])
    first = send(room, alice, "hi bob")
    send(room, alice, "second")
    send(room, alice, "@bob in the thread", reply_to=first["id"])
    [summary] = selectors.direct_list_for(user=bob)
    assert (summary.unread, summary.mentions) == (2, 3)


@pytest.mark.django_db
def test_notification_settings_over_http(alice: User, bob: User, make_room: Callable[..., Room]) -> None:
    make_room("lobby")
    make_room("staff", private=True)
    client = Client()
    client.force_login(bob)
    assert client.get("/api/rooms/lobby/notify/").json() == {"room": "lobby", "level": "all"}
    response = client.put("/api/rooms/lobby/notify/", {"level": "mute"}, content_type="application/json")
    assert response.json() == {"room": "lobby", "level": "mute"}
    assert client.get("/api/rooms/").json()["rooms"][0]["notify"] == "mute"
    bad = client.put("/api/rooms/lobby/notify/", {"level": "loud"}, content_type="application/json")
    assert bad.status_code == 400 and "level" in json.dumps(bad.json())
    assert client.put("/api/rooms/staff/notify/", {"level": "all"}, content_type="application/json").status_code == 403
    with pytest.raises(ChatError):
        unread.notify_set(user=bob, room=Room.objects.get(slug="lobby"), level="loud")


# Frames -------------------------------------------------------------------------------------


async def ask(socket: Socket, frame_type: str, **fields: Any) -> dict[str, Any]:
    reply = await socket.request(frame_type, **fields)
    assert_frame_shape(reply)
    return reply


@pytest.mark.django_db(transaction=True)
async def test_a_watched_room_reports_its_activity_without_being_joined(
    alice: User, bob: User, make_room: Callable[..., Room], connect: Connect
) -> None:
    lobby = await database_sync_to_async(make_room)("lobby", name="Lobby")
    await database_sync_to_async(make_room)("random", name="Random")
    a, b, b2 = await connect(alice), await connect(bob), await connect(bob)
    await a.join("lobby")
    watching = await ask(b, "watch")
    assert [(r["room"], r["unread"], r["mentions"], r["notify"]) for r in watching["rooms"]] == [
        ("lobby", 0, 0, "all"),
        ("random", 0, 0, "all"),
    ]
    await ask(b2, "watch", rooms=["lobby"])

    ack = await ask(a, "send", room="lobby", body="hello @bob")
    activity = await b.expect("activity")
    assert_frame_shape(activity)
    assert {k: activity[k] for k in ("room", "kind", "seq", "author", "reply_to", "mentions", "preview")} == {
        "room": "lobby",
        "kind": "message",
        "seq": 1,
        "author": "alice",
        "reply_to": None,
        "mentions": ["bob"],
        "preview": "hello @bob",
    }
    await b2.expect("activity", seq=1)
    await a.nothing("activity")  # alice joined lobby, she watches nothing

    await ask(a, "delete", room="lobby", id=ack["id"])
    deleted = await b.expect("activity", kind="deleted")
    assert (deleted["seq"], deleted["mentions"]) == (1, ["bob"])

    await ask(a, "send", room="lobby", body="again")
    await b.join("lobby")
    await b.send("read", room="lobby", seq=2)
    counts = await b2.expect("unread", room="lobby")  # the other tab's badge clears
    assert_frame_shape(counts)
    assert (counts["unread"], counts["mentions"], counts["read"]) == (0, 0, 2)

    reply = await ask(b, "notify", room="lobby", level="mute")
    assert (reply["type"], reply["room"], reply["level"]) == ("notify", "lobby", "mute")
    assert (await b2.expect("notify"))["level"] == "mute"
    refused = await ask(b, "notify", room="lobby", level="loud")
    assert (refused["type"], refused["code"]) == ("error", "bad_request")
    refused = await ask(b, "watch", rooms=["nowhere"])
    assert (refused["type"], refused["code"]) == ("error", "not_found")
    assert lobby.pk
    for socket in (a, b, b2):
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_ban_or_a_room_made_private_stops_its_activity(
    alice: User, bob: User, make_user: Callable[..., User], make_room: Callable[..., Room], connect: Connect
) -> None:
    lobby = await database_sync_to_async(make_room)("lobby", name="Lobby")
    random = await database_sync_to_async(make_room)("random", name="Random")
    carol = await database_sync_to_async(make_user)("carol")
    a, b, c = await connect(alice), await connect(bob), await connect(carol)
    await a.join("lobby")
    await a.join("random")
    await ask(b, "watch", rooms=["lobby"])
    await ask(c, "watch", rooms=["random"])
    await database_sync_to_async(services.ban_create)(room=lobby, user=bob)
    await ask(a, "send", room="lobby", body="after the ban")
    await b.nothing("activity")

    def make_private() -> None:
        Room.objects.filter(pk=random.pk).update(private=True)
        services.room_access_changed(room=random)

    await database_sync_to_async(make_private)()
    await c.drain(0.3)  # the worker re-checks who may still be in the room
    await ask(a, "send", room="random", body="members only")
    await c.nothing("activity")
    for socket in (a, b, c):
        await socket.close()


@pytest.mark.django_db
def test_a_direct_conversation_nobody_wrote_in_is_watched_only_by_who_started_it(alice: User, bob: User) -> None:
    room, _ = services.direct_open(user=alice, usernames=["bob"])
    assert room.pk in unread.watch_targets(user=alice, slugs=None)
    assert room.pk not in unread.watch_targets(user=bob, slugs=None)  # as in his sidebar: not yet
    send(room, alice, "hi bob")
    assert room.pk in unread.watch_targets(user=bob, slugs=None)
