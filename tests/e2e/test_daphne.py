"""The chat server as users meet it: a real Daphne worker (bin/daphne-worker) over real TCP
sockets, real HTTP logins, and the `websockets` client library.

One worker serves the whole module (see tests/support/daphne_server.py); each test uses its own sockets
and closes them. Every wait is bounded.
"""

import asyncio
import json
import secrets
import time

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.support.daphne_server import DaphneServer, HttpSession
from tests.support.redis_server import RedisServer
from tests.support.websocket import close_code, expect, join, open_ws, ping, request

BURST = 500


# The burst test opens about 170 sockets for each of the three demo users, and each pings and joins.
MANY_SOCKETS = dict.fromkeys(("CHAT_MAX_SOCKETS_PER_USER", "CHAT_USER_RATE_PER_SECOND", "CHAT_USER_RATE_BURST"), "2000")


@pytest.fixture(scope="module")
def server():
    # The echo socket is off by default outside DJANGO_DEBUG=1 and `make run`: on here for its test.
    with DaphneServer(env={**MANY_SOCKETS, "CHAT_ECHO_ENABLED": "1"}) as daphne:
        yield daphne


@pytest.fixture(scope="module")
def redis_backed_server():
    """The same worker on the Redis channel layer (channels-redis, redis-py as pinned)."""
    with RedisServer() as redis, DaphneServer(env={"REDIS_URL": redis.url, **MANY_SOCKETS}) as daphne:
        yield daphne


@pytest.fixture
async def sockets():
    """`await sockets.open(...)`: a client socket, closed when the test ends."""
    opened: list[websockets.ClientConnection] = []

    class Opener:
        async def open(
            self,
            server: DaphneServer,
            cookie: str | None = None,
            *,
            origin: str | None = "default",
            timeout: float = 10,
        ):
            ws = await open_ws(server, cookie, origin=origin, timeout=timeout)
            opened.append(ws)
            return ws

    yield Opener()
    await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True), timeout=15)


# Client helpers ---------------------------------------------------------------------------------


async def logout(browser: HttpSession) -> None:
    # The logout button is a form on every page; use its CSRF token as a browser does.
    response = await asyncio.to_thread(browser.submit, "/", {}, action="/accounts/logout/")
    assert response.status == 200 and "/accounts/login/" in response.url, response
    assert not browser.cookie("sessionid"), "the session cookie survived the logout"


# Tests ------------------------------------------------------------------------------------------


@pytest.fixture(params=["in-process", "redis"])
def layer_server(request):
    return request.param, request.getfixturevalue("server" if request.param == "in-process" else "redis_backed_server")


@pytest.mark.exclusive  # a CPU-bound burst: not beside another module's tests (tests/conftest.py)
async def test_connect_burst_of_500_sockets(layer_server):
    """500 sockets open at once, all join one room, and a message reaches every one of them.
    On Redis this is the check that failed with redis-py 8's 100-connection pool."""
    layer, server = layer_server
    cookies = [await asyncio.to_thread(server.login, name) for name in ("alice", "bob", "carol")]

    async def one(i: int):
        ws = await open_ws(server, cookies[i % len(cookies)], timeout=25)
        try:
            await ping(ws)
            joined = await join(ws, "lobby", timeout=20)
            assert joined["info"]["slug"] == "lobby"
        except BaseException:
            await ws.close()
            raise
        return ws

    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(one(i) for i in range(BURST)), return_exceptions=True), timeout=40
    )
    elapsed = time.monotonic() - started
    opened = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    try:
        kinds: dict[str, int] = {}
        for failure in failures:
            kinds[repr(failure)[:160]] = kinds.get(repr(failure)[:160], 0) + 1
        assert not failures, (
            f"{len(failures)} of {BURST} sockets opened at once failed (handshake, ping or join) in {elapsed:.1f} s: {kinds}"
        )
        # All of them are alive after the burst, and a message reaches every one.
        sender = opened[0]
        ack = await request(sender, "send", room="lobby", body=f"burst hello {layer}")
        assert ack["type"] == "ack", ack
        deliveries = await asyncio.wait_for(
            asyncio.gather(*(expect(ws, "message", timeout=20) for ws in opened), return_exceptions=True), timeout=30
        )
        missed = [d for d in deliveries if isinstance(d, BaseException) or d["message"]["seq"] != ack["seq"]]
        assert not missed, f"{len(missed)} of {len(opened)} sockets did not get the message: {missed[:3]}"
    finally:
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True), timeout=20)


async def test_logout_closes_that_sessions_sockets_only(server, sockets):
    session_a = await asyncio.to_thread(server.login_session, "alice")
    session_b = await asyncio.to_thread(server.login_session, "alice")
    assert session_a.cookie("sessionid") != session_b.cookie("sessionid")
    ws_a = await sockets.open(server, session_a.cookie_header())
    ws_b = await sockets.open(server, session_b.cookie_header())
    await join(ws_a, "lobby")
    await join(ws_b, "lobby")

    await logout(session_a)

    code, clean = await close_code(ws_a, timeout=5)
    assert (code, clean) == (4401, True), f"the logged-out session's socket ended with {code} (close frame: {clean})"
    await ping(ws_b)
    reply = await request(ws_b, "send", room="lobby", body="still here")
    assert reply["type"] == "ack", reply


async def test_password_change_closes_the_other_sessions_sockets(server, sockets):
    username = f"pw-{secrets.token_hex(4)}"
    old_password = f"Old-{secrets.token_urlsafe(9)}"
    new_password = f"New-{secrets.token_urlsafe(9)}"
    session_a = await asyncio.to_thread(server.signup, username, old_password)
    session_b = await asyncio.to_thread(server.login_session, username, old_password)
    ws_b = await sockets.open(server, session_b.cookie_header())
    await join(ws_b, "lobby")
    await ping(ws_b)

    response = await asyncio.to_thread(
        session_a.submit,
        "/accounts/password_change/",
        {"old_password": old_password, "new_password1": new_password, "new_password2": new_password},
    )
    assert response.status == 200 and response.url.endswith("/accounts/password_change/done/"), (
        response,
        response.text[:1500],
    )

    code, clean = await close_code(ws_b, timeout=5)
    assert (code, clean) == (4401, True), f"the other session's socket ended with {code} (close frame: {clean})"

    # The session that changed the password is still signed in, and its new cookie opens a socket.
    page = await asyncio.to_thread(session_a.get, "/")
    assert page.status == 200 and page.url.endswith("/"), page
    ws_a = await sockets.open(server, session_a.cookie_header())
    await join(ws_a, "lobby")
    await ping(ws_a)
    # The other one is signed out over HTTP too.
    page = await asyncio.to_thread(session_b.get, "/")
    assert "/accounts/login/" in page.url, page


async def test_oversized_frames(server, sockets):
    ws = await sockets.open(server, await asyncio.to_thread(server.login, "alice"))
    await join(ws, "lobby")

    # 60 KiB: under the frame limit, over the body limit: an error, and the socket lives on.
    frame = json.dumps({"type": "send", "room": "lobby", "body": "x" * 60_000, "ref": "big"})
    assert 60_000 < len(frame.encode()) < 65_536
    await ws.send(frame)
    error = await expect(ws, "error", ref="big")
    assert error["code"] == "too_large" and error.get("room") == "lobby", error
    await ping(ws)

    # Over 64 KiB: Daphne drops the connection before the application sees the frame.
    frame = json.dumps({"type": "send", "room": "lobby", "body": "y" * 70_000, "ref": "huge"})
    assert len(frame.encode()) > 65_536
    await ws.send(frame)
    code, clean = await close_code(ws, timeout=5)
    assert (code, clean) == (1006, False), (
        f"expected the TCP connection dropped (1006, no close frame), got {code} (close frame: {clean})"
    )

    # Nothing of it was stored: a fresh socket sees no such message in the lobby.
    ws2 = await sockets.open(server, await asyncio.to_thread(server.login, "alice"))
    joined = await join(ws2, "lobby")
    assert not [m for m in joined["messages"] if m["body"].startswith(("x" * 100, "y" * 100))], (
        "an oversized body was stored"
    )


async def test_origin_checks_at_the_handshake(server, sockets):
    cookie = await asyncio.to_thread(server.login, "alice")

    for origin in ("http://evil.example", None):
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(server, cookie, origin=origin, timeout=5)
        assert refused.value.response.status_code == 403, f"Origin {origin!r}: {refused.value.response.status_code}"

    # An anonymous browser with a valid Origin is let in, then told its session is over.
    ws = await sockets.open(server, None)
    code, clean = await close_code(ws, timeout=5)
    assert (code, clean) == (4401, True), f"anonymous socket ended with {code} (close frame: {clean})"

    # A cookie that names no session is the same as none.
    ws = await sockets.open(server, "sessionid=not-a-real-session")
    code, clean = await close_code(ws, timeout=5)
    assert (code, clean) == (4401, True), f"socket with a bogus session ended with {code} (close frame: {clean})"


async def test_two_users_chat_and_catch_up_after_reconnect(server, sockets):
    alice_cookie = await asyncio.to_thread(server.login, "alice")
    bob_cookie = await asyncio.to_thread(server.login, "bob")
    room = "random"
    alice = await sockets.open(server, alice_cookie)
    bob = await sockets.open(server, bob_cookie)
    await join(alice, room)
    joined = await join(bob, room)
    assert "alice" in joined["presence"] and "bob" in joined["presence"], joined

    client_id = f"c-{secrets.token_hex(4)}"
    ack = await request(alice, "send", room=room, body="hello bob", client_id=client_id)
    assert ack["type"] == "ack" and ack["room"] == room and ack["client_id"] == client_id, ack
    live = await expect(bob, "message", room=room)
    message = live["message"]
    assert (message["seq"], message["id"], message["body"], message["author"], message["client_id"]) == (
        ack["seq"],
        ack["id"],
        "hello bob",
        "alice",
        client_id,
    ), live
    last_seen = message["seq"]

    await asyncio.wait_for(bob.close(), timeout=5)
    sent = []
    for i in range(3):
        reply = await request(alice, "send", room=room, body=f"while you were away {i}", client_id=f"{client_id}-{i}")
        assert reply["type"] == "ack", reply
        sent.append(reply)
    # A retry of the first one (same client_id) stores nothing new.
    retry = await request(alice, "send", room=room, body="while you were away 0", client_id=f"{client_id}-0")
    assert (retry["id"], retry["seq"]) == (sent[0]["id"], sent[0]["seq"]), retry

    bob = await sockets.open(server, bob_cookie)
    joined = await join(bob, room, since=last_seen)
    got = [(m["seq"], m["id"], m["body"]) for m in joined["messages"]]
    assert got == [(r["seq"], r["id"], f"while you were away {i}") for i, r in enumerate(sent)], got
    assert [s for s, _, _ in got] == [last_seen + 1, last_seen + 2, last_seen + 3], got
    assert joined["complete"] is True


async def test_health_endpoints_over_http(server):
    browser = server.session()
    for path in ("/healthz", "/readyz"):
        response = await asyncio.to_thread(browser.get, path)
        assert response.status == 200, (path, response.status, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
        body = json.loads(response.text)
        assert body["status"] == "ok", (path, body)
    assert body["checks"] == {"database": "ok", "channel_layer": "ok"}, body


async def test_echo_socket_answers_any_page_like_the_classic_example(server):
    """/ws/echo/: no login, any Origin (or none), each text frame back as "Server: …"; the chat
    socket next to it still refuses a foreign Origin."""
    url = server.base_url.replace("http://", "ws://") + "/ws/echo/"
    for headers in ({}, {"Origin": "http://elsewhere.example"}, {"Origin": "null"}):
        async with websockets.connect(url, additional_headers=headers, proxy=None, open_timeout=5) as ws:
            await ws.send("Hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "Server: Hello"
            await ws.send("ünïcødé ✓")
            assert await asyncio.wait_for(ws.recv(), 5) == "Server: ünïcødé ✓"
            await ws.send(b"\x00\x01")
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01"
    with pytest.raises(InvalidStatus):
        await open_ws(server, None, origin="http://elsewhere.example", timeout=5)
