"""Room page features in a real browser (Debian's Chromium driven by Playwright) against a real
Daphne worker: editing and deleting your own messages, @mentions, links, date separators, the
"New messages" divider, scrolling, and notifications while the tab is hidden.

Every test uses a room of its own, so the tests do not depend on each other's messages."""

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import Locator, Page, expect

from tests.support.browser import logged_in_page, make_room, open_room, send, shown_seqs

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}


def opacity(locator: Locator) -> str:
    return locator.evaluate("el => getComputedStyle(el).opacity")


def own_message(page: Page, text: str) -> Locator:
    """The element of a message this page sent, once the server has placed it (with its id)."""
    node = page.locator("#messages .message[data-id]:not(.pending):not(.outbox)", has_text=text)
    expect(node).to_have_count(1)
    return page.locator(f'#messages .message[data-id="{node.get_attribute("data-id")}"]')


def scroll_state(page: Page) -> dict:
    return page.locator("#messages").evaluate(
        "el => ({top: el.scrollTop, fromBottom: el.scrollHeight - el.scrollTop - el.clientHeight})"
    )


# ---------------------------------------------------------------- editing and deleting


def test_own_messages_are_edited_inline_and_others_see_the_edit_live(browser, server):
    make_room(server, "edits")
    alice = logged_in_page(browser, server, "alice", **DESKTOP)
    bob = logged_in_page(browser, server, "bob", **PHONE)
    open_room(alice, server, "edits")
    open_room(bob, server, "edits")
    send(bob, "bob was here")
    send(alice, "Helo everyone")
    mine = own_message(alice, "Helo everyone")

    # Others' messages offer a reaction, a thread and their author's name, never Edit or Delete.
    theirs = bob.locator(f'#messages .message[data-id="{mine.get_attribute("data-id")}"]')
    expect(theirs.locator(".body")).to_have_text("Helo everyone")
    expect(theirs.get_by_role("button", name="Reply in thread")).to_have_count(1)
    expect(theirs.get_by_role("button", name=re.compile("^(Edit|Delete) message$"))).to_have_count(0)
    expect(
        alice.locator("#messages .message[data-author=bob]").get_by_role("button", name="Edit message")
    ).to_have_count(0)

    # On a touch phone a message's controls appear when it is tapped (it takes the focus), and
    # are not there to be tapped by mistake before.
    bobs_own = own_message(bob, "bob was here")
    tools = bobs_own.locator(".message-tools")
    assert opacity(tools) == "0" and tools.evaluate("el => getComputedStyle(el).pointerEvents") == "none"
    bobs_own.locator(".body").tap()
    expect(bobs_own).to_be_focused()
    assert opacity(tools) == "1" and tools.evaluate("el => getComputedStyle(el).pointerEvents") == "auto"

    # On the desktop the controls stay out of the way until the message has the keyboard focus:
    # the up and down arrows go from message to message, right into the message reached.
    tools = mine.locator(".message-tools")
    assert opacity(tools) == "0"
    alice.locator("#messages").focus()
    alice.keyboard.press("ArrowUp")
    expect(mine).to_be_focused()
    assert opacity(tools) == "1"
    edit = mine.get_by_role("button", name="Edit message")
    for _ in range(3):  # Add reaction, Reply in thread, Edit
        alice.keyboard.press("ArrowRight")
    expect(edit).to_be_focused()

    # Escape cancels and gives the focus back to Edit.
    alice.keyboard.press("Enter")
    editor = mine.get_by_role("textbox", name="Edit message")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Helo everyone")
    alice.keyboard.type(" (typo)")
    alice.keyboard.press("Escape")
    expect(editor).to_have_count(0)
    expect(edit).to_be_focused()
    expect(mine.locator(".body")).to_have_text("Helo everyone")

    # An empty edit is refused in place.
    alice.keyboard.press("Enter")
    alice.keyboard.press("Control+A")
    alice.keyboard.press("Delete")
    alice.keyboard.press("Enter")
    expect(mine.locator(".editor-error")).to_contain_text("cannot be empty")

    # Shift+Enter is a new line, Enter saves.
    alice.keyboard.type("Hello everyone,")
    alice.keyboard.press("Shift+Enter")
    alice.keyboard.type("second line")
    alice.keyboard.press("Enter")
    expect(editor).to_have_count(0)
    expect(mine.locator(".body")).to_have_text("Hello everyone,\nsecond line")
    expect(mine.locator(".edited")).to_have_text("(edited)")
    expect(edit).to_be_focused()

    # Bob sees the edit live.
    expect(theirs.locator(".body")).to_have_text("Hello everyone,\nsecond line")
    expect(theirs.locator(".edited")).to_be_visible()
    assert alice.csp_violations == [] and bob.csp_violations == []
    alice.context.close()
    bob.context.close()


def test_deleting_an_own_message_asks_first_and_removes_it_for_everyone(browser, server):
    make_room(server, "deletes")
    alice = logged_in_page(browser, server, "alice", **DESKTOP)
    bob = logged_in_page(browser, server, "bob", **DESKTOP)
    open_room(alice, server, "deletes")
    open_room(bob, server, "deletes")
    send(alice, "a message to take back")
    mine = own_message(alice, "a message to take back")
    theirs = bob.locator(f'#messages .message[data-id="{mine.get_attribute("data-id")}"]')
    expect(theirs.locator(".body")).to_have_text("a message to take back")

    mine.hover()  # with a mouse, hovering shows the controls
    assert opacity(mine.locator(".message-tools")) == "1"
    delete = mine.get_by_role("button", name="Delete message")
    delete.click()
    dialog = alice.get_by_role("dialog", name="Delete this message?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("a message to take back")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice first

    alice.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(delete).to_be_focused()
    expect(mine).not_to_have_class(re.compile(r"\bdeleted\b"))

    alice.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(dialog).to_be_hidden()
    for node in (mine, theirs):
        expect(node).to_have_class(re.compile(r"\bdeleted\b"))
        expect(node.locator(".body")).to_have_text("message deleted")
        expect(node.get_by_role("button")).to_have_count(0)
    expect(alice.locator("#messages")).to_be_focused()
    alice.context.close()
    bob.context.close()


def test_a_delete_confirmed_right_after_cancelling_still_deletes(browser, server):
    """The dialog's close event is queued: cancelling and at once asking again (Escape, Enter)
    can deliver the first close after the dialog is open again. It must not eat the second."""
    make_room(server, "deletes-again")
    alice = logged_in_page(browser, server, "alice", **DESKTOP)
    open_room(alice, server, "deletes-again")
    send(alice, "gone on the second try")
    mine = own_message(alice, "gone on the second try")
    mine.hover()
    mine.get_by_role("button", name="Delete message").click()
    dialog = alice.get_by_role("dialog", name="Delete this message?")
    expect(dialog).to_be_visible()
    # Close and reopen in one task, so the first close event is handled while it is open again.
    alice.evaluate(
        """() => {
          const dialog = document.querySelector('dialog[open]');
          dialog.close();
          document.activeElement?.blur();
          [...document.querySelectorAll('#messages .message.own .delete-button')].pop().click();
        }"""
    )
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(mine).to_have_class(re.compile(r"\bdeleted\b"))
    expect(mine.locator(".body")).to_have_text("message deleted")
    alice.context.close()


# ---------------------------------------------------------------- mentions and links


def test_mentions_are_highlighted_and_only_web_and_mail_addresses_become_links(browser, server):
    make_room(server, "mentions")
    alice = logged_in_page(browser, server, "alice", **DESKTOP)
    bob = logged_in_page(browser, server, "bob", **PHONE)
    open_room(alice, server, "mentions")
    open_room(bob, server, "mentions")
    hostile = (
        "@alice see https://example.com/docs?q=1&x=(y). Not links: javascript:alert(1) "
        '<a href="javascript:alert(2)">click</a> [x](javascript:alert(3)) data:text/html,<script>alert(4)</script> '
        "JAVASCRIPT://%0aalert(5) cc @carol, @alice2 and carol@example.com"
    )
    send(bob, hostile)
    message = alice.locator("#messages .message[data-author=bob]").last
    expect(message.locator(".body")).to_have_text(hostile)  # every character shown as text

    expect(message).to_have_class(re.compile(r"\bmentioned\b"))
    expect(message.locator(".mention-flag")).to_have_text("mentions you")
    box = message.locator(".mention-flag").bounding_box()
    assert box is None or (box["width"] <= 1 and box["height"] <= 1)  # read out, not shown
    assert message.evaluate("el => getComputedStyle(el).backgroundColor") != message.evaluate(
        "el => getComputedStyle(el.parentElement).backgroundColor"
    )
    expect(message.locator(".mention-me")).to_have_text("@alice")
    expect(message.locator(".mention")).to_have_text(["@alice", "@carol", "@alice2"])

    # The server's Markdown makes the http(s) address and the e-mail address links, nothing else.
    links = message.locator(".body a")
    expect(links).to_have_text(["https://example.com/docs?q=1&x=(y)", "carol@example.com"])
    assert links.first.get_attribute("href") == "https://example.com/docs?q=1&x=(y)"
    assert links.nth(1).get_attribute("href") == "mailto:carol@example.com"
    for index in range(2):
        assert links.nth(index).get_attribute("target") == "_blank"
        assert set(links.nth(index).get_attribute("rel").split()) == {"noopener", "noreferrer", "nofollow"}
    unsafe = "#messages script, #messages img, #messages iframe, #messages [onerror], a[href^='javascript' i], a[href^='data' i]"
    assert alice.locator(unsafe).count() == 0

    # The sender's own copy has the link too, and is not marked as mentioning anyone.
    own = bob.locator("#messages .message[data-author=bob]").last
    expect(own.locator(".body a").first).to_have_attribute("href", "https://example.com/docs?q=1&x=(y)")
    expect(own).not_to_have_class(re.compile(r"\bmentioned\b"))
    assert bob.locator(unsafe).count() == 0
    assert alice.csp_violations == [] and bob.csp_violations == []
    alice.context.close()
    bob.context.close()


# ---------------------------------------------------------------- date separators, unread divider


def day_label(day: date, today: date) -> str:
    if day == today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][day.weekday()]
    month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][day.month - 1]
    return f"{weekday} {day.day} {month} {day.year}"


def test_date_separators_name_each_day_in_local_time(browser, server):
    zone = "Pacific/Auckland"  # far from UTC: the days are the reader's, not the server's
    today = datetime.now(ZoneInfo(zone)).date()
    old, yesterday = today - timedelta(days=3), today - timedelta(days=1)
    make_room(
        server,
        "days",
        messages=4,
        read={"carol": 4},
        then=f"""
        from datetime import datetime
        from zoneinfo import ZoneInfo
        zone = ZoneInfo({zone!r})
        Message.objects.filter(room=room, seq__in=[1, 2]).update(created_at=datetime({old.year}, {old.month}, {old.day}, 9, tzinfo=zone))
        # 00:30 local is still the previous day in UTC: only local time puts it on "Yesterday".
        Message.objects.filter(room=room, seq=3).update(created_at=datetime({yesterday.year}, {yesterday.month}, {yesterday.day}, 0, 30, tzinfo=zone))
        """,
    )
    carol = logged_in_page(browser, server, "carol", timezone_id=zone, **PHONE)
    open_room(carol, server, "days")
    expect(carol.locator("#messages .message")).to_have_count(4)
    layout = carol.locator("#messages").evaluate(
        """el => [...el.children].filter(n => !n.classList.contains('history-marker'))
                 .map(n => n.getAttribute('role') === 'separator' ? n.getAttribute('aria-label') : n.dataset.seq)"""
    )
    assert layout == [day_label(old, today), "1", "2", "Yesterday", "3", "Today", "4"]
    expect(carol.get_by_role("separator", name="Yesterday")).to_have_text("Yesterday")

    send(carol, "still today")  # a new message of the same day adds no separator
    expect(carol.locator("#messages .message:not(.pending)", has_text="still today")).to_have_count(1)
    expect(carol.locator("#messages .day-separator")).to_have_count(3)
    carol.context.close()


def test_new_messages_divider_marks_the_first_unread_message(browser, server):
    # The first message after admin's marker is admin's own: the divider goes after it.
    make_room(
        server,
        "unread",
        messages=40,
        read={"carol": 10, "alice": 40},
        then="""
        services.message_send(room=room, author=user('admin'), body='admin wrote this')
        services.message_send(room=room, author=user('bob'), body='bob answered')
        Membership.objects.update_or_create(room=room, user=user('admin'), defaults={'last_read_seq': 40})
        Membership.objects.filter(room=room, user=user('alice')).update(last_read_seq=42)
        """,
    )
    carol = logged_in_page(browser, server, "carol", **PHONE)
    open_room(carol, server, "unread")
    divider = carol.get_by_role("separator", name="New messages")
    expect(divider).to_have_count(1)
    assert divider.evaluate("el => el.nextElementSibling.dataset.seq") == "11"
    expect(divider).to_be_in_viewport()
    assert scroll_state(carol)["fromBottom"] > 100  # it scrolled up to the divider
    expect(carol.locator("#new-messages")).to_be_visible()
    carol.context.close()

    admin = logged_in_page(browser, server, "admin", **DESKTOP)
    open_room(admin, server, "unread")
    divider = admin.get_by_role("separator", name="New messages")
    expect(divider).to_have_count(1)
    assert divider.evaluate("el => el.nextElementSibling.dataset.seq") == "42"
    expect(divider).to_be_in_viewport()
    admin.context.close()

    alice = logged_in_page(browser, server, "alice", **DESKTOP)  # has read everything
    open_room(alice, server, "unread")
    expect(alice.locator("#messages .message")).to_have_count(42)
    expect(alice.get_by_role("separator", name="New messages")).to_have_count(0)
    assert scroll_state(alice)["fromBottom"] < 2
    alice.context.close()


# ---------------------------------------------------------------- scrolling


def test_new_messages_follow_at_the_bottom_and_leave_a_reader_in_place(browser, server):
    make_room(server, "scrolling", messages=40, read={"alice": 40})
    alice = logged_in_page(browser, server, "alice", **DESKTOP)
    bob = logged_in_page(browser, server, "bob", **DESKTOP)
    open_room(alice, server, "scrolling")
    open_room(bob, server, "scrolling")
    expect(alice.locator("#messages .message")).to_have_count(40)
    assert scroll_state(alice)["fromBottom"] < 2

    send(bob, "one more at the bottom")
    expect(alice.locator("#messages .message", has_text="one more at the bottom")).to_be_in_viewport()
    assert scroll_state(alice)["fromBottom"] < 2  # followed
    expect(alice.locator("#new-messages")).to_be_hidden()

    alice.locator("#messages").evaluate("el => { el.scrollTop = 400; }")  # reading older messages
    alice.wait_for_timeout(100)
    before = scroll_state(alice)
    send(bob, "arrives while alice reads")
    expect(alice.locator("#messages .message", has_text="arrives while alice reads")).to_have_count(1)
    expect(alice.locator("#new-messages")).to_be_visible()
    assert scroll_state(alice)["top"] == before["top"]  # the viewport did not move
    expect(alice.locator("#messages .message", has_text="arrives while alice reads")).not_to_be_in_viewport()

    alice.locator("#new-messages").click()
    expect(alice.locator("#messages .message", has_text="arrives while alice reads")).to_be_in_viewport()
    assert scroll_state(alice)["fromBottom"] < 2
    expect(alice.locator("#new-messages")).to_be_hidden()
    alice.context.close()
    bob.context.close()


def test_older_history_loads_on_scroll_up_without_moving_the_reader(browser, server):
    make_room(server, "anchored", messages=130, read={"carol": 130})
    carol = logged_in_page(browser, server, "carol", **PHONE)
    open_room(carol, server, "anchored")
    messages = carol.locator("#messages .message[data-seq]")
    expect(messages).to_have_count(50)
    # Scroll up near the top, and note which message is at the top of the view and where.
    seen = carol.locator("#messages").evaluate(
        """el => {
            el.scrollTop = 40;
            const top = el.getBoundingClientRect().top;
            const first = [...el.querySelectorAll('.message')].find(m => m.getBoundingClientRect().bottom > top);
            return {seq: first.dataset.seq, offset: first.getBoundingClientRect().top - top};
        }"""
    )
    expect(messages).to_have_count(100)
    after = carol.locator(f'#messages .message[data-seq="{seen["seq"]}"]').evaluate(
        "m => m.getBoundingClientRect().top - m.parentElement.getBoundingClientRect().top"
    )
    assert abs(after - seen["offset"]) <= 1, (seen, after)
    assert scroll_state(carol)["top"] > 1000
    assert shown_seqs(carol) == list(range(31, 131))
    carol.context.close()


# ---------------------------------------------------------------- hidden tab: notifications and title badge

NOTIFICATION_STUB = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  window.__permissionRequests = 0;
  class RecordingNotification {
    constructor(title, options = {}) { window.__notifications.push({ title, body: options.body }); }
    close() {}
    static get permission() { return Real.permission; }
    static requestPermission() { window.__permissionRequests += 1; return Real.requestPermission(); }
  }
  window.Notification = RecordingNotification;
  let hidden = false;
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
  Object.defineProperty(Document.prototype, 'visibilityState', {
    configurable: true, get: () => (hidden ? 'hidden' : 'visible'),
  });
  window.__setHidden = (value) => { hidden = value; document.dispatchEvent(new Event('visibilitychange')); };
})();
"""


def test_hidden_tab_gets_notifications_and_an_unread_count_in_the_title(browser, server):
    # Alice has read everything elsewhere: the title counts this room's messages only (mentions and
    # direct messages waiting in other rooms would count too).
    make_room(
        server,
        "notify",
        then="""
        for membership in Membership.objects.filter(user=user('alice')).select_related('room'):
            services.read_mark(room=membership.room, user=user('alice'), seq=membership.room.last_seq)
        """,
    )
    alice = logged_in_page(browser, server, "alice", permissions=["notifications"], **DESKTOP)
    alice.add_init_script(NOTIFICATION_STUB)
    bob = logged_in_page(browser, server, "bob", **PHONE)
    open_room(alice, server, "notify")
    open_room(bob, server, "notify")
    expect(alice).to_have_title("Notify · Channels Chat")
    notify = alice.get_by_role("button", name="Notify me")
    expect(notify).to_have_attribute("aria-pressed", "false")
    assert alice.evaluate("window.__permissionRequests") == 0  # never asked on page load

    notify.click()
    expect(notify).to_have_attribute("aria-pressed", "true")
    assert alice.evaluate("window.__permissionRequests") == 1

    send(bob, "while you look")  # a visible tab gets neither
    expect(alice.locator("#messages .message", has_text="while you look")).to_have_count(1)

    alice.evaluate("window.__setHidden(true)")
    send(bob, "first while away")
    send(bob, "second while away")
    expect(alice).to_have_title("(2) Notify · Channels Chat")
    # Notifications follow the room's activity frames, which may arrive just after the messages.
    alice.wait_for_function("window.__notifications.length >= 2", timeout=10_000)
    assert alice.evaluate("window.__notifications") == [
        {"title": "bob in Notify", "body": "first while away"},
        {"title": "bob in Notify", "body": "second while away"},
    ]
    alice.evaluate("window.__setHidden(false)")
    expect(alice).to_have_title("Notify · Channels Chat")
    assert alice.csp_violations == []
    alice.context.close()
    bob.context.close()
