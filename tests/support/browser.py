"""Debian's Chromium through Playwright, and the page actions the browser tests share."""

import re
import textwrap

from playwright.sync_api import Page, expect

from tests.support.daphne_server import DaphneServer

CHROMIUM = "/usr/bin/chromium"


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Measured (a context opened on a room page four times): about a fifth less Chromium CPU and
    # a third less time without site isolation (every page here is one origin) and without
    # features that only matter on the open web.
    "--disable-features=site-per-process,IsolateOrigins,PaintHolding,Translate,OptimizationHints,MediaRouter,"
    "AcceptCHFrame,AutofillServerCommunication,CertificateTransparencyComponentUpdater,DialMediaRouteProvider",
]


def logged_in_page(browser, server: DaphneServer, username: str, **context_options) -> Page:
    context = browser.new_context(**context_options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    # Anything the Content-Security-Policy blocks shows up as a console error: collect them.
    page.csp_violations = []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))
    page.goto(server.base_url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("chatdemo")
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    expect(page).to_have_url(server.base_url + "/")
    return page


def signed_in_state(browser, server: DaphneServer, username: str) -> dict:
    """A signed-in session's cookies and storage (a context's `storage_state`): pages made from it
    start signed in, without going through the login form each time."""
    page = logged_in_page(browser, server, username)
    state = page.context.storage_state()
    page.context.close()
    return state


def open_room(page: Page, server: DaphneServer, slug: str) -> None:
    page.goto(f"{server.base_url}/rooms/{slug}/")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")


def send(page: Page, text: str) -> None:
    page.locator("#composer-input").fill(text)
    page.locator("#composer-input").press("Enter")


def shown_seqs(page: Page) -> list[int]:
    return [
        int(s) for s in page.locator("#messages .message[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]


# What every `django()` snippet has at hand.
SHELL_PRELUDE = (
    "from datetime import timedelta\n"
    "from django.contrib.auth import get_user_model\n"
    "from django.utils import timezone\n"
    "from chat import services\n"
    "from chat.models import Membership, Message, Room\n"
    "user = lambda name: get_user_model().objects.get(username=name)\n"
)


def django(server: DaphneServer, code: str) -> str:
    """Run Python in the server's `manage.py shell`, with the services and models at hand (and
    `user(name)`); return what it printed."""
    return server.manage("shell", "--verbosity", "0", "--command", SHELL_PRELUDE + textwrap.dedent(code)).stdout


def make_room(server: DaphneServer, slug: str, *, messages: int = 0, read: dict | None = None, then: str = "") -> None:
    """A room with `messages` numbered messages by bob; `read` sets users' read markers; `then`
    is more code to run in the same shell, with the room as `room`."""
    django(
        server,
        textwrap.dedent(f"""
        room = services.room_create(slug={slug!r}, name={slug.title()!r})
        for i in range(1, {messages} + 1):
            services.message_send(room=room, author=user('bob'), body=f'message {{i}}')
        for name, seq in {read or {}!r}.items():
            Membership.objects.update_or_create(room=room, user=user(name), defaults={{'last_read_seq': seq}})
        """)
        + textwrap.dedent(then),
    )
