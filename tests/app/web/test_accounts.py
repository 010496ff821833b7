"""Account pages: password reset by email, the settings page, the one-click link that turns
notification emails off, the demo accounts on the login page, confirmations after sign-up, room
creation and logout, and where sign-up puts password errors."""

import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.test import Client

from chat.models import EmailPreference
from chat.notifications import email_off_token
from tests.support.sockets import TEST_PASSWORD as PASSWORD

NEW_PASSWORD = "quiet-harbour-4821"

pytestmark = pytest.mark.django_db


def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def reset_link(body: str) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/reset/[^\s]+/)", body)
    assert match, body
    return match.group(1)


def test_login_page_links_to_the_password_reset(client):
    html = client.get("/accounts/login/").text
    assert 'href="/accounts/password_reset/"' in html and "Forgot password?" in html


def test_a_password_reset_mails_a_link_that_sets_the_password_and_ends_every_session(make_user):
    alice = make_user("alice", email="alice@example.com")
    elsewhere = logged_in_client(alice)
    assert elsewhere.get("/").status_code == 200

    response = Client().post("/accounts/password_reset/", {"email": "ALICE@example.com"})
    assert response.status_code == 302 and response.url == "/accounts/password_reset/done/"
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["alice@example.com"] and "Reset your password" in email.subject
    assert "Your username is alice" in email.body

    browser = Client()
    response = browser.get(reset_link(email.body), follow=True)  # Django swaps the token for a session key
    assert response.status_code == 200 and 'name="new_password1"' in response.text
    response = browser.post(
        response.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302 and response.url == "/accounts/reset/done/"
    assert "Log in with the new password" in browser.get(response.url).text

    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert elsewhere.get("/").status_code == 302  # the other session is over
    assert Client().post("/accounts/login/", {"username": "alice", "password": NEW_PASSWORD}).status_code == 302
    # The link works once.
    assert "does not work any more" in Client().get(reset_link(email.body), follow=True).text


def test_a_reset_for_an_unknown_address_looks_the_same_and_sends_nothing(client):
    response = client.post("/accounts/password_reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and response.url == "/accounts/password_reset/done/"
    assert mail.outbox == []


def test_password_resets_are_limited_per_address(settings, make_user):
    settings.CHAT_PASSWORD_RESETS_PER_HOUR = 2
    make_user("alice", email="alice@example.com")
    client = Client(REMOTE_ADDR="192.0.2.7")
    statuses = [client.post("/accounts/password_reset/", {"email": "alice@example.com"}).status_code for _ in range(3)]
    assert statuses == [302, 302, 429]
    assert len(mail.outbox) == 2


def test_a_weak_new_password_is_refused_under_the_new_password(make_user):
    alice = make_user("alice", email="alice@example.com")
    Client().post("/accounts/password_reset/", {"email": "alice@example.com"})
    browser = Client()
    response = browser.get(reset_link(mail.outbox[0].body), follow=True)
    response = browser.post(response.redirect_chain[-1][0], {"new_password1": "123", "new_password2": "123"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "new_password1" in errors and "new_password2" not in errors
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_signup_asks_for_an_email_and_puts_password_errors_under_the_password(client, django_user_model):
    response = client.post("/accounts/signup/", {"username": "dora", "password1": "123", "password2": "123"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) == {"email", "password1"}, errors  # the fields to fix, not the confirmation
    assert not django_user_model.objects.exists()


def test_signup_refuses_an_email_another_account_has(client, make_user, django_user_model):
    make_user("alice", email="alice@example.com")
    data = {"username": "dora", "email": "Alice@Example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    response = client.post("/accounts/signup/", data)
    assert "Another account already uses this email address." in response.text
    assert django_user_model.objects.count() == 1


def test_signup_room_creation_and_logout_are_confirmed_on_the_next_page(client):
    data = {"username": "dora", "email": "dora@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    response = client.post("/accounts/signup/", data, follow=True)
    assert "Welcome, dora! Your account is ready." in response.text
    assert "Welcome, dora" not in client.get("/").text  # once

    response = client.post("/rooms/new/", {"name": "Design"}, follow=True)
    assert response.redirect_chain[-1][0] == "/rooms/design/"
    assert "Room “Design” created." in response.text

    response = client.post("/accounts/logout/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert "You have logged out." in response.text
    assert SESSION_KEY not in client.session


@pytest.mark.parametrize("demo_logins", [True, False])
def test_demo_accounts_are_shown_only_where_demo_logins_are_on_and_the_accounts_exist(
    client, settings, make_user, demo_logins
):
    settings.CHAT_DEMO_LOGINS = demo_logins
    assert "chatdemo" not in client.get("/accounts/login/").text  # no demo accounts yet
    for username in ("alice", "bob", "carol"):
        make_user(username)
    assert ("chatdemo" in client.get("/accounts/login/").text) is demo_logins


def test_settings_page_sets_the_email_with_the_password_and_turns_notification_emails_off(make_user):
    alice = make_user("alice", email="alice@example.com")
    make_user("bob", email="bob@example.com")
    client = logged_in_client(alice)
    html = client.get("/").text
    assert 'href="/accounts/settings/"' in html
    response = client.get("/accounts/settings/")
    assert 'value="alice@example.com"' in response.text and "checked" in response.text

    response = client.post("/accounts/settings/", {"email": "bob@example.com", "notify": "on", "password": PASSWORD})
    assert response.status_code == 400 and "Another account already uses this email address." in response.text

    response = client.post("/accounts/settings/", {"email": "alice@work.example", "notify": "on"})
    assert response.status_code == 400
    assert response.context["form"].errors == {"password": ["Enter your current password to change the email address."]}
    response = client.post("/accounts/settings/", {"email": "alice@work.example", "password": PASSWORD}, follow=True)
    assert "Your settings have been saved." in response.text
    alice.refresh_from_db()
    assert alice.email == "alice@work.example"
    assert EmailPreference.objects.get(user=alice).notify is False


def test_the_settings_page_needs_a_login(client):
    response = client.get("/accounts/settings/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_the_signed_link_turns_emails_off_with_one_click_and_a_forged_one_does_nothing(make_user):
    alice = make_user("alice", email="alice@example.com")
    bob = make_user("bob", email="bob@example.com")
    url = f"/accounts/emails/off/{email_off_token(alice)}/"
    client = Client(enforce_csrf_checks=True)  # as a mail program posts: no session, no CSRF token
    response = client.get(url)
    assert response.status_code == 200 and "Turn notification emails off?" in response.text
    assert not EmailPreference.objects.filter(notify=False).exists()  # opening the link changes nothing

    response = client.post(url)
    assert response.status_code == 200 and "Notification emails are off" in response.text
    assert EmailPreference.objects.get(user=alice).notify is False

    forged = email_off_token(bob)[:-2] + "xx"
    response = client.post(f"/accounts/emails/off/{forged}/")
    assert response.status_code == 400
    assert not EmailPreference.objects.filter(user=bob).exists()


def test_a_password_reset_lifts_the_login_lockout(settings, make_user):
    make_user("alice", email="alice@example.com")
    locked = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = locked.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 429 and 'href="/accounts/password_reset/"' in response.text

    Client().post("/accounts/password_reset/", {"email": "alice@example.com"})
    browser = Client()
    response = browser.get(reset_link(mail.outbox[0].body), follow=True)
    browser.post(response.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    response = locked.post("/accounts/login/", {"username": "alice", "password": NEW_PASSWORD})
    assert response.status_code == 302 and SESSION_KEY in locked.session
