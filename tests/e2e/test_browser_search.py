"""The search box of every signed-in page, in Debian's Chromium against a real Daphne worker:
Ctrl+K and `/` reach it, Enter searches (over the room page's socket, over HTTP on the room
list), every match is in <mark>, a result opens its message in its room with the history around
it, Escape closes, "More results" pages further back, and nothing matching says so.

Each user logs in once for the module (a context's storage state is reused)."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import django, open_room, signed_in_state
from tests.support.daphne_server import DaphneServer

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True, "color_scheme": "dark"}


@pytest.fixture(scope="module")
def sessions(browser: Browser, server: DaphneServer) -> dict[str, dict]:
    return {name: signed_in_state(browser, server, name) for name in ("alice", "bob")}


@pytest.fixture
def page_as(browser: Browser, sessions: dict[str, dict]):
    contexts = []

    def make(name: str, **options) -> Page:
        context = browser.new_context(storage_state=sessions[name], **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def screenshot(page: Page, name: str) -> None:
    """For people to look at (test-artifacts/ is git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"search-{name}.png"))


def post(server: DaphneServer, room: str, author: str, *bodies: str) -> list[int]:
    """Messages stored as `author` in `room`, in order; their ids."""
    out = django(
        server,
        f"room = Room.objects.get(slug={room!r})\n"
        f"for body in {list(bodies)!r}:\n"
        f"    print(services.message_send(room=room, author=user({author!r}), body=body)[0]['id'])",
    )
    return [int(line) for line in out.split()]


def test_ctrl_k_finds_a_chinese_word_marks_it_and_opens_the_message_in_its_room(page_as, server):
    # The message is well above the newest page of the room.
    target = post(server, "lobby", "alice", "明天的会议改到三点", *(f"filler {i}" for i in range(60)))[0]

    bob = page_as("bob", **DESKTOP)
    open_room(bob, server, "random")
    bob.keyboard.press("Control+k")
    box = bob.get_by_role("searchbox", name="Search messages")
    expect(box).to_be_focused()
    box.press_sequentially("会议")
    box.press("Enter")

    results = bob.locator("#search-results .search-result")
    expect(results).to_have_count(1)
    result = results.first
    expect(result.locator("mark")).to_have_text(["会议"])
    expect(result.locator(".search-result-body")).to_have_text("明天的会议改到三点")
    expect(result.locator(".search-result-room")).to_have_text("#Lobby")  # as the sidebar names it
    expect(result.locator(".search-result-author")).to_have_text("alice")
    expect(result.locator("time")).not_to_have_text("")
    screenshot(bob, "desktop")

    result.get_by_role("link").click()
    expect(bob).to_have_url(f"{server.base_url}/rooms/lobby/?message={target}")
    linked = bob.locator(f"#messages .message[data-id='{target}']")
    expect(linked).to_have_class(re.compile(r"\bmessage-linked\b"))
    expect(linked).to_be_in_viewport()
    expect(linked.locator(".body")).to_have_text("明天的会议改到三点")
    assert not bob.errors


def test_slash_on_the_room_list_every_match_marked_escape_and_no_match(page_as, server):
    post(server, "random", "alice", "Deploy the DEPLOY script, then deploy again")
    page = page_as("bob", **DESKTOP)
    page.goto(server.base_url + "/")
    page.locator("body").press("/")
    box = page.get_by_role("searchbox", name="Search messages")
    expect(box).to_be_focused()
    expect(box).to_have_value("")  # the slash focused it, it did not type itself
    box.fill("deploy in:#random")
    box.press("Enter")
    result = page.locator("#search-results .search-result")
    expect(result).to_have_count(1)
    # Every match, in the case it was written, and nothing else.
    expect(result.locator("mark")).to_have_text(["Deploy", "DEPLOY", "deploy"])
    expect(result.locator(".search-result-body")).to_have_text("Deploy the DEPLOY script, then deploy again")

    page.keyboard.press("Escape")
    expect(page.locator("#search-panel")).to_be_hidden()
    expect(box).to_be_focused()

    # A direct conversation is named by the people in it, as on the page.
    django(
        server,
        "room, _ = services.direct_open(user=user('alice'), usernames=['bob'])\n"
        "services.message_send(room=room, author=user('alice'), body='the kumquat tart recipe')",
    )
    page.reload()
    box.fill("kumquat")
    box.press("Enter")
    expect(page.locator("#search-results .search-result-room")).to_have_text(["with alice"])

    box.fill("zebra-quartz-nothing")
    box.press("Enter")
    expect(page.locator("#search-panel")).to_be_visible()
    expect(page.locator("#search-empty")).to_have_text("No messages match")
    expect(page.locator("#search-results .search-result")).to_have_count(0)
    assert not page.errors


def test_the_slash_still_types_in_the_composer_and_markup_in_a_body_stays_text(page_as, server):
    post(server, "lobby", "alice", "<b>bold?</b> needle <img src=x onerror=alert(1)>")
    page = page_as("bob", **DESKTOP)
    open_room(page, server, "lobby")
    composer = page.locator("#composer-input")
    composer.click()
    composer.press("/")
    expect(composer).to_have_value("/")
    expect(page.get_by_role("searchbox", name="Search messages")).not_to_be_focused()
    composer.fill("")

    page.keyboard.press("Control+k")
    box = page.get_by_role("searchbox", name="Search messages")
    box.fill("NEEDLE")
    box.press("Enter")
    result = page.locator("#search-results .search-result", has_text="needle")
    expect(result).to_have_count(1)
    expect(result.locator(".search-result-body")).to_have_text("<b>bold?</b> needle <img src=x onerror=alert(1)>")
    assert result.locator("b, img").count() == 0
    expect(result.locator("mark")).to_have_text(["needle"])


def test_more_results_pages_back_and_the_phone_panel_fits(page_as, server):
    post(server, "random", "alice", *(f"pagination probe {i:02d}" for i in range(25)))
    page = page_as("bob", **PHONE)
    page.goto(server.base_url + "/")
    box = page.get_by_role("searchbox", name="Search messages")
    box.tap()
    box.fill("pagination probe")
    box.press("Enter")
    results = page.locator("#search-results .search-result")
    expect(results).to_have_count(20)
    expect(results.first.locator(".search-result-body")).to_have_text("pagination probe 24")  # newest first
    panel = page.locator("#search-panel").bounding_box()
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= 390, panel
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "phone-dark")
    more = page.get_by_role("button", name="More results")
    more.click()
    expect(results).to_have_count(25)
    expect(results.last.locator(".search-result-body")).to_have_text("pagination probe 00")
    expect(more).to_be_hidden()
    bodies = results.locator(".search-result-body").all_text_contents()
    assert bodies == [f"pagination probe {i:02d}" for i in range(24, -1, -1)]


# Frames of type `search` the page sends are dropped on their way (as on a socket that is going).
DROP_SEARCH_FRAMES = """(() => {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (window.dropSearch && typeof data === 'string' && data.includes('"type":"search"')) return;
    return send.call(this, data);
  };
})();"""


def test_the_room_page_asks_over_its_socket_and_over_http_when_no_answer_comes(page_as, server):
    post(server, "lobby", "alice", "the quince jam is ready")
    page = page_as("bob", **DESKTOP)
    page.add_init_script(DROP_SEARCH_FRAMES)
    over_http = []
    page.on("request", lambda request: "/api/search/" in request.url and over_http.append(request.url))
    open_room(page, server, "lobby")
    box = page.get_by_role("searchbox", name="Search messages")
    box.fill("quince")
    box.press("Enter")
    expect(page.locator("#search-results .search-result")).to_have_count(1)
    assert over_http == []  # the socket answered

    page.evaluate("window.dropSearch = true")
    box.fill("quince jam")
    box.press("Enter")
    expect(page.locator("#search-status")).to_have_text("Searching…")
    expect(page.locator("#search-results mark")).to_have_text(["quince jam"], timeout=12_000)
    assert len(over_http) == 1 and "q=quince+jam" in over_http[0]
