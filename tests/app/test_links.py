"""Room addresses from names in any script, the people lookup behind @mention autocomplete, and
history around a message (the `history` frame's `around` and `after`, and the HTTP API's)."""

import pytest
from django.test import Client

from chat import slugs
from chat.models import Room

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
