"""Who may sign up, log in and authenticate, and from where (docs/security.md):

- sign-up refuses look-alike usernames and is limited per client address;
- a colleague behind the same address cannot lock you out of your account;
- X-Forwarded-For counts only when a trusted proxy sent it (HTTP and WebSocket);
- HSTS from the environment, and `check --deploy` clean with production variables;
- failed API-token authentications are limited per address, on HTTP and on the socket.

Most run on a real worker (tests/support/daphne_server.py) as a browser or a script meets it.
"""

import asyncio
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import websockets
from websockets.exceptions import ConnectionClosed

from tests.support.daphne_server import DEMO_PASSWORD, REPO_ROOT, DaphneServer, HttpSession, clean_env

PASSWORD = "Str0ng-enough-pw"


def signup(browser: HttpSession, username: str):
    data = {"username": username, "email": f"{username}@example.com", "password1": PASSWORD, "password2": PASSWORD}
    return browser.submit("/accounts/signup/", data)


def raw_token(server: DaphneServer, username: str) -> str:
    return server.manage("create_token", username).stdout.strip().splitlines()[-1]


def api_get(server: DaphneServer, token: str, *, forwarded_for: str | None = None):
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return server.session().request("GET", "/api/rooms/", headers=headers)


async def socket_close_code(server: DaphneServer, token: str, *, forwarded_for: str | None = None) -> int | None:
    """Open a token socket and wait until the server closes it; None if it stays open (a ping
    gets through)."""
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    async with websockets.connect(server.ws_url, additional_headers=headers, open_timeout=5) as ws:
        try:
            await ws.send(json.dumps({"type": "ping"}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
                if frame.get("type") == "pong":
                    return None
        except ConnectionClosed:
            return ws.close_code


def logout(browser: HttpSession) -> None:
    room_list = browser.get("/")
    logged_out = browser.request(
        "POST",
        "/accounts/logout/",
        {"csrfmiddlewaretoken": browser.csrf_token_from(room_list)},
        headers={"Referer": browser.url("/")},
    )
    assert logged_out.status == 200 and not browser.cookie("sessionid")


def assert_access_log(server: DaphneServer, marker: str, address: str, *, not_there: str | None = None) -> None:
    deadline = time.monotonic() + 5
    while not (lines := [line for line in server.log().splitlines() if marker in line]):
        assert time.monotonic() < deadline, f"no access-log line with {marker!r}:\n{server.log()[-2000:]}"
        time.sleep(0.05)
    assert address in lines[0] and (not_there is None or not_there not in lines[0]), lines


# 1. Sign-up --------------------------------------------------------------------------------------


def test_signups_are_limited_per_address_on_a_real_worker():
    """The issue's `15 sign-ups in a row from one address`: here the fourth of a limit of 3 is refused
    with a page that says why; another client address (through the trusted proxy) still signs up."""
    with DaphneServer(env={"CHAT_SIGNUP_PER_HOUR": "3"}, worker_args=["--proxy-headers"]) as server:
        for number in range(3):
            browser = server.session()
            assert signup(browser, f"newcomer{number}").status == 200 and browser.cookie("sessionid")
        browser = server.session()
        refused = signup(browser, "newcomer3")
        assert refused.status == 429
        assert "Too many accounts have been created from your network" in refused.text
        assert "Traceback" not in refused.text and not browser.cookie("sessionid")
        page = browser.get("/accounts/login/")
        login = browser.submit("/accounts/login/", {"username": "newcomer3", "password": PASSWORD})
        assert page.status == 200 and login.status == 200 and not browser.cookie("sessionid")  # never created

        elsewhere = server.session()
        page = elsewhere.get("/accounts/signup/")
        response = elsewhere.request(
            "POST",
            "/accounts/signup/",
            {
                "csrfmiddlewaretoken": elsewhere.csrf_token_from(page),
                "username": "newcomer4",
                "email": "newcomer4@example.com",
                "password1": PASSWORD,
                "password2": PASSWORD,
            },
            headers={"Referer": elsewhere.url("/accounts/signup/"), "X-Forwarded-For": "198.51.100.20"},
        )
        assert response.status == 200 and elsewhere.cookie("sessionid")


# 2. Login lockout --------------------------------------------------------------------------------


def test_a_colleague_on_the_same_address_cannot_lock_you_out():
    """Same address (a shared NAT): the guesser's wrong passwords lock every browser but the ones
    alice has logged in from; her right password still gets her in at once from her own browser,
    while the guesser is refused even the right password."""
    with DaphneServer() as server:
        alices = server.login_session("alice")
        logout(alices)

        guesser = server.session()
        for number in range(5):  # CHAT_LOGIN_FAILURE_LIMIT
            wrong = guesser.submit("/accounts/login/", {"username": "alice", "password": f"guess{number}"})
            assert wrong.status in {200, 429}
        started = time.monotonic()
        refused = guesser.submit("/accounts/login/", {"username": "alice", "password": DEMO_PASSWORD})
        assert refused.status == 429 and "Too many failed logins" in refused.text
        assert "A browser you have logged in to this account from before is not locked" in refused.text
        assert not guesser.cookie("sessionid")
        stranger = server.session()  # a browser alice never used, on the same network: locked too
        assert stranger.submit("/accounts/login/", {"username": "alice", "password": DEMO_PASSWORD}).status == 429

        back = alices.submit("/accounts/login/", {"username": "alice", "password": DEMO_PASSWORD})
        assert back.status == 200 and alices.cookie("sessionid") and back.url.rstrip("/") == server.base_url
        assert time.monotonic() - started < 10  # no 15-minute wait

        # Her own browser does not turn into a guessing machine for other accounts.
        logout(alices)
        for number in range(5):
            alices.submit("/accounts/login/", {"username": "bob", "password": f"guess{number}"})
        assert alices.submit("/accounts/login/", {"username": "bob", "password": DEMO_PASSWORD}).status == 429


def login_as(browser: HttpSession, username: str, password: str):
    return browser.submit("/accounts/login/", {"username": username, "password": password})


def test_a_known_browser_is_no_way_around_the_lockout():
    """The known-browser cookie lets its owner past a lock, and no more: the owner's login does
    not give a guesser on the same address fresh guesses; a known browser (say a shared computer
    after a logout) has CHAT_LOGIN_FAILURE_LIMIT wrong passwords of its own, then is locked like
    any other; and a password change revokes every known browser."""
    with DaphneServer() as server:
        # The owner's login leaves the guesser locked.
        alices = server.login_session("alice")
        logout(alices)
        guesser = server.session()
        for number in range(5):
            login_as(guesser, "alice", f"guess{number}")
        assert login_as(alices, "alice", DEMO_PASSWORD).status == 200 and alices.cookie("sessionid")
        assert login_as(guesser, "alice", "guess-after-her-login").status == 429
        assert login_as(guesser, "alice", DEMO_PASSWORD).status == 429

        # A known browser's own budget: 5 free wrong passwords, then axes counts it, 5 more lock it.
        bobs = server.login_session("bob")
        logout(bobs)
        for number in range(10):
            login_as(bobs, "bob", f"guess{number}")
        refused = login_as(bobs, "bob", DEMO_PASSWORD)
        assert refused.status == 429 and not bobs.cookie("sessionid")

        # A password change: carol's old browser is a stranger again.
        carols = server.login_session("carol")
        logout(carols)
        server.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; u = User.objects.get(username='carol'); "
            "u.set_password('a-New-passw0rd'); u.save()",
        )
        stranger = server.session()
        for number in range(5):
            login_as(stranger, "carol", f"guess{number}")
        assert login_as(carols, "carol", "a-New-passw0rd").status == 429


# 3. X-Forwarded-For only from a trusted proxy ------------------------------------------------------


def test_a_forged_x_forwarded_for_from_an_untrusted_peer_is_ignored():
    """A worker run with --proxy-headers and reached directly (its proxy is elsewhere): rotating
    X-Forwarded-For buys no extra password guesses, and the address /metrics judges is the peer's."""
    env = {"CHAT_TRUSTED_PROXIES": "192.0.2.1"}  # the proxy; 127.0.0.1, where the test is, is not it
    with DaphneServer(env=env, worker_args=["--proxy-headers"]) as server:
        for number in range(5):
            browser = server.session()
            page = browser.get("/accounts/login/")
            browser.request(
                "POST",
                "/accounts/login/",
                {"csrfmiddlewaretoken": browser.csrf_token_from(page), "username": "bob", "password": "guess"},
                headers={"Referer": browser.url("/accounts/login/"), "X-Forwarded-For": f"203.0.113.{number + 1}"},
            )
        browser = server.session()
        page = browser.get("/accounts/login/")
        response = browser.request(
            "POST",
            "/accounts/login/",
            {"csrfmiddlewaretoken": browser.csrf_token_from(page), "username": "bob", "password": DEMO_PASSWORD},
            headers={"Referer": browser.url("/accounts/login/"), "X-Forwarded-For": "203.0.113.99"},
        )
        assert response.status == 429 and not browser.cookie("sessionid")
        metrics = server.session().request("GET", "/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
        assert metrics.status == 200  # judged by the real peer, 127.0.0.1, not the forged address
        server.session().request("GET", "/healthz?forged-xff", headers={"X-Forwarded-For": "203.0.113.6"})
        assert_access_log(server, "forged-xff", "127.0.0.1", not_there="203.0.113.6")


def test_plain_daphne_with_proxy_headers_also_believes_only_the_trusted_proxy(tmp_path):
    """bin/daphne-worker falls back to plain Daphne where no Python sits beside it; config.asgi
    applies the trusted-proxy rule there too."""
    plain = tmp_path / "daphne"
    plain.symlink_to(Path(sys.executable).parent / "daphne")  # no python beside it: the fallback
    env = {"DAPHNE": str(plain), "CHAT_TRUSTED_PROXIES": "192.0.2.1"}
    with DaphneServer(env=env, worker_args=["--proxy-headers"]) as server:
        metrics = server.session().request("GET", "/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
        assert metrics.status == 200  # judged by the real peer, 127.0.0.1, not the forged address
        command = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert str(plain) in command and "server.worker" not in command  # plain Daphne served it


def test_x_forwarded_for_from_the_trusted_proxy_names_the_client():
    """Behind the proxy (here loopback, the default, as `make cluster` runs it), the client's own
    address counts: a public client gets no /metrics, and its failed tokens do not throttle others,
    on HTTP and on the socket alike."""
    env = {"CHAT_TOKEN_FAILURES_PER_MINUTE": "2"}
    with DaphneServer(env=env, worker_args=["--proxy-headers"]) as server:
        assert server.session().request("GET", "/metrics", headers={"X-Forwarded-For": "203.0.113.5"}).status == 403
        assert server.session().get("/metrics").status == 200
        server.session().request("GET", "/healthz?proxied-xff", headers={"X-Forwarded-For": "203.0.113.6"})
        assert_access_log(server, "proxied-xff", "203.0.113.6")  # Daphne's own log names the client
        for _ in range(2):
            assert api_get(server, "chat_wrong", forwarded_for="203.0.113.5").status == 401
        assert api_get(server, "chat_wrong", forwarded_for="203.0.113.5").status == 429
        assert asyncio.run(socket_close_code(server, "chat_wrong", forwarded_for="203.0.113.5")) == 4429
        assert asyncio.run(socket_close_code(server, "chat_wrong", forwarded_for="198.51.100.7")) == 4401
        assert api_get(server, "chat_wrong", forwarded_for="198.51.100.7").status == 401


# 4. HSTS and check --deploy ------------------------------------------------------------------------


def test_hsts_is_sent_once_tls_is_on():
    env = {"DJANGO_SECURE_COOKIES": "1", "DJANGO_BEHIND_PROXY": "1", "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1"}
    with DaphneServer(env=env, worker_args=["--proxy-headers"]) as server:
        response = server.session().request("GET", "/healthz", headers={"X-Forwarded-Proto": "https"})
        assert response.status == 200
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_check_deploy_is_clean_with_the_production_variables(tmp_path):
    env = clean_env(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "chat.example.com",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
            "DJANGO_SECURE_SSL_REDIRECT": "1",
            "DJANGO_SECURE_COOKIES": "1",
            "DJANGO_BEHIND_PROXY": "1",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output and "WARNING" not in output


# 5. Failed token authentications ------------------------------------------------------------------


def test_failed_tokens_over_http_are_limited_per_address():
    with DaphneServer(env={"CHAT_TOKEN_FAILURES_PER_MINUTE": "5"}) as server:
        good = raw_token(server, "alice")
        assert api_get(server, good).status == 200
        for number in range(5):
            response = api_get(server, f"chat_wrong{number}")
            assert response.status == 401 and json.loads(response.body)["code"] == "unauthorized"
        for number in range(3):
            response = api_get(server, f"chat_more_wrong{number}")
            assert response.status == 429, response.text
            body = json.loads(response.body)
            assert body["code"] == "rate_limited" and "Too many failed token authentications" in body["detail"]
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        # A right token still works: a flood of wrong ones from the same network cannot lock bots out.
        assert api_get(server, good).status == 200
        # The session (no token) is not what is limited.
        browser = server.login_session("alice")
        assert browser.request("GET", "/api/rooms/", headers={"Accept": "application/json"}).status == 200


def test_failed_tokens_on_the_socket_are_limited_per_address():
    with DaphneServer(env={"CHAT_TOKEN_FAILURES_PER_MINUTE": "5"}) as server:
        good = raw_token(server, "alice")

        async def scenario():
            assert await socket_close_code(server, good) is None
            codes = [await socket_close_code(server, f"chat_wrong{number}") for number in range(5)]
            assert codes == [4401] * 5
            assert await socket_close_code(server, "chat_wrong") == 4429
            assert await socket_close_code(server, good) is None  # a right token is always let in
            # Many wrong handshakes at once cannot slip past the limit together.
            burst = await asyncio.gather(*(socket_close_code(server, f"chat_burst{n}") for n in range(10)))
            assert burst == [4429] * 10

        asyncio.run(scenario())
        response = api_get(server, "chat_wrong_over_http")  # one count per address, HTTP and socket together
        assert response.status == 429
