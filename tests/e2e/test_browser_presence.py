"""Presence in a large room, in a real browser: with CHAT_PRESENCE_LIST_MAX at 2, three people
online is a large room. The page shows "N online" from the server's count, a capped list with a
control that loads the rest, and applies the changes live."""

import json
import re

import pytest
from playwright.sync_api import WebSocketRoute, expect

from tests.support.browser import logged_in_page, make_room, open_room
from tests.support.daphne_server import DaphneServer


@pytest.fixture(scope="module")
def server():
    with DaphneServer(env={"CHAT_PRESENCE_LIST_MAX": "2", "CHAT_PRESENCE_BATCH_SECONDS": "0.3"}) as daphne:
        make_room(daphne, "crowd")
        yield daphne


def names(page):
    return page.locator("#presence li.presence-user").evaluate_all("items => items.map(i => i.dataset.username)")


def test_a_large_room_shows_the_count_a_capped_list_and_live_changes(browser, server):
    pages = {}
    for name in ("bob", "carol"):
        pages[name] = logged_in_page(browser, server, name)
        open_room(pages[name], server, "crowd")
    alice = logged_in_page(browser, server, "alice")
    open_room(alice, server, "crowd")

    # Three online, two names in `joined`: the joiner first, then the first in order.
    expect(alice.locator("#presence-online")).to_have_text("3")
    expect(alice.locator("#presence-count-panel")).to_have_text("3")
    expect(alice.locator(".presence-summary")).to_have_text("3 online")
    expect(alice.locator("#presence li.presence-user")).to_have_count(2)
    assert sorted(names(alice)) == ["alice", "bob"]
    more = alice.locator("#presence-more")
    expect(more).to_be_visible()
    more.click()  # the `online` frame: the names after the last one listed
    expect(alice.locator("#presence li.presence-user")).to_have_count(3)
    expect(more).to_be_hidden()

    # Someone comes: a change frame adds them and the count.
    admin = logged_in_page(browser, server, "admin")
    open_room(admin, server, "crowd")
    expect(alice.locator("#presence li[data-username=admin]")).to_have_count(1)
    expect(alice.locator("#presence-online")).to_have_text("4")
    expect(alice.locator("#presence-count")).to_have_text("4")

    # Someone goes: removed, count down.
    pages["bob"].close()
    expect(alice.locator("#presence li[data-username=bob]")).to_have_count(0)
    expect(alice.locator("#presence-online")).to_have_text("3")

    # Back at the threshold: the whole list again.
    pages["carol"].close()
    expect(alice.locator("#presence-online")).to_have_text("2")
    expect(alice.locator("#presence li.presence-user")).to_have_count(2)
    assert sorted(names(alice)) == ["admin", "alice"]
    expect(more).to_be_hidden()


def test_a_list_older_than_the_one_shown_is_ignored(browser, server):
    """Lists announced by different workers can arrive out of order: the page keeps the newest
    (by `version`) instead of showing someone as gone until the next change."""
    make_room(server, "order")
    room_sockets: list[WebSocketRoute] = []  # the page's socket that joined the room
    versions: list[int] = []

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()

        def to_page(data: str | bytes) -> None:
            frame = json.loads(data) if isinstance(data, str) else {}
            if frame.get("type") == "joined" and frame.get("room") == "order":
                versions.append(frame["presence_version"])
                room_sockets.append(ws)
            ws.send(data)

        upstream.on_message(to_page)

    bob = logged_in_page(browser, server, "bob")
    open_room(bob, server, "order")
    alice = logged_in_page(browser, server, "alice")
    alice.route_web_socket(re.compile(r"/ws/chat/"), route)
    open_room(alice, server, "order")
    expect(alice.locator("#presence li.presence-user")).to_have_count(2)
    assert versions, "alice's page joined without a presence_version"
    room_socket = room_sockets[-1]

    stale = {"type": "presence", "room": "order", "users": ["alice"], "version": versions[-1] - 1}
    room_socket.send(json.dumps(stale))
    # Frames reach the page in order: once carol shows, the stale list has been dealt with.
    room_socket.send(json.dumps({"type": "presence", "room": "order", "joined": ["carol"], "online": 3}))
    expect(alice.locator("#presence li[data-username=carol]")).to_have_count(1)
    assert sorted(names(alice)) == ["alice", "bob", "carol"]
    newer = {"type": "presence", "room": "order", "users": ["alice"], "version": versions[-1] + 1}
    room_socket.send(json.dumps(newer))
    expect(alice.locator("#presence li.presence-user")).to_have_count(1)
    bob.context.close()
    alice.context.close()
