"""clients.login: the login form as a browser fills it (CSRF cookie and token, a same-origin
Referer, the session cookie), against a stand-in server that checks what Django checks."""

import http.server
import threading
import urllib.parse
from collections.abc import Iterator

import pytest

from clients.endpoint import ClientError, Endpoint
from clients.login import login, parse_form
from tests.support.daphne_server import free_port

FORM = b"""<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="form-token">
<input name="username"><input type="password" name="password"></form>"""


def test_parse_form_finds_the_csrf_tokens_and_the_password_field():
    form = parse_form(FORM)
    assert (form.csrf, form.password_field) == (["form-token"], True)
    page = parse_form("<p>Welcome</p><input name='csrfmiddlewaretoken' value='t2'><input name='csrfmiddlewaretoken'>")
    assert (page.csrf, page.password_field) == (["t2"], False)  # an empty value is no token


class LoginPage(http.server.BaseHTTPRequestHandler):
    """GET: the form and a csrftoken cookie. POST: 403 without both tokens and a same-origin
    Referer; the form again for a wrong password; else a session cookie."""

    password = "right"
    posts: list[dict[str, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Set-Cookie", "csrftoken=cookie-token; Path=/")
        self.end_headers()
        self.wfile.write(FORM)

    def do_POST(self) -> None:
        fields = dict(
            urllib.parse.parse_qsl(
                self.rfile.read(int(self.headers["Content-Length"])).decode(), keep_blank_values=True
            )
        )
        self.posts.append(fields)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if (
            "csrftoken=cookie-token" not in (self.headers["Cookie"] or "")
            or fields.get("csrfmiddlewaretoken") != "form-token"
            or not (self.headers["Referer"] or "").startswith(base)
        ):
            self.send_response(403)
            self.end_headers()
            return
        self.send_response(200)
        if fields.get("password") == self.password:
            self.send_header("Set-Cookie", "sessionid=s3cret; Path=/")
            self.end_headers()
            self.wfile.write(b"<p>Lobby</p>")
        else:
            self.end_headers()
            self.wfile.write(FORM)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LoginPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    LoginPage.posts = []
    try:
        yield Endpoint(f"ws://127.0.0.1:{server.server_address[1]}/ws/chat/")
    finally:
        server.shutdown()
        server.server_close()


def test_login_posts_the_form_with_its_token_and_returns_the_session_cookie(endpoint):
    cookie = login(endpoint, "alice", "right", timeout=5)
    assert set(cookie.split("; ")) == {"csrftoken=cookie-token", "sessionid=s3cret"}
    assert LoginPage.posts == [
        {"csrfmiddlewaretoken": "form-token", "username": "alice", "password": "right", "next": ""}
    ]


def test_a_wrong_password_is_one_sentence_to_fix(endpoint):
    with pytest.raises(ClientError) as caught:
        login(endpoint, "alice", "wrong", timeout=5)
    assert (
        caught.value.message == "Login as 'alice' failed: wrong username or password (or the account is deactivated)."
    )
    assert caught.value.fixable


def test_nothing_listening_may_pass():
    with pytest.raises(ClientError) as caught:
        login(Endpoint(f"ws://127.0.0.1:{free_port()}/ws/chat/"), "alice", "right", timeout=5)
    assert "connection refused" in caught.value.message and not caught.value.fixable
