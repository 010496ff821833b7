"""Access on real workers: text that cannot be encoded never ends a socket or leaves a ghost, and a
ban whose event is lost still closes the room on every socket of two workers."""

import asyncio
import json
import secrets

import pytest
import websockets

from tests.support.daphne_server import DaphneServer, clean_env, run_manage
from tests.support.redis_server import RedisServer

# A lone surrogate, written as the JSON escape a client can send in perfectly valid UTF-8 text.
SURROGATE_FRAMES = [
    '{"type": "join", "room": "\\udfff"}',
    '{"type": "ping", "ref": "\\ud800"}',
    '{"type": "send", "room": "\\ud800x", "body": "hi", "ref": "\\udbff\\udbff"}',
    '{"type": "typing", "room": "lobby\\udc00"}',
]


async def ws_frames(ws, seconds: float) -> list[dict]:
    """Every frame that arrives within `seconds`."""
    frames = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        try:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), remaining)))
        except TimeoutError:
            break
    return frames


async def ws_reply(ws, ref: str, timeout: float = 5) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(deadline - loop.time(), 0.01)))
        if frame.get("ref") == ref:
            return frame


async def ws_expect(ws, frame_type: str, timeout: float = 5, **match) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), max(deadline - loop.time(), 0.01)))
        except TimeoutError:
            raise AssertionError(f"no {frame_type} {match} within {timeout} s") from None
        if frame["type"] == frame_type and all(frame.get(k) == v for k, v in match.items()):
            return frame


def cookie_socket(server: DaphneServer, cookie: str):
    return websockets.connect(server.ws_url, additional_headers={"Cookie": cookie, "Origin": server.base_url})


@pytest.fixture(scope="module")
def worker():
    with DaphneServer(env={"CHAT_MAX_SOCKETS_PER_USER": "3"}) as server:
        yield server


@pytest.fixture(scope="module")
def two_workers():
    """Two workers on one Redis and one database, re-checking access every second."""
    with RedisServer() as redis:
        common = {"REDIS_URL": redis.url, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
        with DaphneServer(env={**common, "CHAT_ACCESS_SWEEP_SECONDS": "1"}) as first:
            shared = {**common, "DATABASE_URL": first.env["DATABASE_URL"], "CHAT_ACCESS_SWEEP_SECONDS": "1"}
            with DaphneServer(env=shared) as second:
                yield first, second


def shell_without_redis(server: DaphneServer, code: str) -> str:
    """`manage.py shell -c CODE` on the workers' database, with no REDIS_URL: what it changes is
    announced on an in-process channel layer, which no worker hears."""
    env = clean_env({key: server.env[key] for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DJANGO_SECRET_KEY")})
    return run_manage(env, "shell", "-c", code).stdout


async def test_a_lone_surrogate_in_an_echoed_field_gets_an_error_and_the_socket_lives_on(worker):
    cookie = await asyncio.to_thread(worker.login, "alice")
    async with cookie_socket(worker, cookie) as ws:
        await ws.send(json.dumps({"type": "join", "room": "lobby", "ref": "j"}))
        assert (await ws_reply(ws, "j"))["type"] == "joined"
        for text in SURROGATE_FRAMES:
            await ws.send(text)
            await ws.send(json.dumps({"type": "ping", "ref": "after"}))
            replies = []
            while not replies or replies[-1].get("ref") != "after":
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            errors = [r for r in replies if r["type"] == "error"]
            assert [e["code"] for e in errors] == ["bad_request"], (text, replies)
            assert "ref" not in errors[0], errors  # nothing that cannot be sent back is echoed
            assert replies[-1]["type"] == "pong"
    assert "surrogates not allowed" not in worker.log()


async def test_sockets_that_sent_lone_surrogates_leave_no_ghost_and_no_used_slot(worker):
    """The per-user cap here is 3: if a crashed socket (1011, its disconnect never run) kept its
    slot, three such sockets would lock the account out with 4408 until the worker restarted,
    and leave alice listed online."""
    alice, bob = await asyncio.gather(asyncio.to_thread(worker.login, "alice"), asyncio.to_thread(worker.login, "bob"))
    async with cookie_socket(worker, bob) as watcher:
        await watcher.send(json.dumps({"type": "join", "room": "random", "ref": "j"}))
        assert (await ws_reply(watcher, "j"))["presence"] == ["bob"]
        for _ in range(5):
            async with cookie_socket(worker, alice) as ws:
                await ws.send(json.dumps({"type": "join", "room": "random", "ref": "j"}))
                assert (await ws_reply(ws, "j"))["type"] == "joined"
                await ws.send(SURROGATE_FRAMES[0])
                await ws.send(SURROGATE_FRAMES[1])
                await ws.send(json.dumps({"type": "ping", "ref": "p"}))
                assert (await ws_reply(ws, "p"))["type"] == "pong"
        await ws_expect(watcher, "presence", users=["bob"])
        async with cookie_socket(worker, alice) as ws:  # a sixth socket: not 4408
            await ws.send(json.dumps({"type": "ping", "ref": "p"}))
            assert (await ws_reply(ws, "p"))["type"] == "pong"


async def test_a_ban_whose_event_is_lost_closes_the_room_on_every_socket_of_two_workers(two_workers):
    first, second = two_workers
    alice_cookie, bob_cookie = await asyncio.gather(
        asyncio.to_thread(first.login, "alice"), asyncio.to_thread(second.login, "bob")
    )
    token = (await asyncio.to_thread(second.manage, "create_token", "alice")).stdout.strip().splitlines()[-1]
    token_ws = websockets.connect(second.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    async with (
        cookie_socket(first, alice_cookie) as cookie_ws,
        token_ws as token_ws,
        cookie_socket(second, bob_cookie) as bob_ws,
    ):
        for ws in (cookie_ws, token_ws, bob_ws):
            await ws.send(json.dumps({"type": "join", "room": "lobby", "ref": "j"}))
            assert (await ws_reply(ws, "j"))["type"] == "joined"

        await asyncio.to_thread(
            shell_without_redis,
            first,
            "from chat import services; from chat.models import Room; from django.contrib.auth.models import User; "
            "services.ban_create(room=Room.objects.get(slug='lobby'), user=User.objects.get(username='alice'))",
        )
        for ws in (cookie_ws, token_ws):
            closed = await ws_expect(ws, "room_closed", timeout=4)
            assert closed == {"type": "room_closed", "room": "lobby", "reason": "banned"}

        await bob_ws.send(json.dumps({"type": "send", "room": "lobby", "body": "alice is gone", "ref": "s"}))
        assert (await ws_reply(bob_ws, "s"))["type"] == "ack"
        for ws in (cookie_ws, token_ws):
            await ws.send(json.dumps({"type": "typing", "room": "lobby", "ref": "t"}))
            await ws.send(json.dumps({"type": "ping", "ref": "p"}))
            frames = await ws_frames(ws, 1.0)
            assert not [f for f in frames if f["type"] == "message"], frames
            assert [f["code"] for f in frames if f["type"] == "error"] == ["not_joined"], frames
            pong = next(f for f in frames if f["type"] == "pong")
            assert "lobby" not in pong.get("seqs", {})
        assert not [f for f in await ws_frames(bob_ws, 0.5) if f["type"] == "typing"]
