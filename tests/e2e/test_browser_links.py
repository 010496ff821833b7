"""The online panel at tablet and phone widths, rooms named in any script, the small layout
items (the Private control, the phone's top bar, the admin's room list), @mention autocomplete
and links to a message, in Debian's Chromium against a real Daphne worker.

Each user logs in once for the module (a context's storage state is reused): every login costs a
PBKDF2 hash."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import django, open_room, send, signed_in_state
from tests.support.daphne_server import DaphneServer

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
TABLET = {"viewport": {"width": 1000, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}


@pytest.fixture(scope="module")
def sessions(browser: Browser, server: DaphneServer) -> dict[str, dict]:
    """Each demo user's signed-in storage state, made by one login."""
    return {name: signed_in_state(browser, server, name) for name in ("alice", "bob", "admin")}


@pytest.fixture
def page_as(browser: Browser, sessions: dict[str, dict]):
    """`page_as("alice", **options)`: a page of a new context signed in as that user."""
    contexts = []

    def make(name: str, **options) -> Page:
        context = browser.new_context(storage_state=sessions[name], **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def screenshot(page: Page, name: str) -> None:
    """For people to look at (test-artifacts/ is git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"links-{name}.png"))


def box(page: Page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def overlaps(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


# ---------------------------------------------------------------- the online panel at 1000 px and below


@pytest.mark.parametrize("options", [TABLET, PHONE], ids=["tablet", "phone"])
def test_the_online_panel_leaves_its_toggle_and_send_reachable_and_closes(page_as, server, options):
    page = page_as("alice", **options)
    open_room(page, server, "lobby")
    toggle = page.locator("#presence-toggle")
    panel = page.locator("#presence-panel")
    expect(panel).to_be_hidden()

    toggle.click()
    expect(panel).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    screenshot(page, f"online-panel-{'phone' if options is PHONE else 'tablet'}")
    shown = box(page, "#presence-panel")
    assert not overlaps(shown, box(page, "#presence-toggle")), "the panel covers its toggle"
    assert not overlaps(shown, box(page, "#composer-send")), "the panel covers Send"
    # What is on top at the middle of Send and of the toggle is Send and the toggle.
    for selector in ("#composer-send", "#presence-toggle"):
        on_top = page.locator(selector).evaluate(
            "el => { const r = el.getBoundingClientRect();"
            " return el.contains(document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2)); }"
        )
        assert on_top, f"{selector} is covered"

    # The toggle closes it again.
    toggle.click()
    expect(panel).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")

    # Escape closes it and gives the focus back to the toggle.
    toggle.click()
    expect(panel).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(toggle).to_be_focused()
    expect(toggle).to_have_attribute("aria-expanded", "false")

    # So does a click (a tap) outside it.
    toggle.click()
    expect(panel).to_be_visible()
    page.locator("#messages").click(position={"x": 20, "y": 20})
    expect(panel).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")

    # Open, Send still sends.
    toggle.click()
    text = f"sent with the panel open at {options['viewport']['width']} px"
    page.locator("#composer-input").fill(text)
    page.locator("#composer-send").click()
    expect(page.locator("#messages .message[data-id]", has_text=text)).to_have_count(1)


# ---------------------------------------------------------------- rooms named in any script


def test_a_room_named_in_chinese_is_created_from_the_form_and_chatted_in(page_as, server):
    page = page_as("alice", **DESKTOP)
    page.goto(server.base_url + "/rooms/new/")
    page.get_by_label("Name").fill("开发组")
    page.get_by_role("button", name="Create room").click()
    expect(page).to_have_url(re.compile(r"/rooms/kai-fa-zu/$"))
    expect(page.locator("#room-name-text")).to_have_text("开发组")
    expect(page).to_have_title(re.compile("^开发组"))
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    expect(page.locator(".sidebar-room.current .sidebar-room-name")).to_have_text("开发组")
    send(page, "你好")

    bob = page_as("bob", **PHONE)
    bob.goto(server.base_url + "/")
    bob.get_by_role("link", name=re.compile("开发组")).click()
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    expect(bob.locator("#messages .message", has_text="你好")).to_have_count(1)
    send(bob, "收到")
    expect(page.locator("#messages .message", has_text="收到")).to_have_count(1)


# ---------------------------------------------------------------- small layout items


def test_the_private_control_is_touch_sized_and_beside_its_label(page_as, server):
    page = page_as("alice", **PHONE)
    page.goto(server.base_url + "/rooms/new/")
    checkbox = page.get_by_role("checkbox", name="Private")
    size = checkbox.bounding_box()
    assert size["width"] >= 24 and size["height"] >= 24, size
    screenshot(page, "room-form-phone")
    label = page.locator("label[for=id_private]").bounding_box()
    # On one line with its label, the box first.
    assert abs((label["y"] + label["height"] / 2) - (size["y"] + size["height"] / 2)) < 4
    assert size["x"] + size["width"] <= label["x"]
    page.locator("label[for=id_private]").click()
    expect(checkbox).to_be_checked()


def test_the_phone_top_bar_is_one_line(page_as, server):
    for name in ("alice", "admin"):  # the admin's bar has one link more
        page = page_as(name, **PHONE)
        page.goto(server.base_url + "/")
        bar = page.locator(".topbar")
        height = bar.bounding_box()["height"]
        line = page.locator(".topbar .brand").bounding_box()["height"]
        assert height < 2 * line + 8, f"{name}'s top bar is {height}px high"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_the_admin_room_list_shows_every_column(page_as, server):
    django(server, "services.direct_open(user=user('alice'), usernames=['bob'])")  # the longest address
    page = page_as("admin", **DESKTOP)
    page.goto(server.base_url + "/admin/chat/room/")
    expect(page.locator("#result_list tbody tr", has_text="dm-")).to_have_count(1)
    header = page.locator("#result_list thead th", has_text="Created at")
    expect(header).to_be_visible()
    results = page.locator("#changelist .results")
    clipped = results.evaluate("el => el.scrollWidth > el.clientWidth")
    assert not clipped, "the room list scrolls sideways"
    right = header.bounding_box()
    assert right["x"] + right["width"] <= 1280


# ---------------------------------------------------------------- links to a message


def test_a_copied_link_opens_an_old_message_with_its_history_and_the_room_stays_live(page_as, server):
    django(
        server,
        """
        room = services.room_create(slug='linked', name='Linked')
        for i in range(1, 11):
            services.message_send(room=room, author=user('bob'), body=f'early {i}')
        """,
    )
    alice = page_as("alice", **DESKTOP)
    alice.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    open_room(alice, server, "linked")
    old = alice.locator("#messages .message", has_text="early 5")
    old.hover()
    old.get_by_role("button", name="Copy link to message").click()
    expect(alice.locator(".toast")).to_contain_text("Link copied")
    link = alice.evaluate("navigator.clipboard.readText()")
    message_id = old.get_attribute("data-id")
    assert link == f"{server.base_url}/rooms/linked/?message={message_id}"
    alice.goto(server.base_url + "/")  # an open page of the room would read what arrives next

    # 210 newer messages: the linked one is far older than the page's first screenful.
    django(
        server,
        """
        room = Room.objects.get(slug='linked')
        for i in range(1, 211):
            services.message_send(room=room, author=user('bob'), body=f'later {i}')
        """,
    )
    read_before = django(
        server, "print(Membership.objects.get(room__slug='linked', user__username='alice').last_read_seq)"
    )

    reader = alice.context.new_page()
    reader.goto(link)
    target = reader.locator(f'#messages .message[data-id="{message_id}"]')
    expect(target).to_be_visible()
    expect(target).to_have_class(re.compile(r"\bmessage-linked\b"))
    expect(target).to_be_in_viewport()
    screenshot(reader, "linked-message")
    expect(reader.locator("#messages .message", has_text="early 4")).to_have_count(1)
    expect(reader.locator("#messages .message", has_text="early 6")).to_have_count(1)
    expect(reader.locator("#messages .message", has_text="later 210")).to_have_count(1)  # the newest, below

    # Live messages still arrive, at the bottom.
    bob = page_as("bob", **DESKTOP)
    open_room(bob, server, "linked")
    send(bob, "live after the link")
    expect(reader.locator("#messages .message", has_text="live after the link")).to_have_count(1)
    assert reader.locator("#messages .message").last.text_content().find("live after the link") >= 0
    expect(reader.locator("#status")).to_have_attribute("data-state", "live")
    # Opened far up, the page has not marked the room read.
    read_after = django(
        server, "print(Membership.objects.get(room__slug='linked', user__username='alice').last_read_seq)"
    )
    assert read_after == read_before

    # Scrolling down fills the stretch between the linked message and the newest ones.
    for _ in range(5):
        shown = reader.evaluate(
            "() => { const gap = document.querySelector('.history-gap'); gap?.scrollIntoView();"
            " return gap ? document.querySelectorAll('#messages .message').length : -1; }"
        )
        if shown < 0:
            break
        reader.wait_for_function(
            "n => !document.querySelector('.history-gap') || document.querySelectorAll('#messages .message').length > n",
            arg=shown,
        )
    expect(reader.locator(".history-gap")).to_have_count(0)
    seqs = [
        int(s)
        for s in reader.locator("#messages .message[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a stretch of messages is missing"
    assert seqs[-1] == 221


# ---------------------------------------------------------------- @mention autocomplete


def test_mention_autocomplete_picks_bob_with_the_keyboard_and_a_click(page_as, server):
    page = page_as("alice", **DESKTOP)
    open_room(page, server, "random")
    box_ = page.locator("#composer-input")
    box_.click()
    page.keyboard.type("hi @bo")
    listbox = page.get_by_role("listbox", name="People to mention")
    expect(listbox).to_be_visible()
    bob = listbox.get_by_role("option", name="@bob")
    expect(bob).to_have_count(1)
    expect(box_).to_have_attribute("aria-controls", listbox.get_attribute("id"))

    # Down and Up move the choice (the text box keeps the focus, pointing at the chosen option).
    options = listbox.get_by_role("option")
    if options.count() > 1:
        page.keyboard.press("ArrowDown")
        expect(options.nth(1)).to_have_attribute("aria-selected", "true")
        page.keyboard.press("ArrowUp")
    expect(bob).to_have_attribute("aria-selected", "true")
    expect(box_).to_have_attribute("aria-activedescendant", bob.get_attribute("id"))
    expect(box_).to_be_focused()
    screenshot(page, "mention-autocomplete")

    # Enter picks (and does not send); the rest of the message follows.
    page.keyboard.press("Enter")
    expect(listbox).to_be_hidden()
    expect(box_).to_have_value("hi @bob ")
    expect(box_).not_to_have_attribute("aria-activedescendant", re.compile(".+"))
    page.keyboard.type("see this")
    page.keyboard.press("Enter")
    sent = page.locator("#messages .message[data-id]", has_text="hi @bob see this")
    expect(sent).to_have_count(1)
    expect(sent.locator(".mention")).to_have_text("@bob")

    # Tab picks too, and no option is ever a Tab stop; Escape closes the list and keeps the text.
    page.keyboard.type("@bo")
    expect(bob).to_be_visible()
    assert listbox.evaluate("el => el.querySelectorAll('[tabindex]').length") == 0
    page.keyboard.press("Tab")
    expect(box_).to_have_value("@bob ")
    expect(box_).to_be_focused()
    page.keyboard.type("and @b")
    expect(bob).to_be_visible()
    page.keyboard.press("Escape")
    expect(listbox).to_be_hidden()
    expect(box_).to_have_value("@bob and @b")

    # A click picks.
    page.keyboard.type("o")
    bob.click()
    expect(box_).to_have_value("@bob and @bob ")
    expect(box_).to_be_focused()


# ---------------------------------------------------------------- accessibility

AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def serious_axe_findings(page: Page) -> list[str]:
    if not AXE_JS.is_file():
        pytest.fail(f"{AXE_JS} is missing: `npm install --no-audit --no-fund` installs it.")
    page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(
        """async () => (await axe.run(document)).violations
            .filter((v) => v.impact === 'serious' || v.impact === 'critical')
            .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)"""
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_new_controls_have_no_serious_accessibility_findings(page_as, server, scheme):
    # The pages' Content-Security-Policy blocks the script axe-core is injected as: bypassed here only.
    page = page_as("alice", **TABLET, color_scheme=scheme, bypass_csp=True)
    open_room(page, server, "lobby")
    page.locator("#presence-toggle").click()
    expect(page.locator("#presence-panel")).to_be_visible()
    page.locator("#composer-input").click()  # closes the panel (a click outside it)
    page.keyboard.type("@bo")
    expect(page.get_by_role("option", name="@bob")).to_be_visible()
    assert serious_axe_findings(page) == []
    page.keyboard.press("Escape")
    page.locator("#presence-toggle").click()
    expect(page.locator("#presence-panel")).to_be_visible()
    assert serious_axe_findings(page) == []

    # A message opened from its link, highlighted.
    page.keyboard.press("Escape")
    send(page, f"linked in {scheme}")
    sent = page.locator("#messages .message[data-id]", has_text=f"linked in {scheme}")
    expect(sent).to_have_count(1)
    page.goto(f"{server.base_url}/rooms/lobby/?message={sent.get_attribute('data-id')}")
    expect(page.locator("#messages .message-linked")).to_have_count(1)
    assert serious_axe_findings(page) == []

    form = page_as("alice", **PHONE, color_scheme=scheme, bypass_csp=True)
    form.goto(server.base_url + "/rooms/new/")
    assert serious_axe_findings(form) == []
