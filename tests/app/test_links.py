"""Room addresses from names in any script, the people lookup behind @mention autocomplete, and
history around a message (the `history` frame's `around` and `after`, and the HTTP API's)."""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import services, slugs
from chat.models import Membership, Message, Room
from tests.support.sockets import assert_frame_shape

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


def create_room(client, **fields):
    return client.post("/rooms/new/", {"name": "", "slug": "", "topic": "", "members": "", **fields})


# ---------------------------------------------------------------- addresses from names


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("开发组", "kai-fa-zu"),
        ("Dev 开发 team", "dev-kai-fa-team"),
        ("한국어", "han-gug-eo"),
        ("チーム", "chi-mu"),
        ("Команда", "komanda"),
        ("Équipe Zoë", "equipe-zoe"),
        ("Lobby", "lobby"),
        ("!!!", ""),
    ],
)
def test_an_address_is_made_from_a_name_in_any_script(name, slug):
    assert slugs.slug_from_name(name) == slug


def test_letters_without_a_transliteration_get_a_generated_address(monkeypatch):
    monkeypatch.setattr(slugs, "anyascii", lambda text: "")
    slug = slugs.slug_from_name("ꓘꓳ")
    assert slug.startswith("room-") and len(slug) == len("room-") + 6
    Room._meta.get_field("slug").run_validators(slug)  # a valid, unreserved address


def test_a_room_named_in_chinese_is_created_and_keeps_its_name(alice_client):
    response = create_room(alice_client, name="开发组")
    assert response.status_code == 302 and response["Location"] == "/rooms/kai-fa-zu/"
    room = Room.objects.get(slug="kai-fa-zu")
    assert room.name == "开发组"
    assert "开发组" in alice_client.get("/").content.decode()
    assert "<title>开发组 · Channels Chat</title>" in alice_client.get("/rooms/kai-fa-zu/").content.decode()
    # The same name again: its address is taken, and the form says so under the address.
    response = create_room(alice_client, name="开发组")
    assert response.status_code == 200
    assert "A room with the address &#x27;kai-fa-zu&#x27; already exists." in response.content.decode()


# ---------------------------------------------------------------- the people lookup


def test_the_people_lookup_offers_active_accounts_by_prefix(alice_client, make_user):
    for name in ("bob", "Bobby", "bobcat", "carol"):
        make_user(name)
    make_user("bobgone", is_active=False)
    for i in range(12):
        make_user(f"bot{i:02}")
    response = alice_client.get("/api/users/?q=BOB")
    assert response.status_code == 200
    assert response.json() == {"users": [{"username": name} for name in ("bob", "Bobby", "bobcat")]}
    many = alice_client.get("/api/users/?q=bo").json()["users"]
    assert len(many) == 10  # capped
    assert alice_client.get("/api/users/?q=").status_code == 400
    assert alice_client.get("/api/users/?q=%00b").json() == {"users": []}
    assert alice_client.get("/api/users/").json()["code"] == "bad_request"
    assert Client().get("/api/users/?q=bo").status_code == 401


def test_the_people_lookup_is_in_the_schema(alice_client):
    schema = alice_client.get("/api/schema/").json()
    operation = schema["paths"]["/api/users/"]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"q"}
    assert "has_more_after" in json.dumps(schema["components"]["schemas"]["MessagePage"])
    names = {parameter["name"] for parameter in schema["paths"]["/api/rooms/{slug}/messages/"]["get"]["parameters"]}
    assert {"before", "after", "around", "limit"} <= names


# ---------------------------------------------------------------- history around a message


def numbered_room(make_room, author, count: int, **extra) -> Room:
    room = make_room("lobby", **extra)
    services.membership_add(room=room, user=author, role=Membership.Role.MODERATOR)
    for i in range(1, count + 1):
        services.message_send(room=room, author=author, body=f"message {i}")
    return room


def test_history_around_a_message_over_http(alice_client, alice, make_room):
    room = numbered_room(make_room, alice, 300)
    target = Message.objects.get(room=room, seq=40)
    page = alice_client.get(f"/api/rooms/lobby/messages/?around={target.pk}&limit=11").json()
    assert [m["seq"] for m in page["messages"]] == list(range(35, 46))
    assert page["has_more"] is True and page["has_more_after"] is True
    first = Message.objects.get(room=room, seq=1)
    page = alice_client.get(f"/api/rooms/lobby/messages/?around={first.pk}&limit=5").json()
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5]
    assert page["has_more"] is False and page["has_more_after"] is True
    last = Message.objects.get(room=room, seq=300)
    page = alice_client.get(f"/api/rooms/lobby/messages/?around={last.pk}").json()
    assert [m["seq"] for m in page["messages"]] == list(range(276, 301))  # 24 before it, nothing after
    assert page["has_more"] is True and page["has_more_after"] is False
    page = alice_client.get("/api/rooms/lobby/messages/?after=290&limit=5").json()
    assert [m["seq"] for m in page["messages"]] == [291, 292, 293, 294, 295] and page["has_more_after"] is True
    assert alice_client.get("/api/rooms/lobby/messages/?around=999999").status_code == 404
    assert alice_client.get(f"/api/rooms/lobby/messages/?around={target.pk}&before=5").status_code == 400


def test_history_around_is_only_for_rooms_the_caller_may_read(alice, bob, make_room):
    room = numbered_room(make_room, alice, 3, private=True)
    target = Message.objects.get(room=room, seq=2)
    client = Client()
    client.force_login(bob)
    response = client.get(f"/api/rooms/lobby/messages/?around={target.pk}")
    assert response.status_code in (403, 404) and "message 2" not in response.content.decode()
    # A message id of another room is not found through this one.
    make_room("random")
    client.force_login(alice)
    assert client.get(f"/api/rooms/random/messages/?around={target.pk}").status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_the_history_frame_takes_around_and_after(alice, bob, make_room, connect):
    room = await database_sync_to_async(numbered_room)(make_room, alice, 120)
    target = await Message.objects.aget(room=room, seq=30)
    socket = await connect(alice)
    await socket.join("lobby")
    page = await socket.request("history", room="lobby", around=target.pk, limit=9)
    assert_frame_shape(page)
    assert [m["seq"] for m in page["messages"]] == list(range(26, 35))
    assert page["has_more"] is True and page["has_more_after"] is True
    page = await socket.request("history", room="lobby", after=115, limit=10)
    assert [m["seq"] for m in page["messages"]] == list(range(116, 121))
    assert page["has_more"] is True and page["has_more_after"] is False
    for bad in ({"around": 0}, {"around": target.pk, "after": 3}, {"before": 3, "after": 1}, {"after": -1}):
        reply = await socket.request("history", room="lobby", **bad)
        assert reply["code"] == "bad_request", bad
    missing = await socket.request("history", room="lobby", around=10**9)
    assert missing["code"] == "not_found"
    # A room not joined on the socket (bob may not even enter it) gives nothing.
    await database_sync_to_async(services.room_create)(slug="secret", name="Secret", private=True)
    other = await connect(bob)
    refused = await other.request("history", room="secret", around=target.pk)
    assert refused["type"] == "error" and "messages" not in refused
