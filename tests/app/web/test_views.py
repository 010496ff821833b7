"""HTTP pages as a user meets them: login, sign-up, logout, password change, CSRF, the room list
and room pages, health checks, and the admin."""

import json
import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils.html import escape

from chat import selectors, services
from chat.models import Membership, Message, Room
from tests.support.sockets import TEST_PASSWORD as PASSWORD  # every make_user user has it

NEW_PASSWORD = "battery-staple-97"

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


def page(response) -> str:
    return response.content.decode()


def logged_in(client) -> bool:
    return SESSION_KEY in client.session


def unread_of(html: str, slug: str) -> int:
    match = re.search(rf'data-slug="{re.escape(slug)}" data-unread="(\d+)"', html)
    assert match, f"room {slug} is not in the room list"
    return int(match.group(1))


# Login, sign-up, logout, password change --------------------------------------------------------


def test_login_page_has_a_form_and_the_demo_hint(client, settings, make_user):
    settings.CHAT_DEMO_LOGINS = True
    for username in ("alice", "bob", "carol"):
        make_user(username)
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = page(response)
    assert re.search(r'<form[^>]*method="post"[^>]*action="/accounts/login/"', html)
    assert 'name="username"' in html and 'name="password"' in html and 'name="csrfmiddlewaretoken"' in html
    assert "alice, bob, carol" in html and "chatdemo" in html
    assert 'href="/accounts/signup/"' in html


def test_login_with_the_right_password_opens_the_room_list(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response.url == "/"
    assert logged_in(client)
    response = client.post("/accounts/logout/")
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200 and not logged_in(client)
    assert "Please enter a correct username and password" in page(response)


@pytest.mark.parametrize("path", ["/", "/rooms/lobby/"])
def test_pages_need_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={path}"


def test_signup_creates_the_user_and_logs_them_in(client, django_user_model):
    response = client.post(
        "/accounts/signup/",
        {"username": "dora", "email": "dora@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302 and response.url == "/"
    user = django_user_model.objects.get(username="dora")
    assert user.check_password(PASSWORD)
    assert client.session[SESSION_KEY] == str(user.pk)
    response = client.get("/")
    assert response.status_code == 200
    assert "dora" in page(response)


def test_signup_with_mismatched_passwords_shows_the_error_and_creates_nobody(client, django_user_model):
    before = django_user_model.objects.count()
    response = client.post(
        "/accounts/signup/",
        {"username": "dora", "email": "dora@example.com", "password1": PASSWORD, "password2": PASSWORD + "x"},
    )
    assert response.status_code == 200
    errors = response.context["form"].errors.get("password2")
    assert errors, response.context["form"].errors
    html = page(response)
    assert escape(errors[0]) in html and "match" in errors[0]
    assert 'value="dora"' in html  # the form keeps what was typed
    assert django_user_model.objects.count() == before
    assert not logged_in(client)


def test_signup_page_sends_a_logged_in_user_home(alice_client):
    response = alice_client.get("/accounts/signup/")
    assert response.status_code == 302 and response.url == "/"


def test_logout_needs_post(alice_client):
    response = alice_client.get("/accounts/logout/")
    assert response.status_code == 405
    assert logged_in(alice_client)
    assert alice_client.get("/").status_code == 200

    response = alice_client.post("/accounts/logout/")
    assert response.status_code == 302 and response.url == "/accounts/login/"
    assert not logged_in(alice_client)
    assert alice_client.get("/").status_code == 302


def test_every_page_has_a_logout_form_with_a_csrf_token(alice_client):
    html = page(alice_client.get("/"))
    form = re.search(r'<form[^>]*method="post"[^>]*action="/accounts/logout/".*?</form>', html, re.S)
    assert form and 'name="csrfmiddlewaretoken"' in form.group(0)


def test_password_change_keeps_the_user_logged_in(alice_client, alice):
    response = alice_client.get("/accounts/password_change/")
    assert response.status_code == 200
    response = alice_client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302 and response.url == "/accounts/password_change/done/"
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    response = alice_client.get("/accounts/password_change/done/")
    assert response.status_code == 200 and "Password changed" in page(response)
    assert alice_client.get("/").status_code == 200

    # Another browser logs in with the new password only.
    other = Client()
    assert other.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 200
    assert not logged_in(other)
    assert other.post("/accounts/login/", {"username": "alice", "password": NEW_PASSWORD}).status_code == 302
    assert logged_in(other)


def test_password_change_with_a_wrong_old_password_changes_nothing(alice_client, alice):
    response = alice_client.post(
        "/accounts/password_change/",
        {"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert "old password was entered incorrectly" in page(response)
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


# CSRF --------------------------------------------------------------------------------------------


def test_csrf_is_enforced_on_login(alice):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert not logged_in(client)

    # With the form's token the same login works: the 403 was the CSRF check.
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and logged_in(client)


def test_csrf_is_enforced_on_signup(django_user_model):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/accounts/signup/",
        {"username": "dora", "email": "dora@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 403
    assert not django_user_model.objects.filter(username="dora").exists()


def test_csrf_is_enforced_on_logout(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/accounts/logout/")
    assert response.status_code == 403
    assert logged_in(client)


def test_csrf_is_enforced_on_password_change(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 403
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


# Room list and room pages ---------------------------------------------------------------------


def test_room_list_shows_public_rooms_and_own_private_ones_with_unread_counts(alice_client, alice, bob):
    lobby = services.room_create(slug="lobby", name="Lobby", topic="Say hello.")
    staff = services.room_create(slug="staff", name="Staff", private=True)
    services.room_create(slug="hidden", name="Hidden Den", private=True)
    old = services.room_create(slug="old", name="Old Times")
    services.room_archive(room=old)
    services.membership_add(room=staff, user=alice)
    services.membership_add(room=staff, user=bob)
    for i in range(3):
        services.message_send(room=lobby, author=bob, body=f"hi {i}")
    for i in range(2):
        services.message_send(room=staff, author=bob, body=f"note {i}")

    response = alice_client.get("/")
    assert response.status_code == 200
    html = page(response)
    assert "Lobby" in html and "Say hello." in html and 'href="/rooms/lobby/"' in html
    assert "Staff" in html and 'href="/rooms/staff/"' in html
    assert "Hidden Den" not in html and "/rooms/hidden/" not in html
    assert "Old Times" not in html and "/rooms/old/" not in html
    assert unread_of(html, "lobby") == 3 and 'title="3 unread"' in html
    assert unread_of(html, "staff") == 2 and 'title="2 unread"' in html

    # Reading moves the count.
    services.membership_add(room=lobby, user=alice)
    services.read_mark(room=lobby, user=alice, seq=2)
    html = page(alice_client.get("/"))
    assert unread_of(html, "lobby") == 1 and 'title="1 unread"' in html
    services.read_mark(room=lobby, user=alice, seq=3)
    html = page(alice_client.get("/"))
    assert unread_of(html, "lobby") == 0 and 'title="0 unread"' not in html

    # Bob is no member of the private rooms (any more): he sees neither.
    services.membership_remove(room=staff, user=bob)
    bob_client = Client()
    bob_client.force_login(bob)
    html = page(bob_client.get("/"))
    assert "Lobby" in html
    assert "/rooms/staff/" not in html and "/rooms/hidden/" not in html


def test_room_list_hides_rooms_the_user_is_banned_from(alice_client, alice):
    lobby = services.room_create(slug="lobby", name="Lobby")
    services.room_create(slug="random", name="Random")
    services.ban_create(room=lobby, user=alice, reason="spam")
    html = page(alice_client.get("/"))
    assert "/rooms/random/" in html and "/rooms/lobby/" not in html


def test_room_page_of_a_public_room(alice_client):
    services.room_create(slug="lobby", name="Lobby", topic="Say hello.")
    response = alice_client.get("/rooms/lobby/")
    assert response.status_code == 200
    html = page(response)
    assert "Lobby" in html and "Say hello." in html
    config = json.loads(
        re.search(r'<script id="chat-config" type="application/json">(.*?)</script>', html, re.S).group(1)
    )
    assert config["room"] == "lobby" and config["username"] == "alice" and config["wsPath"] == "/ws/chat/"
    assert config["maxBody"] == 4000
    assert config["lastRead"] == 0


def test_room_page_tells_the_client_where_the_user_stopped_reading(alice_client, alice, bob):
    room = services.room_create(slug="lobby", name="Lobby")
    services.room_enter(slug="lobby", user=alice)
    for i in range(5):
        services.message_send(room=room, author=bob, body=f"m{i}")
    services.read_mark(room=room, user=alice, seq=3)
    html = page(alice_client.get("/rooms/lobby/"))
    config = json.loads(re.search(r'id="chat-config" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert config["lastRead"] == 3


# Room creation by users -------------------------------------------------------------------------


def create_room(client, **fields):
    data = {"name": "", "slug": "", "topic": "", "members": "", **fields}
    return client.post("/rooms/new/", data)


def test_the_room_list_links_to_the_new_room_form(alice_client):
    assert 'href="/rooms/new/"' in page(alice_client.get("/"))
    form = page(alice_client.get("/rooms/new/"))
    for label in ("Name", "Address", "Topic", "Private", "Invite"):
        assert f">{label}</label>" in form


def test_a_user_creates_a_public_room_and_lands_in_it(alice_client, alice, bob):
    response = create_room(alice_client, name="Book Club", topic="What we read")
    assert response.status_code == 302 and response["Location"] == "/rooms/book-club/"
    room = Room.objects.get(slug="book-club")
    assert (room.name, room.topic, room.private, room.created_by) == ("Book Club", "What we read", False, alice)
    bobs = Client()
    bobs.force_login(bob)
    assert "Book Club" in page(bobs.get("/"))  # anyone sees a public room


def test_a_private_room_with_invited_members(alice_client, alice, bob, make_user):
    carol = make_user("carol")
    response = create_room(alice_client, name="Plans", slug="plans", private="on", members="bob, nobody-else")
    assert response.status_code == 200 and "No such user: nobody-else." in page(response)
    assert not Room.objects.filter(slug="plans").exists()
    response = create_room(alice_client, name="Plans", slug="plans", private="on", members="bob")
    assert response.status_code == 302
    room = Room.objects.get(slug="plans")
    assert room.private
    roles = dict(Membership.objects.filter(room=room).values_list("user__username", "role"))
    assert roles == {"alice": Membership.Role.MODERATOR, "bob": Membership.Role.MEMBER}
    for user, status in ((bob, 200), (carol, 403)):
        client = Client()
        client.force_login(user)
        assert client.get("/rooms/plans/").status_code == status
        assert ("Plans" in page(client.get("/"))) == (status == 200)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"name": "Lobby", "slug": "Not A Slug"}, "Use 1 to 50 lowercase letters"),
        ({"name": "New"}, "&#x27;new&#x27; and addresses that start with &#x27;dm-&#x27; are reserved"),
        ({"name": "!!!"}, "the name has no letters or digits"),
        ({"name": "Open", "members": "bob"}, "Invitations are for private rooms"),
    ],
)
def test_bad_room_forms_say_what_is_wrong(alice_client, bob, fields, message):
    response = create_room(alice_client, **fields)
    assert response.status_code == 200
    assert message in page(response)
    assert not Room.objects.exists()


def test_a_taken_address_is_refused(alice_client):
    services.room_create(slug="lobby", name="Lobby")
    response = create_room(alice_client, name="Lobby")
    assert "A room with the address &#x27;lobby&#x27; already exists." in page(response)
    assert Room.objects.count() == 1


def test_room_creation_is_limited_per_hour(alice_client, alice):
    for i in range(10):
        assert create_room(alice_client, name=f"Room {i}").status_code == 302
    response = create_room(alice_client, name="One too many")
    assert "You have created 10 rooms in the last hour" in page(response)
    assert Room.objects.count() == 10


def test_room_creation_needs_a_login_and_csrf(alice):
    assert Client().get("/rooms/new/")["Location"].startswith("/accounts/login/")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert create_room(strict, name="Sneaky").status_code == 403
    assert not Room.objects.exists()


def test_room_page_of_a_private_room_for_a_member(alice_client, alice):
    staff = services.room_create(slug="staff", name="Staff", private=True)
    services.membership_add(room=staff, user=alice)
    response = alice_client.get("/rooms/staff/")
    assert response.status_code == 200
    assert "Staff" in page(response)


def test_room_page_of_a_private_room_for_a_stranger_is_403(alice_client):
    services.room_create(slug="staff", name="Staff Secrets", private=True)
    response = alice_client.get("/rooms/staff/")
    assert response.status_code == 403
    html = page(response)
    assert "private" in html.lower()
    assert "Staff Secrets" not in html
    assert "Traceback" not in html
    assert 'href="/"' in html  # a way back


def test_room_page_of_a_room_the_user_is_banned_from_is_403(alice_client, alice):
    lobby = services.room_create(slug="lobby", name="Lobby")
    services.ban_create(room=lobby, user=alice)
    response = alice_client.get("/rooms/lobby/")
    assert response.status_code == 403
    assert "Traceback" not in page(response)


def test_room_page_of_an_unknown_room_is_a_proper_404(alice_client):
    response = alice_client.get("/rooms/nowhere/")
    assert response.status_code == 404
    html = page(response)
    assert "Page not found" in html or "not found" in html.lower()
    assert "Traceback" not in html and "Http404" not in html
    assert 'href="/"' in html


def test_room_page_of_an_archived_room_is_404(alice_client):
    old = services.room_create(slug="old", name="Old Times")
    services.room_archive(room=old)
    response = alice_client.get("/rooms/old/")
    assert response.status_code == 404
    assert "Old Times" not in page(response)


def test_room_names_are_escaped(alice_client):
    name = "<script>alert(1)</script>"
    services.room_create(slug="xss", name=name, topic='<img src=x onerror="alert(2)">')
    for path in ("/", "/rooms/xss/"):
        response = alice_client.get(path)
        assert response.status_code == 200, path
        html = page(response)
        assert name not in html, f"raw room name in {path}"
        assert "<img src=x" not in html, f"raw topic in {path}"
        assert escape(name) in html, f"escaped room name missing from {path}"


# Direct conversations -----------------------------------------------------------------------------


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def picker_names(html: str) -> list[str]:
    """The people the "New message" picker offers."""
    picker = re.search(r'<ul id="direct-users".*?</ul>', html, re.S)
    assert picker, "the page has no people picker"
    return re.findall(r'<input type="checkbox" name="users" value="([^"]*)"', picker.group(0))


def checked_names(html: str) -> list[str]:
    return re.findall(r'<input type="checkbox" name="users" value="([^"]*)" checked>', html)


def test_direct_conversations_are_listed_with_the_other_peoples_names_and_unread_counts(
    alice_client, alice, bob, make_user
):
    carol, dora = make_user("carol"), make_user("dora")
    pair, _ = services.direct_open(user=alice, usernames=["bob"])
    group, _ = services.direct_open(user=bob, usernames=["alice", "carol"])
    services.direct_open(user=dora, usernames=["alice"])  # nobody wrote: dora's business only
    services.message_send(room=pair, author=alice, body="free today?")  # her own: not unread
    first, _ = services.message_send(room=pair, author=bob, body="lunch?")
    services.message_send(room=pair, author=bob, body="at noon")
    services.message_send(room=pair, author=bob, body="in the thread", reply_to=first["id"])  # not unread
    services.message_send(room=group, author=carol, body="hello both")
    services.room_create(slug="lobby", name="Lobby")

    for path in ("/", "/rooms/lobby/"):
        html = page(alice_client.get(path))
        assert unread_of(html, pair.slug) == 2, path
        assert unread_of(html, group.slug) == 1, path
        assert f'href="/rooms/{pair.slug}/"' in html and f'href="/rooms/{group.slug}/"' in html, path
        names = re.findall(r'class="(?:direct-card|sidebar-room)-name">([^<]*)<', html)
        assert "bob" in names and "bob, carol" in names, (path, names)
        assert "dora" not in names, (path, names)
    assert 'id="direct-list"' in page(alice_client.get("/"))

    # The conversation's own page names the others, without a private room's chrome, and the
    # client learns it is a direct conversation.
    html = page(alice_client.get(f"/rooms/{group.slug}/"))
    assert re.search(r'<span id="room-name-text">bob, carol</span>', html)
    assert "<title>bob, carol · Channels Chat</title>" in html
    assert "tag-private" not in html
    assert 'aria-label="Messages with bob, carol"' in html
    config = json.loads(re.search(r'id="chat-config" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert config["room"] == group.slug and config["kind"] == "direct"
    assert re.search(rf'<li data-slug="{group.slug}" data-unread="1">\s*<a [^>]*aria-current="page"', html)

    # Carol sees the group but not alice and bob's conversation, nor can she open it.
    carols = client_of(carol)
    html = page(carols.get("/"))
    assert f"/rooms/{group.slug}/" in html and f"/rooms/{pair.slug}/" not in html
    assert ">alice, bob<" in html
    assert carols.get(f"/rooms/{pair.slug}/").status_code == 403


def test_a_user_without_direct_conversations_is_offered_to_start_one(alice_client):
    html = page(alice_client.get("/"))
    assert 'id="direct-list-empty"' in html and 'id="direct-list"' not in html
    assert 'id="new-direct" href="/direct/new/"' in html


def test_the_people_picker_lists_active_users_but_not_yourself(alice_client, alice, bob, make_user):
    make_user("carol")
    make_user("dora", is_active=False)
    response = alice_client.get("/direct/new/")
    assert response.status_code == 200
    assert picker_names(page(response)) == ["bob", "carol"]

    # The other pages' "New message" dialogs load that list when opened: they stay as light
    # however many accounts there are.
    services.room_create(slug="lobby", name="Lobby")
    for path in ("/", "/rooms/lobby/"):
        html = page(alice_client.get(path))
        assert '<ul id="direct-users" class="direct-users" data-src="/direct/new/">' in html, path
        assert picker_names(html) == [], path
        assert 'action="/direct/new/"' in html and 'id="direct-dialog"' in html, path


def test_the_people_picker_lists_at_most_its_limit_and_says_there_are_more(alice_client, make_user, monkeypatch):
    monkeypatch.setattr(selectors, "DIRECT_CANDIDATES_LIMIT", 3)
    for name in ("bea", "cy", "di", "ed"):
        make_user(name)
    html = page(alice_client.get("/direct/new/"))
    assert picker_names(html) == ["bea", "cy", "di"]
    assert '<ul id="direct-users" class="direct-users" data-more="true">' in html


def test_starting_a_direct_conversation_leads_to_it_and_the_same_people_meet_in_the_same_one(
    alice_client, alice, bob, make_user
):
    make_user("carol")
    response = alice_client.post("/direct/new/", {"users": ["bob", "carol"]})
    assert response.status_code == 302
    room = Room.objects.get(kind=Room.Kind.DIRECT)
    assert response["Location"] == f"/rooms/{room.slug}/"
    assert set(room.memberships.values_list("user__username", flat=True)) == {"alice", "bob", "carol"}
    again = client_of(bob).post("/direct/new/", {"users": ["carol", "alice", "alice"]})
    assert again.status_code == 302 and again["Location"] == f"/rooms/{room.slug}/"
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1
    assert alice_client.get(response["Location"]).status_code == 200


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ([], "Choose at least one person."),
        (["alice"], "Name at least one other person."),
        (["nobody"], "No user &#x27;nobody&#x27;."),
        (["dora"], "No user &#x27;dora&#x27;."),  # deactivated
        ([f"user{i}" for i in range(9)], "Choose at most 8 people."),
    ],
)
def test_a_direct_conversation_that_cannot_be_started_says_why(alice_client, bob, make_user, users, message):
    make_user("dora", is_active=False)
    for i in range(9):
        make_user(f"user{i}")
    response = alice_client.post("/direct/new/", {"users": users})
    assert response.status_code == 400
    html = page(response)
    assert message in html
    assert checked_names(html) == [name for name in users if name != "alice"]  # the choice is kept
    assert not Room.objects.filter(kind=Room.Kind.DIRECT).exists()


def test_starting_a_direct_conversation_needs_a_login_and_csrf(alice, bob):
    assert Client().post("/direct/new/", {"users": ["bob"]})["Location"].startswith("/accounts/login/")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/direct/new/", {"users": ["bob"]}).status_code == 403
    assert not Room.objects.filter(kind=Room.Kind.DIRECT).exists()


# Admin --------------------------------------------------------------------------------------------


@pytest.fixture
def chat_data(alice, bob, admin_user):
    lobby = services.room_create(slug="lobby", name="Lobby", topic="Say hello.")
    staff = services.room_create(slug="staff", name="Staff", private=True, created_by=admin_user)
    services.membership_add(room=staff, user=alice)
    services.membership_add(room=lobby, user=bob)
    services.message_send(room=lobby, author=bob, body="hello world")
    services.message_send(room=lobby, author=alice, body="good morning")
    ban = services.ban_create(room=lobby, user=bob, reason="spam links", by=admin_user)
    return {"lobby": lobby, "staff": staff, "ban": ban}


def changelist(admin_client, path: str):
    response = admin_client.get(path)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.get('Location', '')}"
    cl = response.context["cl"]
    return response, list(cl.result_list)


def test_admin_room_changelist_search_and_filter(admin_client, chat_data):
    response, rooms = changelist(admin_client, "/admin/chat/room/")
    assert {r.slug for r in rooms} == {"lobby", "staff"}
    html = page(response)
    assert "member" in html.lower() and "messages" in html.lower()
    _, rooms = changelist(admin_client, "/admin/chat/room/?q=hello")  # topic
    assert [r.slug for r in rooms] == ["lobby"]
    _, rooms = changelist(admin_client, "/admin/chat/room/?private__exact=1")
    assert [r.slug for r in rooms] == ["staff"]
    _, rooms = changelist(admin_client, "/admin/chat/room/?archived__exact=0&q=sta")
    assert [r.slug for r in rooms] == ["staff"]
    counts = {r.slug: (r._members, r._messages) for r in changelist(admin_client, "/admin/chat/room/")[1]}
    assert counts["lobby"] == (1, 2)


def test_admin_membership_changelist_search_and_filter(admin_client, chat_data):
    _, memberships = changelist(admin_client, "/admin/chat/membership/")
    assert len(memberships) == 3  # alice and admin (creator, moderator) in staff, bob in lobby
    _, memberships = changelist(admin_client, "/admin/chat/membership/?q=alice")
    assert [(m.user.username, m.room.slug) for m in memberships] == [("alice", "staff")]
    _, memberships = changelist(admin_client, "/admin/chat/membership/?role__exact=moderator")
    assert [(m.user.username, m.room.slug) for m in memberships] == [("admin", "staff")]
    _, memberships = changelist(admin_client, f"/admin/chat/membership/?room__id__exact={chat_data['lobby'].pk}")
    assert [m.user.username for m in memberships] == ["bob"]


def test_admin_ban_changelist_search_and_filter(admin_client, chat_data):
    response, bans = changelist(admin_client, "/admin/chat/ban/")
    assert [b.pk for b in bans] == [chat_data["ban"].pk]
    assert "spam links" in page(response)
    _, bans = changelist(admin_client, "/admin/chat/ban/?q=spam")
    assert len(bans) == 1
    _, bans = changelist(admin_client, "/admin/chat/ban/?q=carol")
    assert bans == []
    _, bans = changelist(admin_client, f"/admin/chat/ban/?room__id__exact={chat_data['staff'].pk}")
    assert bans == []


def test_admin_message_changelist_search_and_filter(admin_client, chat_data):
    response, messages = changelist(admin_client, "/admin/chat/message/")
    assert sorted(m.body for m in messages) == ["good morning", "hello world"]
    assert "hello world" in page(response)
    _, messages = changelist(admin_client, "/admin/chat/message/?q=morning")
    assert [m.body for m in messages] == ["good morning"]
    _, messages = changelist(admin_client, "/admin/chat/message/?deleted__exact=0&q=bob")
    assert [m.body for m in messages] == ["hello world"]
    _, messages = changelist(admin_client, "/admin/chat/message/?deleted__exact=1")
    assert messages == []


@pytest.fixture
def direct_chat(alice, bob):
    """alice and bob's direct conversation, with one message in it."""
    room, _ = services.direct_open(user=alice, usernames=["bob"])
    secret, _ = services.message_send(room=room, author=alice, body="the **surprise** party is on Friday")
    return room, secret


def test_admin_lists_direct_messages_without_their_text(admin_client, chat_data, direct_chat):
    room, secret = direct_chat
    response, messages = changelist(admin_client, "/admin/chat/message/")
    assert secret["id"] in [m.pk for m in messages]  # listed, so that staff can delete it
    html = page(response)
    assert "surprise" not in html and "— direct message, not shown —" in html
    assert "hello world" in html  # an ordinary room's text is shown
    detail = page(admin_client.get(f"/admin/chat/message/{secret['id']}/change/"))
    assert "surprise" not in detail and "— direct message, not shown —" in detail

    lobby = chat_data["lobby"]
    root = Message.objects.get(room=lobby, body="good morning")
    reply, _ = services.message_send(room=lobby, author=root.author, body="and to you", reply_to=root.pk)
    services.reaction_set(room=lobby, user=root.author, message_id=root.pk, emoji="👍")
    detail = page(admin_client.get(f"/admin/chat/message/{root.pk}/change/"))
    assert "good morning" in detail and "👍 alice" in detail
    root.refresh_from_db()
    assert root.reply_count == 1 and f'<div class="readonly">{root.rev}</div>' in detail
    assert f"/admin/chat/message/{root.pk}/change/" in page(
        admin_client.get(f"/admin/chat/message/{reply['id']}/change/")
    )


def test_admin_search_never_matches_a_direct_message_by_its_text(admin_client, chat_data, direct_chat, alice):
    room, secret = direct_chat
    services.message_send(room=chat_data["lobby"], author=alice, body="party at noon in the lobby")
    _, messages = changelist(admin_client, "/admin/chat/message/?q=party")
    assert [m.body for m in messages] == ["party at noon in the lobby"]
    _, messages = changelist(admin_client, "/admin/chat/message/?q=surprise")
    assert messages == []
    # Found by id, by the conversation's slug, or by author and kind.
    for query in (str(secret["id"]), room.slug, "alice&room__kind__exact=direct"):
        _, messages = changelist(admin_client, f"/admin/chat/message/?q={query}")
        assert [m.pk for m in messages] == [secret["id"]], query
    _, messages = changelist(admin_client, "/admin/chat/message/?room__kind__exact=room")
    assert secret["id"] not in [m.pk for m in messages] and len(messages) == 3


def test_admin_cannot_open_a_direct_conversation_to_others(admin_client, direct_chat, alice, bob, make_user):
    room, _ = direct_chat
    carol = make_user("carol")
    room_page = page(admin_client.get(f"/admin/chat/room/{room.pk}/change/"))
    assert 'name="private"' not in room_page and 'name="slug"' not in room_page
    memberships = list(Membership.objects.filter(room=room).order_by("user__username"))
    data = {
        "slug": "now-public",
        "name": "Renamed",
        "topic": "come in",
        "archived": "on",  # `private` left out: unticked
        "memberships-TOTAL_FORMS": "3",
        "memberships-INITIAL_FORMS": "2",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-2-room": str(room.pk),
        "memberships-2-user": str(carol.pk),
        "memberships-2-role": "member",
        "memberships-2-invited": "on",
    }
    for i, membership in enumerate(memberships):
        data.update(
            {
                f"memberships-{i}-id": str(membership.pk),
                f"memberships-{i}-room": str(room.pk),
                f"memberships-{i}-user": str(membership.user_id),
                f"memberships-{i}-role": "moderator",
            }
        )
    response = admin_client.post(f"/admin/chat/room/{room.pk}/change/", data)
    assert response.status_code == 302
    room.refresh_from_db()
    assert (room.slug.startswith("dm-"), room.name, room.topic, room.private) == (True, "alice, bob", "", True)
    assert room.archived  # archiving (closing it for its members) stays possible
    assert sorted(Membership.objects.filter(room=room).values_list("user__username", "role", "invited")) == [
        ("alice", "member", True),
        ("bob", "member", True),
    ]
    # Nor through the membership admin.
    response = admin_client.post(
        "/admin/chat/membership/add/", {"user": carol.pk, "room": room.pk, "role": "member", "invited": "on"}
    )
    assert response.status_code == 200 and not Membership.objects.filter(room=room, user=carol).exists()


def test_admin_archive_rooms_action(admin_client, chat_data, alice_client):
    lobby = chat_data["lobby"]
    response = admin_client.post(
        "/admin/chat/room/",
        {"action": "archive_rooms", "_selected_action": [str(lobby.pk)], "index": "0", "select_across": "0"},
        follow=True,
    )
    assert response.status_code == 200
    assert "Archived 1 room(s)." in page(response)
    lobby.refresh_from_db()
    assert lobby.archived is True
    assert Room.objects.get(slug="staff").archived is False
    # Users notice: the room is gone from their list and its page is 404.
    assert "/rooms/lobby/" not in page(alice_client.get("/"))
    assert alice_client.get("/rooms/lobby/").status_code == 404
    # Memberships stay (the room can be unarchived).
    assert Membership.objects.filter(room=lobby).exists()


def test_admin_needs_staff(alice_client):
    response = alice_client.get("/admin/chat/room/")
    assert response.status_code == 302 and response.url.startswith("/admin/login/")


def test_pages_carry_a_content_security_policy(client):
    response = client.get("/accounts/login/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
