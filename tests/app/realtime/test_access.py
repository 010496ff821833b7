"""Who may be in a room, and what a socket gives back when it ends.

- a frame with a lone surrogate in a field the server echoes (`room`, `ref`) gets an `error` and
  the socket lives on (a real worker: the in-process communicator never encodes to UTF-8);
- whatever ends a socket (a crash in a handler, a cancelled task) releases its presence, its
  per-user slot, its fan-out membership and its metrics;
- bans, removals, archiving and deletion reach every socket even when their event is lost: a ban
  made from a `manage.py shell` without Redis closes the room on two workers that share Redis;
- making a room private keeps its moderators and invited members and closes the room for the
  others (joining a public room does not invite).
"""

import asyncio
import re

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import services
from chat.models import Ban, Membership, Room
from chat.ops import metrics
from chat.realtime import limits, presence
from chat.realtime.consumers import ChatConsumer
from chat.realtime.fanout import get_fanout
from chat.selectors import room_list_for

# A lone surrogate on a real worker ---------------------------------------------------------------


# Whatever ends a socket releases what it holds -----------------------------------------------------


def held_by(user) -> dict:
    fanout = get_fanout()
    return {
        "slots": len(limits.get_user_limits().sockets.get(user.pk, ())),
        "groups": sorted(group for group, members in fanout.members.items() if members),
        "gauge": len(metrics.open_sockets),
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["crash", "cancel"])
async def test_whatever_ends_a_socket_releases_its_presence_slot_groups_and_metrics(
    alice, bob, make_room, connect, monkeypatch, how
):
    room = await database_sync_to_async(make_room)("lobby")
    original = ChatConsumer.handle_frame

    async def handle_frame(self, text_data, bytes_data):
        if text_data == "crash":
            raise RuntimeError("a bug in a handler")
        await original(self, text_data, bytes_data)

    monkeypatch.setattr(ChatConsumer, "handle_frame", handle_frame)
    watcher = await connect(bob)
    await watcher.join("lobby")
    before = held_by(alice)
    assert before == {"slots": 0, "groups": [f"room.{room.pk}", f"user.{bob.pk}"], "gauge": 1}
    socket = await connect(alice)
    await socket.join("lobby")
    await watcher.expect("presence", users=["alice", "bob"])
    assert held_by(alice) == {"slots": 1, "groups": sorted([*before["groups"], f"user.{alice.pk}"]), "gauge": 2}

    if how == "crash":
        await socket.send_text("crash")
        with pytest.raises(RuntimeError, match="a bug in a handler"):
            await socket.communicator.receive_output(3)
    else:  # the worker's shutdown, or Daphne giving up on the application
        socket.communicator.future.cancel()
    await watcher.expect("presence", users=["bob"])
    assert held_by(alice) == before
    assert await presence.get_presence().users(room_id=room.pk) == ["bob"]


@pytest.mark.django_db(transaction=True)
async def test_a_socket_cancelled_while_its_clean_up_waits_is_still_cleaned_up(
    alice, bob, make_room, connect, monkeypatch
):
    """Presence slow to answer (Redis hanging) and the task cancelled meanwhile, twice: the
    fan-out lets go of the socket at once, and leaving presence finishes anyway."""
    room = await database_sync_to_async(make_room)("lobby")
    backend = presence.get_presence()
    original = type(backend).remove

    async def slow_remove(self, **kwargs):
        await asyncio.sleep(0.5)
        return await original(self, **kwargs)

    monkeypatch.setattr(type(backend), "remove", slow_remove)
    watcher = await connect(bob)
    await watcher.join("lobby")
    socket = await connect(alice)
    await socket.join("lobby")
    await watcher.expect("presence", users=["alice", "bob"])

    socket.communicator.future.cancel()
    await asyncio.sleep(0.1)
    assert held_by(alice)["groups"] == [f"room.{room.pk}", f"user.{bob.pk}"]  # no frame reaches it now
    socket.communicator.future.cancel()  # and once more, as a server shutting down might
    await watcher.expect("presence", users=["bob"], timeout=3)
    assert held_by(alice) == {"slots": 0, "groups": [f"room.{room.pk}", f"user.{bob.pk}"], "gauge": 1}


# Access lost without its event ---------------------------------------------------------------------


def no_event_ban(room, user):
    Ban.objects.create(room=room, user=user)  # not services.ban_create: nothing is announced


def no_event_archive(room, user):
    Room.objects.filter(pk=room.pk).update(archived=True)


def no_event_delete(room, user):
    Room.objects.filter(pk=room.pk).delete()


def no_event_removal(room, user):
    Room.objects.filter(pk=room.pk).update(private=True)  # bob was invited: only his removal counts
    Membership.objects.filter(room=room, user=user).delete()


def no_event_made_private(room, user):
    Room.objects.filter(pk=room.pk).update(private=True)  # bob only ever joined the public room


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "change, reason",
    [
        (no_event_ban, "banned"),
        (no_event_archive, "archived"),
        (no_event_delete, "deleted"),
        (no_event_removal, "removed"),
        (no_event_made_private, "removed"),
    ],
    ids=["ban", "archive", "delete", "removal", "made-private"],
)
async def test_access_lost_without_its_event_still_takes_the_socket_out_of_the_room(
    alice, bob, make_room, connect, settings, change, reason
):
    settings.CHAT_ACCESS_SWEEP_SECONDS = 1
    room = await database_sync_to_async(make_room)("team")
    await database_sync_to_async(services.membership_add)(room=room, user=alice, role="moderator")
    if change is no_event_removal:
        await database_sync_to_async(services.membership_add)(room=room, user=bob)
    a, b = await connect(alice), await connect(bob)
    await a.join("team")
    await b.join("team")
    await database_sync_to_async(change)(room, bob)

    assert await b.expect("room_closed", timeout=3) == {"type": "room_closed", "room": "team", "reason": reason}
    typing = await b.request("typing", room="team")
    assert typing["code"] == "not_joined"
    pong = await b.request("ping")
    assert "team" not in pong.get("seqs", {})
    if reason in {"banned", "removed"}:  # the room lives on for alice, and bob hears nothing of it
        await a.nothing("room_closed", wait=1.2)
        await a.request("send", room="team", body="after bob left")
        await b.nothing("message", wait=0.5)
        rejoin = await b.request("join", room="team")
        assert rejoin["type"] == "error" and rejoin["code"] == "forbidden"


# Making a room private ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_making_a_room_private_keeps_moderators_and_invited_members_and_closes_it_for_the_rest(
    alice, bob, make_user, make_room, connect, settings
):
    settings.CHAT_ACCESS_SWEEP_SECONDS = 60  # the event does it, not the periodic re-check
    carol = await database_sync_to_async(make_user)("carol")
    staff = await database_sync_to_async(make_user)("boss", is_staff=True, is_superuser=True)
    room = await database_sync_to_async(make_room)("team", name="Team")
    await database_sync_to_async(services.membership_add)(room=room, user=alice, role="moderator")
    await database_sync_to_async(services.membership_add)(room=room, user=carol)
    a, b, c = await connect(alice), await connect(bob), await connect(carol)
    for socket in (a, b, c):
        await socket.join("team")
    memberships = await database_sync_to_async(
        lambda: list(Membership.objects.filter(room=room).order_by("user__username"))
    )()
    assert [(m.user_id, m.invited) for m in memberships] == [(alice.pk, True), (bob.pk, False), (carol.pk, True)]

    def make_private() -> int:
        client = Client()
        client.force_login(staff)
        data = {
            "slug": "team",
            "name": "Team",
            "topic": "",
            "private": "on",
            "memberships-TOTAL_FORMS": str(len(memberships)),
            "memberships-INITIAL_FORMS": str(len(memberships)),
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
        }
        for i, membership in enumerate(memberships):
            data.update(
                {
                    f"memberships-{i}-id": str(membership.pk),
                    f"memberships-{i}-room": str(room.pk),
                    f"memberships-{i}-user": str(membership.user_id),
                    f"memberships-{i}-role": membership.role,
                }
            )
            if membership.invited:
                data[f"memberships-{i}-invited"] = "on"
        return client.post(f"/admin/chat/room/{room.pk}/change/", data).status_code

    assert await database_sync_to_async(make_private)() == 302
    assert await b.expect("room_closed", timeout=2) == {"type": "room_closed", "room": "team", "reason": "removed"}
    await a.request("send", room="team", body="only us now")
    for socket in (a, c):
        await socket.expect("message", room="team")
    await b.nothing("message", wait=0.3)
    await c.nothing("room_closed", wait=0.1)
    rejoin = await b.request("join", room="team")
    assert rejoin["type"] == "error" and rejoin["code"] == "forbidden"
    assert "team" not in [r.slug for r in await database_sync_to_async(room_list_for)(user=bob)]
    assert "team" in [r.slug for r in await database_sync_to_async(room_list_for)(user=carol)]


@pytest.mark.django_db(transaction=True)
async def test_staff_unticking_invited_in_a_private_room_closes_it_for_that_member(
    alice, bob, make_room, connect, settings
):
    settings.CHAT_ACCESS_SWEEP_SECONDS = 60
    room = await database_sync_to_async(make_room)("secret", private=True)
    membership = await database_sync_to_async(services.membership_add)(room=room, user=bob)
    b = await connect(bob)
    await b.join("secret")

    def untick():
        membership.invited = False
        membership.save()
        services.membership_changed(membership=membership)

    await database_sync_to_async(untick)()
    assert await b.expect("room_closed", timeout=2) == {"type": "room_closed", "room": "secret", "reason": "removed"}


@pytest.mark.django_db(transaction=True)
async def test_the_periodic_recheck_leaves_a_socket_that_may_stay_alone(alice, make_room, connect, settings):
    """The re-check reads the database: a room a user may still be in is left alone."""
    settings.CHAT_ACCESS_SWEEP_SECONDS = 1
    await database_sync_to_async(make_room)("lobby")
    a = await connect(alice)
    await a.join("lobby")
    await a.nothing("room_closed", wait=2.5)
    assert (await a.request("send", room="lobby", body="still here"))["type"] == "ack"


@pytest.mark.django_db
def test_staff_adding_a_member_in_the_admin_invites_them_by_default(alice, make_user, make_room):
    """The admin's forms tick *invited* for a member staff add, so adding someone to a private
    room lets them in, as it always did."""
    staff = make_user("boss", is_staff=True, is_superuser=True)
    room = make_room("secret", private=True)
    client = Client()
    client.force_login(staff)

    def checkbox(page: str, name: str) -> str:
        return re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', page).group(0)

    add_page = client.get("/admin/chat/membership/add/").content.decode()
    assert "checked" in checkbox(add_page, "invited")
    room_page = client.get(f"/admin/chat/room/{room.pk}/change/").content.decode()
    assert "checked" in checkbox(room_page, "memberships-__prefix__-invited")  # a row added inline

    response = client.post(
        "/admin/chat/membership/add/", {"user": alice.pk, "room": room.pk, "role": "member", "invited": "on"}
    )
    assert response.status_code == 302
    assert "secret" in [r.slug for r in room_list_for(user=alice)]
