"""The room page's flow in a real browser (Debian's Chromium driven by Playwright) against a real
Daphne worker: the "New messages" line and button, consecutive messages grouped by author, message
tools on a phone, the banner and the reconnect after an outage, and the keyboard (initial focus,
one Tab stop for the message list, Up to edit your last message).

Every test uses a room of its own; each user logs in once for the module."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser_pages import SCREENSHOTS, axe_run, describe_violations
from tests.support.browser import logged_in_page, make_room, open_room, send
from tests.support.daphne_server import DaphneServer

pytestmark = pytest.mark.timeout(90)

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
CHECKED = {**DESKTOP, "bypass_csp": True}  # axe-core is added as an inline script
TABLET = {"viewport": {"width": 1000, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}


@pytest.fixture(scope="module")
def pages(browser, server):
    """`pages(user, **context_options)`: a new page signed in as `user` (one login per user)."""
    states: dict[str, dict] = {}
    opened: list = []

    def open_page(user: str, **options) -> Page:
        if user not in states:
            first = logged_in_page(browser, server, user, **DESKTOP)
            states[user] = first.context.storage_state()
            first.context.close()
        context = browser.new_context(storage_state=states[user], **options)
        context.set_default_timeout(10_000)
        opened.append(context)
        return context.new_page()

    yield open_page
    for context in opened:
        context.close()


def divider_seq(page: Page) -> str:
    divider = page.get_by_role("separator", name="New messages")
    expect(divider).to_have_count(1)
    return divider.evaluate("el => el.nextElementSibling.dataset.seq")


def scroll_to_top_until_loaded(page: Page, seq: int) -> None:
    for _ in range(10):
        if page.locator(f'#messages .message[data-seq="{seq}"]').count():
            return
        page.locator("#messages").evaluate("el => { el.scrollTop = 200; el.scrollTop = 0; }")
        page.wait_for_timeout(150)
    expect(page.locator(f'#messages .message[data-seq="{seq}"]')).to_have_count(1)


def shown(locator) -> bool:
    """Seen by a sighted reader: laid out, not hidden, not transparent, bigger than a pixel."""
    return locator.evaluate(
        """el => {
            const box = el.getBoundingClientRect();
            return box.width > 1 && box.height > 1
                && el.checkVisibility({ opacityProperty: true, visibilityProperty: true });
        }"""
    )


def focused(page: Page) -> str:
    return page.evaluate(
        """() => {
            const e = document.activeElement;
            if (!e || e === document.body) return 'body';
            if (e.id) return `#${e.id}`;
            if (e.classList.contains('message')) return `message ${e.dataset.seq}`;
            const label = e.getAttribute('aria-label') || e.textContent.trim().slice(0, 30);
            const inList = e.closest('#messages') ? 'in list: ' : '';
            return `${inList}${e.tagName.toLowerCase()} "${label}"`;
        }"""
    )


def eventually(page: Page, check, timeout_ms: int = 5000) -> None:
    """Wait until `check()` is true (for what `expect` has no assertion for)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not check():
        assert time.monotonic() < deadline, "the page never got there"
        page.wait_for_timeout(50)


def serious_violations(page: Page) -> list[dict]:
    return [v for v in axe_run(page)["violations"] if v["impact"] in ("serious", "critical")]


# ---------------------------------------------------------------- the "New messages" line and button


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1280", "390"])
def test_new_messages_line_sits_above_the_first_of_120_unread_even_after_older_ones_load(pages, server, size):
    slug = f"backlog-{size['viewport']['width']}"
    # 200 messages; carol read 80 of them: the first unread is the 81st, two pages back.
    make_room(server, slug, messages=200, read={"carol": 80})
    carol = pages("carol", **size)
    open_room(carol, server, slug)
    expect(carol.locator('#messages .message[data-seq="81"]')).to_have_count(1)
    assert divider_seq(carol) == "81"
    expect(carol.get_by_role("separator", name="New messages")).to_be_in_viewport()
    expect(carol.locator("#new-messages")).to_be_visible()  # 119 more unread below

    scroll_to_top_until_loaded(carol, 30)  # older, already read messages come in above
    assert divider_seq(carol) == "81"
    # The line starts a new group: bob's name shows again under it.
    assert author_shown(carol, "message 81") and not author_shown(carol, "message 80")
    carol.context.close()


def test_new_messages_button_shows_only_for_unseen_new_messages_below(pages, server):
    make_room(server, "button", messages=60, read={"alice": 60})
    alice = pages("alice", **DESKTOP)
    bob = pages("bob", **DESKTOP)
    open_room(alice, server, "button")
    open_room(bob, server, "button")
    button = alice.locator("#new-messages")
    expect(button).to_be_hidden()  # nothing is new

    alice.locator("#messages").evaluate("el => { el.scrollTop = el.scrollHeight - el.clientHeight - 600; }")
    # alice's own message, sent from another tab while she reads older ones: nothing new to her.
    other_tab = alice.context.new_page()
    open_room(other_tab, server, "button")
    send(other_tab, "written in my other tab")
    expect(alice.locator("#messages .message", has_text="written in my other tab")).to_have_count(1)
    alice.wait_for_timeout(300)
    expect(button).to_be_hidden()

    send(bob, "bob writes while alice reads above")
    expect(alice.locator("#messages .message", has_text="bob writes while alice reads above")).to_have_count(1)
    expect(button).to_be_visible()
    # Scrolling down to it by hand is seeing it.
    alice.locator("#messages").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(button).to_be_hidden()

    alice.locator("#messages").evaluate("el => { el.scrollTop = el.scrollHeight - el.clientHeight - 600; }")
    send(bob, "and once more")
    expect(button).to_be_visible()
    button.click()
    expect(alice.locator("#messages .message", has_text="and once more")).to_be_in_viewport()
    expect(button).to_be_hidden()
    alice.context.close()
    bob.context.close()


# ---------------------------------------------------------------- grouping


def author_shown(page: Page, text: str) -> bool:
    node = page.locator("#messages .message").filter(has=page.get_by_text(text, exact=True)).last
    return shown(node.locator(".author")) and shown(node.locator(".avatar"))


def test_consecutive_messages_by_one_person_form_one_group(pages, server):
    # bob: 60 messages a second apart (the first twelve before the first page), then one 15 minutes
    # later, then carol; a day earlier, two of bob's under their own day.
    make_room(
        server,
        "grouping",
        messages=60,
        read={"alice": 60},
        then="""
        now = timezone.now()
        for m in Message.objects.filter(room=room):
            Message.objects.filter(pk=m.pk).update(created_at=now - timedelta(minutes=30, seconds=-m.seq))
        later = services.message_send(room=room, author=user('bob'), body='after a coffee')[0]
        Message.objects.filter(pk=later['id']).update(created_at=now - timedelta(minutes=15))
        services.message_send(room=room, author=user('carol'), body='carol chimes in')
        """,
    )
    alice = pages("alice", **CHECKED)
    bob = pages("bob", **DESKTOP)
    open_room(alice, server, "grouping")
    open_room(bob, server, "grouping")
    assert author_shown(alice, "message 13")  # the first on the page
    for text in ("message 14", "message 60"):
        assert not author_shown(alice, text), f"{text} repeats bob's name and avatar"
    assert author_shown(alice, "after a coffee")  # a gap of a quarter of an hour
    assert author_shown(alice, "carol chimes in")  # another author

    # Live: bob's two messages in a row are one group; alice's next starts her own.
    send(bob, "bob live one")
    send(bob, "bob live two")
    expect(alice.locator("#messages .message", has_text="bob live two")).to_have_count(1)
    assert author_shown(alice, "bob live one")
    assert not author_shown(alice, "bob live two")
    send(alice, "alice answers")
    expect(alice.locator("#messages .message.own:not(.pending)", has_text="alice answers")).to_have_count(1)
    assert author_shown(alice, "alice answers")
    send(alice, "alice again")
    expect(alice.locator("#messages .message.own:not(.pending)", has_text="alice again")).to_have_count(1)
    assert not author_shown(alice, "alice again")

    # Deleting the group's first message: the next one shows who wrote it.
    first = bob.locator("#messages .message", has_text="bob live one")
    first.hover()
    first.get_by_role("button", name="Delete message").click()
    bob.locator("#delete-dialog").get_by_role("button", name="Delete").click()
    expect(alice.locator("#messages .message.deleted")).to_have_count(1)
    eventually(alice, lambda: author_shown(alice, "bob live two"))

    # Older history prepended: message 13 now follows message 12 by bob, a second apart.
    scroll_to_top_until_loaded(alice, 1)
    eventually(alice, lambda: not author_shown(alice, "message 13"))
    assert author_shown(alice, "message 1")

    # The time of a grouped message shows at its side on hover.
    grouped = alice.locator("#messages .message").filter(has=alice.get_by_text("message 12", exact=True))
    grouped.scroll_into_view_if_needed()
    assert not shown(grouped.locator(".time"))
    grouped.hover()
    eventually(alice, lambda: shown(grouped.locator(".time")))
    bad = serious_violations(alice)
    assert not bad, describe_violations(bad)
    alice.context.close()
    bob.context.close()


def test_a_day_separator_starts_a_new_group(pages, server):
    make_room(
        server,
        "grouping-days",
        messages=3,
        read={"alice": 3},
        then="""
        yesterday = timezone.now() - timedelta(days=1)
        Message.objects.filter(room=room, seq__lte=2).update(created_at=yesterday)
        """,
    )
    alice = pages("alice", **DESKTOP)
    open_room(alice, server, "grouping-days")
    expect(alice.locator("#messages .message")).to_have_count(3)
    assert not author_shown(alice, "message 2")
    assert author_shown(alice, "message 3")
    alice.context.close()


# ---------------------------------------------------------------- a phone's message tools


def test_on_a_phone_only_the_tapped_message_shows_its_tools(pages, server):
    make_room(server, "phone-tools")
    alice = pages("alice", **PHONE)
    open_room(alice, server, "phone-tools")
    for i in range(4):
        send(alice, f"own message {i}")
    expect(alice.locator("#messages .message.own[data-id]:not(.pending)")).to_have_count(4)
    edits = alice.locator("#messages .message .edit-button")
    expect(edits).to_have_count(4)
    # Neither shown nor taking room on any of them: the line above a message's text is its name's.
    assert [shown(edit) for edit in edits.all()] == [False] * 4, "Edit shows on every own message"
    for meta in alice.locator("#messages .message .meta").all():
        heights = meta.evaluate("el => [el.offsetHeight, el.querySelector('.author').offsetHeight]")
        assert heights[0] <= heights[1] + 2, f"invisible tools make the name's line {heights[0]} px high"

    alice.locator("#messages .message .body", has_text="own message 1").tap()
    assert [shown(edits.nth(i)) for i in range(4)] == [False, True, False, False]
    # The tools stay with the message tapped last, also while the composer has the focus.
    alice.locator("#composer-input").tap()
    assert [shown(edits.nth(i)) for i in range(4)] == [False, True, False, False]
    alice.locator("#messages .message", has_text="own message 1").get_by_role("button", name="Edit message").tap()
    expect(alice.get_by_role("textbox", name="Edit message")).to_be_focused()
    alice.context.close()


# ---------------------------------------------------------------- an outage


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1280", "390"])  # the banner on the widest and narrowest
def test_an_outage_shows_a_banner_with_retry_and_the_page_is_live_within_a_second_of_the_worker(pages, server, size):
    slug = f"outage-{size['viewport']['width']}"
    make_room(server, slug)
    alice = pages("alice", **size, bypass_csp=True)  # axe-core is added as an inline script
    open_room(alice, server, slug)
    alice.evaluate(
        """() => {
            const status = document.getElementById('status');
            new MutationObserver(() => {
                if (status.dataset.state === 'live') window.liveAt = Date.now();
            }).observe(status, { attributes: true });
            // Every socket the page opens from now on, and what a click on Retry now did: whether
            // an attempt was waiting for its turn then, and how many sockets the click opened.
            const sockets = [];
            const Real = window.WebSocket;
            window.WebSocket = class extends Real {
                constructor(...args) { super(...args); sockets.push(this); }
            };
            const onRetry = (event) => event.target.closest('.outage-retry');
            window.addEventListener('click', (event) => {
                if (!onRetry(event)) return;
                const waiting = sockets.length > 0 && sockets.at(-1).readyState === Real.CLOSED;
                window.retryClick = { waiting, before: sockets.length };
            }, true);  // before the button's own listener
            window.addEventListener('click', (event) => {
                if (!onRetry(event)) return;
                const { waiting, before } = window.retryClick;
                window.retryClick = { waiting, opened: sockets.length - before };
            });  // after it
        }"""
    )
    server.stop_worker()
    try:
        check_outage(alice, server)
    finally:
        if server.process is None:
            server.start_worker()
    alice.context.close()


def check_outage(alice: Page, server: DaphneServer) -> None:
    banner = alice.locator("#outage-banner")
    expect(banner).to_be_visible()
    expect(banner.get_by_role("alert")).to_contain_text("Connection lost")
    retry = banner.get_by_role("button", name="Retry now")
    expect(retry).to_be_in_viewport(ratio=1)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    alice.screenshot(path=SCREENSHOTS / f"outage-{alice.viewport_size['width']}.png")
    bad = serious_violations(alice)
    assert not bad, describe_violations(bad)
    # The composer keeps working: the message waits until the connection is back.
    send(alice, "written during the outage")
    expect(alice.locator("#messages .message.pending", has_text="written during the outage")).to_have_count(1)
    # Retry now tries at once: the click itself opens a socket, where the page would otherwise wait
    # out the delay (0.5 to 1 s by now). It has nothing to do while an attempt is under way (a few
    # milliseconds each, the port being closed): a click that lands then is made again.
    for _ in range(3):
        retry.click()
        click = alice.evaluate("window.retryClick")
        if click["waiting"]:
            break
    assert click == {"waiting": True, "opened": 1}
    expect(banner).to_be_visible()

    alice.evaluate("window.liveAt = null")
    server.start_worker()  # returns once the worker answers /healthz
    back_at = time.time() * 1000
    expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    waited = alice.evaluate("window.liveAt") - back_at
    assert waited < 1500, f"live again {waited:.0f} ms after the worker came back"
    expect(banner).to_be_hidden()
    expect(alice.locator("#messages .message:not(.pending)", has_text="written during the outage")).to_have_count(1)


# ---------------------------------------------------------------- the keyboard


def test_keyboard_starts_in_the_composer_and_the_message_list_is_one_tab_stop(pages, server):
    make_room(server, "keys", messages=5, read={"alice": 5})
    alice = pages("alice", **CHECKED)
    open_room(alice, server, "keys")
    for i in range(3):
        send(alice, f"alice {i}")
    expect(alice.locator("#messages .message.own[data-id]:not(.pending)")).to_have_count(3)
    alice.reload()
    expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    expect(alice.locator("#composer-input")).to_be_focused()

    # A skip link, next to the one to the content, leads to the message box.
    alice.locator(".skip-link").first.focus()
    alice.keyboard.press("Tab")
    assert focused(alice) == "#skip-to-composer"
    alice.keyboard.press("Enter")
    assert focused(alice) == "#composer-input"

    # From the composer back into the list: one stop, then out of it.
    alice.keyboard.press("Shift+Tab")
    assert focused(alice) == "#messages"
    alice.keyboard.press("ArrowUp")
    assert focused(alice) == "message 8"
    alice.keyboard.press("ArrowUp")
    assert focused(alice) == "message 7"
    alice.keyboard.press("Tab")
    assert focused(alice) == "#composer-input", "Tab from a message stays in the list"
    alice.keyboard.press("Shift+Tab")
    assert focused(alice) == "message 7"  # back to where the reader was
    alice.keyboard.press("Shift+Tab")
    assert not focused(alice).startswith(("message", "in list", "#messages")), focused(alice)

    # A message's tools: from the message, with the right arrow, without Tab stops of their own.
    alice.locator("#messages .message", has_text="alice 1").focus()
    stops = []
    for _ in range(6):
        alice.keyboard.press("ArrowRight")
        stops.append(focused(alice))
    assert 'in list: button "Edit message"' in stops, stops
    while focused(alice) != 'in list: button "Edit message"':
        alice.keyboard.press("ArrowLeft")
    alice.keyboard.press("Enter")
    expect(alice.get_by_role("textbox", name="Edit message")).to_be_focused()
    alice.keyboard.press("Escape")
    expect(alice.get_by_role("textbox", name="Edit message")).to_have_count(0)

    # Up in the empty composer edits the last message of alice's; Escape comes back.
    alice.locator("#composer-input").focus()
    alice.keyboard.press("ArrowUp")
    editor = alice.get_by_role("textbox", name="Edit message")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("alice 2")
    alice.keyboard.press("Escape")
    expect(editor).to_have_count(0)
    expect(alice.locator("#composer-input")).to_be_focused()
    alice.keyboard.press("ArrowUp")
    alice.keyboard.press("Control+a")
    alice.keyboard.type("alice 2, edited")
    alice.keyboard.press("Enter")
    expect(alice.locator("#messages .message.own", has_text="alice 2, edited")).to_have_count(1)
    expect(alice.locator("#composer-input")).to_be_focused()
    bad = serious_violations(alice)
    assert not bad, describe_violations(bad)
    alice.context.close()


def test_on_a_phone_the_room_does_not_open_the_keyboard(pages, server):
    make_room(server, "keys-phone", messages=2, read={"alice": 2})
    alice = pages("alice", **PHONE)
    open_room(alice, server, "keys-phone")
    alice.wait_for_timeout(200)
    assert focused(alice) != "#composer-input"
    alice.context.close()


def test_tab_count_to_the_composer_from_the_top_is_small(pages, server):
    make_room(server, "keys-count", messages=30, read={"alice": 30})
    alice = pages("alice", **TABLET)
    open_room(alice, server, "keys-count")
    alice.locator(".skip-link").first.focus()
    stops = []
    for _ in range(40):
        alice.keyboard.press("Tab")
        stops.append(focused(alice))
        if stops[-1] == "#composer-input":
            break
    assert stops[-1] == "#composer-input"
    assert stops[0] == "#skip-to-composer"
    in_list = [stop for stop in stops if stop.startswith(("message", "in list", "#messages"))]
    assert in_list == ["#messages"], f"the message list is not one Tab stop: {stops}"
    alice.context.close()
