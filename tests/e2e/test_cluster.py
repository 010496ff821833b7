"""The many-workers deployment with real processes: `bin/cluster` (what `make cluster` runs)
starts nginx in front of Daphne workers sharing a redis-server and a database.

The main cluster runs on the default channel layer (RedisPubSubChannelLayer) with a redis-server
the tests own (so they can restart it), and on a throwaway PostgreSQL server when PostgreSQL's
binaries are installed (`make test` installs them as root), otherwise on a SQLite file shared by
the workers. A second, small cluster runs on a shared SQLite file with the other layer
(RedisChannelLayer) and a tiny capacity: it shows that the SQLite path keeps seqs gapless too,
and that what that layer drops silently at capacity is caught up.

Tests talk to a given worker directly (its own port) where "a different worker" matters, and
through nginx where the proxy matters. The SIGKILL test runs last: it leaves one worker dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import time
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
import redis as redis_py
from websockets.asyncio.client import connect as ws_connect
from websockets.sync.client import connect as sync_connect

from clients.connection import ChatClient
from tests.support import postgres_server
from tests.support.cluster_server import ClusterServer
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(240)

_room_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def database_url():
    if postgres_server.available():
        with postgres_server.PostgresServer() as pg:
            yield pg.url
    else:  # the fallback; `make test` as root installs PostgreSQL, so CI takes the branch above
        yield None


@pytest.fixture(scope="module")
def redis():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(database_url, redis):
    with ClusterServer(workers=3, database_url=database_url, redis_url=redis.url) as running:
        yield running


@pytest.fixture(scope="module")
def sqlite_cluster():
    env = {"CHAT_CHANNEL_LAYER": "redis", "CHAT_LAYER_CAPACITY": "5"}
    with ClusterServer(workers=2, env=env) as running:
        yield running


IDLE_SECONDS = 65


@pytest.fixture(scope="module")
def idle_sockets(cluster):
    """Two sockets (workers 2 and 3) that join a room, then stay silent while the other tests run;
    test_sockets_idle_for_over_a_minute_still_deliver checks them after IDLE_SECONDS. (redis-py's
    read timeout once killed idle Redis-backed sockets after 5 s, racing channels-redis' 5 s
    blocking receive.) The websockets sync client answers Daphne's pings in its own thread, as a
    browser does."""
    room = new_room(cluster, "idle")
    with contextlib.ExitStack() as stack:
        opened = []
        for worker, name in ((2, "bob"), (3, "carol")):
            ws = stack.enter_context(
                sync_connect(
                    cluster.ws_url(worker),
                    additional_headers={"Cookie": cookie_for(cluster, name), "Origin": cluster.base_url(worker)},
                    open_timeout=10,
                )
            )
            ws.send(json.dumps({"type": "join", "room": room, "since": 0, "ref": "j"}))
            assert json.loads(ws.recv(timeout=5))["type"] == "joined"
            opened.append(ws)
        yield room, opened, time.monotonic()


def new_room(cluster: ClusterServer, prefix: str = "room") -> str:
    slug = f"{prefix}-{next(_room_numbers)}-{int(time.time() * 1000) % 100000}"
    cluster.shell(f"from chat import services; services.room_create(slug={slug!r}, name={slug!r})")
    return slug


_cookies: dict[tuple[int, str], str] = {}


def cookie_for(cluster: ClusterServer, username: str) -> str:
    """One login per user and cluster (sessions live in the shared database: any worker accepts them)."""
    key = (id(cluster), username)
    if key not in _cookies:
        _cookies[key] = cluster.login(username)
    return _cookies[key]


# No application pings unless a test asks for them (ping_interval), and no pong deadline: a test
# that freezes a worker expects its sockets to stay open.
NO_PINGS: dict[str, Any] = {"ping_interval": None, "pong_timeout": None}


def client(cluster: ClusterServer, username: str, *, worker: int | None = None, **options: Any) -> ChatClient:
    name = f"{username}@{'nginx' if worker is None else f'w{worker}'}"
    cookie, origin = cookie_for(cluster, username), cluster.base_url(worker)
    return ChatClient(cluster.ws_url(worker), cookie=cookie, origin=origin, name=name, **{**NO_PINGS, **options})


async def stop_all(*clients: ChatClient) -> None:
    await asyncio.gather(*(c.stop() for c in clients))


# Chat, presence, session ends and admin actions across workers ---------------------------------


async def test_users_on_different_workers_chat_both_ways(cluster, idle_sockets):
    room = new_room(cluster)
    alice = await client(cluster, "alice", worker=1).start(room)
    bob = await client(cluster, "bob", worker=2).start(room)
    carol = await client(cluster, "carol").start(room)  # through nginx
    try:
        await alice.send(room, "hello from worker 1")
        await bob.wait_for(lambda: bob.bodies(room) == ["hello from worker 1"], 5, "alice's message")
        await bob.send(room, "hi from worker 2")
        await carol.send(room, "and me, through nginx")
        expected = ["hello from worker 1", "hi from worker 2", "and me, through nginx"]
        for each in (alice, bob, carol):
            await each.wait_for(lambda each=each: each.bodies(room) == expected, 5, "all three messages")
            assert each.live == 3, f"{each.name} got {each.live} live frames, not 3"
            assert sorted(each.messages[room]) == [1, 2, 3]
    finally:
        await stop_all(alice, bob, carol)


async def test_presence_is_the_same_on_every_worker(cluster):
    room = new_room(cluster)
    alice_tab1 = await client(cluster, "alice", worker=1).start(room)
    alice_tab2 = await client(cluster, "alice", worker=3).start(room)
    bob = await client(cluster, "bob", worker=2).start(room)
    carol = await client(cluster, "carol", worker=3).start(room)
    watchers = [alice_tab1, alice_tab2, bob, carol]
    try:
        everyone = ["alice", "bob", "carol"]
        for each in watchers:  # alice with two tabs on two workers is one entry
            await each.wait_for(lambda each=each: each.presence[room] == everyone, 5, f"presence {everyone}")
        for worker in (1, 2, 3):  # a fresh join on any worker gets the same list
            probe = await client(cluster, "admin", worker=worker).start(room)
            assert probe.presence[room] == ["admin", *everyone]
            await probe.stop()
        for each in watchers:
            await each.wait_for(lambda each=each: each.presence[room] == everyone, 5, "admin gone again")

        await alice_tab1.stop()  # her other tab, on another worker, keeps her listed
        await asyncio.sleep(0.5)
        for each in (alice_tab2, bob, carol):
            assert each.presence[room] == everyone
        await alice_tab2.stop()
        for each in (bob, carol):
            await each.wait_for(lambda each=each: each.presence[room] == ["bob", "carol"], 5, "alice offline")
    finally:
        await stop_all(*watchers)


async def test_logout_on_one_worker_closes_that_users_sockets_on_the_others(cluster):
    room = new_room(cluster)
    browser = cluster.login_session("bob", worker=1)
    cookie = browser.cookie_header()
    tabs = [
        await ChatClient(
            cluster.ws_url(worker), cookie=cookie, origin=cluster.base_url(worker), name=f"bob@w{worker}", **NO_PINGS
        ).start(room)
        for worker in (2, 3)
    ]
    other = await client(cluster, "carol", worker=2).start(room)
    try:
        page = browser.get("/")
        token = browser.csrf_token_from(page)
        response = browser.request(
            "POST", "/accounts/logout/", {"csrfmiddlewaretoken": token}, headers={"Referer": browser.url("/")}
        )
        assert response.status == 200 and "/accounts/login/" in response.url
        for tab in tabs:
            await tab.wait_for(lambda tab=tab: 4401 in tab.closes, 5, "close 4401 after logout")
            assert tab.reconnects == 0  # 4401 is final: the page goes to the login form
        await other.send(room, "carol is still here")  # another user's socket on the same worker lives
    finally:
        await stop_all(*tabs, other)


async def test_admin_actions_reach_sockets_on_every_worker(cluster):
    room = new_room(cluster)
    watchers = [await client(cluster, name, worker=w).start(room) for name, w in (("bob", 2), ("carol", 3))]
    alice = await client(cluster, "alice", worker=1).start(room)
    staff = cluster.login_session("admin", worker=1)
    try:
        await alice.send(room, "a message to delete")
        await alice.send(room, "one to keep")
        message_id = alice.messages[room][1]["id"]
        for each in watchers:
            await each.wait_for(lambda each=each: len(each.messages[room]) == 2, 5, "both messages")

        response = staff.submit(
            "/admin/chat/message/",
            {"action": "delete_messages", "_selected_action": str(message_id), "index": "0"},
        )
        assert response.status == 200, response.status
        for each in [*watchers, alice]:
            await each.wait_for(lambda each=each: each.frames_of("message_deleted"), 5, "message_deleted")
            assert each.frames_of("message_deleted")[0]["id"] == message_id

        room_id = int(cluster.shell(f"from chat.models import Room; print(Room.objects.get(slug={room!r}).pk)"))
        response = staff.submit(
            "/admin/chat/room/", {"action": "archive_rooms", "_selected_action": str(room_id), "index": "0"}
        )
        assert response.status == 200, response.status
        for each in [*watchers, alice]:
            await each.wait_for(lambda each=each: each.frames_of("room_closed"), 5, "room_closed")
            assert each.frames_of("room_closed")[0]["room"] == room
    finally:
        await stop_all(*watchers, alice)


# Seqs, dropped events, readiness ----------------------------------------------------------------


async def assert_gapless_under_concurrent_senders(cluster: ClusterServer, workers: int) -> None:
    """Three senders per worker, all at once, 15 messages each (within the rate limit's burst)."""
    room = new_room(cluster, "race")
    senders = [
        await client(cluster, name, worker=w).start(room)
        for w in range(1, workers + 1)
        for name in ("alice", "bob", "carol")
    ]
    try:

        async def burst(sender: ChatClient) -> list[str]:
            ids = [await sender.send(room, f"{sender.name} #{i}", wait=False) for i in range(15)]
            await sender.wait_for(lambda: all(i in sender.acks for i in ids), 20, "every ack")
            return ids

        await asyncio.gather(*(burst(s) for s in senders))
        total = 15 * len(senders)
        acked = sorted(ack["seq"] for s in senders for ack in s.acks.values())
        assert acked == list(range(1, total + 1)), "acked seqs are not 1..N without gaps or repeats"
        for each in senders:
            await each.wait_for(lambda each=each: each.newest(room) == total, 10, f"all {total} messages")
            assert len(each.messages[room]) == total
        stored = cluster.shell(
            "from chat.models import Message; "
            f"print(list(Message.objects.filter(room__slug={room!r}).order_by('seq').values_list('seq', flat=True)))"
        )
        assert json.loads(stored) == list(range(1, total + 1))
    finally:
        await stop_all(*senders)


async def test_a_direct_message_and_a_reaction_cross_workers(cluster):
    """alice on worker 1 starts a direct conversation with bob, whose only socket is on worker 2
    and has not joined it: the first message reaches him there (`direct_message`), he joins and
    reacts, and alice sees the reaction live; carol, on worker 3, can neither enter nor read it."""
    opened = []

    async def socket(name: str, worker: int) -> Any:
        ws = await ws_connect(
            cluster.ws_url(worker),
            additional_headers={"Cookie": cookie_for(cluster, name), "Origin": cluster.base_url(worker)},
            open_timeout=10,
            ping_interval=None,
        )
        opened.append(ws)
        return ws

    try:
        alice, bob, carol = await socket("alice", 1), await socket("bob", 2), await socket("carol", 3)
        direct = await request(alice, "direct", users=["bob"])
        assert direct["type"] == "direct" and direct["info"]["kind"] == "direct", direct
        room = direct["room"]
        assert (await request(bob, "direct", users=["alice"]))["room"] == room  # the same two, the same room
        assert (await request(alice, "join", room=room))["type"] == "joined"
        ack = await request(alice, "send", room=room, body="just between us")
        notice = await expect(bob, "direct_message")
        assert notice["room"] == room and notice["message"]["body"] == "just between us"
        assert notice["info"]["name"] == "alice"  # named after the other person, as bob sees it
        joined = await request(bob, "join", room=room)
        assert [m["body"] for m in joined["messages"]] == ["just between us"]
        reacted = await request(bob, "react", room=room, id=ack["id"], emoji="👍")
        assert reacted["type"] == "message_updated" and reacted["rev"] == ack["rev"] + 1, reacted
        seen = await expect(alice, "message_updated")
        assert seen["message"]["reactions"] == {"👍": ["bob"]} and seen["rev"] == reacted["rev"]
        # Every other kind of change, on the cluster's database (PostgreSQL under `make test`).
        reply = await request(alice, "send", room=room, body="in a thread", reply_to=ack["id"])
        edited = await request(alice, "edit", room=room, id=ack["id"], body="just between *us*")
        deleted = await request(alice, "delete", room=room, id=reply["id"])
        assert [reply["rev"], edited["rev"], deleted["rev"]] == [
            reacted["rev"] + 1,
            reacted["rev"] + 3,
            reacted["rev"] + 4,
        ]
        summary = await expect(bob, "message_updated")
        assert summary["message"]["reply_count"] == 1 and summary["rev"] == reply["rev"] + 1
        await request(alice, "react", room=room, id=ack["id"], emoji="🎉")  # sorts before 👍 as a jsonb key
        caught_up = await request(bob, "join", room=room, rev=reacted["rev"])
        root = next(m for m in caught_up["messages"] if m["id"] == ack["id"])
        assert (root["html"], root["reply_count"]) == ("<p>just between <em>us</em></p>", 0)
        assert list(root["reactions"].items()) == [("👍", ["bob"]), ("🎉", ["alice"])]  # in the order first used
        assert caught_up["rev"] == deleted["rev"] + 2  # the reply's deletion changed the thread's summary too
        refused = await request(carol, "join", room=room)
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
    finally:
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)


async def request(ws: Any, frame_type: str, **fields: Any) -> dict[str, Any]:
    ref = f"r{next(_room_numbers)}"
    await ws.send(json.dumps({"type": frame_type, "ref": ref, **fields}))
    return await expect(ws, None, ref=ref)


async def expect(ws: Any, frame_type: str | None, *, ref: str | None = None, timeout: float = 5) -> dict[str, Any]:
    """The next frame of `frame_type` (or the reply carrying `ref`), skipping others."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if (ref is not None and frame.get("ref") == ref) or (ref is None and frame["type"] == frame_type):
                return frame


async def test_seqs_stay_gapless_with_concurrent_senders_on_three_workers(cluster):
    await assert_gapless_under_concurrent_senders(cluster, 3)


@pytest.mark.exclusive  # a CPU-bound burst: not beside another module's tests (tests/conftest.py)
async def test_seqs_stay_gapless_on_a_shared_sqlite_file_too(sqlite_cluster):
    assert sqlite_cluster.state["database_url"].startswith("sqlite:")
    await assert_gapless_under_concurrent_senders(sqlite_cluster, 2)


async def test_messages_the_channel_layer_drops_are_caught_up(sqlite_cluster):
    """Worker 2 is frozen (SIGSTOP) while 15 messages are sent through worker 1. Its Redis queue
    holds 5 events (CHAT_LAYER_CAPACITY=5 here); channels-redis drops the rest without a word.
    When worker 2 runs again, its client gets the first few live; nothing later arrives to show
    a gap, but the page's periodic ping does (`pong.seqs`), and it catches up the rest from the
    database with a rejoin: every message, once, in order, on the same socket."""
    cluster = sqlite_cluster
    room = new_room(cluster, "drops")
    alice = await client(cluster, "alice", worker=1).start(room)
    bob = await client(cluster, "bob", worker=2, ping_interval=1.0).start(room)
    try:
        cluster.kill_worker(2, signal.SIGSTOP)
        try:
            for i in range(15):
                await alice.send(room, f"m{i}")
        finally:
            cluster.kill_worker(2, signal.SIGCONT)
        await bob.wait_for(lambda: bob.newest(room) == 15, 10, "all 15 messages")
        assert bob.bodies(room) == [f"m{i}" for i in range(15)]
        # 5 queued in Redis, plus any the worker had already taken in when it was frozen
        assert bob.live <= 8, f"{bob.live} of 15 arrived live: the layer dropped nothing over capacity"
        assert any(pong.get("seqs", {}).get(room) == 15 for pong in bob.frames_of("pong"))
        assert bob.reconnects == 0
        assert "over capacity" in cluster.worker_log(1)
    finally:
        await stop_all(alice, bob)


async def test_a_redis_restart_mid_conversation_loses_nothing(cluster, redis):
    """Redis stops, then starts again on the same port, empty. Sends during the outage are stored
    and acked (only their live copy is lost); the workers subscribe again by themselves, live
    delivery resumes on the same sockets, everyone catches up every message once, presence
    comes back from the heartbeats, and /readyz is green again."""
    room = new_room(cluster, "redis")
    people = [
        await client(cluster, name, worker=w, ping_interval=1.0).start(room)
        for name, w in (("alice", 1), ("bob", 2), ("carol", 3))
    ]
    alice = people[0]
    try:
        for i in range(3):
            await alice.send(room, f"before {i}")
        redis.stop()
        for i in range(3):
            await alice.send(room, f"during {i}")
        redis.start()
        await asyncio.sleep(2)  # the workers' subscriber loops reconnect (they poll every 0.1-1 s)
        for i in range(3):
            await alice.send(room, f"after {i}")
        expected = [f"{when} {i}" for when in ("before", "during", "after") for i in range(3)]
        for each in people:
            await each.wait_for(lambda each=each: each.newest(room) == 9, 15, "all 9 messages")
            assert each.bodies(room) == expected
        for each in people[1:]:
            assert "after 2" in each.live_bodies, f"{each.name}: live delivery did not resume"
            assert each.reconnects == 0, f"{each.name} reconnected: the socket should have lived on"
        for worker in (1, 2, 3):
            assert get_json(cluster.base_url(worker) + "/readyz")[0] == 200
        deadline = time.monotonic() + 3 * 15 / 3 + 5  # a heartbeat (TTL/3) puts the entries back
        while True:
            probe = await client(cluster, "admin", worker=2).start(room)
            listed = probe.presence[room]
            await probe.stop()
            if listed == ["admin", "alice", "bob", "carol"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert listed == ["admin", "alice", "bob", "carol"]
    finally:
        await stop_all(*people)


async def test_chat_send_from_the_command_line_reaches_open_sockets_live(cluster):
    """`manage.py chat_send` runs in its own process: Redis carries its broadcast to the workers."""
    room = new_room(cluster, "alerts")
    bob = await client(cluster, "bob", worker=2).start(room)
    try:
        output = await asyncio.to_thread(cluster.manage, "chat_send", room, "Disk at 91% on db-1")
        assert output.strip() == f"Sent message #1 to {room} as system."
        await bob.wait_for(lambda: "Disk at 91% on db-1" in bob.live_bodies, 5, "the alert, live")
        assert bob.messages[room][1]["author"] == "system"
    finally:
        await bob.stop()


def get_json(url: str) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_readyz_on_every_worker_and_through_nginx(cluster, redis, idle_sockets):
    """With sockets open on the workers (a socket's receive loop once starved readyz's channel),
    and without leaving a Redis subscription behind per check (the healthcheck runs every 10 s)."""
    subscriptions = redis_py.Redis.from_url(redis.url).pubsub_channels
    for worker in (None, 1, 2, 3):
        status, body = get_json(cluster.base_url(worker) + "/readyz")
        assert (status, body["checks"]) == (200, {"database": "ok", "channel_layer": "ok"}), (worker, body)
    before = len(subscriptions())
    for _ in range(10):
        for worker in (1, 2, 3):
            assert get_json(cluster.base_url(worker) + "/readyz")[0] == 200
    assert len(subscriptions()) == before


# Daphne behind nginx -----------------------------------------------------------------------------


def test_nginx_serves_static_files_and_proxies_pages(cluster):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(cluster.url + "/static/chat/chat.js", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Server"] == "nginx"
        assert "max-age=3600" in response.headers["Cache-Control"]
        assert b"WebSocket" in response.read()
    browser = cluster.login_session("alice")  # the login form, CSRF and all, through the proxy
    page = browser.get("/rooms/lobby/")
    assert page.status == 200 and "Lobby" in page.text


def test_workers_see_the_address_nginx_saw_not_one_the_client_claims(cluster):
    """Daphne runs with --proxy-headers behind nginx: its access log shows the client's real address
    (X-Forwarded-For set by nginx), and a forged X-Forwarded-For from the client is not believed,
    so nobody outside can pose as an internal address (which /metrics trusts)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(cluster.url + "/healthz?xff-check", headers={"X-Forwarded-For": "203.0.113.7"})
    for _ in range(3):  # least_conn spreads them over the workers
        opener.open(request, timeout=5).read()
    time.sleep(0.3)
    logs = "".join(cluster.worker_log(w) for w in (1, 2, 3))
    lines = [line for line in logs.splitlines() if "xff-check" in line]
    assert len(lines) == 3, logs[-2000:]
    assert all("127.0.0.1" in line and "203.0.113.7" not in line for line in lines), lines


def test_two_browsers_on_different_workers_chat_live(cluster):
    """Alice's page comes through nginx; Bob's straight from another worker: they chat live."""
    from playwright.sync_api import expect, sync_playwright

    from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS, logged_in_page, open_room, send

    room = new_room(cluster, "browsers")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            through_nginx = SimpleNamespace(base_url=cluster.url)
            logs_before = [cluster.worker_log(w).count("WSCONNECT /ws/chat/") for w in (1, 2, 3)]
            alice = logged_in_page(browser, through_nginx, "alice")
            open_room(alice, through_nginx, room)
            # Her sockets: the room list's (unread counts) and the room page's; Bob gets another worker.
            grew = [w for w in (1, 2, 3) if cluster.worker_log(w).count("WSCONNECT /ws/chat/") > logs_before[w - 1]]
            assert 1 <= len(grew) <= 2, f"alice's sockets went to workers {grew}"
            other = SimpleNamespace(base_url=cluster.base_url(next(w for w in (1, 2, 3) if w not in grew)))
            bob = logged_in_page(browser, other, "bob")
            open_room(bob, other, room)

            send(alice, "Hello from the page nginx served")
            expect(bob.locator("#messages .message[data-author=alice] .body")).to_have_text(
                "Hello from the page nginx served"
            )
            send(bob, "Hi, from another worker")
            expect(alice.locator("#messages .message[data-author=bob] .body")).to_have_text("Hi, from another worker")
            expect(alice.locator("#presence li[data-username=bob]")).to_have_count(1)
            expect(bob.locator("#presence li[data-username=alice]")).to_have_count(1)
        finally:
            browser.close()


# Last: a worker dies (worker 1 stays dead for the tests after it) ------------------------------------------------------------------------------


async def test_a_worker_killed_mid_conversation(cluster):
    """SIGKILL worker 1 while six people chat through nginx: the clients it held reconnect
    through nginx to the survivors and, after catch-up, hold every message exactly once. A user
    whose only socket was on worker 1 (and who does not come back) leaves the online list of
    everyone else within 30 s: no ghost."""
    room = new_room(cluster, "kill")
    ghost_session = cluster.session(1)
    ghost_session.submit(
        "/accounts/signup/",
        {
            "username": "ghost",
            "email": "ghost@example.com",
            "password1": "pale-moon-7391",
            "password2": "pale-moon-7391",
        },
    )
    ghost = await ChatClient(
        cluster.ws_url(1),
        cookie=ghost_session.cookie_header(),
        origin=cluster.base_url(1),
        name="ghost@w1",
        reconnect=False,
        **NO_PINGS,
    ).start(room)
    people = [await client(cluster, name).start(room) for name in ("alice", "bob", "carol") * 2]
    everyone = ["alice", "bob", "carol", "ghost"]
    for each in people:
        await each.wait_for(lambda each=each: each.presence[room] == everyone, 5, "everyone online")

    sent: list[str] = []
    stop = asyncio.Event()

    async def talk(speaker: ChatClient) -> None:
        n = 0
        while not stop.is_set():
            body = f"{speaker.name}/{id(speaker) % 1000}/{n}"
            await speaker.send(room, body, timeout=20)  # waits for the ack, across a reconnect
            sent.append(body)
            n += 1
            await asyncio.sleep(0.1)

    talkers = [asyncio.create_task(talk(p)) for p in people[:3]]
    try:
        await asyncio.sleep(1.5)
        cluster.kill_worker(1)
        killed_at = time.monotonic()
        await asyncio.sleep(2.5)
        stop.set()
        await asyncio.gather(*talkers)

        moved = [p for p in people if p.reconnects]
        assert moved, "no client was on worker 1 (nginx least_conn should have spread them)"
        assert 1006 in ghost.closes and ghost.reconnects == 0
        total = len(sent)
        assert total > 20
        for each in people:  # every acked message, once, in seq order, gapless
            await each.wait_for(lambda each=each: each.newest(room) == total, 15, f"all {total} messages")
            assert len(each.messages[room]) == total
            assert sorted(each.bodies(room)) == sorted(sent)

        def ghost_gone(each: ChatClient) -> bool:
            return each.presence[room] == ["alice", "bob", "carol"]

        for each in people:
            await each.wait_for(lambda each=each: ghost_gone(each), 30 - (time.monotonic() - killed_at), "no ghost")
        gone_after = time.monotonic() - killed_at
        assert gone_after < 30
        print(f"\nghost presence gone {gone_after:.1f} s after SIGKILL; {len(moved)} clients moved")
    finally:
        stop.set()
        for task in talkers:
            task.cancel()
        await stop_all(ghost, *people)


def test_sockets_idle_for_over_a_minute_still_deliver(cluster, idle_sockets):
    room, idle, opened_at = idle_sockets
    time.sleep(max(0.0, IDLE_SECONDS - (time.monotonic() - opened_at)))
    with sync_connect(  # through nginx: worker 1 is dead by now
        cluster.ws_url(), additional_headers={"Cookie": cookie_for(cluster, "alice"), "Origin": cluster.origin}
    ) as alice:
        alice.send(json.dumps({"type": "join", "room": room, "since": 0, "ref": "j"}))
        alice.send(json.dumps({"type": "send", "room": room, "body": "still there?", "client_id": "idle-1"}))
        for ws in idle:
            while True:  # skip the presence frames that arrived while idle
                frame = json.loads(ws.recv(timeout=5))
                if frame["type"] == "message":
                    break
            assert frame["message"]["body"] == "still there?"


def test_ctrl_c_stops_the_whole_cluster(cluster):
    """The runner's Ctrl+C: nginx, the surviving workers and Redis stop, and it exits with 0."""
    pids = [pid for pid in cluster.child_pids()]
    assert cluster.interrupt() == 0
    assert "Stopped." in cluster.log()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                assert stat.read().split()[2] == "Z", f"process {pid} still runs"
        except FileNotFoundError:
            pass
