"""Group commit on PostgreSQL, with real workers: `bin/cluster` with two Daphne workers sharing a
throwaway PostgreSQL (SQLite where PostgreSQL's binaries are absent, as in test_cluster.py) and a
redis-server. Each worker stores the sends waiting for a room in one transaction
(chat.realtime.batcher); the two workers' batches race for the same room's row lock.
tests/app/realtime/test_group_commit.py covers the same in-process on SQLite."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.support import postgres_server
from tests.support.cluster_server import ClusterServer

pytestmark = pytest.mark.timeout(240)

USERS = [f"gc{i}" for i in range(8)]
BANNED = "gc5"
PER_SOCKET = 6


@pytest.fixture(scope="module")
def cluster():
    database = postgres_server.PostgresServer() if postgres_server.available() else None
    try:
        url = database.__enter__().url if database is not None else None
        with ClusterServer(workers=2, database_url=url) as running:
            yield running
    finally:
        if database is not None:
            database.__exit__()


async def _open(cluster: ClusterServer, cookie: str, worker: int, room: str) -> Any:
    ws = await ws_connect(
        cluster.ws_url(worker), additional_headers={"Cookie": cookie, "Origin": cluster.base_url(worker)}
    )
    await ws.send(json.dumps({"type": "join", "room": room, "ref": "j"}))
    while json.loads(await ws.recv())["type"] != "joined":
        pass
    return ws


async def _replies(ws: Any, count: int) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """The replies to `count` sends (by ref), and the seqs of the `message` frames seen meanwhile."""
    replies: dict[str, dict[str, Any]] = {}
    seen: list[int] = []
    async with asyncio.timeout(30):
        while len(replies) < count:
            frame = json.loads(await ws.recv())
            if frame["type"] == "message":
                seen.append(frame["message"]["seq"])
            elif frame.get("ref", "").startswith("s"):
                replies[frame["ref"]] = frame
    return replies, seen


async def test_concurrent_sends_on_two_workers_are_gapless_once_each_and_a_banned_author_is_refused(cluster):
    assert cluster.state["database_url"].startswith("postgresql:" if postgres_server.available() else "sqlite:")
    room = "group-commit"
    names = ", ".join(repr(name) for name in USERS)
    cluster.shell(
        "from django.contrib.auth.models import User; from chat import services; from chat.models import Ban\n"
        f"room = services.room_create(slug={room!r}, name={room!r})\n"
        f"for name in [{names}]: User.objects.create_user(name, password='chatdemo')\n"
    )
    cookies = {name: cluster.login(name) for name in USERS}
    # Each user has a socket on each worker, and both send the same client_ids at the same moment:
    # the two workers' batches race, and for each client_id the first stored wins on both.
    sockets = {(name, worker): await _open(cluster, cookies[name], worker, room) for name in USERS for worker in (1, 2)}
    listeners = [await _open(cluster, cluster.login("alice"), worker, room) for worker in (1, 2)]
    # The ban is written straight to the database, without the event that would close the room on
    # gc5's sockets (as if the channel layer dropped it): the batches' own check refuses gc5.
    cluster.shell(
        "from django.contrib.auth.models import User; from chat.models import Ban, Room\n"
        f"Ban.objects.create(room=Room.objects.get(slug={room!r}), user=User.objects.get(username={BANNED!r}))"
    )
    try:
        for (name, _), ws in sockets.items():
            for i in range(PER_SOCKET):
                frame = {
                    "type": "send",
                    "room": room,
                    "body": f"{name} #{i}",
                    "client_id": f"{name}-{i}",
                    "ref": f"s{i}",
                }
                await ws.send(json.dumps(frame))
        results = await asyncio.gather(*(_replies(ws, PER_SOCKET) for ws in sockets.values()))
        by_socket = dict(zip(sockets, results, strict=True))

        for (name, _), (replies, _) in by_socket.items():
            if name == BANNED:
                # Refused by the batch's check, or, once the periodic access sweep has closed the
                # room on this socket, as not joined: never stored either way (below).
                assert replies["s0"]["code"] == "forbidden", replies
                assert {(r["type"], r.get("code")) for r in replies.values()} <= {
                    ("error", "forbidden"),
                    ("error", "not_joined"),
                }, replies
            else:
                assert all(r["type"] == "ack" for r in replies.values()), replies
        total = (len(USERS) - 1) * PER_SOCKET
        for name in USERS:
            if name != BANNED:  # both sockets got the same message for each client_id
                one, two = by_socket[(name, 1)][0], by_socket[(name, 2)][0]
                assert {ref: (r["id"], r["seq"]) for ref, r in one.items()} == {
                    ref: (r["id"], r["seq"]) for ref, r in two.items()
                }
        acked = sorted({r["seq"] for replies, _ in results for r in replies.values() if r["type"] == "ack"})
        assert acked == list(range(1, total + 1))
        stored = json.loads(
            cluster.shell(
                "import json; from chat.models import Message; print(json.dumps(list(Message.objects.filter("
                f"room__slug={room!r}).order_by('seq').values_list('seq', 'client_id', 'author__username'))))"
            )
        )
        assert [seq for seq, _, _ in stored] == list(range(1, total + 1))
        assert sorted((author, client_id) for _, client_id, author in stored) == sorted(
            (name, f"{name}-{i}") for name in USERS if name != BANNED for i in range(PER_SOCKET)
        )
        # Each worker's listener hears every message once (two workers' commits may be published in
        # either order: a client orders them by seq).
        for listener in listeners:
            seen: list[int] = []
            async with asyncio.timeout(15):
                while len(seen) < total:
                    frame = json.loads(await listener.recv())
                    if frame["type"] == "message":
                        seen.append(frame["message"]["seq"])
            assert sorted(seen) == list(range(1, total + 1))
    finally:
        await asyncio.gather(*(ws.close() for ws in [*sockets.values(), *listeners]), return_exceptions=True)
