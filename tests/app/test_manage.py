"""Room management: who may manage a room (its creator, its moderators, staff), the services the
page, the socket and the API share, and what each open page hears of a change."""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import selectors, services
from chat.errors import ChatError
from chat.models import Membership, Message, Room


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def team(alice, bob):
    """A public room alice created, with bob as a plain member."""
    room = services.room_create(slug="team", name="Team", created_by=alice)
    services.room_enter(slug="team", user=alice)
    services.room_enter(slug="team", user=bob)
    return room


def codes(call) -> str:
    with pytest.raises(ChatError) as raised:
        call()
    return raised.value.code


# Services and who may use them ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_creator_moderators_and_staff_manage_a_room_and_plain_members_do_not(alice, bob, carol, make_user, team):
    admin = make_user("admin", is_staff=True)
    assert selectors.can_manage(room=team, user=alice)
    assert not selectors.can_manage(room=team, user=bob)
    assert selectors.can_manage(room=team, user=admin)
    services.member_invite(room=team, user=carol, by=alice)
    Membership.objects.filter(room=team, user=carol).update(role=Membership.Role.MODERATOR)
    assert selectors.can_manage(room=team, user=carol)
    assert codes(lambda: services.room_update(room=team, by=bob, topic="mine now")) == "forbidden"
    assert codes(lambda: services.member_invite(room=team, user=carol, by=bob)) == "forbidden"
    assert codes(lambda: services.room_archive_by(room=team, by=bob)) == "forbidden"
    # A moderator may not remove the creator or another moderator; the creator may.
    assert codes(lambda: services.member_remove(room=team, user=alice, by=carol)) == "forbidden"
    services.member_remove(room=team, user=carol, by=alice)
    assert not Membership.objects.filter(room=team, user=carol).exists()


@pytest.mark.django_db
def test_rename_keeps_the_slug_and_bad_values_are_refused_with_a_reason(alice, team):
    room = services.room_update(room=team, by=alice, name="  Dream team ", topic="Ship it")
    assert (room.slug, room.name, room.topic) == ("team", "Dream team", "Ship it")
    assert codes(lambda: services.room_update(room=team, by=alice, name="   ")) == "bad_request"
    assert codes(lambda: services.room_update(room=team, by=alice, topic="x" * 301)) == "bad_request"
    assert codes(lambda: services.room_update(room=team, by=alice)) == "bad_request"


@pytest.mark.django_db
def test_making_a_room_private_keeps_its_creator_in_and_invites_are_the_way_in(alice, bob, carol, team):
    team = services.room_update(room=team, by=alice, private=True)
    assert [m["username"] for m in selectors.room_members(room=team)] == ["alice"]
    assert codes(lambda: selectors.room_get_for(slug="team", user=bob)) == "forbidden"
    services.member_invite(room=team, user=carol, by=alice)
    assert selectors.room_get_for(slug="team", user=carol) == team
    assert selectors.room_members(room=team) == [
        {"username": "alice", "role": "member", "creator": True, "invited": True},
        {"username": "carol", "role": "member", "creator": False, "invited": True},
    ]


@pytest.mark.django_db
def test_a_moderator_deletes_others_messages_and_a_member_does_not(alice, bob, team):
    wire, _ = services.message_send(room=team, author=bob, body="spam")
    mine, _ = services.message_send(room=team, author=alice, body="hello")
    assert codes(lambda: services.message_remove(room=team, user=bob, message_id=mine["id"])) == "forbidden"
    assert services.message_remove(room=team, user=alice, message_id=wire["id"])["deleted"] is True
    assert Message.objects.get(pk=wire["id"]).deleted


@pytest.mark.django_db
def test_leaving_removes_the_membership_and_a_direct_conversation_cannot_be_left(alice, bob, team):
    services.room_part(room=team, user=bob)
    assert not Membership.objects.filter(room=team, user=bob).exists()
    assert codes(lambda: services.room_part(room=team, user=bob)) == "not_found"
    direct, _ = services.direct_open(user=alice, usernames=["bob"])
    assert codes(lambda: services.room_part(room=direct, user=alice)) == "bad_request"
    assert codes(lambda: services.room_update(room=direct, by=alice, name="x")) == "forbidden"


# Frames ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_frames_reach_every_open_page_of_the_room_and_the_invited_persons_pages(alice, bob, carol, team, connect):
    owner, member, guest = await connect(alice), await connect(bob), await connect(carol)
    await owner.join("team")
    await member.join("team")

    listed = await member.request("members", room="team")
    assert [m["username"] for m in listed["members"]] == ["alice", "bob"]
    assert listed["members"][0]["creator"] is True

    refused = await member.request("room_update", room="team", name="Mine")
    assert (refused["type"], refused["code"]) == ("error", "forbidden")

    reply = await owner.request("room_update", room="team", name="Renamed", topic="New topic")
    assert reply["type"] == "room_updated" and reply["info"]["name"] == "Renamed"
    seen = await member.expect("room_updated")
    assert (seen["info"]["name"], seen["info"]["topic"], seen["info"]["slug"]) == ("Renamed", "New topic", "team")

    reply = await owner.request("invite", room="team", user="carol")
    assert [m["username"] for m in reply["members"]] == ["alice", "bob", "carol"]
    invited = await guest.expect("room_invited")
    assert (invited["room"], invited["info"]["name"]) == ("team", "Renamed")
    assert [m["username"] for m in (await member.expect("members"))["members"]] == ["alice", "bob", "carol"]

    missing = await owner.request("invite", room="team", user="nobody")
    assert (missing["type"], missing["code"]) == ("error", "not_found")

    reply = await owner.request("remove_member", room="team", user="bob")
    assert [m["username"] for m in reply["members"]] == ["alice", "carol"]
    closed = await member.expect("room_closed")
    assert closed["reason"] == "removed"
    assert (await owner.expect("presence"))["users"] == ["alice"]


@pytest.mark.django_db(transaction=True)
async def test_a_moderators_delete_frame_removes_anothers_message_live(alice, bob, team, connect):
    owner, member = await connect(alice), await connect(bob)
    await owner.join("team")
    await member.join("team")
    ack = await member.request("send", room="team", body="off topic", client_id="c1")
    refused = await member.request("delete", room="team", id=ack["id"] + 0)
    assert refused["type"] == "message_deleted"  # one's own: as before
    ack = await owner.request("send", room="team", body="mine", client_id="c2")
    refused = await member.request("delete", room="team", id=ack["id"])
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    ack = await member.request("send", room="team", body="spam", client_id="c3")
    reply = await owner.request("delete", room="team", id=ack["id"])
    assert reply["type"] == "message_deleted"
    assert (await member.expect("message_deleted", id=ack["id"]))["message"]["deleted"] is True


@pytest.mark.django_db(transaction=True)
async def test_part_leaves_for_good_and_archive_closes_the_room_for_everyone(alice, bob, team, connect):
    owner, member = await connect(alice), await connect(bob)
    other_tab = await connect(bob)
    await owner.join("team")
    await member.join("team")
    await other_tab.join("team")
    reply = await member.request("part", room="team")
    assert reply["type"] == "left"
    assert (await other_tab.expect("room_closed"))["reason"] == "left"
    assert not await database_sync_to_async(Membership.objects.filter(room=team, user__username="bob").exists)()
    reply = await owner.request("archive", room="team")
    assert (reply["type"], reply["reason"]) == ("room_closed", "archived")
    assert (await database_sync_to_async(Room.objects.get)(pk=team.pk)).archived


# HTTP -------------------------------------------------------------------------------------------


def patch(client: Client, url: str, payload):
    return client.patch(url, json.dumps(payload), content_type="application/json")


@pytest.mark.django_db
def test_the_api_answers_with_the_same_rules(alice, bob, carol, team):
    owner, member = Client(), Client()
    owner.force_login(alice)
    member.force_login(bob)
    assert member.get("/api/rooms/team/").json()["can_manage"] is False
    assert owner.get("/api/rooms/team/").json()["can_manage"] is True
    assert [m["username"] for m in member.get("/api/rooms/team/members/").json()["members"]] == ["alice", "bob"]
    assert member.delete("/api/rooms/team/members/alice/").status_code == 403

    assert patch(member, "/api/rooms/team/", {"topic": "x"}).status_code == 403
    response = patch(owner, "/api/rooms/team/", {"name": "Renamed", "private": True})
    assert response.status_code == 200 and response.json()["info"]["name"] == "Renamed"
    bad = patch(owner, "/api/rooms/team/", {"name": ""})
    assert bad.status_code == 400 and "name" in bad.json()["detail"]
    assert owner.get("/api/rooms/nope/members/").status_code == 404

    assert owner.post("/api/rooms/team/members/", {"user": "carol"}, content_type="application/json").status_code == 201
    assert owner.post("/api/rooms/team/members/", {"user": "zed"}, content_type="application/json").status_code == 404
    assert owner.delete("/api/rooms/team/members/carol/").status_code == 204
    assert owner.delete("/api/rooms/team/members/carol/").status_code == 404

    wire, _ = services.message_send(room=team, author=alice, body="hi")
    assert owner.delete(f"/api/rooms/team/messages/{wire['id']}/").json()["deleted"] is True
    assert member.delete("/api/rooms/team/members/bob/").status_code == 403  # bob is not in the private room
    assert patch(owner, "/api/rooms/team/", {"archived": True}).status_code == 200
    assert owner.get("/api/rooms/team/").status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_a_ban_from_the_admin_reaches_the_members_list_and_the_online_list(alice, bob, team, connect):
    owner, member = await connect(alice), await connect(bob)
    await owner.join("team")
    await member.join("team")
    await database_sync_to_async(services.ban_create)(room=team, user=bob)
    assert (await member.expect("room_closed"))["reason"] == "banned"
    heard = {frame["type"]: frame for frame in await owner.drain(0.5)}
    assert [m["username"] for m in heard["members"]["members"]] == ["alice"]
    assert heard["presence"]["users"] == ["alice"]


@pytest.mark.django_db
def test_nobody_staff_included_changes_a_direct_conversations_settings_or_members(alice, bob, make_user):
    """Made public, or joined by a third person, a direct conversation's history would be read by
    people it was not written to: the socket and the API refuse it as the admin does."""
    admin = make_user("admin", is_staff=True)
    room, _created = services.direct_open(user=alice, usernames=["bob"])
    wire, _ = services.message_send(room=room, author=alice, body="between us")
    for who in (alice, admin):
        assert codes(lambda who=who: services.room_update(room=room, by=who, private=False)) == "forbidden"
        assert codes(lambda who=who: services.member_invite(room=room, user=admin, by=who)) == "forbidden"
        assert codes(lambda who=who: services.member_remove(room=room, user=bob, by=who)) == "forbidden"
    staff = Client()
    staff.force_login(admin)
    assert patch(staff, f"/api/rooms/{room.slug}/", {"private": False}).status_code == 403
    invite = staff.post(f"/api/rooms/{room.slug}/members/", {"user": "admin"}, content_type="application/json")
    assert invite.status_code == 403
    room.refresh_from_db()
    assert room.private and sorted(room.memberships.values_list("user__username", flat=True)) == ["alice", "bob"]
    assert staff.delete(f"/api/rooms/{room.slug}/messages/{wire['id']}/").status_code == 403  # the admin's door only
