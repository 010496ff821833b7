"""Email through a real SMTP server (aiosmtpd) from a real worker: the password-reset email and its
link, and a notification email about an unread direct message, sent once by the worker's own
runner, whose one-click link turns the emails off."""

import json
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from tests.support import postgres_server
from tests.support.daphne_server import REPO_ROOT, DaphneServer, clean_env, run_manage
from tests.support.smtp_server import SmtpServer

SITE = "http://chat.example.com"  # CHAT_SITE_URL: links in notification emails start with it
NEW_PASSWORD = "silver-kettle-5521"


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(smtp):
    env = {
        **smtp.env(),
        "CHAT_SITE_URL": SITE,
        "CHAT_EMAIL_NOTIFY_DELAY_SECONDS": "1",
        "CHAT_EMAIL_NOTIFY_INTERVAL_SECONDS": "1",
    }
    with DaphneServer(env=env) as daphne:
        yield daphne


def api(server: DaphneServer, token: str, path: str, payload: dict) -> dict:
    request = urllib.request.Request(
        server.base_url + path,
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_the_password_reset_email_arrives_and_its_link_sets_a_new_password(server, smtp):
    server.signup("erin", "first-password-8812")
    elsewhere = server.login_session("erin", "first-password-8812")

    response = server.session().submit("/accounts/password_reset/", {"email": "erin@example.com"})
    assert response.status == 200 and "Check your email" in response.text
    email = smtp.wait_for(lambda message: message["To"] == "erin@example.com")
    assert email["Subject"] == "Reset your password on Channels Chat"
    assert email["From"] == "Chat <chat@example.com>"
    link = re.search(r"http://127\.0\.0\.1:\d+(/accounts/reset/\S+/)", email.get_content())
    assert link, email.get_content()

    browser = server.session()
    form_page = browser.get(link.group(1))
    assert form_page.status == 200 and "Choose a new password" in form_page.text
    form_path = urllib.parse.urlsplit(form_page.url).path
    response = browser.submit(form_path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status == 200 and "Your new password is set" in response.text

    assert server.login_session("erin", NEW_PASSWORD).cookie("sessionid")
    assert elsewhere.get("/").url.endswith("/accounts/login/?next=/")  # the old session is over


def test_an_unread_direct_message_gets_one_email_from_the_worker(server, smtp):
    token = server.manage("create_token", "alice").stdout.strip().splitlines()[-1]
    room = api(server, token, "/api/direct/", {"users": ["carol"]})["room"]
    api(server, token, f"/api/rooms/{room}/messages/", {"body": "Lunch at noon?", "client_id": "lunch-1"})
    api(server, token, f"/api/rooms/{room}/messages/", {"body": "Or one?", "client_id": "lunch-2"})

    email = smtp.wait_for(lambda message: message["To"] == "carol@example.com")
    assert email["Subject"] == "2 messages are waiting for you on Channels Chat"
    body = email.get_content()
    assert "Lunch at noon?" in body and "Or one?" in body and f"{SITE}/rooms/{room}/" in body
    off_url = "".join(str(email["List-Unsubscribe"]).split()).strip("<>")  # unfolded
    assert off_url.startswith(f"{SITE}/accounts/emails/off/") and off_url in body
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    time.sleep(3)  # three more runs of the worker's runner (every second): nothing new to send
    assert [m["To"] for m in smtp.messages()].count("carol@example.com") == 1

    # The one-click link, as a mail program's "Unsubscribe" posts it: no more emails.
    off_path = urllib.parse.urlsplit(off_url).path
    response = server.session().request("POST", off_path, {"List-Unsubscribe": "One-Click"})
    assert response.status == 200 and "Notification emails are off" in response.text
    api(server, token, f"/api/rooms/{room}/messages/", {"body": "Hello?", "client_id": "lunch-3"})
    time.sleep(3)
    assert [m["To"] for m in smtp.messages()].count("carol@example.com") == 1


@pytest.mark.skipif(not postgres_server.available(), reason="PostgreSQL's server binaries are not installed")
def test_runs_at_once_in_several_processes_send_each_email_once():
    """Three processes look at once (as the workers of a cluster do), on PostgreSQL, with an SMTP
    server slow enough that their runs overlap: each recipient gets one email, not three."""
    with postgres_server.PostgresServer() as pg, SmtpServer(delay=0.5) as smtp:
        env = clean_env(
            {
                "DATABASE_URL": pg.url,
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "CHAT_EMAIL_NOTIFY_DELAY_SECONDS": "0",
                **smtp.env(),
            }
        )
        run_manage(env, "migrate", "--noinput")
        run_manage(env, "seed_demo")
        run_manage(
            env,
            "shell",
            "--command",
            "from django.contrib.auth.models import User\n"
            "from chat import services\n"
            "alice = User.objects.get(username='alice')\n"
            "for name in ('bob', 'carol', 'admin'):\n"
            "    room, _ = services.direct_open(user=alice, usernames=[name])\n"
            "    services.message_send(room=room, author=alice, body='Are you there?')\n",
        )
        runs = [
            subprocess.Popen(
                [sys.executable, "manage.py", "send_notification_emails"],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [run.communicate(timeout=120)[0] for run in runs]
        assert all(run.returncode == 0 for run in runs), outputs
        assert Counter(message["To"] for message in smtp.messages()) == {
            "bob@example.com": 1,
            "carol@example.com": 1,
            "admin@example.com": 1,
        }, outputs
