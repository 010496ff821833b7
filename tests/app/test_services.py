"""Services and selectors: the rules every entry point shares."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from chat import events, selectors, services
from chat.errors import ChatError
from chat.models import Membership, Message, Room


@pytest.fixture
def announced(monkeypatch):
    """What the services hand to the channel layer, in order."""
    sent = []
    monkeypatch.setattr(events, "_send_now", lambda group, event: sent.append((group, event)))
    return sent


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_in_threads_get_gapless_unique_seqs(alice, bob, make_room):
    """Eight threads, each with its own database connection, send at once."""
    lobby = make_room("lobby")
    start = threading.Barrier(8)

    def sender(n: int) -> list[int]:
        try:
            start.wait()
            author = alice if n % 2 else bob
            return [services.message_send(room=lobby, author=author, body=f"{n}:{i}")[0]["seq"] for i in range(15)]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        seqs = [seq for result in pool.map(sender, range(8)) for seq in result]
    assert sorted(seqs) == list(range(1, 121))
    assert sorted(Message.objects.filter(room=lobby).values_list("seq", flat=True)) == list(range(1, 121))
    assert Room.objects.get(pk=lobby.pk).last_seq == 120


@pytest.mark.django_db(transaction=True)
def test_concurrent_resends_of_one_client_id_store_one_message(alice, make_room):
    lobby = make_room("lobby")
    start = threading.Barrier(6)

    def resend(_):
        try:
            start.wait()
            return services.message_send(room=lobby, author=alice, body="once", client_id="same")[0]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(resend, range(6)))
    assert {(r["id"], r["seq"]) for r in results} == {(results[0]["id"], 1)}
    assert Message.objects.filter(room=lobby).count() == 1


@pytest.mark.django_db
def test_client_id_is_per_author_and_room(alice, bob, make_room):
    lobby, random = make_room("lobby"), make_room("random")
    a, created_a = services.message_send(room=lobby, author=alice, body="x", client_id="c")
    b, created_b = services.message_send(room=lobby, author=bob, body="x", client_id="c")
    c, created_c = services.message_send(room=random, author=alice, body="x", client_id="c")
    again, created_again = services.message_send(room=lobby, author=alice, body="different body", client_id="c")
    assert created_a and created_b and created_c and not created_again
    assert again["id"] == a["id"] and again["body"] == "x"
    assert len({a["id"], b["id"], c["id"]}) == 3


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_send_is_never_announced_and_leaves_no_gap(alice, make_room, announced):
    lobby = make_room("lobby")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.message_send(room=lobby, author=alice, body="never happened")
        raise RuntimeError("the surrounding work failed")
    assert announced == []
    wire, _ = services.message_send(room=lobby, author=alice, body="real")
    assert wire["seq"] == 1
    assert len(announced) == 2  # to the room, and in short to those who watch it (chat.unread)
    group, event = announced[0]
    assert group == f"room.{lobby.pk}" and event["type"] == "chat.frame" and '"body":"real"' in event["frame"]
    assert announced[1][0] == f"activity.{lobby.pk}"


@pytest.mark.django_db(transaction=True)
def test_send_refused_after_ban_or_archive_or_for_non_member(alice, bob, make_room):
    lobby = make_room("lobby")
    secret = make_room("secret", private=True)
    with pytest.raises(ChatError) as refused:
        services.message_send(room=secret, author=alice, body="hi")
    assert refused.value.code == "forbidden"
    services.ban_create(room=lobby, user=bob, reason="spam")
    with pytest.raises(ChatError) as refused:
        services.message_send(room=lobby, author=bob, body="hi")
    assert refused.value.code == "forbidden"
    services.room_archive(room=lobby)
    with pytest.raises(ChatError) as refused:
        services.message_send(room=lobby, author=alice, body="hi")
    assert refused.value.code == "not_found"
    assert Message.objects.count() == 0
    assert Room.objects.get(pk=lobby.pk).last_seq == 0  # refused sends took no seq


@pytest.mark.django_db
def test_room_list_shows_what_the_user_may_enter_with_unread_counts(alice, bob, make_room):
    lobby = make_room("lobby")
    secret = make_room("secret", private=True)
    make_room("attic", archived=True)
    banned = make_room("banned")
    services.membership_add(room=secret, user=alice)
    services.ban_create(room=banned, user=alice)
    for i in range(4):
        services.message_send(room=lobby, author=bob, body=f"m{i}")
    services.room_enter(slug="lobby", user=alice)
    services.read_mark(room=lobby, user=alice, seq=1)

    rooms = {room.slug: room for room in selectors.room_list_for(user=alice)}
    assert set(rooms) == {"lobby", "secret"}
    assert rooms["lobby"].unread == 3
    assert rooms["secret"].unread == 0
    assert {room.slug for room in selectors.room_list_for(user=bob)} == {"lobby", "banned"}

    services.room_enter(slug="lobby", user=bob)
    services.message_send(room=lobby, author=bob, body="my own")
    rooms = {room.slug: room for room in selectors.room_list_for(user=bob)}
    assert rooms["lobby"].unread == 0  # your own message is not unread


@pytest.mark.django_db
def test_room_enter_records_membership_once(alice, make_room):
    make_room("lobby")
    services.room_enter(slug="lobby", user=alice)
    services.room_enter(slug="lobby", user=alice)
    assert Membership.objects.filter(user=alice).count() == 1


@pytest.mark.django_db
def test_room_slug_validation_refuses_hostile_strings(make_room):
    from django.core.exceptions import ValidationError

    for slug in ["../etc", "<script>", "UPPER", "with space", "-dash", "a" * 51, ""]:
        with pytest.raises(ValidationError):
            make_room(slug)


@pytest.mark.django_db(transaction=True)
def test_message_delete_keeps_seq_and_hides_body(alice, make_room, announced):
    lobby = make_room("lobby")
    wire, _ = services.message_send(room=lobby, author=alice, body="secret")
    services.message_delete(message=Message.objects.get(pk=wire["id"]))
    services.message_delete(message=Message.objects.get(pk=wire["id"]))  # twice: announced once
    deletions = [event for _, event in announced if '"message_deleted"' in event.get("frame", "")]
    assert len(deletions) == 1
    messages, complete = selectors.messages_since(room=lobby, since=0)
    assert complete and messages[0]["seq"] == 1 and messages[0]["deleted"] is True and messages[0]["body"] == ""


@pytest.mark.django_db
def test_seed_demo_is_idempotent(django_user_model):
    from django.core.management import call_command

    call_command("seed_demo")
    call_command("seed_demo")
    assert sorted(django_user_model.objects.values_list("username", flat=True)) == ["admin", "alice", "bob", "carol"]
    assert django_user_model.objects.get(username="admin").is_superuser
    assert django_user_model.objects.get(username="alice").check_password("chatdemo")
    assert sorted(Room.objects.values_list("slug", flat=True)) == ["lobby", "random", "staff"]
    staff = Room.objects.get(slug="staff")
    assert staff.private
    assert sorted(staff.memberships.values_list("user__username", flat=True)) == ["admin", "alice"]


@pytest.mark.django_db
def test_session_states_checks_many_sessions_at_once(alice, bob, make_user):
    from django.contrib.sessions.models import Session
    from django.test import Client

    def login(user):
        client = Client()
        client.force_login(user)
        return client.session.session_key

    carol, dave = make_user("carol"), make_user("dave")
    valid, logged_out, changed, inactive = login(alice), login(bob), login(carol), login(dave)
    Session.objects.filter(session_key=logged_out).delete()
    carol.set_password("a-brand-new-password-7")
    carol.save()
    dave.is_active = False
    dave.save()

    states = selectors.session_states(
        session_keys={valid: alice.pk, logged_out: bob.pk, changed: carol.pk, inactive: dave.pk, "nonsense": None}
    )
    assert states == {
        valid: "valid",
        logged_out: "ended",
        changed: "ended",
        inactive: "inactive",
        "nonsense": "ended",
    }
    assert selectors.session_states(session_keys={valid: bob.pk})[valid] == "ended"  # not bob's session
