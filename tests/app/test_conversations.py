"""Conversations in the services and selectors: the room's change counter (rev), threads,
reactions, direct conversations, unread counts and the catch-up by rev."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from chat import events, formatting, selectors, services
from chat.errors import ChatError
from chat.models import Membership, Message, Room

pytestmark = pytest.mark.django_db

EMOJI_21 = list("😀😁😂🤣😃😄😅😆😉😊😋😎😍😘🥰😗😙😚🙂🤗🤩")


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The frames the services hand to the channel layer, decoded, in order (each with its group)."""
    sent: list[dict[str, Any]] = []

    def record(group: str, event: dict[str, Any]) -> None:
        sent.append({"group": group, **(json.loads(event["frame"]) if "frame" in event else event)})

    monkeypatch.setattr(events, "_send_now", record)
    return sent


@pytest.fixture
def carol(make_user: Callable[..., User]) -> User:
    return make_user("carol")


@pytest.fixture
def lobby(make_room: Callable[..., Room]) -> Room:
    return make_room("lobby")


def send(room: Room, author: User, body: str, **extra: Any) -> dict[str, Any]:
    return services.message_send(room=room, author=author, body=body, **extra)[0]


def react(room: Room, user: User, message: dict[str, Any], emoji: str, *, on: bool = True) -> dict[str, Any]:
    return services.reaction_set(room=room, user=user, message_id=message["id"], emoji=emoji, on=on)[0]


def counters(room: Room) -> tuple[int, int]:
    """The room's (last_seq, last_rev)."""
    fresh = Room.objects.get(pk=room.pk)
    return fresh.last_seq, fresh.last_rev


def current(room: Room, message: dict[str, Any]) -> dict[str, Any]:
    return selectors.message_get(room=room, message_id=message["id"])


def refused(code: str, call: Callable[[], object]) -> ChatError:
    with pytest.raises(ChatError) as error:
        call()
    assert error.value.code == code, error.value
    return error.value


# rev ----------------------------------------------------------------------------------------


def test_every_change_takes_the_next_rev_and_is_announced_once_in_rev_order(
    alice: User,
    bob: User,
    lobby: Room,
    frames: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = send(lobby, alice, "first")
        second = send(lobby, bob, "second")
        services.message_edit(room=lobby, author=alice, message_id=first["id"], body="first, edited")
        react(lobby, bob, first, "👍")
        react(lobby, bob, first, "👍", on=False)
        reply = send(lobby, bob, "a reply", reply_to=first["id"])  # the reply, then its root's summary
        other_reply = send(lobby, alice, "another", reply_to=first["id"])
        services.message_delete_own(room=lobby, author=bob, message_id=reply["id"])  # tombstone, then root
        services.message_delete_own(room=lobby, author=bob, message_id=second["id"])
        services.message_delete(message=Message.objects.get(pk=other_reply["id"]))  # staff: the same two

    room_frames = [frame for frame in frames if frame["group"] == f"room.{lobby.pk}"]
    assert [(frame["type"], frame["rev"]) for frame in room_frames] == [
        ("message", 1),
        ("message", 2),
        ("message_edited", 3),
        ("message_updated", 4),
        ("message_updated", 5),
        ("message", 6),
        ("message_updated", 7),
        ("message", 8),
        ("message_updated", 9),
        ("message_deleted", 10),
        ("message_updated", 11),
        ("message_deleted", 12),
        ("message_deleted", 13),
        ("message_updated", 14),
    ]
    # Each frame's message is that message as it was at that rev.
    assert all(frame["message"]["rev"] == frame["rev"] for frame in room_frames)
    assert [frame["message"]["id"] for frame in room_frames if frame["type"] == "message_updated"] == [first["id"]] * 6
    assert counters(lobby) == (4, 14)
    stored = {m["id"]: m["rev"] for m in selectors.messages_since(room=lobby, since=0)[0]}
    assert stored == {first["id"]: 14, second["id"]: 12, reply["id"]: 10, other_reply["id"]: 13}


def test_a_change_that_fails_or_rolls_back_takes_no_rev(
    alice: User,
    bob: User,
    lobby: Room,
    frames: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    mine = send(lobby, alice, "mine")
    reply = send(lobby, bob, "a reply", reply_to=mine["id"])
    assert counters(lobby) == (2, 3)
    with django_capture_on_commit_callbacks(execute=True):
        refused("not_found", lambda: send(lobby, bob, "to nothing", reply_to=mine["id"] + 99))
        refused("bad_request", lambda: send(lobby, bob, "reply to a reply", reply_to=reply["id"]))
        refused("forbidden", lambda: services.message_edit(room=lobby, author=bob, message_id=mine["id"], body="x"))
        refused("forbidden", lambda: services.message_delete_own(room=lobby, author=bob, message_id=mine["id"]))
        refused("not_found", lambda: react(lobby, bob, {"id": mine["id"] + 99}, "👍"))
        refused("bad_request", lambda: react(lobby, bob, mine, ":)"))
        with pytest.raises(RuntimeError), transaction.atomic():
            send(lobby, bob, "never stored")
            react(lobby, bob, mine, "👍")
            services.message_edit(room=lobby, author=alice, message_id=mine["id"], body="never edited")
            raise RuntimeError("the surrounding work failed")
    assert frames == []
    assert counters(lobby) == (2, 3)
    assert current(lobby, mine)["body"] == "mine" and current(lobby, mine)["reactions"] == {}
    assert Message.objects.count() == 2
    assert send(lobby, bob, "next")["rev"] == 4  # no gap


# Reactions ----------------------------------------------------------------------------------


def test_reactions_list_who_reacted_in_order(alice: User, bob: User, carol: User, lobby: Room) -> None:
    message = send(lobby, alice, "react to me")
    react(lobby, bob, message, "👍")
    react(lobby, alice, message, "🎉")
    react(lobby, carol, message, "👍")
    latest = react(lobby, alice, message, "👍")
    assert latest["reactions"] == {"👍": ["bob", "carol", "alice"], "🎉": ["alice"]}
    assert latest == current(lobby, message)
    latest = react(lobby, bob, message, "👍", on=False)
    assert latest["reactions"] == {"👍": ["carol", "alice"], "🎉": ["alice"]}
    latest = react(lobby, alice, message, "🎉", on=False)
    assert latest["reactions"] == {"👍": ["carol", "alice"]}  # nobody left on it: gone


def test_a_reaction_that_changes_nothing_takes_no_rev_and_announces_nothing(
    alice: User, bob: User, lobby: Room, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    message = send(lobby, alice, "hello")
    react(lobby, bob, message, "👍")
    assert counters(lobby) == (1, 2)
    with django_capture_on_commit_callbacks() as callbacks:
        again, changed = services.reaction_set(room=lobby, user=bob, message_id=message["id"], emoji="👍")
        assert not changed and again["rev"] == 2 and again["reactions"] == {"👍": ["bob"]}
        never, changed = services.reaction_set(room=lobby, user=alice, message_id=message["id"], emoji="🎉", on=False)
        assert not changed and never["rev"] == 2
    assert callbacks == []
    assert counters(lobby) == (1, 2)


def test_a_message_has_at_most_20_different_reactions(alice: User, bob: User, lobby: Room) -> None:
    message = send(lobby, alice, "popular")
    for emoji in EMOJI_21[:20]:
        react(lobby, alice, message, emoji)
    _, rev = counters(lobby)
    error = refused("bad_request", lambda: react(lobby, bob, message, EMOJI_21[20]))
    assert error.detail == "A message has at most 20 different reactions." and error.room == "lobby"
    assert counters(lobby)[1] == rev
    # One of the twenty already there is not a new kind; a freed place can be taken.
    assert react(lobby, bob, message, EMOJI_21[0])["reactions"][EMOJI_21[0]] == ["alice", "bob"]
    react(lobby, alice, message, EMOJI_21[19], on=False)
    assert len(react(lobby, bob, message, EMOJI_21[20])["reactions"]) == 20


@pytest.mark.parametrize("emoji", ["👍", "👍🏽", "👨‍👩‍👧", "🇫🇷"])
def test_one_emoji_is_accepted_whatever_its_code_points(alice: User, lobby: Room, emoji: str) -> None:
    message = send(lobby, alice, "hi")
    assert react(lobby, alice, message, emoji)["reactions"] == {emoji: ["alice"]}


@pytest.mark.parametrize("emoji", ["", "a", "👍👍", ":)", " ", "👍 a"])
def test_anything_but_one_emoji_is_refused(alice: User, lobby: Room, emoji: str) -> None:
    message = send(lobby, alice, "hi")
    error = refused("bad_request", lambda: react(lobby, alice, message, emoji))
    assert error.detail == "'emoji' must be a single emoji." and error.room == "lobby"
    assert counters(lobby) == (1, 1) and current(lobby, message)["reactions"] == {}


def test_deleted_messages_take_no_reactions_and_lose_theirs(alice: User, bob: User, lobby: Room) -> None:
    message = send(lobby, alice, "soon gone")
    react(lobby, bob, message, "👍")
    tombstone = services.message_delete_own(room=lobby, author=alice, message_id=message["id"])
    assert tombstone["reactions"] == {} and current(lobby, message)["reactions"] == {}
    refused("not_found", lambda: react(lobby, bob, message, "👍"))
    refused("not_found", lambda: react(lobby, bob, message, "👍", on=False))


# Threads ------------------------------------------------------------------------------------


def test_a_reply_must_answer_a_live_message_of_the_room_that_is_not_a_reply(
    alice: User, bob: User, lobby: Room, make_room: Callable[..., Room]
) -> None:
    elsewhere = make_room("random")
    root = send(lobby, alice, "root")
    reply = send(lobby, bob, "reply", reply_to=root["id"])
    foreign = send(elsewhere, alice, "in another room")
    gone = send(lobby, alice, "gone")
    services.message_delete_own(room=lobby, author=alice, message_id=gone["id"])
    before = counters(lobby)
    refused("bad_request", lambda: send(lobby, bob, "x", reply_to=reply["id"]))
    refused("not_found", lambda: send(lobby, bob, "x", reply_to=gone["id"]))
    refused("not_found", lambda: send(lobby, bob, "x", reply_to=foreign["id"]))
    assert counters(lobby) == before
    assert not Message.objects.filter(body="x").exists()


def test_the_thread_summary_follows_replies_and_their_deletion(
    alice: User, bob: User, carol: User, make_user: Callable[..., User], lobby: Room
) -> None:
    dave = make_user("dave")
    root = send(lobby, alice, "what do you think?")
    assert (root["reply_count"], root["repliers"], root["last_reply_at"]) == (0, [], None)
    replies = [send(lobby, author, f"reply {n}", reply_to=root["id"]) for n, author in enumerate([bob, carol, alice])]
    replies.append(send(lobby, bob, "reply 3", reply_to=root["id"]))
    replies.append(send(lobby, dave, "reply 4", reply_to=root["id"]))
    summary = current(lobby, root)
    assert summary["reply_count"] == 5
    assert summary["repliers"] == ["dave", "bob", "alice"]  # newest first, each once, three at most
    assert summary["last_reply_at"] == replies[-1]["created_at"]
    assert all((reply["reply_to"], reply["reply_count"]) == (root["id"], 0) for reply in replies)
    assert [m["seq"] for m in selectors.messages_since(room=lobby, since=0)[0]] == [1, 2, 3, 4, 5, 6]

    services.message_delete_own(room=lobby, author=dave, message_id=replies[4]["id"])
    summary = current(lobby, root)
    assert (summary["reply_count"], summary["repliers"]) == (4, ["bob", "alice", "carol"])
    assert summary["last_reply_at"] == replies[3]["created_at"]
    for reply, author in zip(replies[:4], [bob, carol, alice, bob], strict=True):
        services.message_delete_own(room=lobby, author=author, message_id=reply["id"])
    summary = current(lobby, root)
    assert (summary["reply_count"], summary["repliers"], summary["last_reply_at"]) == (0, [], None)


def test_thread_page_lists_replies_oldest_first_in_pages(alice: User, bob: User, lobby: Room) -> None:
    root = send(lobby, alice, "root")
    send(lobby, alice, "not in the thread")
    replies = [send(lobby, bob, f"reply {n}", reply_to=root["id"]) for n in range(5)]
    first, page, has_more = selectors.thread_page(room=lobby, root_id=root["id"], before=None, limit=3)
    assert first["id"] == root["id"] and first["reply_count"] == 5
    assert [m["body"] for m in page] == ["reply 2", "reply 3", "reply 4"] and has_more
    _, page, has_more = selectors.thread_page(room=lobby, root_id=root["id"], before=page[0]["seq"], limit=3)
    assert [m["body"] for m in page] == ["reply 0", "reply 1"] and not has_more
    refused("bad_request", lambda: selectors.thread_page(room=lobby, root_id=replies[0]["id"], before=None, limit=3))
    refused("not_found", lambda: selectors.thread_page(room=lobby, root_id=root["id"] + 99, before=None, limit=3))


# Direct conversations -----------------------------------------------------------------------


def test_the_same_people_always_meet_in_the_same_conversation(alice: User, bob: User, carol: User) -> None:
    room, created = services.direct_open(user=alice, usernames=["bob", "carol"])
    assert created and room.kind == "direct" and room.private
    assert room.slug.startswith("dm-") and len(room.slug) == 19 and int(room.slug[3:], 16) >= 0
    for user, names in [
        (bob, ["carol", "alice"]),
        (carol, ["alice", "bob", "bob", "carol"]),
        (alice, ["carol", "bob"]),
    ]:
        again, created = services.direct_open(user=user, usernames=names)
        assert (again.pk, created) == (room.pk, False), (user, names)
    assert sorted(Membership.objects.filter(room=room, invited=True).values_list("user__username", flat=True)) == [
        "alice",
        "bob",
        "carol",
    ]
    pair, created = services.direct_open(user=bob, usernames=["alice"])  # the caller is added
    assert created and pair.pk != room.pk
    assert sorted(pair.memberships.values_list("user__username", flat=True)) == ["alice", "bob"]
    info = selectors.room_info(room=room, viewer="bob")
    assert info | {"slug": "s"} == {
        "slug": "s",
        "name": "alice, carol",
        "topic": "",
        "private": True,
        "kind": "direct",
        "members": ["alice", "bob", "carol"],
    }


def test_direct_open_refusals(alice: User, bob: User, make_user: Callable[..., User]) -> None:
    others = [make_user(f"user{n}").username for n in range(9)]
    room, created = services.direct_open(user=alice, usernames=others[:8])  # nine people
    assert created and room.memberships.count() == 9
    error = refused("bad_request", lambda: services.direct_open(user=alice, usernames=others))
    assert "at most 9 people" in error.detail
    assert refused("not_found", lambda: services.direct_open(user=alice, usernames=["bob", "zed"])).detail == (
        "No user 'zed'."
    )
    bob.is_active = False
    bob.save()
    assert refused("not_found", lambda: services.direct_open(user=alice, usernames=["bob"])).detail == "No user 'bob'."
    refused("bad_request", lambda: services.direct_open(user=alice, usernames=[]))
    refused("bad_request", lambda: services.direct_open(user=alice, usernames=["alice", "alice"]))
    assert Room.objects.count() == 1


def test_only_members_read_or_write_a_direct_conversation(alice: User, bob: User, carol: User) -> None:
    room, _ = services.direct_open(user=alice, usernames=["bob"])
    message = send(room, bob, "between us")
    assert services.room_enter(slug=room.slug, user=alice).pk == room.pk
    refused("forbidden", lambda: selectors.room_get_for(slug=room.slug, user=carol))
    refused("forbidden", lambda: services.room_enter(slug=room.slug, user=carol))
    refused("forbidden", lambda: send(room, carol, "let me in"))
    refused("forbidden", lambda: send(room, carol, "let me in", reply_to=message["id"]))
    refused("forbidden", lambda: react(room, carol, message, "👍"))
    assert counters(room) == (1, 1)
    assert not Membership.objects.filter(room=room, user=carol).exists()


def test_direct_list_shows_conversations_with_messages_newest_first(alice: User, bob: User, carol: User) -> None:
    with_bob, _ = services.direct_open(user=alice, usernames=["bob"])
    assert [c.slug for c in selectors.direct_list_for(user=alice)] == [with_bob.slug]  # hers: she opened it
    assert selectors.direct_list_for(user=bob) == []  # not his business until someone writes
    with_both, _ = services.direct_open(user=bob, usernames=["alice", "carol"])
    send(with_both, carol, "hello both")
    hers = send(with_bob, alice, "hello bob")
    listed = selectors.direct_list_for(user=bob)
    assert [(c.slug, c.name, c.members, c.unread, c.last_seq, c.kind) for c in listed] == [
        (with_bob.slug, "alice", ("alice", "bob"), 1, 1, "direct"),
        (with_both.slug, "alice, carol", ("alice", "bob", "carol"), 1, 1, "direct"),
    ]
    assert listed[0].last_message_at == Message.objects.get(pk=hers["id"]).created_at

    # Unread: not replies, not deleted ones, not your own (writing in a conversation reads it).
    send(with_bob, alice, "in the thread", reply_to=hers["id"])
    gone = send(with_bob, alice, "never mind")
    services.message_delete_own(room=with_bob, author=alice, message_id=gone["id"])
    assert {c.slug: c.unread for c in selectors.direct_list_for(user=bob)} == {with_bob.slug: 1, with_both.slug: 1}
    assert {c.slug: c.unread for c in selectors.direct_list_for(user=alice)} == {with_bob.slug: 0, with_both.slug: 1}
    send(with_bob, bob, "my answer")
    assert {c.slug: c.unread for c in selectors.direct_list_for(user=bob)}[with_bob.slug] == 0
    assert {c.slug: c.unread for c in selectors.direct_list_for(user=alice)}[with_bob.slug] == 1
    assert selectors.direct_list_for(user=carol)[0].slug == with_both.slug
    assert len(selectors.direct_list_for(user=carol)) == 1


def test_room_list_leaves_out_direct_conversations_and_counts_what_others_wrote(
    alice: User, bob: User, lobby: Room
) -> None:
    services.direct_open(user=alice, usernames=["bob"])
    services.room_enter(slug="lobby", user=alice)
    send(lobby, alice, "mine")
    first = send(lobby, bob, "one")
    send(lobby, bob, "two")
    send(lobby, bob, "a reply", reply_to=first["id"])
    gone = send(lobby, bob, "deleted")
    services.message_delete_own(room=lobby, author=bob, message_id=gone["id"])
    send(lobby, bob, "three")
    rooms = selectors.room_list_for(user=alice)
    assert [(r.slug, r.kind, r.unread) for r in rooms] == [("lobby", "room", 3)]
    services.read_mark(room=lobby, user=alice, seq=first["seq"])
    assert selectors.room_list_for(user=alice)[0].unread == 2
    send(lobby, alice, "my reply", reply_to=first["id"])  # answering in a thread does not read the room
    assert selectors.room_list_for(user=alice)[0].unread == 2
    send(lobby, alice, "in the room")  # writing in the room's flow does
    assert selectors.room_list_for(user=alice)[0].unread == 0
    assert [r.slug for r in selectors.room_list_for(user=bob)] == ["lobby"]


def test_a_direct_message_is_announced_to_each_other_member(
    alice: User,
    bob: User,
    carol: User,
    frames: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    room, _ = services.direct_open(user=alice, usernames=["bob", "carol"])
    with django_capture_on_commit_callbacks(execute=True):
        message = send(room, alice, "hi both")
    direct = [frame for frame in frames if frame["type"] == "direct_message"]
    assert sorted(frame["group"] for frame in direct) == sorted([f"user.{bob.pk}", f"user.{carol.pk}"])
    to_bob = next(frame for frame in direct if frame["group"] == f"user.{bob.pk}")
    assert to_bob["room"] == room.slug and to_bob["message"] == message
    assert (to_bob["info"]["name"], to_bob["info"]["members"]) == ("alice, carol", ["alice", "bob", "carol"])


def test_a_banned_member_hears_nothing_more_of_a_direct_conversation(
    alice: User,
    bob: User,
    carol: User,
    frames: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    room, _ = services.direct_open(user=alice, usernames=["bob", "carol"])
    services.ban_create(room=room, user=carol)
    with django_capture_on_commit_callbacks(execute=True):
        send(room, alice, "only bob now")
    assert [frame["group"] for frame in frames if frame["type"] == "direct_message"] == [f"user.{bob.pk}"]


def test_an_archived_conversation_is_not_reopened_and_new_ones_are_limited(alice: User, bob: User) -> None:
    room, _ = services.direct_open(user=alice, usernames=["bob"])
    services.room_archive(room=room)
    with pytest.raises(ChatError) as refused:
        services.direct_open(user=bob, usernames=["alice"])
    assert (refused.value.code, refused.value.detail) == (
        "forbidden",
        "Staff archived this conversation: it cannot be reopened.",
    )
    others = [User.objects.create_user(f"person{n}") for n in range(services.DIRECTS_PER_HOUR)]
    for other in others[:-1]:
        services.direct_open(user=alice, usernames=[other.username])  # the archived one counts too
    with pytest.raises(ChatError) as limited:
        services.direct_open(user=alice, usernames=[others[-1].username])
    assert limited.value.code == "rate_limited"
    assert services.direct_open(user=alice, usernames=[others[0].username])[1] is False  # reopening is free


def test_no_ordinary_room_can_take_a_direct_conversations_address(alice: User) -> None:
    with pytest.raises(ValidationError) as refused:
        services.room_create(slug="dm-0123456789abcdef", name="Squatter", created_by=alice)
    assert "reserved" in str(refused.value)


def test_a_message_too_large_to_show_formatted_is_kept_as_text_and_one_too_large_for_a_frame_is_refused(
    alice: User, bob: User, lobby: Room, settings: Any
) -> None:
    many_links = "a.co " * 800  # each becomes a link: its formatted HTML would pass the frame limit
    message = send(lobby, alice, many_links)
    assert message["html"] == formatting.plain(many_links) and "<a" not in message["html"]
    assert len(json.dumps(message, ensure_ascii=False).encode()) < settings.CHAT_MAX_FRAME_BYTES
    before = counters(lobby)
    settings.CHAT_MAX_FRAME_BYTES = 9 * 1024  # leaves 1 KiB for one message
    with pytest.raises(ChatError) as refused:
        send(lobby, alice, "x" * 1000)
    assert (refused.value.code, refused.value.detail) == ("too_large", "This message is too large to send: shorten it.")
    assert counters(lobby) == before  # nothing stored, no seq or rev taken
    short = send(lobby, alice, "short")
    people = [User.objects.create_user(f"reader-with-a-long-name-{n}") for n in range(40)]
    with pytest.raises(ChatError) as crowded:
        for person in people:
            react(lobby, person, short, "👍")
    assert crowded.value.code == "too_large"
    assert len(current(lobby, short)["reactions"]["👍"]) < len(people)


# Catch-up by rev ----------------------------------------------------------------------------


def test_messages_changed_returns_each_changed_message_once_in_rev_order(alice: User, bob: User, lobby: Room) -> None:
    posted = [send(lobby, alice, f"m{n}") for n in range(1, 6)]  # seq n, rev n
    services.message_edit(room=lobby, author=alice, message_id=posted[1]["id"], body="m2 edited")  # rev 6
    react(lobby, bob, posted[0], "👍")  # rev 7
    services.message_edit(room=lobby, author=alice, message_id=posted[4]["id"], body="m5 edited")  # rev 8
    services.message_delete_own(room=lobby, author=alice, message_id=posted[2]["id"])  # rev 9

    def changed(**query: Any) -> tuple[list[tuple[str, int]], bool]:
        messages, complete = selectors.messages_changed(room=lobby, **query)
        return [(m["body"] or "deleted", m["rev"]) for m in messages], complete

    assert changed(rev=5, since=None) == ([("m2 edited", 6), ("m1", 7), ("m5 edited", 8), ("deleted", 9)], True)
    assert changed(rev=7, since=3) == ([("m4", 4), ("m5 edited", 8), ("deleted", 9)], True)  # m5 once
    assert changed(rev=9, since=5) == ([], True)
    assert changed(rev=0, since=None)[0] == [("m4", 4), ("m2 edited", 6), ("m1", 7), ("m5 edited", 8), ("deleted", 9)]
    # In parts: the client asks again from the last rev (and the highest seq) it received.
    assert changed(rev=5, since=None, limit=2) == ([("m2 edited", 6), ("m1", 7)], False)
    assert changed(rev=7, since=None, limit=2) == ([("m5 edited", 8), ("deleted", 9)], True)
    assert changed(rev=3, since=3, limit=2) == ([("m4", 4), ("m2 edited", 6)], False)
    assert changed(rev=6, since=4, limit=2) == ([("m1", 7), ("m5 edited", 8)], False)
    assert changed(rev=8, since=5, limit=2) == ([("deleted", 9)], True)
    first = selectors.messages_changed(room=lobby, rev=5, since=None)[0][0]
    assert first == current(lobby, posted[1]) and first["reactions"] == {}
    tombstone = selectors.messages_changed(room=lobby, rev=8, since=None)[0][0]
    assert (tombstone["deleted"], tombstone["body"], tombstone["html"]) == (True, "", "")
