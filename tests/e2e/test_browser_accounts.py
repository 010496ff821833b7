"""Account pages in a real browser (Debian's Chromium) against a real worker that sends its email
to a real SMTP server (aiosmtpd): "Forgot password?" from the login page to logging in with the
new password, the login page of a production setup (no demo accounts), the confirmations after
signing up, creating a room and logging out, where sign-up shows a bad password's errors, the
settings page and the one-click link that turns notification emails off. Every new page passes
axe-core with no serious or critical finding, light and dark."""

import re
import urllib.parse

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import logged_in_page
from tests.support.daphne_server import REPO_ROOT, DaphneServer
from tests.support.smtp_server import SmtpServer

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
NEW_PASSWORD = "amber-lantern-3307"


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(smtp):
    # DJANGO_DEBUG and CHAT_DEMO_LOGINS unset, as in production, though the demo accounts exist.
    with DaphneServer(env=smtp.env()) as daphne:
        yield daphne


def new_page(browser, **options) -> Page:
    # bypass_csp: axe-core is injected as an inline script, which the pages' policy would block.
    context = browser.new_context(**DESKTOP, bypass_csp=True, **options)
    context.set_default_timeout(10_000)
    return context.new_page()


def assert_accessible(page: Page, name: str) -> None:
    """axe-core finds no serious or critical problem on the page, in the light and the dark scheme
    (a screenshot of each in test-artifacts/screenshots/accounts-NAME-SCHEME.png)."""
    assert AXE_JS.is_file(), "node_modules/axe-core is missing: run `npm ci` (make test does)"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=SCREENSHOTS / f"accounts-{name.replace(' ', '-')}-{scheme}.png", animations="disabled")
        if not page.evaluate("typeof axe !== 'undefined'"):
            page.add_script_tag(path=str(AXE_JS))
        violations = page.evaluate(
            """async () => (await axe.run(document)).violations
                .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)"""
        )
        assert violations == [], f"axe-core on the {name} ({scheme}): {violations}"
    page.emulate_media(color_scheme="light")


def flash(page: Page):
    return page.get_by_role("status").locator(".flash")


def sign_up(page: Page, server: DaphneServer, username: str, password: str, confirmation: str | None = None) -> None:
    page.goto(server.base_url + "/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password confirmation").fill(password if confirmation is None else confirmation)
    page.get_by_role("button", name="Sign up").click()


def test_forgot_password_from_the_login_page_to_logging_in_with_the_new_password(browser, server, smtp):
    server.signup("grace", "old-password-6620")
    page = new_page(browser)
    page.goto(server.base_url + "/accounts/login/")
    page.get_by_role("link", name="Forgot password?").click()
    expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()
    expect(page.get_by_label("Email")).to_be_focused()
    assert_accessible(page, "password reset page")
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    assert_accessible(page, "reset email sent page")

    email = smtp.wait_for(lambda message: message["To"] == "grace@example.com")
    link = re.search(r"http://\S+/accounts/reset/\S+/", email.get_content())
    assert link, email.get_content()
    page.goto(link.group(0))
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    assert_accessible(page, "new password page")
    # Too short: the error is under "New password", the field to change.
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("New password confirmation").fill("short")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_label("New password", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-invalid .errorlist")).to_contain_text("too short")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("heading", name="Your new password is set")).to_be_visible()
    assert_accessible(page, "password set page")

    page.get_by_role("link", name="Log in").last.click()
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.base_url + "/")
    expect(page.locator(".whoami")).to_contain_text("grace")
    page.context.close()


def test_the_login_page_names_no_demo_accounts_without_debug(browser, server):
    page = new_page(browser)
    page.goto(server.base_url + "/accounts/login/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_text("chatdemo")).to_have_count(0)
    expect(page.get_by_text("Demo accounts")).to_have_count(0)
    page.context.close()


def test_signing_up_creating_a_room_and_logging_out_are_confirmed(browser, server):
    page = new_page(browser)
    sign_up(page, server, "heidi", "copper-meadow-7154")
    expect(page).to_have_url(server.base_url + "/")
    expect(flash(page)).to_have_text("Welcome, heidi! Your account is ready.")

    page.goto(server.base_url + "/rooms/new/")
    page.get_by_label("Name").fill("Heidi's corner")
    page.get_by_role("button", name="Create room").click()
    expect(page).to_have_url(server.base_url + "/rooms/heidis-corner/")
    expect(flash(page)).to_have_text("Room “Heidi's corner” created.")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    assert_accessible(page, "room page with a confirmation")
    page.reload()
    expect(flash(page)).to_have_count(0)  # shown once

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(server.base_url + "/accounts/login/")
    expect(flash(page)).to_have_text("You have logged out.")
    page.context.close()


def test_sign_up_shows_a_bad_passwords_errors_under_password(browser, server):
    page = new_page(browser)
    sign_up(page, server, "ivan", "abc")
    password, confirmation = page.get_by_label("Password", exact=True), page.get_by_label("Password confirmation")
    expect(password).to_have_attribute("aria-invalid", "true")
    field = page.locator(".field", has=page.locator("#id_password1"))
    expect(field.locator(".errorlist")).to_contain_text("too short")
    expect(confirmation).not_to_have_attribute("aria-invalid", "true")

    # Two different passwords: that error is the confirmation's.
    sign_up(page, server, "ivan", "copper-meadow-7154", "copper-meadow-7155")
    expect(confirmation).to_have_attribute("aria-invalid", "true")
    expect(password).not_to_have_attribute("aria-invalid", "true")
    page.context.close()


def test_the_settings_page_and_the_one_click_link_turn_notification_emails_off(browser, server):
    page = logged_in_page(browser, server, "bob", **DESKTOP, bypass_csp=True)
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    expect(page.get_by_label("Email", exact=True)).to_have_value("bob@example.com")
    notify = page.get_by_label("Email me about direct messages and mentions I have not read")
    expect(notify).to_be_checked()
    assert_accessible(page, "settings page")
    notify.uncheck()
    page.get_by_role("button", name="Save").click()
    expect(flash(page)).to_have_text("Your settings have been saved.")
    expect(notify).not_to_be_checked()
    notify.check()
    page.get_by_role("button", name="Save").click()
    expect(notify).to_be_checked()

    # The link of a notification email, opened in a browser that is not logged in.
    off_url = (
        server.manage(
            "shell",
            "--verbosity",
            "0",
            "--command",
            "from django.contrib.auth.models import User; from chat.notifications import email_off_url; "
            "print(email_off_url(User.objects.get(username='bob')))",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    anonymous = new_page(browser)
    anonymous.goto(server.base_url + urllib.parse.urlsplit(off_url).path)
    expect(anonymous.get_by_role("heading", name="Turn notification emails off?")).to_be_visible()
    assert_accessible(anonymous, "email opt-out page")
    anonymous.get_by_role("button", name="Turn them off").click()
    expect(anonymous.get_by_role("heading", name="Notification emails are off")).to_be_visible()
    assert_accessible(anonymous, "emails turned off page")
    page.reload()
    expect(notify).not_to_be_checked()
    anonymous.context.close()
    page.context.close()
