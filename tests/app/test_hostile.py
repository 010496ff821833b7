"""Hostile input: what an attacker or a broken client can send, and what they get back.

- the chat socket fuzzed with hypothesis (any JSON, any shape, every field of every frame type
  with any type, lone surrogates, NUL, binary frames);
- a real Daphne worker sent smuggled Origin headers, and a client that never reads;
- login brute force (django-axes), CSRF on the admin, every path into a private room for a
  non-member, hostile room slugs and usernames;
- the per-user socket and frame limits, and the rooms-per-socket cap.

(Oversized frames on a real worker, foreign/missing/`null` Origins and the 4429 close are in
test_daphne.py and test_consumers.py.)
"""

import asyncio
import io
import json
import string
import urllib.parse

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chat import services
from chat.errors import ChatError
from chat.models import Membership, Message, Room
from chat.realtime.codes import ErrorCode
from chat.realtime.protocol import CLIENT_FRAMES, SERVER_FRAMES, parse_frame
from tests.support.sockets import TEST_PASSWORD, Socket, open_socket, session_cookie

KNOWN_ERROR_CODES = {
    ErrorCode.BAD_REQUEST,
    ErrorCode.UNKNOWN_TYPE,
    ErrorCode.NOT_FOUND,
    ErrorCode.FORBIDDEN,
    ErrorCode.NOT_JOINED,
    ErrorCode.TOO_LARGE,
    ErrorCode.RATE_LIMITED,
}  # `internal` is known too, but no input should ever cause it


# Strategies -------------------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "NaN", "Infinity", "-0", "1e400", "../admin"]),
    st.sampled_from(["\ufffe", "\uffff", "\U0010ffff", "\ud83d", "\ud83d\ude00"]),  # non-characters, half a pair
    st.sampled_from(["lobby", "secret", "nope", "<script>", "%2e%2e", "lobbу"]),  # Cyrillic у
    st.just("x" * 5000),
)
hostile_int = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400]),
)
scalars = st.one_of(st.none(), st.booleans(), hostile_int, st.floats(allow_nan=True, allow_infinity=True), hostile_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# A value of each field kind of the protocol's schemas (chat.realtime.protocol.Field), hostile or not.
plausible = {
    str: st.one_of(hostile_text, st.sampled_from(["👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", ":)", "👍👍", "1"])),
    int: hostile_int,
    bool: st.booleans(),
    list: st.lists(st.one_of(hostile_text, st.sampled_from(["alice", "bob", "carol"])), max_size=12),
}
field_names = sorted({name for schema in CLIENT_FRAMES.values() for name in schema} | {"ref", "type"})


@st.composite
def frame_objects(draw) -> dict:
    """A frame of a known type (or not) whose fields have any value of any type."""
    frame_type = draw(st.one_of(st.sampled_from(sorted(CLIENT_FRAMES)), json_values))
    frame = {"type": frame_type} if draw(st.booleans()) or frame_type is not None else {}
    schema = CLIENT_FRAMES.get(frame_type) if isinstance(frame_type, str) else None
    for name in sorted(schema or {}) + ["ref"]:
        choice = draw(st.integers(0, 3))
        if choice == 0:
            continue  # missing
        if choice == 1 and name != "ref":  # the right type, sometimes a plausible value
            spec = schema[name]
            frame[name] = draw(plausible[spec.kind])
        else:
            frame[name] = draw(json_values)
    frame.update(draw(st.dictionaries(st.sampled_from(field_names) | st.text(max_size=10), json_values, max_size=3)))
    return frame


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


text_frames = st.one_of(
    frame_objects().map(json.dumps),  # ensure_ascii: lone surrogates travel as \ud800 escapes
    frame_objects().map(lambda f: json.dumps(f, ensure_ascii=False).encode("utf-8", "replace").decode()),
    json_values.map(json.dumps),  # not an object at all, mostly
    st.text(max_size=200),  # not JSON, mostly
    st.text(string.printable, max_size=60).map(lambda s: '{"type": "join", "room": ' + s + "}"),
    # Deep nesting, below CHAT_MAX_FRAME_BYTES: a larger frame closes the socket with 4009 by
    # design (tested in test_consumers.py and, on a real worker, test_daphne.py).
    st.integers(1, 32_000).map(deep),
    st.integers(1, 30_000).map(lambda n: '{"type": "join", "room": "lobby", "since": ' + "9" * n + "}"),
    st.sampled_from(
        [
            '{"type": "join", "room": "lobby", "since": NaN}',
            '{"type": "history", "room": "lobby", "limit": Infinity}',
            '{"type": "send", "room": "lobby", "body": "\\ud800"}',
            '{"type": "send", "room": "lobby", "body": "a\\u0000b"}',
            '{"type": "ping", "ref": "\\udfff"}',
            '{"type": "react", "room": "lobby", "id": 1, "emoji": "\\ud83d"}',
            '{"type": "direct", "users": ["alice", "\\udfff"]}',
            '{"type": "join", "room": "lobby\\u0000"}',
            '{"type": "join", "type": "ping"}',
            "\x00",
            "",
        ]
    ),
)
frames = st.one_of(text_frames.map(lambda t: ("text", t)), st.binary(max_size=300).map(lambda b: ("bytes", b)))


def expected_error(kind: str, data) -> str | None:
    """The error code the protocol promises for this frame, or None for a well-formed frame."""
    if kind == "bytes":
        return ErrorCode.BAD_REQUEST
    try:
        parse_frame(data)
    except ChatError as error:
        return error.code
    return None


# Fuzzing the socket -------------------------------------------------------------------------------


@pytest.fixture
def fuzz_socket(alice, make_room, settings):
    """One socket of alice's, joined to `lobby`, on an event loop of its own that lives across
    hypothesis examples (the property is about one socket surviving everything). The rate
    limits are raised: this test sends hundreds of frames at full speed on purpose."""
    settings.CHAT_RATE_PER_SECOND = 100_000
    settings.CHAT_RATE_BURST = 100_000
    settings.CHAT_ABUSE_LIMIT = 100_000
    settings.CHAT_USER_RATE_PER_SECOND = 100_000
    settings.CHAT_USER_RATE_BURST = 100_000
    make_room("lobby")
    make_room("secret", private=True)  # alice is no member
    cookie = session_cookie(alice)
    loop = asyncio.new_event_loop()
    socket, connected, _ = loop.run_until_complete(open_socket(cookie))
    assert connected
    joined = loop.run_until_complete(socket.join("lobby"))
    assert joined["room"] == "lobby"
    yield loop, socket
    loop.run_until_complete(socket.close())
    loop.close()


async def exchange(socket: Socket, kind: str, data, probe: str) -> list[dict]:
    """Send one frame and a ping; return every frame up to the pong that answers the ping."""
    # As Daphne delivers it (send_to refuses empty frames, which a real client can send).
    await socket.communicator.input_queue.put({"type": "websocket.receive", kind: data})
    await socket.send("ping", ref=probe)
    replies = []
    while True:
        frame = await socket.recv(timeout=5)  # a close here fails with "expected a frame, got close"
        replies.append(frame)
        if frame.get("ref") == probe:
            return replies


@pytest.mark.django_db(transaction=True)
@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a failure is reproducible, CI does not flake
)
@given(frame=frames)
def test_no_frame_crashes_or_closes_the_socket(fuzz_socket, frame):
    loop, socket = fuzz_socket
    kind, data = frame
    probe = f"probe-{id(frame)}"
    replies = loop.run_until_complete(exchange(socket, kind, data, probe))

    pong = replies[-1]
    assert pong["type"] == "pong", f"the ping after {data!r} got {pong}"
    for reply in replies:
        assert reply["type"] in SERVER_FRAMES, reply
        if reply["type"] == "error":
            assert reply["code"] in KNOWN_ERROR_CODES, f"{data!r} -> {reply}"
            assert reply["detail"] and "Traceback" not in reply["detail"], reply
    code = expected_error(kind, data)
    if code is not None:
        errors = [r for r in replies[:-1] if r["type"] == "error"]
        assert [e["code"] for e in errors] == [code], f"{data!r} should get one {code} error, got {replies}"


# Every field of every frame type, with text that cannot travel as UTF-8 -------------------------

BAD_TEXT = {
    "lone-high": "\ud800",
    "lone-low": "x\udfff",
    "reversed-pair": "\udc00\ud800",
    "nul": "a\x00b",
    "non-character": "\uffff",
}
FIELDS = [(t, name) for t in sorted(CLIENT_FRAMES) for name in [*sorted(CLIENT_FRAMES[t]), "ref"]]


@pytest.mark.django_db(transaction=True)
async def test_bad_text_in_any_field_of_any_frame_gets_replies_that_encode(fuzz_socket_async):
    """Each field of each client frame type (those added later included: the list is the
    protocol's own), and `ref`, set to each kind of bad text, as JSON escapes a client can send:
    every reply encodes as UTF-8 (Socket.recv checks) and the socket answers the next ping."""
    socket = fuzz_socket_async
    for frame_type, name in FIELDS:
        for label, bad in BAD_TEXT.items():
            frame = {"type": frame_type, "room": "lobby", "body": "hi", "id": 1, "seq": 1, name: bad}
            replies = await exchange(socket, "text", json.dumps(frame), f"probe-{frame_type}-{name}-{label}")
            assert replies[-1]["type"] == "pong", (frame_type, name, label, replies)
            for reply in replies[:-1]:
                if reply["type"] == "error":
                    assert reply["code"] in KNOWN_ERROR_CODES, (frame_type, name, label, reply)


@pytest.fixture
async def fuzz_socket_async(alice, make_room, settings, connect):
    """alice's socket in `lobby`, with the rate limits raised (hundreds of frames at full speed)."""
    settings.CHAT_RATE_PER_SECOND = settings.CHAT_RATE_BURST = settings.CHAT_ABUSE_LIMIT = 100_000
    settings.CHAT_USER_RATE_PER_SECOND = settings.CHAT_USER_RATE_BURST = 100_000
    await database_sync_to_async(make_room)("lobby")
    socket = await connect(alice)
    await socket.join("lobby")
    return socket


# Header smuggling against a real worker (Daphne >= 4.2.2) ----------------------------------------


# Login brute force (django-axes) ------------------------------------------------------------------


def login_attempt(username: str, password: str, *, address: str = "203.0.113.7") -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=address)
    return client, client.post("/accounts/login/", {"username": username, "password": password})


@pytest.mark.django_db
def test_five_wrong_passwords_lock_that_user_out_on_that_address(make_user):
    make_user("alice")
    make_user("bob")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _, response = login_attempt("alice", "wrong")
        assert response.status_code == 200 and "Please enter a correct username and password" in response.text
    _, response = login_attempt("alice", "wrong")  # the fifth
    assert response.status_code == 429

    client, response = login_attempt("alice", TEST_PASSWORD)  # the right password, too late
    assert response.status_code == 429
    assert SESSION_KEY not in client.session
    assert "Too many failed logins" in response.text and "Try again in 15 minutes" in response.text
    assert "Traceback" not in response.text

    # Bob on the same address, and alice from another one, still get in.
    client, response = login_attempt("bob", TEST_PASSWORD)
    assert response.status_code == 302 and SESSION_KEY in client.session
    client, response = login_attempt("alice", TEST_PASSWORD, address="198.51.100.9")
    assert response.status_code == 302 and SESSION_KEY in client.session

    # The administrator lifts the lockout.
    call_command("axes_reset_username", "alice", stdout=io.StringIO())
    client, response = login_attempt("alice", TEST_PASSWORD)
    assert response.status_code == 302 and SESSION_KEY in client.session


@pytest.mark.django_db
def test_a_successful_login_clears_the_failure_count(make_user):
    make_user("alice")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login_attempt("alice", "wrong")
    assert login_attempt("alice", TEST_PASSWORD)[1].status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login_attempt("alice", "wrong")[1].status_code == 200
    assert login_attempt("alice", TEST_PASSWORD)[1].status_code == 302


@pytest.mark.django_db
def test_the_admin_login_is_guarded_too(make_user):
    make_user("root", is_staff=True, is_superuser=True)
    client = Client(REMOTE_ADDR="203.0.113.8")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "root", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "root", "password": TEST_PASSWORD})
    assert response.status_code == 429 and "Too many failed logins" in response.text
    call_command("axes_reset", stdout=io.StringIO())
    response = client.post("/admin/login/", {"username": "root", "password": TEST_PASSWORD})
    assert response.status_code == 302


# CSRF: the forms test_views.py does not cover ----------------------------------------------------


@pytest.mark.django_db
def test_the_admin_login_and_admin_forms_need_the_csrf_token(make_user):
    make_user("root", is_staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "root", "password": TEST_PASSWORD})
    assert response.status_code == 403 and SESSION_KEY not in client.session

    client.force_login(User.objects.get(username="root"))
    response = client.post("/admin/chat/room/add/", {"slug": "forged", "name": "Forged"})
    assert response.status_code == 403
    assert not Room.objects.filter(slug="forged").exists()


# Authorisation: a private room, seen by someone who is not a member --------------------------------

SECRET_BODY = "the plan is at midnight"


@pytest.fixture
def secret_room(make_user, make_room):
    bob = make_user("bob")
    room = make_room("secret", private=True, members=[bob])
    message = services.message_send(room=room, author=bob, body=SECRET_BODY)[0]
    return room, bob, message


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "frame",
    [
        {"type": "join", "room": "secret"},
        {"type": "join", "room": "secret", "since": 0},
        {"type": "history", "room": "secret"},
        {"type": "history", "room": "secret", "before": 100},
        {"type": "send", "room": "secret", "body": "let me in"},
        {"type": "typing", "room": "secret"},
        {"type": "read", "room": "secret", "seq": 1},
        {"type": "edit", "room": "secret", "id": "MESSAGE", "body": "defaced"},
        {"type": "delete", "room": "secret", "id": "MESSAGE"},
        {"type": "leave", "room": "secret"},
    ],
    ids=lambda f: f["type"] + ("+since" if "since" in f else "+before" if "before" in f else ""),
)
async def test_a_non_member_can_neither_read_nor_write_a_private_room_over_the_socket(
    alice, secret_room, connect, frame
):
    room, bob, message = secret_room
    watcher = await connect(bob)
    await watcher.join("secret")
    await watcher.drain()
    intruder = await connect(alice)
    frame = {**frame, "ref": "x"} | ({"id": message["id"]} if frame.get("id") == "MESSAGE" else {})

    await intruder.send(**frame)
    reply = await intruder.recv()

    assert reply["type"] == "error" and reply["code"] in {"forbidden", "not_joined"}, reply
    assert SECRET_BODY not in json.dumps(reply)
    await watcher.nothing("typing")
    assert not [f for f in await watcher.drain(0.2) if f["type"] != "presence"]
    stored = await database_sync_to_async(lambda: list(Message.objects.values_list("body", "deleted", "edited_at")))()
    assert stored == [(SECRET_BODY, False, None)]
    read = await database_sync_to_async(Membership.objects.filter(room=room, user=alice).exists)()
    assert not read, "the non-member became a member"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method,path,status",
    [
        ("get", "/api/rooms/secret/messages/", 403),
        ("get", "/api/rooms/secret/messages/?before=100&limit=100", 403),
        ("post", "/api/rooms/secret/messages/", 403),
        ("get", "/rooms/secret/", 403),
        ("get", "/api/rooms/", 200),
        ("get", "/", 200),
    ],
)
def test_a_non_member_can_neither_read_nor_write_a_private_room_over_http(alice, secret_room, method, path, status):
    client = Client()
    client.force_login(alice)
    if method == "post":
        response = client.post(path, {"body": "let me in"}, content_type="application/json")
    else:
        response = client.get(path)
    assert response.status_code == status
    assert SECRET_BODY not in response.text
    if path.startswith("/api/"):
        assert "secret" not in json.dumps(response.json().get("rooms", [])) if status == 200 else True
        if status == 403:
            assert response.json()["code"] == "forbidden"
    if path == "/":
        assert 'data-slug="secret"' not in response.text
    assert list(Message.objects.values_list("body", flat=True)) == [SECRET_BODY]


# Hostile room slugs and usernames ------------------------------------------------------------------

HOSTILE_SLUGS = [
    "../admin",
    "..",
    "%2e%2e",
    "<script>alert(1)</script>",
    "lobbу",  # Cyrillic у: looks like "lobby"
    "ＬＯＢＢＹ",  # fullwidth
    "lobby\u200b",  # zero-width space
    "a" * 51,
    "a" * 5000,
    "lobby\x00",
    "'; DROP TABLE chat_room; --",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("slug", HOSTILE_SLUGS, ids=range(len(HOSTILE_SLUGS)))
async def test_hostile_slugs_in_frames_are_not_found_or_bad_requests(alice, make_room, connect, slug):
    await database_sync_to_async(make_room)("lobby")
    socket = await connect(alice)
    for frame_type in ("join", "history", "send"):
        await socket.send(frame_type, room=slug, body="x", ref="h")
        reply = await socket.recv()
        assert reply["type"] == "error" and reply["code"] in {"not_found", "bad_request", "not_joined"}, reply
        assert reply["ref"] == "h"
    assert (await socket.request("ping"))["type"] == "pong"


@pytest.mark.django_db
@pytest.mark.parametrize("slug", HOSTILE_SLUGS, ids=range(len(HOSTILE_SLUGS)))
def test_hostile_slugs_in_urls_are_clear_404s(alice, make_room, slug):
    make_room("lobby")
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    quoted = urllib.parse.quote(slug, safe="")
    for path in (f"/rooms/{quoted}/", f"/api/rooms/{quoted}/messages/"):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "Traceback" not in response.text and "<script>alert" not in response.text
        if path.startswith("/api/"):
            assert response.json()["code"] == "not_found"
    response = client.post(f"/api/rooms/{quoted}/messages/", {"body": "x"}, content_type="application/json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert not Message.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "username",
    ["../admin", "<script>", "a" * 151, "a" * 5000, "alice\x00", "al ice", "ａｌｉｃｅ", "", "%2e%2e"],
    ids=range(9),
)
def test_hostile_usernames_at_signup_get_a_form_error(make_user, username):
    make_user("alice")
    client = Client(raise_request_exception=False)
    password = "Str0ng-enough-pw"
    data = {"username": username, "email": "someone@example.com", "password1": password, "password2": password}
    response = client.post("/accounts/signup/", data)
    assert response.status_code == 200, response.status_code
    assert "<title>Error: Sign up" in response.text and "field-invalid" in response.text
    assert "Traceback" not in response.text
    assert User.objects.count() == 1


# Limits that hold under abuse ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_user_over_the_socket_cap_gets_4408_and_a_closed_socket_frees_a_place(alice, bob, settings, connect):
    settings.CHAT_MAX_SOCKETS_PER_USER = 3
    held = [await connect(alice) for _ in range(3)]
    for socket in held:
        assert (await socket.request("ping"))["type"] == "pong"

    cookie = await database_sync_to_async(session_cookie)(alice)
    extra, connected, _ = await open_socket(cookie)
    assert connected  # accepted, then told why it is closed
    assert await extra.closed_with() == 4408
    assert (await held[0].request("ping"))["type"] == "pong"  # the others live on
    assert (await (await connect(bob)).request("ping"))["type"] == "pong"  # others are not counted

    await held.pop().close()
    again, connected, _ = await open_socket(cookie)
    assert connected and (await again.request("ping"))["type"] == "pong"
    await again.close()


@pytest.mark.django_db(transaction=True)
async def test_the_user_rate_limit_holds_across_that_users_sockets(alice, bob, settings, connect):
    settings.CHAT_USER_RATE_PER_SECOND = 1
    settings.CHAT_USER_RATE_BURST = 10
    sockets = [await connect(alice) for _ in range(3)]  # each socket alone may burst 20
    replies = []
    for i in range(15):
        replies.append(await sockets[i % 3].request("ping"))
    limited = [r for r in replies if r["type"] == "error"]
    assert 4 <= len(limited) <= 5, replies  # 10 of 15 pass (one more if the bucket refilled)
    assert {r["code"] for r in limited} == {"rate_limited"}
    assert "all your open sockets" in limited[0]["detail"]
    # Bob has a bucket of his own.
    assert (await (await connect(bob)).request("ping"))["type"] == "pong"


@pytest.mark.django_db(transaction=True)
async def test_a_socket_may_join_only_so_many_rooms(alice, make_room, settings, connect):
    settings.CHAT_MAX_ROOMS_PER_SOCKET = 3
    for i in range(5):
        await database_sync_to_async(make_room)(f"room-{i}")
    socket = await connect(alice)
    for i in range(3):
        await socket.join(f"room-{i}")
    refused = await socket.request("join", room="room-3")
    assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    assert "3 rooms" in refused["detail"] and "leave one" in refused["detail"]
    assert not await database_sync_to_async(Membership.objects.filter(room__slug="room-3").exists)()

    await socket.join("room-0", since=0)  # a catch-up in a joined room is still fine
    await socket.request("leave", room="room-0")
    await socket.join("room-3")  # and after a leave there is room again


# A client that stops reading (real worker) -------------------------------------------------------
