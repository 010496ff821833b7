"""Room management in a real browser (Debian's Chromium) against a real Daphne worker: the
room's creator renames it, changes its topic, makes it private and archives it, and a member's
open page follows live; a moderator removes a member, whose page closes the room, and deletes
someone else's message for everyone; an invited person sees the private room appear in their
sidebar; a member leaves a room for good; the dialogs (members, a plain member's too, settings,
the archive and delete confirmations) have no serious or critical axe-core findings; the
terminal client manages a room (members, topic, name, private, archive) and shows a plain member
the server's refusals. And the online list never claims people are there who are not: after a
ban, a sign-out elsewhere or a lost connection, on the page of the person concerned and on
everyone else's."""

import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.support.browser import django, logged_in_page, open_room, send
from tests.support.daphne_server import DaphneServer
from tests.support.terminal import PASSWORD, TIME, finish, output, spawn

pytestmark = pytest.mark.timeout(90)

REPO_ROOT = Path(__file__).resolve().parents[2]
AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
ROOMS = """
alice, bob, carol = user("alice"), user("bob"), user("carol")
for slug, private, members in [
    ("plans", False, [bob]), ("kick", False, []), ("secret", True, []), ("leaving", True, [bob]),
    ("modroom", False, []), ("banroom", False, []), ("signout", False, []), ("lost", False, []),
    ("term", True, []), ("attic", False, []),
]:
    services.room_create(slug=slug, name=slug.title(), private=private, created_by=alice, members=members)
    services.room_enter(slug=slug, user=alice)
"""


@pytest.fixture(scope="module")
def server():
    with DaphneServer() as daphne:
        django(daphne, ROOMS)
        yield daphne


@pytest.fixture(scope="module")
def sessions(browser, server) -> dict[str, dict]:
    """Each person logged in once for the module (a login costs a PBKDF2 hash)."""
    states = {}
    for name in ("alice", "bob", "carol"):
        page = logged_in_page(browser, server, name, **DESKTOP)
        states[name] = page.context.storage_state()
        page.context.close()
    return states


def page_of(browser, server: DaphneServer, sessions, name: str, slug: str | None = None, **options) -> Page:
    context = browser.new_context(storage_state=sessions[name], **DESKTOP, **options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    if slug is None:
        page.goto(server.base_url + "/")
    else:
        open_room(page, server, slug)
    return page


def online(page: Page):
    return page.locator("#presence .presence-user")


def message(page: Page, text: str):
    return page.locator("#messages .message[data-id]", has_text=text)


def axe_run(page: Page) -> list[dict]:
    """axe-core's serious and critical findings on the page as it is."""
    if not AXE_JS.is_file():
        pytest.fail(f"{AXE_JS.relative_to(REPO_ROOT)} is missing: run `npm install --no-audit --no-fund`.")
    page.add_script_tag(path=str(AXE_JS))
    violations = page.evaluate(
        """async () => (await axe.run(document)).violations.map((v) => ({
            id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')),
        }))"""
    )
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def test_the_creator_renames_a_room_changes_its_topic_makes_it_private_and_archives_it_live_on_a_members_page(
    browser, server, sessions
):
    bob = page_of(browser, server, sessions, "bob", "plans")  # invited: he stays when it turns private
    # add_script_tag (axe-core) injects an inline script, which the page's Content-Security-Policy blocks.
    alice = page_of(browser, server, sessions, "alice", "plans", bypass_csp=True)
    elsewhere = page_of(browser, server, sessions, "carol", "lobby")  # plans in her sidebar only
    rooms = page_of(browser, server, sessions, "carol")  # and on her room list
    expect(bob.locator("#settings-open")).to_have_count(0)  # bob is a plain member

    alice.get_by_role("button", name="Settings").click()
    dialog = alice.locator("#settings-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill("Q3 plans")
    dialog.get_by_label("Topic").fill("Ship by Friday")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(alice.locator("#settings-open")).to_be_focused()

    expect(bob.locator("#room-name-text")).to_have_text("Q3 plans")
    expect(bob.locator("#room-topic")).to_have_text("Ship by Friday")
    expect(bob).to_have_title(re.compile("^Q3 plans"))
    assert bob.url.endswith("/rooms/plans/")  # the address stays
    expect(elsewhere.locator('.sidebar-rooms li[data-slug="plans"] .sidebar-room-name')).to_have_text("Q3 plans")
    expect(rooms.locator('.room-card[data-slug="plans"] .room-card-name')).to_have_text("Q3 plans")
    elsewhere.context.close()

    # Private: a tag in the header, live on bob's page too; carol, never invited, loses the room.
    expect(bob.locator("#room-private-tag")).to_be_hidden()
    alice.get_by_role("button", name="Settings").click()
    dialog.get_by_label("Private: only invited members may enter").check()
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(alice.locator("#room-private-tag")).to_be_visible()
    expect(bob.locator("#room-private-tag")).to_be_visible()
    expect(bob.locator("#room-closed")).to_be_hidden()
    rooms.reload()
    expect(rooms.locator(".room-card").first).to_be_visible()
    expect(rooms.locator('.room-card[data-slug="plans"]')).to_have_count(0)
    rooms.context.close()

    alice.get_by_role("button", name="Settings").click()
    expect(dialog.get_by_label("Private: only invited members may enter")).to_be_checked()
    dialog.get_by_label("Name").fill("   ")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator("#settings-error")).to_have_text("Give the room a name.")
    archive = dialog.get_by_role("button", name="Archive room")
    archive.click()
    confirm = dialog.get_by_role("button", name=re.compile("Archive for everyone"))
    expect(confirm).to_be_visible()  # the confirmation step, checked as it stands
    assert axe_run(alice) == []
    confirm.click()
    expect(bob.locator("#room-closed")).to_have_text("This room was archived.")
    expect(online(bob)).to_have_count(0)
    expect(alice.locator("#room-closed")).to_have_text("This room was archived.")
    alice.context.close()
    bob.context.close()


def test_a_moderator_removes_a_member_and_that_members_page_closes_the_room(browser, server, sessions):
    carol = page_of(browser, server, sessions, "carol", "kick")
    alice = page_of(browser, server, sessions, "alice", "kick")
    expect(online(alice)).to_have_count(2)

    alice.get_by_role("button", name="Members").click()
    members = alice.locator("#members-dialog")
    expect(members.locator(".member")).to_have_count(2)
    expect(members.locator(".member", has_text="alice")).to_contain_text("Creator")
    members.get_by_role("button", name="Remove carol from the room").click()
    expect(members.locator(".member")).to_have_count(1)
    expect(members.locator("#members-status")).to_have_text("carol was removed.")

    expect(carol.locator("#room-closed")).to_have_text("You were removed from this room.")
    expect(carol.locator("#composer-input")).to_be_disabled()
    expect(online(carol)).to_have_count(0)
    expect(online(alice)).to_have_text(re.compile("alice"))
    expect(online(alice)).to_have_count(1)
    alice.context.close()
    carol.context.close()


def test_an_invited_person_sees_the_private_room_appear_in_their_sidebar(browser, server, sessions):
    bob = page_of(browser, server, sessions, "bob", "lobby")
    sidebar = bob.locator(".room-sidebar .sidebar-rooms").first
    expect(sidebar.locator("li", has_text="Secret")).to_have_count(0)
    alice = page_of(browser, server, sessions, "alice", "secret")
    alice.get_by_role("button", name="Members").click()
    invite = alice.get_by_label("Invite someone (username)")
    invite.fill("nobody")
    invite.press("Enter")
    expect(alice.locator("#invite-error")).to_have_text("No user 'nobody'.")
    expect(invite).to_have_attribute("aria-invalid", "true")
    invite.fill("bob")
    invite.press("Enter")
    expect(alice.locator("#members-dialog .member", has_text="bob")).to_have_count(1)

    item = sidebar.locator("li", has_text="Secret")
    expect(item).to_have_count(1)
    item.locator("a").click()
    expect(bob).to_have_url(server.base_url + "/rooms/secret/")
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    expect(bob.locator("#room-private-tag")).to_be_visible()
    alice.context.close()
    bob.context.close()


def test_a_member_leaves_a_private_room_for_good(browser, server, sessions):
    bob = page_of(browser, server, sessions, "bob", "leaving", bypass_csp=True)  # for axe-core
    bob.get_by_role("button", name="Members").click()
    # The dialog as a plain member sees it: the list and Leave room, no invite or remove.
    expect(bob.locator("#members-dialog .member")).to_have_count(2)
    expect(bob.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)
    assert axe_run(bob) == []
    bob.get_by_role("button", name="Leave room").click()
    expect(bob).to_have_url(server.base_url + "/")
    expect(bob.locator("main").get_by_role("link", name="Leaving")).to_have_count(0)
    response = bob.goto(server.base_url + "/rooms/leaving/")
    assert response is not None and response.status == 403
    bob.context.close()


def test_a_moderator_deletes_someone_elses_message_and_it_disappears_live(browser, server, sessions):
    bob = page_of(browser, server, sessions, "bob", "modroom")
    send(bob, "cheap watches here")
    expect(message(bob, "cheap watches")).to_have_count(1)
    expect(message(bob, "cheap watches").locator(".delete-button")).to_be_attached()
    alice = page_of(browser, server, sessions, "alice", "modroom", bypass_csp=True)  # for axe-core
    spam = message(alice, "cheap watches")
    spam.hover()
    spam.locator(".delete-button").click()
    dialog = alice.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#delete-dialog-preview")).to_have_text("cheap watches here")
    assert axe_run(alice) == []
    dialog.get_by_role("button", name="Delete").click()
    expect(message(bob, "cheap watches")).to_have_count(0)
    expect(message(alice, "cheap watches")).to_have_count(0)
    # bob is no moderator: alice's messages have no Delete for him.
    send(alice, "house rules")
    theirs = message(bob, "house rules")
    expect(theirs).to_have_count(1)
    expect(theirs.locator(".delete-button")).to_be_hidden()
    alice.context.close()
    bob.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_members_and_settings_dialogs_have_no_serious_accessibility_problems(browser, server, sessions, scheme):
    # add_script_tag injects an inline script, which the page's Content-Security-Policy blocks.
    alice = page_of(browser, server, sessions, "alice", "modroom", color_scheme=scheme, bypass_csp=True)
    alice.get_by_role("button", name="Members").click()
    expect(alice.locator("#members-dialog .member").first).to_be_visible()
    alice.get_by_label("Invite someone (username)").press("Enter")  # an empty invite: its error shows
    expect(alice.locator("#invite-error")).not_to_be_empty()
    assert axe_run(alice) == []
    alice.keyboard.press("Escape")
    expect(alice.locator("#members-dialog")).to_be_hidden()
    alice.get_by_role("button", name="Settings").click()
    expect(alice.get_by_label("Name", exact=True)).to_be_focused()
    assert axe_run(alice) == []
    alice.context.close()


# The online list never claims someone is there who is not ------------------------------------------


def test_a_banned_user_leaves_every_online_list_their_own_included(browser, server, sessions):
    bob = page_of(browser, server, sessions, "bob", "banroom")
    alice = page_of(browser, server, sessions, "alice", "banroom")
    expect(online(alice)).to_have_count(2)
    expect(online(bob)).to_have_count(2)
    django(server, 'services.ban_create(room=Room.objects.get(slug="banroom"), user=user("bob"))')
    expect(bob.locator("#room-closed")).to_have_text("You were banned from this room.")
    expect(online(bob)).to_have_count(0)
    expect(bob.locator("#presence-count")).to_have_text("–")
    expect(online(alice)).to_have_count(1)
    alice.context.close()
    bob.context.close()


def test_a_user_signed_out_elsewhere_leaves_every_online_list_their_own_included(browser, server, sessions):
    carol = logged_in_page(browser, server, "carol", **DESKTOP)  # a session of its own, to end
    open_room(carol, server, "signout")
    alice = page_of(browser, server, sessions, "alice", "signout")
    expect(online(alice)).to_have_count(2)
    expect(online(carol)).to_have_count(2)
    elsewhere = carol.context.new_page()
    elsewhere.goto(server.base_url + "/")
    elsewhere.get_by_role("button", name="Log out").click()
    expect(carol.locator("#signed-out")).to_be_visible()
    expect(online(carol)).to_have_count(0)
    expect(online(alice)).to_have_count(1)
    alice.context.close()
    carol.context.close()


class Link:
    """bob's WebSocket, routed through the test, so that it can be cut and kept cut."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.up.set()
        self.routes: list[WebSocketRoute] = []

    def route(self, ws: WebSocketRoute) -> None:
        if not self.up.is_set():
            ws.close(code=1011, reason="offline")
            return
        server = ws.connect_to_server()
        self.routes.append(ws)
        server.on_message(ws.send)

    def cut(self) -> None:
        self.up.clear()
        for ws in self.routes:
            ws.close(code=1011, reason="network lost")
        self.routes.clear()


def test_a_page_that_lost_its_connection_claims_nobody_online_until_it_is_back(browser, server, sessions):
    link = Link()
    context = browser.new_context(storage_state=sessions["bob"], **DESKTOP)
    context.set_default_timeout(10_000)
    bob = context.new_page()
    bob.route_web_socket(re.compile(r"/ws/chat/"), link.route)
    open_room(bob, server, "lost")
    alice = page_of(browser, server, sessions, "alice", "lost")
    expect(online(bob)).to_have_count(2)

    link.cut()
    expect(bob.locator("#status")).not_to_have_attribute("data-state", "live")
    expect(online(bob)).to_have_count(0)
    expect(bob.locator("#presence")).to_contain_text("Not connected")

    link.up.set()
    expect(bob.locator("#status")).to_have_attribute("data-state", "live", timeout=20_000)
    expect(online(bob)).to_have_count(2)
    assert online(bob).evaluate_all("items => items.map((item) => item.dataset.username)") == ["alice", "bob"]
    alice.context.close()
    context.close()


def test_the_terminal_client_manages_a_room_refuses_a_plain_member_and_leaves_for_good(server):
    child = spawn(server, "--user", "alice", "--room", "term", "--room", "attic", env=PASSWORD)
    child.expect_exact("type a message")
    child.sendline("/members")
    child.expect_exact("members of #term: alice (creator)")
    child.sendline("/invite nobody")
    child.expect_exact("No user 'nobody'.")
    child.sendline("/invite bob")
    child.expect_exact("bob invited to #term; members: alice (creator), bob")
    child.sendline("/topic Release notes")
    child.expect_exact("topic of #term: Release notes")
    child.sendline("/rename Terminal room")
    child.expect_exact("#term is now named Terminal room")

    # bob, a plain member: the server refuses him what only managers may do, and he reads why.
    bob = spawn(server, "--user", "bob", "--room", "term", env=PASSWORD)
    bob.expect_exact("type a message")
    child.sendline("house rules")
    bob.expect(r"#(\d+) " + TIME + "alice: house rules")
    rules = bob.match.group(1)
    bob.sendline("cheap watches here")
    child.expect(r"#(\d+) " + TIME + "bob: cheap watches here")
    spam = child.match.group(1)
    refused = "! Only the moderators and the creator of 'term' may do that."
    bob.sendline("/rename Mine now")
    bob.expect_exact(refused)
    bob.sendline("/invite carol")
    bob.expect_exact(refused)
    bob.sendline(f"/delete {rules}")
    bob.expect_exact("! You can only change your own messages.")
    # alice, the room's creator, deletes bob's message for everyone.
    child.sendline(f"/delete {spam}")
    bob.expect(f"#{spam} " + TIME + r"bob: \(deleted\)")

    child.sendline("/private maybe")
    child.expect_exact("usage: /private on|off")
    child.sendline("/private on")
    child.expect_exact("#term is now private: only invited members may enter")
    child.sendline("/private off")
    child.expect_exact("#term is now public")
    child.sendline("/remove bob")
    child.expect_exact("bob removed from #term; members: alice (creator)")
    bob.expect_exact("#term was closed: you were removed from it")
    bob.sendline("/quit")
    child.sendline("/part")
    child.expect_exact("left #term for good")
    # /archive archives only the room it names, and only the current one (#attic, after /part).
    child.sendline("/archive")
    child.expect_exact("usage: /archive ROOM, naming the current room (/archive attic)")
    child.sendline("/archive attic")
    child.expect_exact("archived #attic")
    child.sendline("/quit")
    assert finish(child) == 0
    assert finish(bob) == 0
    assert "Traceback" not in output(child) + output(bob)
