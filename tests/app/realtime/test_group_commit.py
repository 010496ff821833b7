"""Group commit (chat.realtime.batcher, chat.group_commit): sends that wait in a worker for the
same room are stored in one transaction. Through the full ASGI stack, on the file-backed SQLite
test database; tests/e2e/test_group_commit.py runs the same on PostgreSQL with two workers."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from chat import events
from chat.models import Ban, Membership, Message
from chat.realtime.batcher import get_batcher

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lobby(make_room):
    return make_room("lobby", name="Lobby")


async def _busy_sync_thread(seconds: float) -> asyncio.Task[None]:
    """Keep the worker's one sync thread busy for a moment, as a slow database write would: the
    sends that arrive meanwhile wait together."""
    task = asyncio.ensure_future(database_sync_to_async(time.sleep)(seconds))
    await asyncio.sleep(0.02)
    return task


async def _users(make_user, count: int, prefix: str = "user"):
    return [await database_sync_to_async(make_user)(f"{prefix}{i}") for i in range(count)]


async def _stored(room) -> list[tuple[int, int, str, str | None]]:
    rows = Message.objects.filter(room=room).order_by("seq").values_list("seq", "rev", "body", "client_id")
    return await database_sync_to_async(list)(rows)


async def test_many_sockets_sending_at_once_are_stored_together_gapless_and_acked(make_user, lobby, connect):
    users = await _users(make_user, 12)
    sockets = [await connect(user) for user in users]
    listener = await connect(await database_sync_to_async(make_user)("listener"))
    for socket in [*sockets, listener]:
        await socket.join("lobby")
    batcher = get_batcher()
    before = batcher.batches

    acks = []
    for round_number in range(3):
        busy = await _busy_sync_thread(0.2)
        acks += await asyncio.gather(
            *(
                socket.request("send", room="lobby", body=f"{n}-{round_number}", client_id=f"c{n}-{round_number}")
                for n, socket in enumerate(sockets)
            )
        )
        await busy

    assert all(ack["type"] == "ack" for ack in acks), acks
    assert sorted(ack["seq"] for ack in acks) == list(range(1, 37))
    assert len({ack["id"] for ack in acks}) == 36
    assert all(ack["rev"] == ack["seq"] for ack in acks)  # one rev per new message, none skipped
    # They were stored in batches, not one by one (a lone send is a batch of one).
    assert batcher.batches - before <= 9, (batcher.batches - before, batcher.sends)
    stored = await _stored(lobby)
    assert [seq for seq, *_ in stored] == list(range(1, 37))
    assert {(body, client_id) for _, _, body, client_id in stored} == {
        (f"{n}-{r}", f"c{n}-{r}") for n in range(12) for r in range(3)
    }
    # Everyone hears every message once, in seq order, after its commit.
    seen = [frame["message"]["seq"] for frame in await listener.drain(0.3) if frame["type"] == "message"]
    assert seen == list(range(1, 37))
    # Each author's read marker is at their own newest message, not past others' later ones.
    markers = dict(
        await database_sync_to_async(list)(
            Membership.objects.filter(room=lobby).values_list("user__username", "last_read_seq")
        )
    )
    newest = {"listener": 0}
    for ack, (n, _) in zip(acks, [(n, r) for r in range(3) for n in range(12)], strict=True):
        newest[f"user{n}"] = max(newest.get(f"user{n}", 0), ack["seq"])
    assert markers == newest


async def test_a_lone_send_is_stored_at_once(alice, lobby, connect):
    socket = await connect(alice)
    await socket.join("lobby")
    started = time.monotonic()
    ack = await socket.request("send", room="lobby", body="hello")
    assert ack["type"] == "ack" and ack["seq"] == 1
    assert time.monotonic() - started < 0.5  # no timer waits for company


async def test_client_id_repeated_in_a_batch_and_against_stored_rows_returns_the_first(alice, bob, lobby, connect):
    a1, a2, a3, b = await connect(alice), await connect(alice), await connect(alice), await connect(bob)
    for socket in (a1, a2, a3, b):
        await socket.join("lobby")
    first = await a1.request("send", room="lobby", body="stored before", client_id="old")
    await b.drain(0.2)

    busy = await _busy_sync_thread(0.2)
    # In one batch: a retry of a stored client_id, the same new client_id twice, and bob's send.
    retry, new1, new2, other = await asyncio.gather(
        a1.request("send", room="lobby", body="stored before", client_id="old"),
        a2.request("send", room="lobby", body="new", client_id="new"),
        a3.request("send", room="lobby", body="new", client_id="new"),
        b.request("send", room="lobby", body="from bob", client_id="new"),  # another author's: its own
    )
    await busy
    assert (retry["id"], retry["seq"]) == (first["id"], first["seq"])
    assert new1["type"] == new2["type"] == other["type"] == "ack"
    assert (new1["id"], new1["seq"]) == (new2["id"], new2["seq"])
    assert other["id"] != new1["id"]
    assert sorted([new1["seq"], other["seq"]]) == [2, 3]
    stored = await _stored(lobby)
    assert [(seq, body) for seq, _, body, _ in stored] == [
        (1, "stored before"),
        *sorted([(new1["seq"], "new"), (other["seq"], "from bob")]),
    ]
    messages = [frame for frame in await b.drain(0.3) if frame["type"] == "message"]
    assert sorted(frame["message"]["seq"] for frame in messages) == [2, 3]  # nothing announced twice


async def test_a_refused_send_in_a_batch_gets_its_own_error_and_the_others_are_stored(
    alice, bob, make_user, lobby, connect, monkeypatch, settings
):
    carol, dave = await database_sync_to_async(make_user)("carol"), await database_sync_to_async(make_user)("dave")
    sockets = {user.username: await connect(user) for user in (alice, bob, carol, dave)}
    for socket in sockets.values():
        await socket.join("lobby")
    # Bob is banned and the event that would close the room on his socket is lost: the batch's own
    # check refuses him all the same.
    monkeypatch.setattr(events, "_send_now", lambda group, event: None)
    await database_sync_to_async(Ban.objects.create)(room=lobby, user=bob)

    busy = await _busy_sync_thread(0.2)
    replies = await asyncio.gather(
        sockets["alice"].request("send", room="lobby", body="one"),
        sockets["bob"].request("send", room="lobby", body="banned"),
        sockets["carol"].request("send", room="lobby", body="x" * (settings.CHAT_MAX_BODY + 1)),
        sockets["dave"].request("send", room="lobby", body="two"),
    )
    await busy
    alice_ack, bob_error, carol_error, dave_ack = replies
    assert (bob_error["type"], bob_error["code"], bob_error["room"]) == ("error", "forbidden", "lobby")
    assert (carol_error["type"], carol_error["code"]) == ("error", "too_large")
    assert sorted([alice_ack["seq"], dave_ack["seq"]]) == [1, 2]
    assert sorted([alice_ack["rev"], dave_ack["rev"]]) == [1, 2]
    assert [(seq, body) for seq, _, body, _ in await _stored(lobby)] == sorted(
        [(alice_ack["seq"], "one"), (dave_ack["seq"], "two")]
    )
    # The counters were given back: the next message is 3, with no gap.
    ack = await sockets["alice"].request("send", room="lobby", body="three")
    assert (ack["seq"], ack["rev"]) == (3, 3)


async def test_a_batch_in_a_room_archived_meanwhile_is_refused_whole(alice, bob, lobby, connect, monkeypatch):
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    monkeypatch.setattr(events, "_send_now", lambda group, event: None)  # the room_closed event is lost
    from chat import services

    await database_sync_to_async(services.room_archive)(room=lobby)
    busy = await _busy_sync_thread(0.2)
    replies = await asyncio.gather(
        a.request("send", room="lobby", body="one"), b.request("send", room="lobby", body="two")
    )
    await busy
    assert [(reply["type"], reply["code"]) for reply in replies] == [("error", "not_found")] * 2
    assert await _stored(lobby) == []
    counters = await database_sync_to_async(
        lambda: type(lobby).objects.values_list("last_seq", "last_rev").get(pk=lobby.pk)
    )()
    assert counters == (0, 0)


async def test_a_ban_committed_while_the_batch_waited_for_the_room_refuses_the_send(
    alice, bob, lobby, connect, monkeypatch
):
    """On PostgreSQL a batch waits for the room's row lock while another batch commits; a ban that
    commits meanwhile must still refuse its author. The ban is written here as the batch takes the
    lock, so only a check made under the lock sees it."""
    from chat import group_commit

    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    monkeypatch.setattr(events, "_send_now", lambda group, event: None)  # the room_closed event is lost
    advance = group_commit._advance

    def ban_then_advance(*, room_id, count):
        Ban.objects.get_or_create(room_id=room_id, user=bob)
        return advance(room_id=room_id, count=count)

    monkeypatch.setattr(group_commit, "_advance", ban_then_advance)
    busy = await _busy_sync_thread(0.2)
    alice_ack, bob_error = await asyncio.gather(
        a.request("send", room="lobby", body="before"), b.request("send", room="lobby", body="after the ban")
    )
    await busy
    assert alice_ack["type"] == "ack" and (alice_ack["seq"], alice_ack["rev"]) == (1, 1)
    assert (bob_error["type"], bob_error["code"]) == ("error", "forbidden")
    assert [body for _, _, body, _ in await _stored(lobby)] == ["before"]
    messages = [frame["message"]["body"] for frame in await a.drain(0.3) if frame["type"] == "message"]
    assert messages == ["before"]


async def test_an_author_deleted_before_the_batch_is_refused_and_the_others_are_stored(
    alice, bob, make_user, lobby, connect, monkeypatch
):
    carol = await database_sync_to_async(make_user)("carol")
    sockets = [await connect(user) for user in (alice, carol, bob)]
    for socket in sockets:
        await socket.join("lobby")
    monkeypatch.setattr(events, "_send_now", lambda group, event: None)  # nothing closes carol's socket
    await database_sync_to_async(type(carol).objects.filter(pk=carol.pk).delete)()

    busy = await _busy_sync_thread(0.2)
    replies = await asyncio.gather(
        *(socket.request("send", room="lobby", body=f"from {n}") for n, socket in enumerate(sockets))
    )
    await busy
    alice_ack, carol_error, bob_ack = replies
    assert alice_ack["type"] == bob_ack["type"] == "ack", replies
    assert sorted([alice_ack["seq"], bob_ack["seq"]]) == [1, 2]
    assert (carol_error["type"], carol_error["code"]) == ("error", "forbidden")
    assert [(seq, body) for seq, _, body, _ in await _stored(lobby)] == sorted(
        [(alice_ack["seq"], "from 0"), (bob_ack["seq"], "from 2")]
    )


async def test_stored_one_at_a_time_a_send_that_fails_alone_does_not_fail_the_others(
    alice, bob, make_user, lobby, connect, monkeypatch
):
    """A client_id already stored sends the batch to one-at-a-time storing; there a send whose own
    transaction fails (its author deleted: the insert fails at commit) gets its own error, and the
    sends stored before and after it are acked."""
    carol = await database_sync_to_async(make_user)("carol")
    a1, a2, c, b = await connect(alice), await connect(alice), await connect(carol), await connect(bob)
    for socket in (a1, a2, c, b):
        await socket.join("lobby")
    first = await a1.request("send", room="lobby", body="stored before", client_id="old")
    monkeypatch.setattr(events, "_send_now", lambda group, event: None)
    await database_sync_to_async(type(carol).objects.filter(pk=carol.pk).delete)()

    busy = await _busy_sync_thread(0.2)
    retry, new, carol_error, bob_ack = await asyncio.gather(
        a1.request("send", room="lobby", body="stored before", client_id="old"),
        a2.request("send", room="lobby", body="new", client_id="new"),
        c.request("send", room="lobby", body="from carol"),
        b.request("send", room="lobby", body="from bob"),
    )
    await busy
    assert (retry["type"], retry["id"], retry["seq"]) == ("ack", first["id"], first["seq"])
    assert new["type"] == bob_ack["type"] == "ack", (new, bob_ack)
    assert carol_error["type"] == "error" and carol_error["code"] in ("forbidden", "internal"), carol_error
    assert sorted([new["seq"], bob_ack["seq"]]) == [2, 3]
    assert [(seq, body) for seq, _, body, _ in await _stored(lobby)] == sorted(
        [(1, "stored before"), (new["seq"], "new"), (bob_ack["seq"], "from bob")]
    )
    ack = await b.request("send", room="lobby", body="next")
    assert (ack["seq"], ack["rev"]) == (4, 4)  # no gap


async def test_a_message_that_fails_to_render_fails_alone(alice, bob, lobby, connect, monkeypatch):
    from chat import formatting

    render = formatting.render
    monkeypatch.setattr(
        formatting, "render", lambda body: (_ for _ in ()).throw(ValueError("bug")) if body == "boom" else render(body)
    )
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    busy = await _busy_sync_thread(0.2)
    alice_error, bob_ack = await asyncio.gather(
        a.request("send", room="lobby", body="boom"), b.request("send", room="lobby", body="fine")
    )
    await busy
    assert (alice_error["type"], alice_error["code"]) == ("error", "internal")
    assert (bob_ack["type"], bob_ack["seq"]) == ("ack", 1)
    assert [body for _, _, body, _ in await _stored(lobby)] == ["fine"]


async def test_every_sender_of_a_batch_hears_its_own_outcome_whatever_fails(alice, bob, monkeypatch):
    """If handing out a batch's outcomes fails (here, a store that answers for fewer sends than it
    was given), no sender waits forever; and a failure shared by the batch reaches each sender as its
    own exception object."""
    from django.db import OperationalError

    from chat.realtime import batcher as batcher_module

    async def store(*, room_id, slug, sends, outbox):
        await asyncio.sleep(0.05)
        return []  # fewer outcomes than sends

    monkeypatch.setattr(batcher_module, "_store", store)
    batcher = batcher_module.SendBatcher()
    sends = [
        batcher.send(room_id=1, slug="lobby", user=user, body="hi", client_id=None) for user in (alice, bob, alice)
    ]
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), timeout=2)
    assert all(isinstance(result, ValueError) for result in results), results
    assert len({id(result) for result in results}) == 3

    async def down(*, room_id, slug, sends, outbox):
        raise OperationalError("connection refused")

    monkeypatch.setattr(batcher_module, "_store", down)
    sends = [batcher.send(room_id=1, slug="lobby", user=user, body="hi", client_id=None) for user in (alice, bob)]
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), timeout=2)
    assert [type(result) for result in results] == [OperationalError, OperationalError]
    assert results[0] is not results[1] and str(results[0]) == str(results[1]) == "connection refused"
    assert batcher._stores == {}  # the store finished: the next send starts a new one


async def test_an_author_let_through_is_not_asked_about_again_for_a_second_and_a_lost_ban_still_counts(
    alice, bob, lobby, connect, monkeypatch
):
    """A batch asks the database about its authors' access only for those not let through in the
    last ACCESS_RECHECK_SECONDS: in a worker whose batches hold one send or two, that query was a
    third of the store's cost. A ban whose event is lost still refuses within that time."""
    from chat import group_commit

    asked: list[set[int]] = []
    access = group_commit._access

    def counted(*, room_id, author_ids):
        asked.append(set(author_ids))
        return access(room_id=room_id, author_ids=author_ids)

    monkeypatch.setattr(group_commit, "_access", counted)
    monkeypatch.setattr(group_commit, "ACCESS_RECHECK_SECONDS", 0.5)
    a, b = await connect(alice), await connect(bob)
    await a.join("lobby")
    await b.join("lobby")
    for body in ("one", "two", "three"):
        assert (await a.request("send", room="lobby", body=body))["type"] == "ack"
    assert asked == [{alice.pk}]  # once for three sends in a row

    monkeypatch.setattr(events, "_send_now", lambda group, event: None)  # the ban's event is lost
    await database_sync_to_async(Ban.objects.create)(room=lobby, user=alice)
    await asyncio.sleep(0.6)
    refused = await a.request("send", room="lobby", body="after the ban")
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert asked == [{alice.pk}, {alice.pk}]
    assert [body for _, _, body, _ in await _stored(lobby)] == ["one", "two", "three"]
