"""Notification emails: a direct message unread after the delay gets one email, once; several
waiting make one digest; reading it, turning emails off or having no address means none."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from chat import accounts, services, unread
from chat.models import EmailNotice, Message
from chat.notifications import send_notification_emails, waiting_unread_for

pytestmark = pytest.mark.django_db

LATER = timedelta(minutes=11)  # past the default delay of 10 minutes


@pytest.fixture
def people(make_user):
    alice = make_user("alice", email="alice@example.com")
    bob = make_user("bob", email="bob@example.com")
    return alice, bob


def dm(sender, recipient, body: str):
    room, _created = services.direct_open(user=sender, usernames=[recipient.username])
    services.message_send(room=room, author=sender, body=body)
    return room


def test_an_unread_direct_message_gets_one_email_after_the_delay_and_never_a_second(people):
    alice, bob = people
    room = dm(alice, bob, "Can you look at the deploy?")
    assert send_notification_emails() == 0  # not yet: bob may still read it
    assert send_notification_emails(now=timezone.now() + timedelta(minutes=9)) == 0
    assert send_notification_emails(now=timezone.now() + LATER) == 1
    [email] = mail.outbox
    assert email.to == ["bob@example.com"]
    assert email.subject == "1 message is waiting for you on Channels Chat"
    assert "alice (alice, " in email.body and "Can you look at the deploy?" in email.body
    assert f"http://127.0.0.1:8000/rooms/{room.slug}/" in email.body
    off = email.extra_headers["List-Unsubscribe"].strip("<>")
    assert off.startswith("http://127.0.0.1:8000/accounts/emails/off/") and off in email.body
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    assert send_notification_emails(now=timezone.now() + LATER * 3) == 0  # the same message: once
    assert len(mail.outbox) == 1
    dm(alice, bob, "Ping")  # a new one counts afresh
    assert send_notification_emails(now=timezone.now() + LATER) == 1
    assert "Ping" in mail.outbox[1].body and "deploy" not in mail.outbox[1].body


def test_several_waiting_messages_make_one_digest(people, make_user):
    alice, bob = people
    carol = make_user("carol", email="carol@example.com")
    dm(alice, bob, "one")
    dm(alice, bob, "two")
    dm(carol, bob, "three")
    assert send_notification_emails(now=timezone.now() + LATER) == 1
    [email] = mail.outbox
    assert email.subject == "3 messages are waiting for you on Channels Chat"
    assert all(word in email.body for word in ("one", "two", "three"))
    assert EmailNotice.objects.filter(user=bob).count() == 2  # one per conversation


def test_a_read_message_a_deleted_one_a_thread_reply_and_ones_own_get_no_email(people):
    alice, bob = people
    room = dm(alice, bob, "read it")
    services.read_mark(room=room, user=bob, seq=1)
    dm(bob, alice, "my own")
    services.read_mark(room=room, user=alice, seq=2)
    message, _created = services.message_send(room=room, author=alice, body="oops")
    services.message_delete_own(room=room, author=alice, message_id=message["id"])
    first = Message.objects.get(room=room, seq=1)
    services.message_send(room=room, author=alice, body="in the thread", reply_to=first.pk)  # unread counts skip it too
    assert list(waiting_unread_for(user=bob)) == []
    assert send_notification_emails(now=timezone.now() + LATER) == 0
    assert mail.outbox == []


def test_no_email_when_turned_off_or_without_an_address(people, make_user):
    alice, bob = people
    dora = make_user("dora")  # no address
    accounts.settings_update(user=bob, notify=False)
    dm(alice, bob, "hello bob")
    dm(alice, dora, "hello dora")
    assert send_notification_emails(now=timezone.now() + LATER) == 0
    accounts.settings_update(user=bob, notify=True)
    assert send_notification_emails(now=timezone.now() + LATER) == 1


def test_the_delay_comes_from_the_setting(people, settings):
    settings.CHAT_EMAIL_NOTIFY_DELAY_SECONDS = 0
    alice, bob = people
    dm(alice, bob, "now")
    assert send_notification_emails() == 1


def test_a_failed_send_marks_nothing_and_the_next_run_sends(people, settings):
    alice, bob = people
    dm(alice, bob, "hello")
    settings.EMAIL_BACKEND = "tests.app.test_notifications.RefusingBackend"
    assert send_notification_emails(now=timezone.now() + LATER) == 0
    assert not EmailNotice.objects.exists()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert send_notification_emails(now=timezone.now() + LATER) == 1


def test_the_command_sends_what_waits(people, settings, capsys):
    settings.CHAT_EMAIL_NOTIFY_DELAY_SECONDS = 0
    alice, bob = people
    dm(alice, bob, "from the command")
    call_command("send_notification_emails")
    call_command("send_notification_emails")
    assert capsys.readouterr().out == "Sent 1 notification email(s).\nSent 0 notification email(s).\n"
    assert len(mail.outbox) == 1


class RefusingBackend:
    def __init__(self, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("the SMTP server is down")


def test_a_mention_waiting_unread_in_a_room_gets_an_email_once(people, make_user):
    alice, bob = people
    room = services.room_create(slug="ops", name="Ops", created_by=alice)
    services.membership_add(room=room, user=bob)
    services.message_send(room=room, author=alice, body="nobody in particular")
    services.message_send(room=room, author=alice, body="@bob can you take the pager tonight?")
    assert send_notification_emails(now=timezone.now() + LATER) == 1
    [email] = mail.outbox
    assert email.to == ["bob@example.com"] and email.subject == "1 message is waiting for you on Channels Chat"
    assert "take the pager" in email.body and "nobody in particular" not in email.body  # mentions only
    assert send_notification_emails(now=timezone.now() + LATER * 2) == 0

    services.ban_create(room=room, user=bob)
    services.message_send(room=room, author=alice, body="@bob one more")
    assert send_notification_emails(now=timezone.now() + LATER * 3) == 0  # nothing from a room he was banned from


def test_a_muted_room_or_conversation_sends_no_email_and_mentions_only_still_does(people):
    """Mute silences a room everywhere, emails included; `mentions` is what emails are about."""
    alice, bob = people
    room = services.room_create(slug="ops", name="Ops", created_by=alice)
    services.membership_add(room=room, user=bob)
    direct = dm(alice, bob, "are you there?")
    unread.notify_set(user=bob, room=room, level="mute")
    unread.notify_set(user=bob, room=direct, level="mute")
    services.message_send(room=room, author=alice, body="@bob can you take the pager tonight?")
    assert send_notification_emails(now=timezone.now() + LATER) == 0
    assert mail.outbox == []

    unread.notify_set(user=bob, room=room, level="mentions")
    assert send_notification_emails(now=timezone.now() + LATER) == 1
    [email] = mail.outbox
    assert "take the pager" in email.body and "are you there?" not in email.body


def test_no_email_about_a_room_the_user_may_no_longer_read(people):
    alice, bob = people
    room = services.room_create(slug="ops", name="Ops", created_by=alice)
    services.room_enter(slug="ops", user=bob)
    services.message_send(room=room, author=alice, body="@bob the root password is hunter2")
    services.room_update(room=room, by=alice, private=True)  # bob was not invited: he is shut out
    assert send_notification_emails(now=timezone.now() + LATER) == 0
    assert mail.outbox == []
