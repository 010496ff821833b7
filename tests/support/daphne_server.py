"""Run a real Daphne worker (`bin/daphne-worker`) as a subprocess, for tests over real sockets.

Not a test module. Usage:

    with DaphneServer() as server:
        cookie = server.login("alice")
        ... websockets.connect(server.ws_url, additional_headers={"Cookie": cookie, "Origin": server.base_url})

Each server gets its own port on 127.0.0.1, its own temporary directory with a SQLite database
(migrated, with the demo data of `seed_demo`), and a log file with everything the worker printed.
The migrated (and seeded) database is made once per test process, by the same `manage.py migrate`
and `seed_demo` runs, and copied for each server: a fresh file per server, without the two Django
start-ups per server. A server given its own DATABASE_URL migrates (and seeds) it itself.
"""

from __future__ import annotations

import atexit
import http.cookiejar
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from clients.login import parse_form

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_SETTINGS = "tests.support.server_settings"  # config.settings with a fast password hasher
DEMO_PASSWORD = "chatdemo"

# Variables of the developer's shell that would change what the worker does: dropped, so the
# server under test depends only on what the test gives it.
_SCRUBBED_PREFIXES = ("DJANGO_", "CHAT_", "EMAIL_")
_SCRUBBED_NAMES = {"DATABASE_URL", "REDIS_URL", "DEFAULT_FROM_EMAIL"}


class DaphneStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ without the app's configuration variables, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _SCRUBBED_NAMES and not name.startswith(_SCRUBBED_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_manage(env: dict[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run `manage.py ARGS` with `env`; fail loudly if it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args)} exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


_templates: dict[bool, Path] = {}  # seed? -> a SQLite file as `migrate` (and `seed_demo`) left it


def template_database(seed: bool) -> Path:
    """A migrated (and, if `seed`, seeded) SQLite database, made once per process."""
    if seed not in _templates:
        directory = Path(tempfile.mkdtemp(prefix="chat-template-db-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        env = clean_env(
            {
                "DJANGO_SETTINGS_MODULE": SERVER_SETTINGS,
                "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            }
        )
        run_manage(env, "migrate", "--noinput")
        if seed:
            run_manage(env, "seed_demo")
        _templates[seed] = directory / "db.sqlite3"
    return _templates[seed]


def copy_database(template: Path, target: Path) -> None:
    shutil.copyfile(template, target)
    wal = template.with_name(template.name + "-wal")  # normally checkpointed away when manage.py exits
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))


class HttpResponse:
    def __init__(self, status: int, url: str, body: bytes, headers: Any) -> None:
        self.status = status
        self.url = url  # the final URL, after redirects
        self.body = body
        self.headers = headers

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status} {self.url}>"


class HttpSession:
    """A browser-like HTTP client: a cookie jar, redirects followed, CSRF tokens from forms."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # never through a proxy: the server is on 127.0.0.1
            urllib.request.HTTPCookieProcessor(self.jar),
        )

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def request(
        self, method: str, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> HttpResponse:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.url(path), data=body, method=method, headers=headers or {})
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return HttpResponse(response.status, response.geturl(), response.read(), response.headers)
        except urllib.error.HTTPError as error:
            with error:
                return HttpResponse(error.code, error.geturl(), error.read(), error.headers)

    def get(self, path: str) -> HttpResponse:
        return self.request("GET", path)

    def cookie(self, name: str) -> str | None:
        for cookie in self.jar:
            if cookie.name == name:
                return cookie.value
        return None

    def cookie_header(self) -> str:
        """The value of a `Cookie:` header carrying this session's cookies."""
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.jar)

    def csrf_token_from(self, page: HttpResponse) -> str:
        tokens = parse_form(page.body).csrf
        assert tokens, f"no csrfmiddlewaretoken in the form at {page.url} (status {page.status})"
        return tokens[0]

    def submit(self, form_path: str, data: dict[str, str], *, action: str | None = None) -> HttpResponse:
        """GET the page with the form at `form_path`, then POST `data` with its CSRF token to
        `action` (default: the same path), with a same-origin Referer as a browser would."""
        page = self.get(form_path)
        assert page.status == 200, f"GET {form_path} answered {page.status}"
        token = self.csrf_token_from(page)
        assert self.cookie("csrftoken"), f"GET {form_path} set no csrftoken cookie"
        return self.request(
            "POST",
            action or form_path,
            {"csrfmiddlewaretoken": token, **data},
            headers={"Referer": self.url(form_path)},
        )


class DaphneServer:
    """A Daphne worker on a free port of 127.0.0.1 with its own migrated, seeded database."""

    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
        seed: bool = True,
        worker_args: list[str] | None = None,
    ) -> None:
        self.extra_env = dict(env or {})
        self.worker_args = list(worker_args or [])  # more bin/daphne-worker options (--proxy-headers)
        self.startup_timeout = startup_timeout
        self.seed = seed
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self.process: subprocess.Popen | None = None
        self._log_handle = None

    # Addresses -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/"

    @property
    def log_path(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "daphne.log"

    def log(self) -> str:
        """Everything the worker wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except (FileNotFoundError, AssertionError):
            return ""

    # Life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> DaphneServer:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> None:
        self.port = free_port()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="chat-daphne-"))
        try:
            self.env = clean_env(
                {
                    "DJANGO_SETTINGS_MODULE": SERVER_SETTINGS,
                    "DATABASE_URL": f"sqlite:///{self.tmpdir / 'db.sqlite3'}",
                    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                    "DAPHNE": str(Path(sys.executable).parent / "daphne"),
                    **self.extra_env,
                }
            )
            if "DATABASE_URL" in self.extra_env:
                self.manage("migrate", "--noinput")
                if self.seed:
                    self.manage("seed_demo")
            else:
                copy_database(template_database(self.seed), self.tmpdir / "db.sqlite3")
            self._log_handle = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
            self.start_worker()
        except BaseException:
            self.stop()
            raise

    def start_worker(self) -> None:
        """Start the worker process (again) on the same port and database."""
        self.process = subprocess.Popen(
            [str(REPO_ROOT / "bin" / "daphne-worker"), "-b", "127.0.0.1", "-p", str(self.port), *self.worker_args],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_healthy()

    def stop_worker(self) -> None:
        """Stop the worker process only, keeping the port and the database (a server restart)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error: object = None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DaphneStartError(
                    f"bin/daphne-worker exited with code {self.process.returncode} before answering "
                    f"/healthz.\n--- worker log ---\n{self.log()}"
                )
            try:
                with opener.open(self.base_url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
                    last_error = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last_error = f"HTTP {error.code}"
            except OSError as error:
                last_error = error
            time.sleep(0.1)
        raise DaphneStartError(
            f"bin/daphne-worker on port {self.port} did not answer GET /healthz with 200 within "
            f"{self.startup_timeout:.0f} s (last: {last_error!r}).\n--- worker log ---\n{self.log()}"
        )

    def stop(self) -> None:
        self.stop_worker()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    # Helpers -------------------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run `manage.py ARGS` against this server's database; fail loudly if it fails."""
        return run_manage(self.env, *args, timeout=timeout)

    def session(self) -> HttpSession:
        """A fresh, anonymous browser-like HTTP session against this server."""
        return HttpSession(self.base_url)

    def login_session(self, username: str, password: str = DEMO_PASSWORD) -> HttpSession:
        """Log in through the real login form; return the logged-in HTTP session."""
        browser = self.session()
        response = browser.submit("/accounts/login/", {"username": username, "password": password})
        assert response.status == 200, f"login as {username} answered {response.status} at {response.url}"
        assert browser.cookie("sessionid"), (
            f"login as {username} did not set a sessionid cookie (ended at {response.url}, status {response.status})"
        )
        return browser

    def login(self, username: str, password: str = DEMO_PASSWORD) -> str:
        """Log in through the real login form; return a `Cookie:` header value for that session."""
        return self.login_session(username, password).cookie_header()

    def signup(self, username: str, password: str) -> HttpSession:
        """Create an account through the real sign-up form; return the (logged-in) HTTP session."""
        browser = self.session()
        response = browser.submit(
            "/accounts/signup/",
            {"username": username, "email": f"{username}@example.com", "password1": password, "password2": password},
        )
        assert response.status == 200 and browser.cookie("sessionid"), (
            f"sign-up of {username} did not log in (status {response.status} at {response.url})\n{response.text[:2000]}"
        )
        return browser
