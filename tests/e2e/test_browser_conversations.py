"""Conversations in a real browser (Debian's Chromium) against a real Daphne worker: two people
start a direct conversation, answer in a thread and react, each seeing the other live (the New
message picker, the thread panel and the reaction picker with no serious or critical axe-core
finding); and a page whose connection is lost, or whose live copy of a change is dropped, ends
with the current state of every message without a reload; and formatting cannot be turned
against a reader: the usual cross-site-scripting payloads, sent through every Markdown
construct, stay inert.

Screenshots of the conversation (desktop and phone, light and dark) go to
test-artifacts/screenshots/; with UPDATE_SCREENSHOTS=1 the README's docs/screenshots/
conversation-desktop.png and conversation-phone.png are refreshed from them."""

import json
import os
import re
import shutil
import textwrap
import threading
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.e2e.test_browser_pages import axe_run, describe_violations
from tests.support.browser import django, logged_in_page, open_room, send
from tests.support.daphne_server import DaphneServer

pytestmark = pytest.mark.timeout(90)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
README_SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
CHECKED = {**DESKTOP, "bypass_csp": True}  # axe-core is added as an inline script, which the CSP blocks


def message(page: Page, text: str, *, where: str = "#messages"):
    return page.locator(f"{where} .message[data-id]", has_text=text)


def assert_accessible(page: Page, what: str) -> None:
    """No serious or critical axe-core finding on the page as it stands (`what` is open)."""
    bad = [v for v in axe_run(page)["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe-core, with the {what} open:\n{describe_violations(bad)}"


def test_two_people_start_a_direct_conversation_reply_in_a_thread_and_react(browser, server):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    alice = logged_in_page(browser, server, "alice", **CHECKED)
    bob = logged_in_page(browser, server, "bob", **CHECKED)
    open_room(bob, server, "lobby")  # bob is elsewhere when the conversation starts

    # alice starts it from the room list's "New message", choosing bob in the picker.
    alice.locator("#new-direct").click()
    dialog = alice.locator("#direct-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Find people").fill("bo")
    dialog.locator("label.direct-user", has_text="bob").click()
    assert_accessible(alice, "New message picker")
    dialog.locator("#direct-start").click()
    expect(alice).to_have_url(re.compile(r"/rooms/dm-[0-9a-f]{16}/$"))
    expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    expect(alice.locator("#room-name")).to_contain_text("bob")
    send(alice, "Hi bob, a **quick** question about `deploy.sh`")

    # It appears in bob's sidebar as it arrives, with an unread count, and he opens it.
    item = bob.locator("#sidebar-direct li", has_text="alice")
    expect(item).to_have_count(1)
    expect(item.locator(".badge")).to_contain_text("1")
    item.locator("a").click()
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    first = message(bob, "quick question")
    expect(first.locator(".body strong")).to_have_text("quick")
    expect(first.locator(".body code")).to_have_text("deploy.sh")

    # bob answers in a thread; alice sees the count under her message, then the reply in the panel.
    first.hover()
    first.locator(".reply-button").click()
    expect(bob.locator("#thread-panel")).to_be_visible()
    expect(bob.locator("#thread-input")).to_be_focused()
    bob.locator("#thread-input").fill("Sure, *ask away*")
    bob.locator("#thread-input").press("Enter")
    expect(message(bob, "ask away", where="#thread-messages").locator(".body em")).to_have_text("ask away")
    expect(message(bob, "ask away")).to_have_count(0)  # replies stay out of the room's flow
    assert_accessible(bob, "thread panel")
    summary = message(alice, "quick question").locator(".thread-summary")
    expect(summary).to_contain_text("1 reply")
    summary.click()
    expect(message(alice, "ask away", where="#thread-messages")).to_have_count(1)

    # alice reacts from the picker; bob sees it live, with who reacted, and adds his with one click.
    root = message(alice, "quick question", where="#messages")
    root.hover()
    root.locator(".react-button").click()
    expect(alice.locator("#emoji-picker")).to_be_visible()
    assert_accessible(alice, "reaction picker")
    alice.locator("#emoji-picker").get_by_label("thumbs up").click()
    chip = message(bob, "quick question").locator('.reaction[data-emoji="👍"]')
    expect(chip).to_have_attribute("aria-label", "alice reacted with 👍")
    expect(chip).to_have_attribute("aria-pressed", "false")
    chip.click()
    expect(chip).to_have_attribute("aria-pressed", "true")
    theirs = message(alice, "quick question").locator('.reaction[data-emoji="👍"]')
    expect(theirs).to_have_attribute("aria-label", "alice, bob reacted with 👍")
    expect(theirs.locator(".reaction-count")).to_have_text("2")
    theirs.click()  # and one click takes hers away again
    expect(chip).to_have_attribute("aria-label", "bob reacted with 👍")

    bob.evaluate("document.fonts.ready")
    bob.screenshot(path=SCREENSHOTS / "conversation-desktop-light.png", animations="disabled")
    dm_url = alice.url.split("#")[0]  # without the open thread's #thread-<id>
    alice.context.close()
    bob.context.close()
    _screenshots(browser, server, dm_url)


def _screenshots(browser, server: DaphneServer, dm_url: str) -> None:
    """The conversation with its thread open, as bob sees it: desktop dark, phone light and dark."""
    for name, options in (("desktop", DESKTOP), ("phone", PHONE)):
        for scheme in ("light", "dark"):
            if (name, scheme) == ("desktop", "light"):
                continue  # taken above, mid-conversation
            page = logged_in_page(browser, server, "bob", color_scheme=scheme, reduced_motion="reduce", **options)
            page.goto(dm_url)
            expect(page.locator("#status")).to_have_attribute("data-state", "live")
            message(page, "quick question").locator(".thread-summary").click()
            expect(message(page, "ask away", where="#thread-messages")).to_be_visible()
            page.evaluate("document.fonts.ready")
            page.screenshot(path=SCREENSHOTS / f"conversation-{name}-{scheme}.png", animations="disabled")
            page.context.close()
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SCREENSHOTS / "conversation-desktop-light.png", README_SCREENSHOTS / "conversation-desktop.png")
        shutil.copyfile(SCREENSHOTS / "conversation-phone-dark.png", README_SCREENSHOTS / "conversation-phone.png")


class Link:
    """bob's WebSocket, routed through the test: it can be cut (and kept cut), and a live frame of
    a given type can be lost on the way, as the channel layer may lose it."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.up.set()
        self.drop_next: str | None = None
        self.dropped: list[dict] = []
        self.routes: list[WebSocketRoute] = []

    def route(self, ws: WebSocketRoute) -> None:
        if not self.up.is_set():
            ws.close(code=1011, reason="offline")
            return
        server = ws.connect_to_server()
        self.routes.append(ws)

        def to_page(data: str | bytes) -> None:
            frame = json.loads(data) if isinstance(data, str) else {}
            if self.drop_next and frame.get("type") == self.drop_next:
                self.drop_next = None
                self.dropped.append(frame)
                return
            ws.send(data)

        server.on_message(to_page)

    def cut(self) -> None:
        self.up.clear()
        for ws in self.routes:
            ws.close(code=1011, reason="network lost")
        self.routes.clear()


def react(server: DaphneServer, token: str, path: str, emoji: str) -> None:
    request = urllib.request.Request(
        server.base_url + path,
        data=json.dumps({"emoji": emoji}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_a_page_that_lost_its_connection_or_a_change_shows_the_current_state_without_a_reload(browser, server):
    django(
        server,
        """
        room = services.room_create(slug="converge", name="Converge")
        for body in ("to be edited", "to be deleted", "to be liked", "liked while live"):
            services.message_send(room=room, author=user("alice"), body=body)
        """,
    )
    token = django(server, 'print(services.token_create(user=user("alice"), name="browser test")[1])').strip()
    link = Link()
    bob = logged_in_page(browser, server, "bob", **DESKTOP)
    bob.route_web_socket(re.compile(r"/ws/chat/"), link.route)
    open_room(bob, server, "converge")
    bob.evaluate("window.__sameDocument = true")  # gone if the page reloads
    expect(bob.locator("#messages .message[data-id]")).to_have_count(4)

    link.cut()
    expect(bob.locator("#status")).not_to_have_attribute("data-state", "live")
    django(
        server,
        """
        room = Room.objects.get(slug="converge")
        alice = user("alice")
        ids = {m.body: m.pk for m in Message.objects.filter(room=room)}
        services.message_edit(room=room, author=alice, message_id=ids["to be edited"], body="edited while bob was away")
        services.message_delete_own(room=room, author=alice, message_id=ids["to be deleted"])
        services.reaction_set(room=room, user=alice, message_id=ids["to be liked"], emoji="🎉")
        """,
    )
    link.up.set()  # the network is back: the page reconnects by itself and catches up
    expect(bob.locator("#status")).to_have_attribute("data-state", "live", timeout=20_000)
    expect(message(bob, "edited while bob was away")).to_have_count(1)
    expect(message(bob, "to be edited")).to_have_count(0)
    expect(bob.locator("#messages .message.deleted")).to_have_count(1)
    expect(message(bob, "to be deleted")).to_have_count(0)
    expect(message(bob, "to be liked").locator('.reaction[data-emoji="🎉"]')).to_have_attribute(
        "aria-label", "alice reacted with 🎉"
    )

    # Live again: a reaction whose frame is lost is repaired by the next change's rev. (The changes
    # go through the worker's HTTP API: the test worker's channel layer is in-process, so only
    # what the worker itself stores is announced live.)
    link.drop_next = "message_updated"
    liked = message(bob, "to be liked").get_attribute("data-id")
    other = message(bob, "while live").get_attribute("data-id")
    react(server, token, f"/api/rooms/converge/messages/{liked}/reactions/", "👀")  # lost on the way
    react(server, token, f"/api/rooms/converge/messages/{other}/reactions/", "🚀")  # another message's
    expect(message(bob, "while live").locator('.reaction[data-emoji="🚀"]')).to_have_count(1)
    expect(message(bob, "to be liked").locator('.reaction[data-emoji="👀"]')).to_have_count(1)
    assert [frame["type"] for frame in link.dropped] == ["message_updated"]
    assert link.dropped[0]["message"]["reactions"] == {"🎉": ["alice"], "👀": ["alice"]}
    assert bob.evaluate("window.__sameDocument") is True
    bob.context.close()


# Formatting cannot be turned against a reader ------------------------------------------------

# Each one tries to run `window.__xss = N` (or an alert) through a different construct.
PAYLOADS = [
    "**<img src=x onerror=window.__xss=1>** bold",
    "_<svg onload=window.__xss=2>_ italic",
    "`</code><script>window.__xss=3</script>` inline code",
    "```\n</code></pre><script>window.__xss=4</script>\n```",
    "> <iframe src=javascript:window.__xss=5></iframe> quote",
    "- [list link](javascript:window.__xss=6)\n- <a href=javascript:window.__xss=7>raw</a>",
    "1. [data](data:text/html,<script>window.__xss=8</script>)\n2. [vb](vbscript:msgbox(1))",
    "[entity](&#x6A;avascript:window.__xss=9) and [tab](java\tscript:window.__xss=10)",
    '[title](https://example.com "onmouseover=window.__xss=11") <javascript:window.__xss=12>',
    'https://example.com/"onmouseover="window.__xss=13" bare url',
    "![image](javascript:window.__xss=14) ![pixel](https://example.com/x.png)",
    "<details open ontoggle=window.__xss=15> <style>body{display:none}</style> <form action=javascript:alert(1)>",
    "~~<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=16>~~",
]
ALLOWED_TAGS = {"P", "BR", "STRONG", "EM", "S", "DEL", "CODE", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "A"}


def _post_all(server: DaphneServer, slug: str) -> None:
    code = f"""
    from django.contrib.auth import get_user_model
    from chat import services
    room = services.room_create(slug={slug!r}, name="XSS")
    mallory = get_user_model().objects.get(username="bob")
    for body in {PAYLOADS!r}:
        services.message_send(room=room, author=mallory, body=body)
    """
    server.manage("shell", "--verbosity", "0", "--command", textwrap.dedent(code))


def test_xss_payloads_in_every_formatting_construct_stay_inert(browser, server):
    _post_all(server, "xss")
    page = logged_in_page(browser, server, "alice")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_room(page, server, "xss")
    messages = page.locator("#messages .message[data-id]")
    expect(messages).to_have_count(len(PAYLOADS))
    # Hover and click through everything the payloads could have made active.
    for link in page.locator("#messages a[href]").all():
        link.hover()
    page.locator("#messages").click(position={"x": 5, "y": 5})

    found = page.locator("#messages").evaluate(
        """root => {
          const bodies = [...root.querySelectorAll('.message .body')];
          const inside = bodies.flatMap(b => [...b.querySelectorAll('*')]);
          return {
            xss: window.__xss ?? null,
            tags: [...new Set(inside.map(e => e.tagName))],
            handlers: inside.flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on') || n === 'style' || n === 'src'),
            hrefs: [...root.querySelectorAll('a[href]')].map(a => a.protocol),
            bodies: bodies.length,
          };
        }"""
    )
    assert found["bodies"] >= len(PAYLOADS), found
    assert found["xss"] is None and dialogs == []
    assert set(found["tags"]) <= ALLOWED_TAGS, found["tags"]
    assert found["handlers"] == []
    assert set(found["hrefs"]) <= {"http:", "https:", "mailto:"}, found["hrefs"]
    assert page.csp_violations == []
    # The formatting itself works on the same page: bold, code blocks and the payloads as text.
    expect(page.locator("#messages strong", has_text="<img src=x onerror=window.__xss=1>")).to_have_count(1)
    expect(page.locator("#messages pre code", has_text="<script>window.__xss=4</script>")).to_have_count(1)
    page.context.close()
