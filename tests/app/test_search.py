"""Message search (chat.search) on SQLite, the default database: its FTS5 trigram table for 3
characters or more, a scan for shorter text. What a user notices: a substring in any script and any
case is found, newest first, page by page; nothing from rooms they may not read now, nothing
deleted, an edit found by its new text. Over HTTP (GET /api/search/) and the socket (`search`)."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import Client

from chat import search, selectors, services
from chat.errors import ChatError
from chat.models import Membership, Message
from tests.support.sockets import assert_frame_shape


@pytest.fixture
def lobby(make_room):
    return make_room("lobby", name="Lobby")


def say(room, author, *bodies: str) -> list[int]:
    return [services.message_send(room=room, author=author, body=body)[0]["id"] for body in bodies]


def bodies(user, q: str, **options) -> list[str]:
    return [message["body"] for message in search.search_messages(user=user, q=q, **options)[0]]


@pytest.mark.django_db
class TestSelector:
    def test_chinese_and_english_substrings_in_any_case(self, alice, bob, lobby):
        say(lobby, bob, "明天的会议改到三点", "今天没有会", "Say HELLO World", "Hello there", "nothing here")
        assert bodies(alice, "会议") == ["明天的会议改到三点"]  # 2 characters: the scan
        assert bodies(alice, "会议改到") == ["明天的会议改到三点"]  # 4 characters: the trigram index
        assert bodies(alice, "会") == ["今天没有会", "明天的会议改到三点"]
        assert bodies(alice, "hello WOR") == ["Say HELLO World"]
        assert bodies(alice, "HELLO") == ["Hello there", "Say HELLO World"]
        assert bodies(alice, "he") == ["nothing here", "Hello there", "Say HELLO World"]
        assert bodies(alice, "  三点  ") == ["明天的会议改到三点"]  # trimmed
        assert bodies(alice, "会议改到四点") == []
        say(lobby, bob, "à l'école")
        assert bodies(alice, "ÉCOLE") == ["à l'école"]  # case folded beyond ASCII (3+ characters)

    def test_results_are_the_history_objects_each_with_its_room(self, alice, bob, lobby, make_room):
        other = make_room("other")
        services.message_send(room=other, author=bob, body="release notes")
        services.message_send(room=lobby, author=bob, body="the release is out")
        found, has_more = search.search_messages(user=alice, q="release")
        assert [m["room"] for m in found] == ["lobby", "other"] and has_more is False
        assert found[0] == selectors.messages_latest(room=lobby)[-1]
        assert found[1] == selectors.messages_latest(room=other)[-1]

    def test_text_that_means_something_to_fts_or_like_is_searched_as_written(self, alice, bob, lobby):
        say(lobby, bob, 'say "hi" NEAR(a b) or *', "100% sure", "1005 sure", "a_b", "axb", "back\\slash")
        assert bodies(alice, '"hi"') == ['say "hi" NEAR(a b) or *']
        assert bodies(alice, "NEAR(a") == ['say "hi" NEAR(a b) or *']
        assert bodies(alice, "or *") == ['say "hi" NEAR(a b) or *']
        assert bodies(alice, "0%") == ["100% sure"]
        assert bodies(alice, "00% s") == ["100% sure"]
        assert bodies(alice, "_") == ["a_b"]
        assert bodies(alice, "a_b") == ["a_b"]
        assert bodies(alice, "\\") == ["back\\slash"]
        assert bodies(alice, "k\\s") == ["back\\slash"]

    def test_only_rooms_the_user_may_read_now(self, alice, bob, make_user, lobby, make_room):
        carol = make_user("carol")
        secret = make_room("secret", private=True)
        staff = make_room("staff", private=True)
        Membership.objects.create(room=staff, user=alice, invited=True)
        Membership.objects.create(room=secret, user=alice)  # joined once, not invited: no access
        for room in (secret, staff):
            Membership.objects.create(room=room, user=bob, invited=True)
        banned = make_room("banned")
        old = make_room("old")
        ours, _ = services.direct_open(user=alice, usernames=["bob"])
        theirs, _ = services.direct_open(user=bob, usernames=["carol"])
        for room in (lobby, secret, staff, banned, old, ours, theirs):
            services.message_send(room=room, author=bob if room != theirs else carol, body=f"needle in {room.slug}")
        services.ban_create(room=banned, user=alice)
        services.room_archive(room=old)
        found, _ = search.search_messages(user=alice, q="needle")
        assert sorted(m["room"] for m in found) == sorted(["lobby", "staff", ours.slug])
        found, _ = search.search_messages(user=carol, q="needle")
        assert sorted(m["room"] for m in found) == sorted(["lobby", "banned", theirs.slug])
        for slug in ("secret", "banned", "old", theirs.slug, "nowhere"):
            with pytest.raises(ChatError) as refused:
                search.search_messages(user=alice, q="needle", room=slug)
            assert refused.value.code in ("not_found", "forbidden"), slug

    def test_deleted_never_and_an_edit_by_its_new_text(self, alice, bob, lobby):
        gone, edited = say(lobby, alice, "secret plan", "first draft")
        services.message_delete_own(room=lobby, author=alice, message_id=gone)
        services.message_edit(room=lobby, author=alice, message_id=edited, body="final version")
        assert bodies(bob, "secret") == [] and bodies(bob, "se") == []
        assert bodies(bob, "draft") == [] and bodies(bob, "dr") == []
        assert bodies(bob, "final") == ["final version"] and bodies(bob, "l v") == ["final version"]
        # Gone for good (a moderator's purge, a deleted room): the index forgets it too.
        Message.objects.filter(pk=edited).delete()
        assert bodies(bob, "final") == []
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {search.FTS_TABLE}_docsize")  # the rows indexed
            assert cursor.fetchone()[0] == 0

    def test_room_and_author_filters(self, alice, bob, lobby, make_room):
        other = make_room("other")
        say(lobby, alice, "deploy from alice")
        say(lobby, bob, "deploy from bob")
        say(other, bob, "deploy elsewhere")
        assert bodies(alice, "deploy", room="lobby") == ["deploy from bob", "deploy from alice"]
        assert bodies(alice, "deploy", author="bob") == ["deploy elsewhere", "deploy from bob"]
        assert bodies(alice, "deploy", room="other", author="bob") == ["deploy elsewhere"]
        assert bodies(alice, "deploy", room="other", author="alice") == []
        assert search.search_messages(user=alice, q="deploy", author="nobody") == ([], False)

    def test_pages_newest_first_with_before(self, alice, bob, lobby):
        ids = say(lobby, bob, *(f"item {n}" for n in range(7)))
        say(lobby, bob, "something else")
        page, has_more = search.search_messages(user=alice, q="item", limit=3)
        assert [m["id"] for m in page] == ids[:-4:-1] and has_more is True
        page, has_more = search.search_messages(user=alice, q="item", limit=3, before=page[-1]["id"])
        assert [m["id"] for m in page] == ids[3:0:-1] and has_more is True
        page, has_more = search.search_messages(user=alice, q="item", limit=3, before=page[-1]["id"])
        assert [m["id"] for m in page] == [ids[0]] and has_more is False
        # The short-query path pages the same way.
        page, has_more = search.search_messages(user=alice, q="it", limit=4, before=ids[5])
        assert [m["id"] for m in page] == ids[4:0:-1] and has_more is True

    def test_short_text_read_in_slices_misses_nothing(self, alice, bob, lobby, make_room, monkeypatch):
        """A short text is read newest first in slices of ids, each twice the last (here from 2):
        matches on either side of every slice's edge, and in another room between them, all come."""
        monkeypatch.setattr(search, "SHORT_SCAN_SLICE", 2)
        other = make_room("other", private=True)  # alice may not read it
        Membership.objects.create(room=other, user=bob, invited=True)
        bodies_said = [f"{'ok' if n % 3 == 0 else 'no'} {n}" for n in range(40)]
        ids = []
        for n, body in enumerate(bodies_said):
            ids += say(other if n % 5 == 0 else lobby, bob, body)
        expected = [i for i, body, n in zip(ids, bodies_said, range(40), strict=True) if "ok" in body and n % 5]
        expected.reverse()
        found, before = [], None
        while True:
            page, has_more = search.search_messages(user=alice, q="ok", limit=3, before=before)
            found += [m["id"] for m in page]
            if not has_more:
                break
            before = page[-1]["id"]
        assert found == expected
        assert [m["id"] for m in search.search_messages(user=alice, q="ok", before=10**12)[0]] == expected[:20]
        assert search.search_messages(user=alice, q="ok", before=ids[0]) == ([], False)

    @pytest.mark.parametrize("q", ["", "   ", "x" * 201, "a\x00b", "\ud800"])
    def test_bad_text_is_refused(self, alice, q):
        with pytest.raises(ChatError) as refused:
            search.search_messages(user=alice, q=q)
        assert refused.value.code == "bad_request"

    def test_a_migration_that_drops_the_triggers_gets_them_back(self, alice, bob, lobby):
        """SQLite alters chat_message by copying it to a new table, which loses its triggers:
        after any migration they are made again (and the index filled afresh)."""
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER {search.FTS_TABLE}_insert")
        say(lobby, bob, "written while the index was blind")
        assert bodies(alice, "blind") == []
        assert search.sqlite_ensure(using="default") is True
        assert bodies(alice, "blind") == ["written while the index was blind"]
        assert search.sqlite_ensure(using="default") is False  # all there: nothing done
        say(lobby, bob, "and the next one")
        assert bodies(alice, "next one") == ["and the next one"]


@pytest.mark.django_db
class TestHttp:
    def test_search_door(self, alice, bob, lobby, make_room):
        secret = make_room("secret", private=True)
        Membership.objects.create(room=secret, user=bob, invited=True)
        say(secret, bob, "明天的会议 in secret")
        ids = say(lobby, bob, "明天的会议改到三点", "会议 moved", "no meeting")
        client = Client()
        client.force_login(alice)
        response = client.get("/api/search/", {"q": "会议"})
        assert response.status_code == 200
        assert response.json() == {
            "messages": [selectors.messages_latest(room=lobby)[i] for i in (1, 0)],
            "has_more": False,
        }
        page = client.get("/api/search/", {"q": "会议", "limit": 1}).json()
        assert [m["id"] for m in page["messages"]] == [ids[1]] and page["has_more"] is True
        page = client.get("/api/search/", {"q": "会议", "before": ids[1], "room": "lobby", "author": "bob"}).json()
        assert [m["id"] for m in page["messages"]] == [ids[0]] and page["has_more"] is False
        refused = client.get("/api/search/", {"q": "会议", "room": "secret"})
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert client.get("/api/search/", {"q": "x", "room": "nowhere"}).status_code == 404
        # As the schema says: a filter of spaces is a name nobody has, not a blank field.
        assert client.get("/api/search/", {"q": "会议", "author": " "}).json() == {"messages": [], "has_more": False}
        assert client.get("/api/search/", {"q": "会议", "room": " "}).status_code == 404

    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"q": ""},
            {"q": "  "},
            {"q": "x" * 201},
            {"q": "a\x00"},
            {"q": "x", "limit": 51},
        ],
    )
    def test_bad_query_is_400(self, alice, params):
        client = Client()
        client.force_login(alice)
        response = client.get("/api/search/", params)
        assert response.status_code == 400
        assert response.json()["code"] == "bad_request" and response.json()["detail"]

    def test_signed_out_is_401_and_searches_are_rate_limited(self, alice, settings):
        assert Client().get("/api/search/", {"q": "x"}).status_code == 401
        client = Client()
        client.force_login(alice)
        statuses = [client.get("/api/search/", {"q": "x"}).status_code for _ in range(settings.CHAT_SEARCH_PER_MINUTE)]
        assert statuses == [200] * settings.CHAT_SEARCH_PER_MINUTE
        limited = client.get("/api/search/", {"q": "x"})
        assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"

    def test_in_the_schema(self):
        schema = Client().get("/api/schema/").json()
        search_door = schema["paths"]["/api/search/"]["get"]
        assert {p["name"] for p in search_door["parameters"]} >= {"q", "room", "author", "before", "limit"}


@pytest.mark.django_db(transaction=True)
async def test_search_frame(alice, bob, lobby, connect, settings):
    socket = await connect(alice)
    await socket.join("lobby")
    # Sent on the socket: stored by group commit, in batches, and found.
    for body in ("明天的会议改到三点", "Meeting MOVED", "lunch"):
        ack = await socket.request("send", room="lobby", body=body, client_id=body)
        assert ack["type"] == "ack", ack
    await database_sync_to_async(services.message_send)(room=lobby, author=bob, body="the meeting is at 3")
    reply = await socket.request("search", q="meeting")
    assert_frame_shape(reply)
    assert reply["type"] == "search" and reply["q"] == "meeting"
    assert [m["body"] for m in reply["messages"]] == ["the meeting is at 3", "Meeting MOVED"]
    assert reply["has_more"] is False and all(m["room"] == "lobby" for m in reply["messages"])
    reply = await socket.request("search", q="会议", author="alice", room="lobby", limit=1)
    assert [m["body"] for m in reply["messages"]] == ["明天的会议改到三点"] and reply["has_more"] is False
    reply = await socket.request("search", q="MEETING", limit=1)
    assert [m["body"] for m in reply["messages"]] == ["the meeting is at 3"] and reply["has_more"] is True
    older = await socket.request("search", q="MEETING", before=reply["messages"][0]["id"])
    assert [m["body"] for m in older["messages"]] == ["Meeting MOVED"]
    for bad in (
        {"q": ""},
        {"q": " "},
        {"q": "x" * 201},
        {"q": 5},
        {},
        {"q": "x", "limit": 51},
        {"q": "x", "before": 0},
    ):
        error = await socket.request("search", **bad)
        assert error["type"] == "error" and error["code"] == "bad_request", bad
    error = await socket.request("search", q="x", room="nowhere")
    assert error["type"] == "error" and error["code"] == "not_found" and error["room"] == "nowhere"
    # Heavier than other frames: a user's searches have their own, smaller, allowance (a third of
    # CHAT_SEARCH_PER_MINUTE at once; the refused ones above were searches too).
    replies = [await socket.request("search", q="lunch") for _ in range(settings.CHAT_SEARCH_PER_MINUTE // 3)]
    assert replies[0]["type"] == "search"
    assert replies[-1]["type"] == "error" and replies[-1]["code"] == "rate_limited"
    await asyncio.sleep(0.3)  # the socket's own frame allowance, spent above, refills
    assert (await socket.request("ping"))["type"] == "pong"


@pytest.mark.django_db(transaction=True)
async def test_a_search_reply_never_exceeds_a_frame_and_pages_on_without_gaps(alice, lobby, connect, settings):
    def fill():
        return say(lobby, alice, *(f"needle {n} " + "x" * (settings.CHAT_MAX_BODY - 20) for n in range(30)))

    ids = await database_sync_to_async(fill)()
    socket = await connect(alice)
    found, before, pages = [], None, 0
    while True:
        reply = await socket.request("search", q="needle", limit=30, before=before)
        assert reply["type"] == "search", reply
        size = len(json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode())
        assert size <= settings.CHAT_MAX_FRAME_BYTES
        found += [m["id"] for m in reply["messages"]]
        pages += 1
        if not reply["has_more"]:
            break
        before = reply["messages"][-1]["id"]
    assert found == ids[::-1] and pages > 1
