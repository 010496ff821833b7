"""Every change converges, on a real worker: a client that was away, or whose live copy of a
change never arrived (the channel layer delivers at most once), ends with the room as someone who
saw everything sees it: edited text, tombstones, reactions and thread summaries included."""

import asyncio
from typing import Any

from tests.support.replica import Replica
from tests.support.websocket import expect, join, open_ws, recv, request, send


async def _fresh_view(server, cookie: str, room: str) -> Replica:
    """The room as a socket that joins now sees it."""
    ws = await open_ws(server, cookie)
    try:
        replica = Replica(room)
        replica.joined(await join(ws, room))
        return replica
    finally:
        await ws.close()


async def _catch_up(ws, replica: Replica) -> dict:
    """Join again from what the replica holds, as a client does after a reconnect or a gap."""
    last_seq = max((m["seq"] for m in replica.messages.values()), default=0)
    joined = await join(ws, replica.room, since=last_seq, rev=replica.rev)
    assert joined["complete"] is True
    replica.joined(joined)
    return joined


async def _alice_and_bob_in_random(server) -> tuple[str, Any, Any, Replica]:
    """bob's cookie, alice's and bob's sockets joined to `random`, and bob's view of the room."""
    alice_cookie, bob_cookie = [await asyncio.to_thread(server.login, name) for name in ("alice", "bob")]
    alice = await open_ws(server, alice_cookie)
    bob = await open_ws(server, bob_cookie)
    await join(alice, "random")
    bob_view = Replica("random")
    bob_view.joined(await join(bob, "random"))
    return bob_cookie, alice, bob, bob_view


async def test_a_client_that_was_away_gets_edits_deletions_reactions_and_replies(server):
    bob_cookie, alice, bob, bob_view = await _alice_and_bob_in_random(server)
    try:
        first = await request(alice, "send", room="random", body="first draft")
        second = await request(alice, "send", room="random", body="soon regretted")
        for ack in (first, second):
            frame = await expect(bob, "message")
            assert frame["message"]["id"] == ack["id"]
            assert bob_view.live(frame) is False
        await bob.close()  # bob holds every message, and goes away

        edited = await request(alice, "edit", room="random", id=first["id"], body="**final** text")
        deleted = await request(alice, "delete", room="random", id=second["id"])
        reacted = await request(alice, "react", room="random", id=first["id"], emoji="🎉")
        reply_ack = await request(alice, "send", room="random", body="a reply", reply_to=first["id"])
        assert [edited["rev"], deleted["rev"], reacted["rev"]] == [
            second["rev"] + 1,
            second["rev"] + 2,
            second["rev"] + 3,
        ]
        assert reply_ack["rev"] == reacted["rev"] + 1  # then the thread's first message took the next

        bob = await open_ws(server, bob_cookie)  # back, with the seq and rev he holds
        joined = await _catch_up(bob, bob_view)
        assert joined["rev"] == reply_ack["rev"] + 1
        assert [m["rev"] for m in joined["messages"]] == sorted(m["rev"] for m in joined["messages"])
        shown = bob_view.messages
        assert (shown[first["id"]]["body"], shown[first["id"]]["html"]) == (
            "**final** text",
            "<p><strong>final</strong> text</p>",
        )
        assert shown[first["id"]]["reactions"] == {"🎉": ["alice"]}
        assert (shown[first["id"]]["reply_count"], shown[first["id"]]["repliers"]) == (1, ["alice"])
        assert shown[second["id"]]["deleted"] is True and shown[second["id"]]["body"] == ""
        assert shown[reply_ack["id"]]["reply_to"] == first["id"]
        fresh = await _fresh_view(server, bob_cookie, "random")
        assert {k: v for k, v in bob_view.state().items() if k in fresh.messages} == fresh.state()
    finally:
        await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)


async def test_a_dropped_live_change_is_recovered_by_the_next_rev_or_by_the_pong(server):
    bob_cookie, alice, bob, bob_view = await _alice_and_bob_in_random(server)
    try:
        target = await request(alice, "send", room="random", body="check this")
        other = await request(alice, "send", room="random", body="and this")
        for _ in range(2):
            assert bob_view.live(await expect(bob, "message")) is False

        # The edit reaches bob's socket, but as if the channel layer had dropped it: never applied.
        await request(alice, "edit", room="random", id=target["id"], body="checked")
        dropped = await expect(bob, "message_edited")
        assert dropped["rev"] == bob_view.rev + 1
        # The deletion that follows arrives: its rev skips one, so bob joins again from his rev.
        await request(alice, "delete", room="random", id=other["id"])
        assert bob_view.live(await expect(bob, "message_deleted")) is True
        joined = await _catch_up(bob, bob_view)
        assert [m["id"] for m in joined["messages"]] == [target["id"], other["id"]]  # by rev: edit, deletion
        assert bob_view.messages[target["id"]]["body"] == "checked"
        assert bob_view.messages[other["id"]]["deleted"] is True

        # The last change dropped, and nothing after it: the pong tells bob he is behind.
        await request(alice, "react", room="random", id=target["id"], emoji="👍")
        await expect(bob, "message_updated")  # dropped
        await send(bob, "ping", ref="p")
        pong = await recv(bob)
        assert pong["type"] == "pong" and bob_view.behind(pong)
        await _catch_up(bob, bob_view)
        assert bob_view.messages[target["id"]]["reactions"] == {"👍": ["alice"]}
        fresh = await _fresh_view(server, bob_cookie, "random")
        assert {k: v for k, v in bob_view.state().items() if k in fresh.messages} == fresh.state()
    finally:
        await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)
