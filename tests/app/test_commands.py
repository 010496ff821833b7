"""Management commands people run on the server: `chat_send`."""

import io
import json

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command

from chat import events, services
from chat.models import Membership, Message

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command("chat_send", *args, stdout=out, **options)
    return out.getvalue()


def test_chat_send_stores_numbers_and_broadcasts_like_any_message(alice, bob, make_room):
    room = make_room("lobby")
    services.message_send(room=room, author=bob, body="first")
    layer = get_channel_layer()
    listener = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.room_group(room.pk), listener)

    assert run("lobby", "Backup finished", "--as", "alice") == "Sent message #2 to lobby as alice.\n"
    frame = json.loads(async_to_sync(layer.receive)(listener)["frame"])
    assert frame["type"] == "message" and frame["room"] == "lobby"
    assert (frame["message"]["seq"], frame["message"]["author"], frame["message"]["body"]) == (
        2,
        "alice",
        "Backup finished",
    )
    assert Message.objects.get(seq=2).body == "Backup finished"


def test_chat_send_defaults_to_a_system_account_that_cannot_log_in(make_room, django_user_model):
    make_room("lobby")
    assert run("lobby", "Deploy at 18:00") == "Sent message #1 to lobby as system.\n"
    system = django_user_model.objects.get(username="system")
    assert not system.has_usable_password()
    run("lobby", "again")  # the account is made once
    assert django_user_model.objects.filter(username="system").count() == 1


def test_chat_send_reads_standard_input_with_a_dash(alice, make_room):
    make_room("lobby")
    run("lobby", "-", "--as", "alice", stdin=io.StringIO("line one\nline two\n"))
    assert Message.objects.get().body == "line one\nline two"


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (("nowhere", "hi"), "There is no room 'nowhere'."),
        (("lobby", "hi", "--as", "nobody"), "There is no user 'nobody'."),
        (("lobby", "   "), "system cannot post in 'lobby': The message is empty."),
        (("lobby", "x" * 4001), "system cannot post in 'lobby': The message is longer than 4000 characters."),
        (("staff", "hi", "--as", "alice"), "alice cannot post in 'staff': 'staff' is a private room"),
    ],
)
def test_chat_send_refuses_with_a_sentence(alice, make_room, args, sentence):
    make_room("lobby")
    make_room("staff", private=True)
    with pytest.raises(CommandError, match=sentence.replace("(", r"\(").replace(")", r"\)")) as error:
        run(*args)
    assert sentence in str(error.value)
    assert not Message.objects.exists()


def test_chat_send_posts_into_a_private_room_for_a_member(alice, make_room):
    room = make_room("staff", private=True)
    Membership.objects.create(room=room, user=alice, invited=True)
    assert run("staff", "members only", "--as", "alice").startswith("Sent message #1")
