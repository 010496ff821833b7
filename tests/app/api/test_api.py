"""The HTTP API: bearer tokens and sessions, history paging, posting with client_id idempotency,
JSON errors with the socket's codes, live delivery to sockets, and the OpenAPI description,
checked by schemathesis against a real worker."""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client, override_settings

from chat import services
from chat.models import Membership, Message
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


@pytest.mark.django_db
def test_the_schema_describes_the_api():
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {"/api/rooms/", "/api/rooms/{slug}/messages/"}
    assert set(schema["paths"]["/api/rooms/{slug}/messages/"]) == {"get", "post"}
    assert schema["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (manage.py create_token).",
    }


# Schemathesis: generated requests against a real worker must get answers that match the schema.
