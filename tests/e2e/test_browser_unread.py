"""Live unread state in a real browser (Debian's Chromium through Playwright) against a real Daphne
worker: the sidebar's and the room list's badges and the tab title follow what happens in rooms the
page does not show, mentions count apart and notify from any room, a read on one tab clears the
badge on the other, your own and deleted messages never count, a muted room stays quiet and one
set to mentions notifies only for those (and a direct conversation for every message). The room
page keeps all of it up to date over its one socket.

alice writes through the HTTP API and a token socket (as a bot or another device would), bob
watches in Chromium. Every test uses rooms of its own."""

import json
import re
import textwrap
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from websockets.sync.client import connect

from tests.support.browser import logged_in_page, open_room
from tests.support.daphne_server import DaphneServer

DESKTOP = {"viewport": {"width": 1280, "height": 800}}

# Records each `new Notification(...)`, and says "Notify me" was chosen earlier on this browser.
NOTIFICATION_STUB = """
(() => {
  window.__notifications = [];
  const Real = window.Notification;
  class RecordingNotification {
    constructor(title, options = {}) { window.__notifications.push({ title, body: options.body ?? null }); }
    close() {}
    static get permission() { return Real.permission; }
    static requestPermission() { return Real.requestPermission(); }
  }
  window.Notification = RecordingNotification;
  localStorage.setItem('chat.notify', 'on');
})();
"""


@pytest.fixture(scope="module")
def logins(browser: Browser, server: DaphneServer) -> dict[str, Any]:
    """bob's browser session (logged in once for the module) and alice's and bob's API tokens."""
    page = logged_in_page(browser, server, "bob")
    state = page.context.storage_state()
    page.context.close()
    tokens = {name: server.manage("create_token", name).stdout.strip().splitlines()[-1] for name in ("alice", "bob")}
    return {"bob": state, "tokens": tokens}


def bob_page(browser: Browser, logins: dict[str, Any]) -> Page:
    context = browser.new_context(storage_state=logins["bob"], permissions=["notifications"], **DESKTOP)
    context.set_default_timeout(10_000)
    context.add_init_script(NOTIFICATION_STUB)
    page = context.new_page()
    page.csp_violations = []  # anything the Content-Security-Policy blocks is a console error
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))
    return page


def make_rooms(server: DaphneServer, *slugs: str) -> None:
    """New rooms; and bob has read everything else (what earlier tests left him does not count)."""
    code = (
        "from django.contrib.auth.models import User\n"
        "from chat import services\n"
        "from chat.models import Membership, Room\n"
        "for room in Room.objects.filter(private=False):\n"
        "    Membership.objects.update_or_create(\n"
        "        room=room, user=User.objects.get(username='bob'), defaults={'last_read_seq': room.last_seq})\n"
    ) + "".join(f"services.room_create(slug={slug!r}, name={slug.title()!r})\n" for slug in slugs)
    server.manage("shell", "--verbosity", "0", "--command", textwrap.dedent(code))


def post(server: DaphneServer, token: str, slug: str, body: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server.base_url}/api/rooms/{slug}/messages/",
        data=json.dumps({"body": body}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def set_level(server: DaphneServer, token: str, slug: str, level: str) -> None:
    """bob's notification setting for a room, from another device (HTTP): his open pages follow."""
    request = urllib.request.Request(
        f"{server.base_url}/api/rooms/{slug}/notify/",
        data=json.dumps({"level": level}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["level"] == level


def delete(server: DaphneServer, token: str, slug: str, message_id: int) -> None:
    """alice deletes her message from another device (a token socket)."""
    with connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        for frame in (
            {"type": "join", "room": slug, "ref": "j"},
            {"type": "delete", "room": slug, "id": message_id, "ref": "d"},
        ):
            ws.send(json.dumps(frame))
            while json.loads(ws.recv(timeout=10)).get("ref") != frame["ref"]:
                pass


def sidebar_badge(page: Page, slug: str, kind: str = ".badge"):
    return page.locator(f'.sidebar-rooms li[data-slug="{slug}"] {kind}')


def notifications(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("window.__notifications")


def test_a_room_elsewhere_counts_live_in_the_sidebar_the_room_list_and_the_title(browser, server, logins):
    make_rooms(server, "u-lobby", "u-random")
    alice = logins["tokens"]["alice"]
    bob = bob_page(browser, logins)
    sockets: list[str] = []  # every WebSocket the room page opens, from its first request on
    bob.on("websocket", lambda ws: sockets.append(ws.url))
    open_room(bob, server, "u-random")
    rooms = bob.context.new_page()
    rooms.goto(server.base_url + "/")
    card = rooms.locator('.room-card[data-slug="u-lobby"]')
    expect(card).to_have_attribute("data-unread", "0")  # the page's socket has the counts
    expect(sidebar_badge(bob, "u-lobby")).to_have_count(0)

    post(server, alice, "u-lobby", "hello everyone")
    post(server, alice, "u-lobby", "anyone there?")
    expect(sidebar_badge(bob, "u-lobby")).to_have_text("2 unread")
    expect(card.locator(".badge")).to_have_text("2 unread")
    expect(sidebar_badge(bob, "u-lobby", ".badge-mention")).to_have_count(0)
    expect(bob).to_have_title("U-Random · Channels Chat")  # plain messages elsewhere: the badge only
    assert notifications(bob) == [
        {"title": "alice in U-Lobby", "body": "hello everyone"},
        {"title": "alice in U-Lobby", "body": "anyone there?"},
    ]

    post(server, alice, "u-lobby", "@bob can you look at this?")
    expect(sidebar_badge(bob, "u-lobby")).to_have_text("3 unread")
    expect(sidebar_badge(bob, "u-lobby", ".badge-mention")).to_have_text("@1 mention")
    expect(card.locator(".badge-mention")).to_have_text("@1 mention")
    expect(bob).to_have_title("(1) U-Random · Channels Chat")
    expect(rooms).to_have_title("(1) Rooms · Channels Chat")
    assert notifications(bob)[-1] == {"title": "alice in U-Lobby", "body": "@bob can you look at this?"}
    assert bob.csp_violations == []
    # All of it came over the page's one socket, the one its own room uses: none per sidebar room.
    assert len(sockets) == 1, sockets
    bob.context.close()


def test_reading_on_one_tab_clears_the_badge_on_the_other(browser, server, logins):
    make_rooms(server, "r-lobby", "r-random")
    bob = bob_page(browser, logins)
    open_room(bob, server, "r-random")
    post(server, logins["tokens"]["alice"], "r-lobby", "@bob one for you")
    expect(sidebar_badge(bob, "r-lobby")).to_have_text("1 unread")
    expect(bob).to_have_title("(1) R-Random · Channels Chat")

    other = bob.context.new_page()
    open_room(other, server, "r-lobby")
    expect(other.locator("#messages .message", has_text="one for you")).to_have_count(1)
    expect(sidebar_badge(bob, "r-lobby")).to_have_count(0)
    expect(sidebar_badge(bob, "r-lobby", ".badge-mention")).to_have_count(0)
    expect(bob).to_have_title("R-Random · Channels Chat")
    bob.context.close()


def test_own_messages_from_the_api_and_deleted_ones_do_not_count(browser, server, logins):
    make_rooms(server, "o-lobby", "o-random")
    tokens = logins["tokens"]
    bob = bob_page(browser, logins)
    open_room(bob, server, "o-lobby")  # he has been there: writing there reads it, from a script too
    open_room(bob, server, "o-random")
    first = post(server, tokens["alice"], "o-lobby", "first")
    post(server, tokens["alice"], "o-lobby", "@bob second")
    expect(sidebar_badge(bob, "o-lobby")).to_have_text("2 unread")

    delete(server, tokens["alice"], "o-lobby", first["id"])
    expect(sidebar_badge(bob, "o-lobby")).to_have_text("1 unread")
    for n in range(3):  # bob, from a script: his own messages are never unread to him
        post(server, tokens["bob"], "o-lobby", f"bob's own {n}")
    post(server, tokens["alice"], "o-lobby", "third")
    expect(sidebar_badge(bob, "o-lobby")).to_have_text("1 unread")  # his post read the room
    bob.reload()
    expect(sidebar_badge(bob, "o-lobby")).to_have_text("1 unread")  # as the server counts
    bob.context.close()


def test_a_muted_room_never_notifies_and_one_set_to_mentions_only_for_a_mention(browser, server, logins):
    make_rooms(server, "m-lobby", "m-random", "m-mentions")
    bob = bob_page(browser, logins)
    open_room(bob, server, "m-lobby")
    level = bob.get_by_label("Notifications for this room")
    expect(level).to_have_value("all")
    level.select_option("mute")
    open_room(bob, server, "m-random")
    expect(bob.locator('.sidebar-rooms li[data-slug="m-lobby"]')).to_have_attribute("data-notify", "mute")

    post(server, logins["tokens"]["alice"], "m-lobby", "@bob are you there?")
    badge = sidebar_badge(bob, "m-lobby")
    expect(badge).to_have_text(re.compile(r"^1 unread"))
    expect(badge).to_have_class(re.compile("badge-muted"))
    expect(sidebar_badge(bob, "m-lobby", ".badge-mention")).to_have_count(0)
    expect(bob).to_have_title("M-Random · Channels Chat")
    assert notifications(bob) == []

    set_level(server, logins["tokens"]["bob"], "m-mentions", "mentions")
    expect(bob.locator('.sidebar-rooms li[data-slug="m-mentions"]')).to_have_attribute("data-notify", "mentions")
    post(server, logins["tokens"]["alice"], "m-mentions", "lunch at noon")
    expect(sidebar_badge(bob, "m-mentions")).to_have_text("1 unread")  # counted, but no notification
    assert notifications(bob) == []
    post(server, logins["tokens"]["alice"], "m-mentions", "@bob lunch at noon?")
    expect(sidebar_badge(bob, "m-mentions", ".badge-mention")).to_have_text("@1 mention")
    assert notifications(bob) == [{"title": "alice in M-Mentions", "body": "@bob lunch at noon?"}]
    bob.goto(f"{server.base_url}/rooms/m-lobby/")
    expect(bob.get_by_label("Notifications for this room")).to_have_value("mute")
    bob.context.close()


def test_a_direct_message_counts_as_a_mention_and_notifies_from_any_room(browser, server, logins):
    make_rooms(server, "d-random")
    bob = bob_page(browser, logins)
    open_room(bob, server, "d-random")
    request = urllib.request.Request(
        f"{server.base_url}/api/direct/",
        data=json.dumps({"users": ["bob"]}).encode(),
        headers={"Authorization": f"Bearer {logins['tokens']['alice']}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        slug = json.load(response)["room"]
    post(server, logins["tokens"]["alice"], slug, "are you free at three?")
    item = bob.locator(f'#sidebar-direct li[data-slug="{slug}"]')
    expect(item.locator(".badge")).to_have_text("1 mention")
    expect(bob).to_have_title("(1) D-Random · Channels Chat")
    assert notifications(bob) == [{"title": "alice: are you free at three?", "body": None}]
    post(server, logins["tokens"]["alice"], slug, "or at four")  # the conversation is watched now
    expect(item.locator(".badge")).to_have_text("2 mentions")
    expect(bob).to_have_title("(2) D-Random · Channels Chat")
    assert len(notifications(bob)) == 2
    # Set to mentions, a direct conversation still notifies: each of its messages is one.
    set_level(server, logins["tokens"]["bob"], slug, "mentions")
    expect(item).to_have_attribute("data-notify", "mentions")
    post(server, logins["tokens"]["alice"], slug, "or at five")
    expect(item.locator(".badge")).to_have_text("3 mentions")
    assert notifications(bob)[-1] == {"title": "alice: or at five", "body": None}
    bob.context.close()
