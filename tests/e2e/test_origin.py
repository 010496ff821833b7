"""Who may open a socket, on a real Daphne worker over real sockets (the `websockets` client):

- the chat socket's Origin check compares scheme, host and port exactly: by default the
  handshake's own origin (its scheme and its Host header, the Host allowed by ALLOWED_HOSTS) or an
  exact DJANGO_CSRF_TRUSTED_ORIGINS entry; with CHAT_ALLOWED_ORIGINS, exactly the origins it lists;
- the echo socket's limits: open sockets per client address, frames per socket, on/off switch.
"""

import asyncio
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.daphne_server import DaphneServer
from tests.support.processes import assert_refused, manage

ECHO_LIMITS = {
    "CHAT_ECHO_ENABLED": "1",
    "CHAT_MAX_SOCKETS_PER_USER": "3",  # also the echo socket's cap per client address
    "CHAT_RATE_PER_SECOND": "10",
    "CHAT_RATE_BURST": "20",
    "CHAT_ABUSE_LIMIT": "50",
}
TRUSTED = "https://admin.example.com:8443"  # a DJANGO_CSRF_TRUSTED_ORIGINS entry


@pytest.fixture(scope="module")
def server():
    """The defaults for the Origin (no CHAT_ALLOWED_ORIGINS), behind a proxy that may say
    X-Forwarded-Proto: https, with the echo socket on and small limits."""
    env = {**ECHO_LIMITS, "DJANGO_BEHIND_PROXY": "1", "DJANGO_CSRF_TRUSTED_ORIGINS": f"{TRUSTED},https://*.example.org"}
    with DaphneServer(env=env) as daphne:
        yield daphne


@pytest.fixture(scope="module")
def listed():
    """CHAT_ALLOWED_ORIGINS set (the echo socket left at its default: off)."""
    env = {"CHAT_ALLOWED_ORIGINS": "https://chat.example.com, http://Chat.Example.com:8080"}
    with DaphneServer(env=env) as daphne:
        yield daphne


@pytest.fixture(scope="module")
def cookie(server):
    return server.login("alice")


async def handshake(url: str, headers: dict[str, str], **options) -> websockets.ClientConnection:
    return await websockets.connect(
        url, additional_headers=headers, proxy=None, open_timeout=5, ping_interval=None, close_timeout=2, **options
    )


async def status(url: str, headers: dict[str, str], **options) -> int:
    """101 when the handshake opened a socket (closed again at once), else the HTTP status."""
    try:
        ws = await handshake(url, headers, **options)
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


async def chat_works(url: str, headers: dict[str, str], **options) -> None:
    """The socket opens and answers a ping: the session was let in, not closed with 4401."""
    async with await handshake(url, headers, **options) as ws:
        await ws.send('{"type": "ping", "ref": "p"}')
        reply = await asyncio.wait_for(ws.recv(), 5)
        assert '"pong"' in reply, reply


# The Origin check ------------------------------------------------------------------------------


async def test_another_scheme_or_port_on_an_allowed_host_is_refused(server, cookie):
    """The same host names as the worker's, but another web application: refused with 403."""
    for origin in ("http://127.0.0.1:9999", "https://127.0.0.1", "http://localhost:1234", "http://127.0.0.1"):
        code = await status(server.ws_url, {"Cookie": cookie, "Origin": origin})
        assert code == 403, f"Origin {origin} answered {code}"


async def test_the_exact_own_origin_is_accepted(server, cookie):
    await chat_works(server.ws_url, {"Cookie": cookie, "Origin": server.base_url})
    # Case of the scheme and host and an explicit default port do not matter; a path does.
    assert await status(server.ws_url, {"Cookie": cookie, "Origin": server.base_url.upper()}) == 101
    assert await status(server.ws_url, {"Cookie": cookie, "Origin": server.base_url + "/chat"}) == 403


async def test_localhost_origin_is_accepted_when_the_host_header_is_localhost(server, cookie):
    """localhost is in DJANGO_ALLOWED_HOSTS: a page at http://localhost:PORT reaches the socket
    at ws://localhost:PORT (Host: localhost:PORT), but not with a Host it does not match."""
    url = f"ws://localhost:{server.port}/ws/chat/"
    origin = f"http://localhost:{server.port}"
    await chat_works(url, {"Cookie": cookie, "Origin": origin}, host="127.0.0.1", port=server.port)
    assert await status(server.ws_url, {"Cookie": cookie, "Origin": origin}) == 403


async def test_a_host_header_outside_allowed_hosts_is_refused(server, cookie):
    """Own origin, but a Host the deployment does not serve (DNS rebinding): 403."""
    url = f"ws://rebound.example:{server.port}/ws/chat/"
    origin = f"http://rebound.example:{server.port}"
    assert await status(url, {"Cookie": cookie, "Origin": origin}, host="127.0.0.1", port=server.port) == 403


async def test_behind_a_tls_proxy_the_origin_is_https(server, cookie):
    """DJANGO_BEHIND_PROXY=1 and X-Forwarded-Proto: https (what nginx sends when TLS ends there):
    the own origin is https://HOST, as Django's CSRF check sees it, and http:// is refused."""
    https = {"Cookie": cookie, "X-Forwarded-Proto": "https"}
    await chat_works(server.ws_url, {**https, "Origin": f"https://127.0.0.1:{server.port}"})
    assert await status(server.ws_url, {**https, "Origin": server.base_url}) == 403


async def test_an_exact_csrf_trusted_origin_is_accepted_and_a_wildcard_one_is_not(server, cookie):
    await chat_works(server.ws_url, {"Cookie": cookie, "Origin": TRUSTED})
    for origin in ("https://admin.example.com", "http://admin.example.com:8443", "https://www.example.org"):
        assert await status(server.ws_url, {"Cookie": cookie, "Origin": origin}) == 403, origin


async def test_missing_or_null_origin_is_refused(server, cookie):
    for headers in ({"Cookie": cookie}, {"Cookie": cookie, "Origin": "null"}, {"Origin": "null"}):
        assert await status(server.ws_url, headers) == 403, headers


async def test_configured_allowed_origins_are_honoured_exactly(listed):
    cookie = await asyncio.to_thread(listed.login, "bob")
    await chat_works(listed.ws_url, {"Cookie": cookie, "Origin": "https://chat.example.com"})
    for origin in ("https://chat.example.com:443", "HTTP://CHAT.EXAMPLE.COM:8080"):
        assert await status(listed.ws_url, {"Cookie": cookie, "Origin": origin}) == 101, origin
    # The list replaces the default rule: the worker's own origin is no longer enough.
    for origin in (listed.base_url, "http://chat.example.com", "https://chat.example.com:8443", "https://example.com"):
        assert await status(listed.ws_url, {"Cookie": cookie, "Origin": origin}) == 403, origin


async def test_a_token_handshake_needs_no_origin(listed):
    token = (await asyncio.to_thread(listed.manage, "create_token", "carol")).stdout.strip().splitlines()[-1]
    for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {token}", "Origin": "null"}):
        await chat_works(listed.ws_url, headers)
    await chat_works(listed.ws_url + f"?token={token}", {"Origin": "http://elsewhere.example"})


@pytest.mark.parametrize(
    ("value", "sentence"),
    [
        ("chat.example.com", "'chat.example.com'"),
        ("https://chat.example.com/", "'https://chat.example.com/'"),
        ("ftp://chat.example.com", "'ftp://chat.example.com'"),
        ("https://*.example.com", "'https://*.example.com'"),
        ("https://chat.example.com:99999", "'https://chat.example.com:99999'"),
    ],
)
def test_a_bad_allowed_origin_stops_start_up_with_a_sentence(value, sentence):
    result = manage("check", env={"CHAT_ALLOWED_ORIGINS": f"https://ok.example.com,{value}"})
    assert_refused(result, "CHAT_ALLOWED_ORIGINS", sentence, "scheme://host[:port]")


# The echo socket -------------------------------------------------------------------------------


def echo_url(daphne: DaphneServer) -> str:
    return f"ws://127.0.0.1:{daphne.port}/ws/echo/"


async def close_code(ws, timeout: float = 5) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed:
        return ws.close_code


async def test_echo_sockets_per_address_are_capped(server):
    """CHAT_MAX_SOCKETS_PER_USER (3 here) echo sockets per client address on a worker; the next is
    accepted, then closed with 4408. Another address has its own count, and closing one frees it."""
    held = [await handshake(echo_url(server), {}) for _ in range(3)]
    try:
        for ws in held:
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), 5) == "Server: still here"
        extra = await handshake(echo_url(server), {"Origin": "http://elsewhere.example"})
        assert await close_code(extra) == 4408
        elsewhere = await handshake(echo_url(server), {}, local_addr=("127.0.0.2", 0))
        await elsewhere.send("hi")
        assert await asyncio.wait_for(elsewhere.recv(), 5) == "Server: hi"
        await elsewhere.close()
        await held.pop().close()
        await asyncio.sleep(0.3)  # the worker sees the close
        again = await handshake(echo_url(server), {})
        held.append(again)
        await again.send("my turn")
        assert await asyncio.wait_for(again.recv(), 5) == "Server: my turn"
    finally:
        await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)


async def test_an_echo_flood_gets_the_burst_then_the_rate_then_4429(server):
    """500 frames of 4 KiB at once: what comes back within a second is at most the burst (20) plus
    the rate (10/s); the frames over the rate get no echo and count against CHAT_ABUSE_LIMIT (50),
    and past it the socket is closed with 4429, as the chat socket is."""
    ws = await handshake(echo_url(server), {}, max_size=None)
    frame = "x" * 4096
    started = time.monotonic()

    async def flood() -> None:
        try:
            for _ in range(500):
                await ws.send(frame)
        except ConnectionClosed:
            pass

    sender = asyncio.create_task(flood())
    echoes = 0
    try:
        while time.monotonic() - started < 1.0:
            reply = await asyncio.wait_for(ws.recv(), max(0.01, 1.0 - (time.monotonic() - started)))
            assert reply == "Server: " + frame
            echoes += 1
    except (TimeoutError, ConnectionClosed):
        pass
    elapsed = time.monotonic() - started
    assert 20 <= echoes <= 20 + 10 * elapsed + 1, f"{echoes} echoes in {elapsed:.2f} s"
    assert await close_code(ws) == 4429
    await sender


async def test_an_echo_frame_over_64_kib_drops_the_connection(server):
    async with await handshake(echo_url(server), {}, max_size=None) as ws:
        await ws.send("y" * 70_000)
        assert await close_code(ws) == 1006


async def test_the_echo_socket_is_off_by_default(listed):
    """CHAT_ECHO_ENABLED unset and DJANGO_DEBUG=0: refused at the handshake like an unknown path."""
    for headers in ({}, {"Origin": listed.base_url}):
        assert await status(echo_url(listed), headers) == 403
