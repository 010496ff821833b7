"""Hostile input that needs a real worker: a smuggled Origin header, a client that stops reading, and
the login lockout over real HTTP."""

import asyncio
import base64
import json
import os
import socket as tcp
import time

import pytest
import websockets
from django.conf import settings

from tests.support.daphne_server import DEMO_PASSWORD, DaphneServer
from tests.support.metrics import parse, value

# The smallest send-buffer bound, and frame rates that let one client ask for ~10 MB of replies
# at once (more than the kernel's socket buffers hold: on loopback they grow to about 4 MB).
SLOW_READER_ENV = {
    "CHAT_MAX_SEND_BUFFER_BYTES": "65536",
    **dict.fromkeys(("CHAT_RATE_PER_SECOND", "CHAT_RATE_BURST", "CHAT_USER_RATE_PER_SECOND"), "200"),
    "CHAT_USER_RATE_BURST": "200",
}


@pytest.fixture(scope="module")
def daphne():
    with DaphneServer(env=SLOW_READER_ENV) as server:
        yield server


def handshake_request(port: int, extra_headers: bytes) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
    ) % (port, key, extra_headers)


def read_status_line(sock: tcp.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1)  # byte by byte: nothing after the handshake is read here
        if not chunk:
            break
        answer += chunk
    return answer.split(b"\r\n", 1)[0]


def raw_handshake(port: int, extra_headers: bytes) -> bytes:
    """A WebSocket handshake written byte by byte (no client library would send these headers);
    returns the status line of the answer."""
    with tcp.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(handshake_request(port, extra_headers))
        return read_status_line(sock)


def masked_text_frame(payload: str) -> bytes:
    """One client-to-server text frame (RFC 6455: clients mask)."""
    data = payload.encode()
    mask = os.urandom(4)
    if len(data) < 126:
        header = bytes([0x81, 0x80 | len(data)])
    else:
        header = bytes([0x81, 0x80 | 126]) + len(data).to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def sockets_opened(server: DaphneServer) -> int:
    return server.log().count("WebSocket opened by user")


def closed_total(server: DaphneServer, code: int) -> float:
    """The worker's /metrics count of sockets closed with `code`."""
    samples = parse(server.session().get("/metrics").text)
    return value(samples, "chat_websocket_connections_closed_total", code=str(code))


# An allowed Origin hidden in another header's value, behind the characters some parsers take for
# a line break (str.splitlines: VT, FF, FS, NEL; bare CR or LF; NUL), or on an obs-fold line.
SMUGGLED = {
    "vertical tab": b"X-Note: a\x0bOrigin: {origin}\r\n",
    "form feed": b"X-Note: a\x0cOrigin: {origin}\r\n",
    "file separator": b"X-Note: a\x1cOrigin: {origin}\r\n",
    "next line (NEL)": b"X-Note: a\x85Origin: {origin}\r\n",
    "bare CR": b"X-Note: a\rOrigin: {origin}\r\n",
    "bare LF": b"X-Note: a\nOrigin: {origin}\r\n",
    "NUL": b"X-Note: a\x00Origin: {origin}\r\n",
    "obs-fold": b"X-Note: a\r\n Origin: {origin}\r\n",
    "obs-fold after a foreign Origin": b"Origin: http://evil.example\r\n\t{origin}\r\n",
}


def worker_log_has(server: DaphneServer, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("smuggled", list(SMUGGLED.values()), ids=list(SMUGGLED))
def test_a_smuggled_origin_header_opens_no_socket(daphne, smuggled):
    cookie = b"Cookie: " + daphne.login("alice").encode() + b"\r\n"
    origin = daphne.base_url.encode()
    # The same cookie with the Origin in its own header is let in: the refusal below is the smuggling.
    assert raw_handshake(daphne.port, cookie + b"Origin: " + origin + b"\r\n").startswith(b"HTTP/1.1 101")
    opened = sockets_opened(daphne)
    assert opened >= 1

    status = raw_handshake(daphne.port, cookie + smuggled.replace(b"{origin}", origin))

    assert status.split(b" ")[1] in {b"400", b"403"}, f"smuggled Origin answered {status!r}"
    time.sleep(0.2)
    assert sockets_opened(daphne) == opened, "a socket was opened with the session"


def test_a_client_that_stops_reading_is_closed_and_catches_up_later(daphne):
    daphne.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "from chat import services\n"
        "from chat.models import Room\n"
        "room, bob = Room.objects.get(slug='random'), User.objects.get(username='bob')\n"
        "for i in range(100): services.message_send(room=room, author=bob, body=f'{i:04} ' + 'x' * 3990)",
    )
    closed_before = daphne.log().count("WebSocket closed with code 4008")
    counted_before = closed_total(daphne, 4008)

    # A client that reads: a catch-up of these 100 messages (~400 KB, six times the bound; in
    # several `joined` frames of at most 64 KiB, the protocol's `complete: false`) arrives whole:
    # being sent much at once is not the same as not reading.
    async def reader() -> None:
        headers = {"Cookie": daphne.login("alice"), "Origin": daphne.base_url}
        async with websockets.connect(daphne.ws_url, additional_headers=headers, max_size=None) as ws:
            seen, since, complete = [], 0, False
            while not complete:
                await ws.send(json.dumps({"type": "join", "room": "random", "since": since, "ref": f"j{since}"}))
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                while frame.get("ref") != f"j{since}":
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert frame["type"] == "joined", frame
                seen += frame["messages"]
                since, complete = seen[-1]["seq"], frame["complete"]
            assert [m["body"][:4] for m in seen if m["author"] == "bob"][-100:] == [f"{i:04}" for i in range(100)]
            assert [m["seq"] for m in seen] == list(range(1, len(seen) + 1))

    asyncio.run(reader())

    # A client that sends requests and never reads the replies: a tiny receive window, then
    # 150 history pages of ~64 KB each asked for and left unread.
    sock = tcp.socket(tcp.AF_INET, tcp.SOCK_STREAM)
    sock.setsockopt(tcp.SOL_SOCKET, tcp.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", daphne.port))
    cookie = daphne.login("carol").encode()
    sock.sendall(handshake_request(daphne.port, b"Cookie: %s\r\nOrigin: %s\r\n" % (cookie, daphne.base_url.encode())))
    assert read_status_line(sock).startswith(b"HTTP/1.1 101")
    sock.sendall(masked_text_frame(json.dumps({"type": "join", "room": "random"})))
    for i in range(150):
        sock.sendall(masked_text_frame(json.dumps({"type": "history", "room": "random", "limit": 100, "ref": str(i)})))

    assert worker_log_has(daphne, "bytes wait for it to read", timeout=10), daphne.log()[-3000:]
    # The connection ends: reading now drains what the kernel held, then the end (a close
    # frame never gets through the backlog, so the worker drops the TCP connection).
    deadline = time.monotonic() + 10
    ended = False
    while time.monotonic() < deadline and not ended:
        try:
            ended = sock.recv(65536) == b""
        except (ConnectionResetError, TimeoutError):
            ended = True
    sock.close()
    assert ended, "the connection of a client that does not read was still open"
    deadline = time.monotonic() + 10
    while daphne.log().count("WebSocket closed with code 4008") == closed_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daphne.log().count("WebSocket closed with code 4008") == closed_before + 1
    assert closed_total(daphne, 4008) == counted_before + 1  # /metrics has a label of its own for it

    # The worker is fine, and carol, connecting again, catches up from the database.
    async def comeback() -> None:
        headers = {"Cookie": daphne.login("carol"), "Origin": daphne.base_url}
        async with websockets.connect(daphne.ws_url, additional_headers=headers, max_size=None) as ws:
            await ws.send(json.dumps({"type": "join", "room": "random", "since": 95, "ref": "j"}))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            while frame.get("ref") != "j":
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert [m["body"][:4] for m in frame["messages"][-5:]] == ["0095", "0096", "0097", "0098", "0099"]

    asyncio.run(comeback())


def test_the_lockout_holds_on_a_real_worker(daphne):
    """Through Daphne (ASGI, the client address from the connection), as a browser meets it."""
    for _ in range(settings.AXES_FAILURE_LIMIT):
        refused = daphne.session().submit("/accounts/login/", {"username": "bob", "password": "guess"})
        assert refused.status in {200, 429}
    browser = daphne.session()
    response = browser.submit("/accounts/login/", {"username": "bob", "password": DEMO_PASSWORD})
    assert response.status == 429 and "Too many failed logins" in response.text, response
    assert not browser.cookie("sessionid")
    daphne.manage("axes_reset_username", "bob")
    assert daphne.login_session("bob").cookie("sessionid")
