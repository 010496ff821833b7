"""The pages around the chat, in a real browser (Debian's Chromium driven by Playwright) against a
real Daphne worker: signing up, in and out; private rooms; unread counts; accessibility (axe-core,
keyboard only, accessible names); phone and desktop layouts in light and dark; page weight and
caching.

Screenshots of every run go to test-artifacts/screenshots/ (git-ignored). With
UPDATE_SCREENSHOTS=1 the test also refreshes the README's docs/screenshots/room-desktop.png and
docs/screenshots/room-phone.png.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.parse

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import logged_in_page, open_room, send
from tests.support.daphne_server import REPO_ROOT, DaphneServer

# Every test here is bounded; the module-scoped server start counts against the first one.
pytestmark = pytest.mark.timeout(60)

AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
README_SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 1000, "height": 800}
# As the test server sends them: uncompressed (collectstatic's gzip and Brotli copies are about a third).
# The room page with its modules: unread state, management, links, mentions, flow, files, search.
PAGE_WEIGHT_LIMIT = 250 * 1024

# A short conversation in a room of its own, for the screenshots and the accessibility checks,
# and an empty room for the unread counts: made once, by the server's own manage.py.
SEED = """
from django.contrib.auth import get_user_model
from chat import services
users = {u.username: u for u in get_user_model().objects.all()}
room = services.room_create(slug='design', name='Design', topic='Mockups, colours and the new room page')
for author, body in [
    ('bob', 'Morning! I pushed the new room page, have a look when you can.'),
    ('carol', 'Looks great on my phone. The composer stays put when the keyboard opens.'),
    ('alice', 'Nice. Does dark mode follow the system setting?'),
    ('bob', 'Yes: it reads prefers-color-scheme, no toggle needed.'),
    ('carol', 'Then I think we can ship it today.'),
]:
    services.message_send(room=room, author=users[author], body=body)
services.room_create(slug='unread-check', name='Unread check', topic='Counting what carol missed')
"""
CONVERSATION_LENGTH = 5

# Roles that a person operates: each needs a name a screen reader can speak.
WIDGET_ROLES = {
    "button",
    "link",
    "textbox",
    "searchbox",
    "combobox",
    "checkbox",
    "radio",
    "switch",
    "slider",
    "spinbutton",
    "listbox",
    "option",
    "menuitem",
    "tab",
}


@pytest.fixture(scope="module")
def server():
    with DaphneServer() as daphne:
        daphne.manage("shell", "-c", SEED)
        yield daphne


# ---------------------------------------------------------------------------------------- helpers

_cookies: dict[str, list[dict]] = {}
_contexts: list = []


@pytest.fixture(autouse=True)
def close_contexts():
    """Every browser context a test opened is closed after it, passed or failed: a page left
    open would keep its WebSocket, and its user online, in the next tests."""
    yield
    while _contexts:
        try:
            _contexts.pop().close()
        except Exception:  # already closed by the test
            pass


def login_page(browser, server: DaphneServer, username: str, **context_options) -> Page:
    """logged_in_page of tests/e2e/test_browser.py (the login form, as a person fills it), tracked."""
    page = logged_in_page(browser, server, username, **context_options)
    _contexts.append(page.context)
    return watch_errors(page)


def session_cookies(server: DaphneServer, username: str) -> list[dict]:
    """The cookies of a session logged in through the real login form (one login per user)."""
    if username not in _cookies:
        session = server.login_session(username)
        _cookies[username] = [{"name": c.name, "value": c.value, "url": server.base_url} for c in session.jar]
    return _cookies[username]


def new_page(browser, server: DaphneServer, username: str | None = None, **context_options) -> Page:
    """A page in a fresh browser context (no cache), signed in as `username` if given."""
    context = browser.new_context(**context_options)
    _contexts.append(context)
    context.set_default_timeout(10_000)
    if username:
        context.add_cookies(session_cookies(server, username))
    return watch_errors(context.new_page())


def watch_errors(page: Page) -> Page:
    """Collect the page's script errors, so a room page that never goes live says why."""
    page.script_errors = []
    page.on("pageerror", lambda error: page.script_errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and page.script_errors.append(m.text))
    return page


def enter_room(page: Page, server: DaphneServer, slug: str) -> None:
    """open_room of tests/e2e/test_browser.py, with the page's script errors in its failure."""
    try:
        open_room(page, server, slug)
    except AssertionError as error:
        errors = getattr(page, "script_errors", None)
        raise AssertionError(f"the {slug} room page did not go live; its script errors: {errors}\n{error}") from None


def open_conversation(page: Page, server: DaphneServer) -> None:
    enter_room(page, server, "design")
    expect(page.locator("#messages .message[data-seq]")).to_have_count(CONVERSATION_LENGTH, timeout=10_000)


def wait_until(page: Page, condition, *, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    """Poll `condition` until it is true. Waits with the page's own timer: a time.sleep would
    hold back Playwright's event callbacks (the WebSocket frame listeners) while it sleeps."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        page.wait_for_timeout(interval * 1000)


def focused(page: Page) -> str:
    """A short description of the focused element: `tag#id` or `tag[name]` or `tag "text"`."""
    return page.evaluate(
        """() => {
            const e = document.activeElement;
            if (!e || e === document.body) return 'body';
            const tag = e.tagName.toLowerCase();
            if (e.id) return `${tag}#${e.id}`;
            if (e.name) return `${tag}[${e.name}]`;
            return `${tag} "${(e.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 40)}"`;
        }"""
    )


def unnamed_controls(page: Page) -> list[str]:
    """Controls in the browser's accessibility tree (widgets, and anything focusable) that have no
    accessible name: what a screen reader would announce as just "button" or "link"."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
        missing = []
        for node in nodes:
            if node.get("ignored"):
                continue
            role = (node.get("role") or {}).get("value", "")
            if role in {"RootWebArea", "WebArea", "none", "generic", "InlineTextBox", "StaticText"}:
                continue
            props = {p["name"]: p.get("value", {}).get("value") for p in node.get("properties", [])}
            if role not in WIDGET_ROLES and not props.get("focusable"):
                continue
            if str((node.get("name") or {}).get("value", "")).strip():
                continue
            html = ""
            if node.get("backendDOMNodeId"):
                try:
                    described = cdp.send("DOM.resolveNode", {"backendNodeId": node["backendDOMNodeId"]})
                    html = cdp.send(
                        "Runtime.callFunctionOn",
                        {
                            "objectId": described["object"]["objectId"],
                            "functionDeclaration": "function() { return (this.outerHTML || '').slice(0, 160); }",
                            "returnByValue": True,
                        },
                    )["result"]["value"]
                except Exception:  # a node without a DOM element behind it: the role says enough
                    html = ""
            missing.append(f"{role} {html}".strip())
        return missing
    finally:
        cdp.detach()


def axe_source() -> str:
    if not AXE_JS.is_file():
        pytest.fail(
            f"{AXE_JS.relative_to(REPO_ROOT)} is missing: `make test` installs it (npm install, from "
            "package.json and package-lock.json); in a checkout run `npm install --no-audit --no-fund`."
        )
    return str(AXE_JS)


def axe_run(page: Page) -> dict:
    page.add_script_tag(path=axe_source())
    return page.evaluate(
        """async () => {
            const result = await axe.run(document);
            const brief = (list) => list.map((v) => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map((n) => ({
                    target: n.target.join(' '), html: n.html.slice(0, 200),
                    summary: (n.failureSummary || '').replace(/\\s+/g, ' ').trim(), impact: n.impact,
                })),
            }));
            return {
                violations: brief(result.violations),
                incomplete: brief(result.incomplete),
                checked: result.passes.map((r) => r.id).concat(result.violations.map((r) => r.id),
                                                              result.incomplete.map((r) => r.id)),
            };
        }"""
    )


def describe_violations(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"  [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"]:
            lines.append(f"      at {node['target']}: {node['summary']}")
            lines.append(f"         {node['html']}")
    return "\n".join(lines)


def background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def horizontal_overflow(page: Page) -> dict | None:
    """None when nothing is wider than the viewport; else the sizes and the widest culprits."""
    return page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const scroll = document.scrollingElement.scrollWidth;
            if (scroll <= width) return null;
            const culprits = [...document.querySelectorAll('body *')]
                .filter((e) => e.getBoundingClientRect().right > width + 1)
                .slice(0, 8)
                .map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${[...e.classList].join('.')}`
                    + ` right=${Math.round(e.getBoundingClientRect().right)}`);
            return { viewport: width, scrollWidth: scroll, culprits };
        }"""
    )


# ------------------------------------------------------------------------------ 1. accounts


def test_signup_login_and_logout_as_a_person_does(browser, server):
    base = server.base_url
    page = new_page(browser, server, viewport=DESKTOP)

    page.goto(base + "/")
    expect(page).to_have_url(base + "/accounts/login/?next=/")  # the room list needs a login
    page.locator(".auth-switch").get_by_role("link", name="Sign up").click()
    expect(page).to_have_url(base + "/accounts/signup/")
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()

    def sign_up(username: str, password: str) -> None:
        page.get_by_label("Username").fill(username)
        page.get_by_label("Email").fill(f"{username}@mail.example")  # not the demo accounts' addresses
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_label("Password confirmation").fill(password)
        page.get_by_role("button", name="Sign up").click()

    # A bad password: the page says why, next to the field, and keeps the username.
    sign_up("erin", "abc")
    expect(page).to_have_url(base + "/accounts/signup/")
    errors = page.locator(".field-invalid .errorlist")
    expect(errors).to_contain_text("too short")
    expect(errors).to_be_visible()
    expect(page.get_by_label("Username")).to_have_value("erin")
    expect(page.get_by_label("Password", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_title(re.compile(r"^Error: Sign up"))

    # A username that is taken.
    sign_up("alice", "a-good-long-password-42")
    expect(page.locator(".field-invalid .errorlist")).to_contain_text("A user with that username already exists")
    expect(page.get_by_label("Username")).to_have_attribute("aria-invalid", "true")

    # A good one: signed in at once, on the room list.
    sign_up("erin", "a-good-long-password-42")
    expect(page).to_have_url(base + "/")
    expect(page.get_by_role("heading", name="Rooms", level=1)).to_be_visible()
    expect(page.locator(".whoami")).to_contain_text("erin")

    # Log out is a button that POSTs, and lands on the login page.
    with page.expect_request(lambda request: request.url.endswith("/accounts/logout/")) as logout:
        page.get_by_role("button", name="Log out").click()
    assert logout.value.method == "POST", f"logging out sent a {logout.value.method}, not a POST"
    expect(page).to_have_url(base + "/accounts/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    page.goto(base + "/")
    expect(page).to_have_url(base + "/accounts/login/?next=/")

    # A wrong password: a message on the page, no login.
    page.get_by_label("Username").fill("erin")
    page.get_by_label("Password").fill("not-my-password")
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username and password")
    expect(page).to_have_title(re.compile(r"^Error: Log in"))
    expect(page).to_have_url(re.compile(re.escape(base + "/accounts/login/")))

    page.get_by_label("Password").fill("a-good-long-password-42")
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page).to_have_url(base + "/")  # back where the login was asked for
    expect(page.locator(".whoami")).to_contain_text("erin")
    page.context.close()


# ----------------------------------------------------------------------- 2. private rooms


@pytest.mark.parametrize(("path", "status"), [("/rooms/staff/", (403, 404)), ("/rooms/no-such-room/", (404,))])
def test_a_private_room_is_hidden_from_non_members_and_its_url_explains(browser, server, path, status):
    base = server.base_url
    bob = login_page(browser, server, "bob", viewport=DESKTOP)
    cards = bob.locator("#room-list .room-card")
    expect(cards.filter(has_text="Lobby")).to_have_count(1)
    expect(bob.locator("#room-list [data-slug=staff]")).to_have_count(0)
    expect(bob.locator("#room-list")).not_to_contain_text("Staff")

    enter_room(bob, server, "lobby")
    sidebar = bob.locator(".room-sidebar")
    expect(sidebar.locator("[data-slug=lobby]")).to_have_count(1)
    expect(sidebar.locator("[data-slug=staff]")).to_have_count(0)
    expect(sidebar).not_to_contain_text("Staff")

    response = bob.goto(base + path)
    assert response.status in status, f"GET {path} as bob answered {response.status}, expected one of {status}"
    heading = bob.get_by_role("heading", level=1)
    expect(heading).to_be_visible()
    assert heading.inner_text().strip(), "the error page has an empty heading"
    text = bob.locator("body").inner_text()
    for leak in ("Traceback", "Exception", "PermissionDenied", "Http404", 'File "', "django."):
        assert leak not in text, f"the {response.status} page shows {leak!r}:\n{text}"
    expect(bob).to_have_title(re.compile(r"Forbidden|Not found"))
    bob.get_by_role("link", name="Back to rooms").click()
    expect(bob).to_have_url(base + "/")
    bob.context.close()


# ------------------------------------------------------------------------ 3. unread counts


def test_unread_counts_rise_when_others_post_and_clear_after_reading(browser, server):
    base = server.base_url
    carol = login_page(browser, server, "carol", viewport=DESKTOP)
    card = carol.locator("#room-list .room-card[data-slug=unread-check]")
    expect(card).to_have_attribute("data-unread", "0")
    expect(card.locator(".badge")).to_have_count(0)

    bob = login_page(browser, server, "bob", viewport=DESKTOP)
    enter_room(bob, server, "unread-check")
    for i in range(1, 4):
        send(bob, f"carol, are you there? ({i})")
    expect(bob.locator("#messages .message[data-seq]:not(.pending)")).to_have_count(3)

    carol.reload()
    expect(card).to_have_attribute("data-unread", "3")
    expect(card.locator(".badge")).to_have_text("3 unread")
    # A screen reader hears the count as part of the link.
    expect(carol.get_by_role("link", name=re.compile(r"Unread check.*3 unread"))).to_have_count(1)

    send(bob, "one more")
    expect(bob.locator("#messages .message[data-seq]:not(.pending)")).to_have_count(4)
    carol.reload()
    expect(card).to_have_attribute("data-unread", "4")
    expect(card.locator(".badge")).to_have_text("4 unread")

    # Carol opens the room and sees the messages: the page sends a read marker; the list clears.
    frames: list[str] = []
    carol.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(str(payload))))
    card.get_by_role("link").click()
    expect(carol.locator("#status")).to_have_attribute("data-state", "live")
    expect(carol.locator("#messages .message[data-seq]")).to_have_count(4)
    wait_until(carol, lambda: any('"type":"read"' in f.replace(" ", "") for f in frames), what="a read frame")

    def cleared() -> bool:
        carol.goto(base + "/")
        return card.get_attribute("data-unread") == "0"

    wait_until(carol, cleared, timeout=5, interval=0.3, what="the unread count to clear")
    expect(card.locator(".badge")).to_have_count(0)
    bob.context.close()
    carol.context.close()


# -------------------------------------------------------------------------- 4. axe-core


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_or_critical_problems(browser, server, scheme):
    axe_source()  # fail at once, with the reason, when axe-core is not installed
    # The pages' Content-Security-Policy (script-src 'self') blocks the inline script that
    # add_script_tag injects, so these contexts bypass it, for the axe run only.
    options = {"viewport": DESKTOP, "color_scheme": scheme, "bypass_csp": True}
    base = server.base_url
    pages = {}
    anonymous = new_page(browser, server, **options)
    anonymous.goto(base + "/accounts/login/")
    pages["login page"] = anonymous
    signup = new_page(browser, server, **options)
    signup.goto(base + "/accounts/signup/")
    signup.get_by_label("Username").fill("alice")
    signup.get_by_label("Password", exact=True).fill("abc")
    signup.get_by_label("Password confirmation").fill("abd")
    signup.get_by_role("button", name="Sign up").click()
    expect(signup.locator(".errorlist").first).to_be_visible()
    pages["sign-up page with errors"] = signup
    rooms = new_page(browser, server, "alice", **options)
    rooms.goto(base + "/")
    pages["room list"] = rooms
    room = new_page(browser, server, "alice", **options)
    open_conversation(room, server)
    pages["room page"] = room
    forbidden = new_page(browser, server, "bob", **options)
    forbidden.goto(base + "/rooms/staff/")
    pages["403 page"] = forbidden

    report, blocking = [], []
    for name, page in pages.items():
        result = axe_run(page)
        assert "color-contrast" in result["checked"], f"axe did not check colour contrast on the {name}"
        violations = result["violations"]
        counts: dict[str, int] = {}
        for v in violations:
            counts[v["impact"]] = counts.get(v["impact"], 0) + len(v["nodes"])
        review = sorted({v["id"] for v in result["incomplete"]})
        print(f"axe {scheme} {name}: {counts or 'no violations'}; to review by hand: {review or 'nothing'}")
        if violations:
            report.append(f"{name} ({scheme}, {page.url}):\n{describe_violations(violations)}")
        if result["incomplete"]:
            print(f"  needs review on the {name}:\n{describe_violations(result['incomplete'])}")
        blocking += [f"{name}: {v['id']}" for v in violations if v["impact"] in {"serious", "critical"}]
    if report:
        print("\n".join(report))
    assert not blocking, (
        f"axe-core found serious or critical problems in the {scheme} color scheme: {blocking}\n"
        + "\n".join(report)
        + "\n(Colours and spacing come from chat/static/chat/chat.css; the room page's markup from "
        "templates/chat/room.html and chat/static/chat/chat.js; the other pages' from templates/.)"
    )


# ---------------------------------------------------------------------- 5. keyboard only


def test_keyboard_only_login_and_chat(browser, server):
    base = server.base_url
    page = new_page(browser, server, viewport=DESKTOP)
    page.goto(base + "/accounts/login/")
    assert unnamed_controls(page) == [], (
        f"controls without an accessible name on the login page: {unnamed_controls(page)}"
    )

    # The username field has the focus when the page opens (autofocus), so a keyboard user types
    # at once; from the top of the page, Tab reaches it after the skip link and the top bar.
    assert focused(page) == "input#id_username", f"the login page opens with the focus on {focused(page)}"
    page.keyboard.press("Shift+Tab")
    before = focused(page)
    assert before != "body" and "button" not in before, f"Shift+Tab from the username went to {before}"
    page.keyboard.press("Tab")
    assert focused(page) == "input#id_username", f"Tab went from {before} to {focused(page)}, not the username"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused username field shows no focus outline"
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    assert focused(page) == "input#id_password", f"Tab after the username went to {focused(page)}"
    page.keyboard.type("chatdemo")
    page.keyboard.press("Tab")
    assert focused(page) == 'button "Log in"', f"Tab after the password went to {focused(page)}"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # Enter in the password field submits the form
    expect(page).to_have_url(base + "/")

    assert unnamed_controls(page) == [], (
        f"controls without an accessible name on the room list: {unnamed_controls(page)}"
    )
    enter_room(page, server, "random")  # not the design room: the screenshots keep its conversation
    # The room opens ready to type.
    assert focused(page) == "textarea#composer-input", f"the room page opened with the focus on {focused(page)}"
    for text in ("typed with the keyboard", "and a second one"):
        page.keyboard.type(text)
        page.keyboard.press("Enter")
        expect(page.locator("#messages .message.own:not(.pending) .body").last).to_have_text(text)
        assert focused(page) == "textarea#composer-input", f"after sending, the focus moved to {focused(page)}"
        expect(page.locator("#composer-input")).to_have_value("")
    page.keyboard.press("Tab")
    assert focused(page) == "button#attach-button", f"Tab after the composer went to {focused(page)}"
    page.keyboard.press("Tab")
    assert focused(page) == "button#composer-send", f"Tab after the paperclip went to {focused(page)}"

    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("log", name="Messages in Random")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_role("link", name="Skip to content")).to_have_count(1)
    missing = unnamed_controls(page)
    assert missing == [], f"controls without an accessible name on the room page: {missing}"
    page.context.close()


# ------------------------------------------------------------- 6. phone, desktop, themes


def test_phone_and_desktop_layouts_in_light_and_dark(browser, server):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Bob is in the room too, so the screenshots show someone else online.
    bob = new_page(browser, server, "bob", viewport=DESKTOP)
    open_conversation(bob, server)

    backgrounds: dict[tuple[str, str], str] = {}
    problems = []
    for size_name, size in (("desktop", DESKTOP), ("tablet", TABLET), ("phone", PHONE)):
        phone = size_name == "phone"
        narrow = size_name != "desktop"
        for scheme in ("light", "dark"):
            page = new_page(
                browser,
                server,
                "alice",
                viewport=size,
                color_scheme=scheme,
                is_mobile=phone,
                has_touch=phone,
                reduced_motion="reduce",
            )
            page.goto(server.base_url + "/")
            expect(page.locator("#room-list [data-slug=design]")).to_be_visible()
            page.screenshot(path=SCREENSHOTS / f"rooms-{size_name}-{scheme}.png", animations="disabled")
            if narrow and (overflow := horizontal_overflow(page)):
                problems.append(f"room list at {size['width']} px ({scheme}) overflows: {overflow}")

            open_conversation(page, server)
            expect(page.locator("#presence li[data-username=bob]")).to_have_count(1)
            page.evaluate("document.fonts.ready")
            page.screenshot(path=SCREENSHOTS / f"room-{size_name}-{scheme}.png", animations="disabled")
            backgrounds[(size_name, scheme)] = background(page)
            if narrow:
                if overflow := horizontal_overflow(page):
                    problems.append(f"room page at {size['width']} px ({scheme}) overflows: {overflow}")
                width = page.evaluate("document.scrollingElement.scrollWidth")
                assert width <= size["width"], (
                    f"the room page is {width} px wide at a {size['width']} px viewport ({scheme})"
                )
            page.context.close()
    bob.context.close()

    for size_name in ("desktop", "tablet", "phone"):
        light, dark = backgrounds[(size_name, "light")], backgrounds[(size_name, "dark")]
        assert light != dark, f"dark mode does not change the page background on {size_name} ({light})"
        assert _luminance(dark) < _luminance(light), f"the dark background {dark} is not darker than {light}"
    assert not problems, "\n".join(problems)

    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SCREENSHOTS / "room-desktop-light.png", README_SCREENSHOTS / "room-desktop.png")
        shutil.copyfile(SCREENSHOTS / "room-tablet-dark.png", README_SCREENSHOTS / "room-tablet.png")
        shutil.copyfile(SCREENSHOTS / "room-phone-dark.png", README_SCREENSHOTS / "room-phone.png")


def _luminance(css_color: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_color)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# ------------------------------------------------------------------ 7. weight and caching


def test_room_page_weight_caching_and_no_third_party_hosts(browser, server):
    page = new_page(browser, server, "alice", viewport=DESKTOP)
    server_host = urllib.parse.urlsplit(server.base_url).netloc
    requests, sockets, responses = [], [], {}
    page.on("request", lambda request: requests.append(request))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("response", lambda response: responses.setdefault(response.url, response))

    open_conversation(page, server)
    page.wait_for_load_state("load")

    total, lines = 0, []
    for request in requests:
        if request.url.startswith("data:"):
            continue
        sizes = request.sizes()
        size = sizes["responseBodySize"] + sizes["responseHeadersSize"]
        total += size
        lines.append(f"{size:>7} B  {request.resource_type:<10} {urllib.parse.urlsplit(request.url).path}")
    print(f"room page weight: {total} bytes ({total / 1024:.1f} KB) in {len(lines)} responses")
    print("\n".join(lines))
    assert total < PAGE_WEIGHT_LIMIT, f"the room page transfers {total} bytes, over {PAGE_WEIGHT_LIMIT}:\n" + "\n".join(
        lines
    )

    foreign = [r.url for r in requests if urllib.parse.urlsplit(r.url).netloc not in {server_host, ""}]
    foreign += [url for url in sockets if urllib.parse.urlsplit(url).netloc != server_host]
    assert foreign == [], f"the room page loads from other hosts: {foreign}"
    assert sockets, "the room page opened no WebSocket"

    for name in ("chat.js", "chat.css"):
        matches = [url for url in responses if urllib.parse.urlsplit(url).path.endswith(f"/chat/{name}")]
        assert matches, f"{name} was not loaded by the room page"
        cache_control = responses[matches[0]].headers.get("cache-control", "")
        max_age = re.search(r"max-age=(\d+)", cache_control)
        assert max_age and int(max_age.group(1)) > 0, f"{name} is served with Cache-Control {cache_control!r}"
        print(f"{name}: Cache-Control {cache_control}")
    page.context.close()
