"""The room page in a real browser (Debian's Chromium driven by Playwright) against a real
Daphne worker: two people chat live, and a page that loses its server catches up exactly once."""

import re

from playwright.sync_api import expect

from tests.support.browser import logged_in_page, open_room, send, shown_seqs


def test_two_people_chat_live_and_text_stays_text(browser, server):
    alice = logged_in_page(browser, server, "alice", viewport={"width": 1280, "height": 800})
    bob = logged_in_page(browser, server, "bob", viewport={"width": 390, "height": 844})
    open_room(alice, server, "lobby")
    open_room(bob, server, "lobby")
    expect(alice.locator("#presence li[data-username=bob]")).to_be_visible()

    send(alice, "Hi bob <img src=x onerror=\"document.title='pwned'\">")
    bobs_view = bob.locator("#messages .message[data-author=alice] .body").last
    expect(bobs_view).to_have_text("Hi bob <img src=x onerror=\"document.title='pwned'\">")
    assert bob.locator("#messages img").count() == 0
    assert bob.title() != "pwned"

    bob.locator("#composer-input").fill("line one")
    bob.locator("#composer-input").press("Shift+Enter")
    bob.locator("#composer-input").press_sequentially("line two")
    bob.locator("#composer-input").press("Enter")
    expect(alice.locator("#messages .message[data-author=bob] .body").last).to_have_text("line one\nline two")
    expect(alice.locator("#messages .message.pending")).to_have_count(0)
    assert shown_seqs(alice) == sorted(set(shown_seqs(alice)))
    assert alice.csp_violations == [] and bob.csp_violations == []
    alice.context.close()
    bob.context.close()


def test_page_reconnects_after_a_server_restart_and_shows_every_message_once(browser, server):
    alice = logged_in_page(browser, server, "alice")
    open_room(alice, server, "random")
    send(alice, "before the restart")
    expect(alice.locator("#messages .message:not(.pending) .body", has_text="before the restart")).to_have_count(1)

    server.stop_worker()
    expect(alice.locator("#status")).to_have_attribute("data-state", re.compile("reconnecting|connecting|offline"))
    # While the page is cut off: alice writes (it waits as pending), and bob's messages are
    # stored by another process, so only a catch-up from the database can show them.
    send(alice, "written while offline")
    expect(alice.locator("#messages .message.pending")).to_have_count(1)
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from chat import services; from chat.models import Room;"
        "bob = get_user_model().objects.get(username='bob'); room = Room.objects.get(slug='random');"
        "[services.message_send(room=room, author=bob, body=f'missed {i}') for i in range(3)]",
    )
    server.start_worker()

    expect(alice.locator("#status")).to_have_attribute("data-state", "live", timeout=30_000)
    for i in range(3):
        expect(alice.locator("#messages .message .body", has_text=f"missed {i}")).to_have_count(1)
    expect(alice.locator("#messages .message .body", has_text="written while offline")).to_have_count(1)
    expect(alice.locator("#messages .message.pending")).to_have_count(0)
    seqs = shown_seqs(alice)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"gap or duplicate in {seqs}"
    stored = server.manage(
        "shell",
        "-c",
        "from chat.models import Message; print(Message.objects.filter(body='written while offline').count())",
    )
    assert stored.stdout.strip().splitlines()[-1] == "1"  # resent with the same client_id: stored once
    alice.context.close()


def test_unread_counts_and_older_history_on_scroll(browser, server):
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from chat import services;"
        "bob = get_user_model().objects.get(username='bob');"
        "room = services.room_create(slug='history', name='History');"
        "[services.message_send(room=room, author=bob, body=f'old message {i}') for i in range(1, 131)];"
        "from chat.models import Membership;"
        "Membership.objects.update_or_create(room=room, user=get_user_model().objects.get(username='carol'),"
        " defaults={'last_read_seq': 10})",
    )
    carol = logged_in_page(browser, server, "carol")
    badge = carol.locator(".room-card[data-slug=history], [data-slug=history]").first
    expect(badge).to_contain_text("120")

    open_room(carol, server, "history")
    messages = carol.locator("#messages .message[data-seq]")
    expect(messages).to_have_count(120)  # back to the first unread message
    expect(messages.last.locator(".body")).to_have_text("old message 130")
    carol.locator("#messages").evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    expect(messages).to_have_count(130)  # a scroll to the top loads an older page
    expect(messages.first.locator(".body")).to_have_text("old message 1")
    assert shown_seqs(carol) == list(range(1, 131))

    # Back at the newest message, the page marks the room read.
    carol.locator("#messages").evaluate(
        "el => { el.scrollTop = el.scrollHeight; el.dispatchEvent(new Event('scroll')); }"
    )
    carol.wait_for_timeout(1500)  # the read marker is debounced by a second
    carol.goto(server.base_url + "/")
    expect(carol.locator("[data-slug=history]").first).not_to_contain_text("120")
    carol.context.close()


def test_typing_presence_and_signing_out_elsewhere(browser, server):
    alice = logged_in_page(browser, server, "alice")
    bob = logged_in_page(browser, server, "bob")
    open_room(alice, server, "lobby")
    open_room(bob, server, "lobby")
    expect(alice.locator("#presence li[data-username=bob]")).to_have_count(1)

    bob.locator("#composer-input").press_sequentially("I am wri")
    expect(alice.locator("#typing")).to_contain_text("bob")
    expect(alice.locator("#typing")).not_to_contain_text("bob", timeout=6000)  # it fades out

    # Bob logs out in another tab: his room page is told, and stops reconnecting.
    other_tab = bob.context.new_page()
    other_tab.goto(server.base_url + "/")
    other_tab.get_by_role("button", name=re.compile("log out", re.I)).click()
    expect(bob.locator("#signed-out")).to_be_visible()
    expect(bob.locator("#status")).to_have_attribute("data-state", "offline")
    expect(alice.locator("#presence li[data-username=bob]")).to_have_count(0)
    alice.context.close()
    bob.context.close()


def test_admin_works_under_the_content_security_policy(browser, server):
    admin = logged_in_page(browser, server, "admin")
    admin.goto(server.base_url + "/admin/chat/room/")
    expect(admin.get_by_role("link", name="lobby")).to_be_visible()
    admin.locator("#action-toggle").check()  # the admin's own script selects every row
    expect(admin.locator(".action-counter")).to_contain_text(re.compile(r"(\d+) of \1 selected"))
    admin.goto(server.base_url + "/admin/chat/room/add/")
    expect(admin.get_by_role("heading", name="Add room")).to_be_visible()
    assert admin.csp_violations == []
    admin.context.close()


def test_password_change_in_another_tab_keeps_this_browser_chatting(browser, server):
    """Changing the password gives this browser a new session cookie: the room page's socket
    is closed (4401), reconnects once with the new cookie, and goes on working."""
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model;"
        "get_user_model().objects.create_user('dora', password='chatdemo')",
    )
    dora = logged_in_page(browser, server, "dora")
    open_room(dora, server, "lobby")
    dora.evaluate("window.firstSocket = window.chat.socket()")
    settings_tab = dora.context.new_page()
    settings_tab.goto(server.base_url + "/accounts/password_change/")
    settings_tab.get_by_label("Old password").fill("chatdemo")
    settings_tab.get_by_label("New password", exact=True).fill("a-much-better-one-42")
    settings_tab.get_by_label("New password confirmation").fill("a-much-better-one-42")
    settings_tab.get_by_role("button", name="Change password").click()
    expect(settings_tab).to_have_url(server.base_url + "/accounts/password_change/done/")

    dora.wait_for_function("window.chat.socket() !== window.firstSocket", timeout=10_000)  # it reconnected
    expect(dora.locator("#status")).to_have_attribute("data-state", "live", timeout=15_000)
    send(dora, "still here after the password change")
    expect(dora.locator("#messages .message:not(.pending) .body", has_text="still here after")).to_have_count(1)
    expect(dora.locator("#signed-out")).to_be_hidden()
    dora.context.close()


def test_admin_deleting_a_message_removes_it_from_open_pages(browser, server):
    alice = logged_in_page(browser, server, "alice")
    open_room(alice, server, "lobby")
    send(alice, "an oops to moderate")
    mine = alice.locator("#messages .message:not(.pending)", has_text="an oops to moderate")
    expect(mine).to_have_count(1)

    admin = logged_in_page(browser, server, "admin")
    admin.goto(server.base_url + "/admin/chat/message/?q=oops+to+moderate")
    admin.locator("input.action-select").first.check()
    admin.locator("select[name=action]").select_option("delete_messages")
    admin.get_by_role("button", name="Go").click()
    expect(admin.locator(".messagelist")).to_contain_text("Deleted 1 message")

    expect(alice.locator("#messages .message", has_text="an oops to moderate")).to_have_count(0)
    expect(alice.locator("#messages .message.deleted")).not_to_have_count(0)
    alice.context.close()
    admin.context.close()
