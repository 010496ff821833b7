"""The HTTP API: bearer tokens and sessions, history paging, posting with client_id idempotency,
JSON errors with the socket's codes, live delivery to sockets, and the OpenAPI description,
checked by schemathesis against a real worker."""

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client, override_settings

from chat import services
from chat.models import Membership, Message, Reaction, Room
from tests.support.sockets import open_socket, session_cookie


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def token(alice) -> str:
    return services.token_create(user=alice, name="test")[1]


@pytest.fixture
def lobby(make_room):
    return make_room("lobby", name="Lobby")


def post(client: Client, slug: str, payload, **extra):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post(f"/api/rooms/{slug}/messages/", body, content_type="application/json", **extra)


@pytest.mark.django_db
class TestWithTokens:
    def test_no_or_bad_credentials_get_401_in_json(self, lobby):
        for headers in ({}, bearer("chat_nope"), {"HTTP_AUTHORIZATION": "Basic YWxpY2U6eA=="}):
            response = Client().get("/api/rooms/", **headers)
            assert response.status_code == 401, headers
            assert response.json()["code"] == "unauthorized"
            assert response["WWW-Authenticate"].startswith("Bearer")
        assert post(Client(), "lobby", {"body": "hi"}).status_code == 401
        assert not Message.objects.exists()

    def test_rooms_lists_what_the_caller_may_enter(self, token, alice, bob, make_room, lobby):
        services.message_send(room=lobby, author=bob, body="one")
        staff = make_room("staff", private=True)
        make_room("secret", private=True)
        Membership.objects.create(room=staff, user=alice, invited=True)
        rooms = Client().get("/api/rooms/", **bearer(token)).json()["rooms"]
        assert [(r["slug"], r["private"], r["unread"], r["last_seq"]) for r in rooms] == [
            ("lobby", False, 1, 1),
            ("staff", True, 0, 0),
        ]

    def test_history_pages_backwards(self, token, bob, lobby):
        for i in range(1, 8):
            services.message_send(room=lobby, author=bob, body=f"m{i}")
        client = Client()
        page = client.get("/api/rooms/lobby/messages/?limit=3", **bearer(token)).json()
        assert [m["seq"] for m in page["messages"]] == [5, 6, 7] and page["has_more"] is True
        page = client.get("/api/rooms/lobby/messages/?limit=3&before=5", **bearer(token)).json()
        assert [m["seq"] for m in page["messages"]] == [2, 3, 4] and page["has_more"] is True
        page = client.get("/api/rooms/lobby/messages/?before=2", **bearer(token)).json()
        assert [m["seq"] for m in page["messages"]] == [1] and page["has_more"] is False
        assert page["messages"][0] | {"created_at": "t"} == {
            "id": page["messages"][0]["id"],
            "seq": 1,
            "room": "lobby",
            "author": "bob",
            "body": "m1",
            "html": "<p>m1</p>",
            "created_at": "t",
            "edited_at": None,
            "client_id": None,
            "rev": 1,
            "reply_to": None,
            "reply_count": 0,
            "repliers": [],
            "last_reply_at": None,
            "reactions": {},
            "attachments": [],
        }

    def test_post_stores_numbers_and_is_idempotent_by_client_id(self, token, alice, lobby):
        client = Client()
        first = post(client, "lobby", {"body": "deploy done", "client_id": "job-42"}, **bearer(token))
        assert first.status_code == 201
        message = first.json()
        assert (message["seq"], message["author"], message["body"], message["client_id"]) == (
            1,
            "alice",
            "deploy done",
            "job-42",
        )
        again = post(client, "lobby", {"body": "deploy done", "client_id": "job-42"}, **bearer(token))
        assert again.status_code == 201 and again.json() == message  # a retry gets the first answer
        assert Message.objects.count() == 1
        assert post(client, "lobby", {"body": "no id"}, **bearer(token)).json()["seq"] == 2

    @pytest.mark.parametrize(
        ("slug", "payload", "status", "code"),
        [
            ("lobby", {"body": "   "}, 400, "bad_request"),
            ("lobby", {}, 400, "bad_request"),
            ("lobby", "not json", 400, "bad_request"),
            ("lobby", {"body": "x" * 4001}, 413, "too_large"),
            ("lobby", {"body": "a\u0000b"}, 400, "bad_request"),
            # One NUL alone is not "something besides whitespace" (schemathesis found it passing).
            ("lobby", {"body": "\u0000"}, 400, "bad_request"),
            ("lobby", {"body": " \u0000 "}, 400, "bad_request"),
            ("lobby", {"body": "hi", "client_id": "a\u0000"}, 400, "bad_request"),
            ("lobby", {"body": "hi", "client_id": "x" * 65}, 400, "bad_request"),
            ("lobby", {"body": 5}, 400, "bad_request"),
            ("lobby", {"body": True}, 400, "bad_request"),
            ("lobby", {"body": ["hi"]}, 400, "bad_request"),
            ("lobby", {"body": "hi", "client_id": 7}, 400, "bad_request"),
            ("nowhere", {"body": "hi"}, 404, "not_found"),
            ("secret", {"body": "hi"}, 403, "forbidden"),
        ],
    )
    def test_bad_posts_get_the_socket_codes(self, token, lobby, make_room, slug, payload, status, code):
        make_room("secret", private=True)
        response = post(Client(), slug, payload, **bearer(token))
        assert (response.status_code, response.json()["code"]) == (status, code), response.json()
        assert response.json()["detail"]
        assert not Message.objects.exists()

    def test_a_client_id_is_kept_as_sent_whitespace_included(self, token, lobby):
        # The schema allows any client_id but NUL, as the socket does: "\n" is one, not "" (400).
        first = post(Client(), "lobby", {"body": "hi", "client_id": "\n"}, **bearer(token))
        again = post(Client(), "lobby", {"body": "hi", "client_id": "\n"}, **bearer(token))
        assert first.status_code == again.status_code == 201, first.content
        assert first.json()["client_id"] == "\n" and again.json()["seq"] == first.json()["seq"]

    def test_history_refusals(self, token, make_room, lobby):
        make_room("secret", private=True)
        client = Client()
        assert client.get("/api/rooms/secret/messages/", **bearer(token)).json()["code"] == "forbidden"
        assert client.get("/api/rooms/nowhere/messages/", **bearer(token)).status_code == 404
        bad = client.get("/api/rooms/lobby/messages/?limit=500", **bearer(token))
        assert bad.status_code == 400 and bad.json()["code"] == "bad_request" and "limit" in bad.json()["detail"]
        unknown_format = client.get("/api/rooms/lobby/messages/?format=xml", **bearer(token))
        assert (unknown_format.status_code, unknown_format.json()["code"]) == (404, "not_found")

    @override_settings(REST_FRAMEWORK={**__import__("django.conf").conf.settings.REST_FRAMEWORK})
    def test_too_many_requests_get_429_rate_limited(self, token, lobby, monkeypatch):
        from rest_framework.throttling import UserRateThrottle

        monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min"})
        from django.core.cache import cache

        cache.clear()
        codes = [Client().get("/api/rooms/", **bearer(token)).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        assert Client().get("/api/rooms/", **bearer(token)).json()["code"] == "rate_limited"
        cache.clear()


@pytest.mark.django_db
def test_a_session_needs_its_csrf_token_to_post(alice, lobby):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/rooms/").status_code == 200  # reading needs no CSRF token
    refused = post(client, "lobby", {"body": "forged"})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden" and "CSRF" in refused.json()["detail"]
    client.get("/")  # the page sets the csrftoken cookie, as for the browser
    ok = post(client, "lobby", {"body": "from the page"}, HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert ok.status_code == 201
    assert Message.objects.get().body == "from the page"


@pytest.mark.django_db(transaction=True)
async def test_a_message_posted_over_http_reaches_sockets_live(alice, bob, lobby, token):
    cookie = await database_sync_to_async(session_cookie)(bob)
    socket, connected, _ = await open_socket(cookie)
    assert connected
    try:
        await socket.join("lobby")
        response = await database_sync_to_async(post)(Client(), "lobby", {"body": "via HTTP"}, **bearer(token))
        assert response.status_code == 201
        frame = await socket.expect("message")
        assert (frame["message"]["body"], frame["message"]["author"]) == ("via HTTP", "alice")
    finally:
        await socket.close()


# Conversations: direct conversations, threads, reactions ------------------------------------


@pytest.fixture
def bob_token(bob: User) -> str:
    return services.token_create(user=bob, name="test")[1]


def reactions_url(slug: str, message_id: int) -> str:
    return f"/api/rooms/{slug}/messages/{message_id}/reactions/"


def open_direct(token: str, users: Any) -> Any:
    return Client().post("/api/direct/", json.dumps({"users": users}), content_type="application/json", **bearer(token))


@pytest.mark.django_db
def test_direct_opens_once_and_lists_the_callers_conversations(
    token: str, bob_token: str, alice: User, bob: User, lobby: Room
) -> None:
    created = open_direct(token, ["bob"])
    assert created.status_code == 201
    slug = created.json()["room"]
    assert slug.startswith("dm-")
    assert created.json()["info"] == {
        "slug": slug,
        "name": "bob",
        "topic": "",
        "private": True,
        "kind": "direct",
        "members": ["alice", "bob"],
    }
    again = open_direct(token, ["bob"])
    assert (again.status_code, again.json()) == (200, created.json())
    from_bob = open_direct(bob_token, ["alice"])
    assert (from_bob.status_code, from_bob.json()["room"], from_bob.json()["info"]["name"]) == (200, slug, "alice")

    listed = Client().get("/api/direct/", **bearer(token)).json()["conversations"]
    assert listed == [
        {
            "room": slug,
            "info": created.json()["info"],
            "last_seq": 0,
            "unread": 0,
            "last_message_at": None,
            "mentions": 0,
            "notify": "all",
        }
    ]
    assert Client().get("/api/direct/", **bearer(bob_token)).json() == {"conversations": []}  # nothing said yet
    assert post(Client(), slug, {"body": "hi alice"}, **bearer(bob_token)).status_code == 201
    [conversation] = Client().get("/api/direct/", **bearer(token)).json()["conversations"]
    assert (conversation["room"], conversation["last_seq"], conversation["unread"]) == (slug, 1, 1)
    assert conversation["last_message_at"].endswith("Z")
    assert Client().get("/api/direct/", **bearer(bob_token)).json()["conversations"][0]["unread"] == 0
    # The room list stays a list of rooms.
    rooms = Client().get("/api/rooms/", **bearer(token)).json()["rooms"]
    assert [(room["slug"], room["kind"]) for room in rooms] == [("lobby", "room")]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("users", "status", "code"),
    [
        ([], 400, "bad_request"),
        (["alice"], 400, "bad_request"),
        ("bob", 400, "bad_request"),
        ([7], 400, "bad_request"),
        (["bob\u0000"], 400, "bad_request"),
        ([f"user{n}" for n in range(9)], 400, "bad_request"),
        (["bob", "zed"], 404, "not_found"),
    ],
)
def test_direct_refusals(token: str, bob: User, users: Any, status: int, code: str) -> None:
    response = open_direct(token, users)
    assert (response.status_code, response.json()["code"]) == (status, code), response.json()
    assert response.json()["detail"]
    assert not Room.objects.filter(kind="direct").exists()


@pytest.mark.django_db
def test_direct_needs_credentials(bob: User) -> None:
    assert Client().get("/api/direct/").status_code == 401
    refused = Client().post("/api/direct/", json.dumps({"users": ["bob"]}), content_type="application/json")
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")


@pytest.mark.django_db
def test_a_reply_is_posted_and_its_thread_read_in_pages(token: str, alice: User, bob: User, lobby: Room) -> None:
    root = post(Client(), "lobby", {"body": "root"}, **bearer(token)).json()
    replies = []
    for n in range(3):
        response = post(Client(), "lobby", {"body": f"reply {n}", "reply_to": root["id"]}, **bearer(token))
        assert response.status_code == 201
        replies.append(response.json())
    assert [(r["reply_to"], r["seq"]) for r in replies] == [(root["id"], 2), (root["id"], 3), (root["id"], 4)]
    url = f"/api/rooms/lobby/messages/{root['id']}/replies/"
    page = Client().get(f"{url}?limit=2", **bearer(token)).json()
    assert (page["root"]["id"], page["root"]["reply_count"], page["root"]["repliers"]) == (root["id"], 3, ["alice"])
    assert ([m["body"] for m in page["messages"]], page["has_more"]) == (["reply 1", "reply 2"], True)
    older = Client().get(f"{url}?limit=2&before={page['messages'][0]['seq']}", **bearer(token)).json()
    assert ([m["body"] for m in older["messages"]], older["has_more"]) == (["reply 0"], False)

    for payload, status, code in [
        ({"body": "nested", "reply_to": replies[0]["id"]}, 400, "bad_request"),
        ({"body": "to nothing", "reply_to": replies[-1]["id"] + 99}, 404, "not_found"),
        ({"body": "bad", "reply_to": "first"}, 400, "bad_request"),
    ]:
        response = post(Client(), "lobby", payload, **bearer(token))
        assert (response.status_code, response.json()["code"]) == (status, code), payload
    for message_id, status, code in [(replies[0]["id"], 400, "bad_request"), (root["id"] + 99, 404, "not_found")]:
        response = Client().get(f"/api/rooms/lobby/messages/{message_id}/replies/", **bearer(token))
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert Client().get(url).status_code == 401
    assert Message.objects.count() == 4


@pytest.mark.django_db
def test_reactions_are_added_and_removed(token: str, alice: User, bob: User, lobby: Room) -> None:
    message = services.message_send(room=lobby, author=bob, body="react to me")[0]
    url = reactions_url("lobby", message["id"])
    added = Client().post(url, json.dumps({"emoji": "👍🏽"}), content_type="application/json", **bearer(token))
    assert added.status_code == 200
    assert (added.json()["id"], added.json()["reactions"], added.json()["rev"]) == (
        message["id"],
        {"👍🏽": ["alice"]},
        2,
    )
    again = Client().post(url, json.dumps({"emoji": "👍🏽"}), content_type="application/json", **bearer(token))
    assert (again.status_code, again.json()) == (200, added.json())  # already there: nothing changes
    removed = Client().delete(url, json.dumps({"emoji": "👍🏽"}), content_type="application/json", **bearer(token))
    assert (removed.status_code, removed.json()["reactions"], removed.json()["rev"]) == (200, {}, 3)
    Client().post(url, json.dumps({"emoji": "🎉"}), content_type="application/json", **bearer(token))
    by_query = Client().delete(f"{url}?emoji={quote('🎉')}", **bearer(token))
    assert (by_query.status_code, by_query.json()["reactions"]) == (200, {})


@pytest.mark.django_db
def test_reaction_refusals(token: str, alice: User, bob: User, lobby: Room) -> None:
    message = services.message_send(room=lobby, author=bob, body="hi")[0]
    gone = services.message_send(room=lobby, author=alice, body="gone")[0]
    services.message_delete_own(room=lobby, author=alice, message_id=gone["id"])
    for url, payload, status, code in [
        (reactions_url("lobby", message["id"]), {"emoji": "👍👍"}, 400, "bad_request"),
        (reactions_url("lobby", message["id"]), {"emoji": ":)"}, 400, "bad_request"),
        (reactions_url("lobby", message["id"]), {}, 400, "bad_request"),
        (reactions_url("lobby", message["id"] + 99), {"emoji": "👍"}, 404, "not_found"),
        (reactions_url("lobby", gone["id"]), {"emoji": "👍"}, 404, "not_found"),
        (reactions_url("nowhere", message["id"]), {"emoji": "👍"}, 404, "not_found"),
    ]:
        for method in (Client().post, Client().delete):
            response = method(url, json.dumps(payload), content_type="application/json", **bearer(token))
            assert (response.status_code, response.json()["code"]) == (status, code), (url, payload)
            assert response.json()["detail"]
    unauthenticated = Client().post(reactions_url("lobby", message["id"]), {"emoji": "👍"})
    assert (unauthenticated.status_code, unauthenticated.json()["code"]) == (401, "unauthorized")
    assert Reaction.objects.count() == 0


@pytest.mark.django_db
def test_only_members_use_a_direct_conversation_over_http(
    token: str, alice: User, bob: User, make_user: Callable[..., User]
) -> None:
    room, _ = services.direct_open(user=alice, usernames=["bob"])
    message = services.message_send(room=room, author=alice, body="between us")[0]
    carol = make_user("carol")
    outsider = bearer(services.token_create(user=carol, name="test")[1])
    base = f"/api/rooms/{room.slug}/messages/"
    for response in [
        Client().get(base, **outsider),
        post(Client(), room.slug, {"body": "let me in"}, **outsider),
        Client().get(f"{base}{message['id']}/replies/", **outsider),
        Client().post(
            reactions_url(room.slug, message["id"]),
            json.dumps({"emoji": "👍"}),
            content_type="application/json",
            **outsider,
        ),
        Client().delete(f"{reactions_url(room.slug, message['id'])}?emoji={quote('👍')}", **outsider),
    ]:
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), response.json()
    assert Client().get("/api/direct/", **outsider).json() == {"conversations": []}
    page = Client().get(base, **bearer(token)).json()
    assert [(m["body"], m["reactions"]) for m in page["messages"]] == [("between us", {})]


@pytest.mark.django_db
def test_the_schema_describes_the_api() -> None:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {path: set(operations) - {"parameters"} for path, operations in schema["paths"].items()} == {
        "/api/rooms/": {"get"},
        "/api/rooms/{slug}/messages/": {"get", "post"},
        "/api/rooms/{slug}/messages/{message_id}/replies/": {"get"},
        "/api/rooms/{slug}/messages/{message_id}/reactions/": {"post", "delete"},
        "/api/direct/": {"get", "post"},
        "/api/unread/": {"get"},
        "/api/rooms/{slug}/notify/": {"get", "put"},
        "/api/rooms/{slug}/": {"get", "patch"},
        "/api/rooms/{slug}/members/": {"get", "post"},
        "/api/rooms/{slug}/online/": {"get"},
        "/api/rooms/{slug}/uploads/": {"post"},
        "/files/{upload_id}/{name}": {"get"},
        "/files/{upload_id}/thumbnail/": {"get"},
        "/api/rooms/{slug}/members/{username}/": {"delete"},
        "/api/rooms/{slug}/messages/{message_id}/": {"delete"},
        "/api/users/": {"get"},
        "/api/search/": {"get"},
    }
    message = schema["components"]["schemas"]["Message"]["properties"]
    assert {"rev", "html", "reply_to", "reply_count", "repliers", "last_reply_at", "reactions"} <= set(message)
    assert schema["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (manage.py create_token).",
    }


# Schemathesis: generated requests against a real worker must get answers that match the schema.


@pytest.mark.django_db
def test_online_answers_503_at_once_when_redis_hangs(token: str, lobby: Room, settings) -> None:
    """The view runs in the worker's one sync thread (shared with every socket's database work):
    a Redis that accepts connections but does not answer (here: redis-server stopped with SIGSTOP)
    holds it for the view's short timeout, not the client's 5 s, and the caller hears why."""
    import os
    import signal
    import time

    from chat.realtime.presence import reset_presence
    from tests.support.redis_server import RedisServer

    with RedisServer() as redis:
        settings.REDIS_URL = redis.url
        reset_presence()
        try:
            client = Client()
            response = client.get("/api/rooms/lobby/online/", **bearer(token))
            assert (response.status_code, response.json()["online"]) == (200, 0)
            assert redis.process is not None
            os.kill(redis.process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                response = client.get("/api/rooms/lobby/online/", **bearer(token))
                took = time.monotonic() - started
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
            assert response.status_code == 503
            assert response.json()["code"] == "internal" and "try again" in response.json()["detail"]
            assert response["Retry-After"] == "1"
            assert took < 2, took  # the view's 1 s, and some slack
            assert client.get("/api/rooms/lobby/online/", **bearer(token)).status_code == 200
        finally:
            reset_presence()
