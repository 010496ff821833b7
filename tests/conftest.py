import asyncio
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from chat import auth, limits, presence, services, session_watch

ORIGIN = "http://testserver"
TEST_PASSWORD = "correct-horse-42"


# pytest-xdist runs the modules on two processes (pyproject.toml: -n 2 --dist loadfile), since
# most tests wait on sockets and subprocesses. A test marked `exclusive` (hundreds of sockets at
# once, whose handshakes must finish within Daphne's timeouts) runs while the other process is
# idle: it holds a lock file exclusively, every other test holds it shared, from its setup to its
# teardown (module fixtures included).  Without xdist, nothing is locked.
HEAVY_MODULES_FIRST = ("test_faults.py", "test_cluster.py")


def pytest_collection_modifyitems(items):
    """The longest modules first, so that under xdist neither process is left with one at the end."""
    items.sort(key=lambda item: item.path.name not in HEAVY_MODULES_FIRST)  # stable: order within a module kept


def _lock_path(run: str) -> Path:
    return Path(tempfile.gettempdir()) / f"chat-tests-{run}.lock"


def _run_lock() -> Path | None:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run or not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    return _lock_path(run)


_lock_files: set[Path] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """(xdist, in the controlling process) Note the run's lock file, to delete it at the end."""
    _lock_files.add(_lock_path(node.workerinput["testrunuid"]))


def pytest_unconfigure(config):
    for path in _lock_files:
        path.unlink(missing_ok=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    path = _run_lock()
    if path is None:
        return (yield)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if item.get_closest_marker("exclusive") else fcntl.LOCK_SH)
        try:
            return (yield)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    """In-process tests hash with MD5 instead of PBKDF2 (a quarter of a second per hash here, and
    most tests create users): what they check is that passwords work, not how slow the hash is.
    The real workers (tests/daphne_server.py, tests/cluster_server.py) keep the configured hasher."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def fresh_realtime_state():
    """Each test gets an empty channel layer and presence (they hold asyncio queues bound to
    the test's own event loop)."""
    channel_layers.backends.clear()
    presence._backend = None
    session_watch._watch = session_watch.SessionWatch()
    limits.reset_user_limits()
    # Per-address counts (sign-ups in the cache, failed tokens in memory): every in-process test
    # comes from 127.0.0.1, so one test's count must not limit the next.
    cache.clear()
    auth.token_failures.cache_clear()
    yield
    channel_layers.backends.clear()


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class Socket:
    """A WebsocketCommunicator with the helpers the tests need."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, frame_type: str | None = None, **fields: Any) -> None:
        if frame_type is not None:
            fields["type"] = frame_type
        await self.communicator.send_json_to(fields)

    async def send_text(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def recv(self, timeout: float = 3) -> dict[str, Any]:
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", f"expected a frame, got {output}"
        # Daphne encodes every text frame as UTF-8; one that cannot be (a lone surrogate) ends
        # the socket there, so a reply that would fail is a failure here too.
        output["text"].encode("utf-8")
        return json.loads(output["text"])

    async def expect(self, frame_type: str, timeout: float = 3, **match: Any) -> dict[str, Any]:
        """The next frame of `frame_type` (matching `match`), skipping presence/typing chatter."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = []
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                frame = await self.recv(timeout=max(remaining, 0.01))
            except TimeoutError:
                raise AssertionError(f"no {frame_type} {match} within {timeout}s; got {seen}") from None
            if frame["type"] == frame_type and all(frame.get(k) == v for k, v in match.items()):
                return frame
            if frame["type"] not in {"presence", "typing"}:
                seen.append(frame)
                if frame["type"] == "error" and frame_type != "error":
                    raise AssertionError(f"expected {frame_type}, got error {frame}")

    async def request(self, frame_type: str, **fields: Any) -> dict[str, Any]:
        """Send a frame with a ref and return the reply carrying that ref."""
        ref = f"r{id(fields)}-{frame_type}"
        await self.send(frame_type, ref=ref, **fields)
        deadline = asyncio.get_running_loop().time() + 3
        while True:
            frame = await self.recv(timeout=max(deadline - asyncio.get_running_loop().time(), 0.01))
            if frame.get("ref") == ref:
                return frame

    async def join(self, room: str, **fields: Any) -> dict[str, Any]:
        reply = await self.request("join", room=room, **fields)
        assert reply["type"] == "joined", reply
        return reply

    async def drain(self, wait: float = 0.1) -> list[dict[str, Any]]:
        """Every frame that arrives until `wait` seconds pass without one. (A receive that times
        out would cancel the application, so this polls with receive_nothing.)"""
        frames = []
        while not await self.communicator.receive_nothing(timeout=wait):
            frames.append(await self.recv())
        return frames

    async def closed_with(self, timeout: float = 5) -> int:
        """Wait for the server to close the socket; return the close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            output = await self.communicator.receive_output(max(deadline - asyncio.get_running_loop().time(), 0.01))
            if output["type"] == "websocket.close":
                return output.get("code", 1000)

    async def nothing(self, frame_type: str, wait: float = 0.3) -> None:
        frames = await self.drain(wait)
        assert not [f for f in frames if f["type"] == frame_type], frames

    async def close(self) -> None:
        try:
            await self.communicator.disconnect()
        except (Exception, asyncio.CancelledError):  # the server closed it already
            pass


async def open_socket(cookie: str | None = None, *, origin: str | None = ORIGIN) -> tuple[Socket, bool, int | None]:
    from config.asgi import application

    headers = [(b"host", b"testserver")]  # as a browser sends it: the Origin check compares the two
    if cookie is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return Socket(communicator), connected, code


@pytest.fixture
def make_user(django_user_model):
    def make(username: str, **extra):
        return django_user_model.objects.create_user(username, password=TEST_PASSWORD, **extra)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def make_room():
    def make(slug: str, *, archived: bool = False, **extra):
        room = services.room_create(slug=slug, name=extra.pop("name", slug.title()), **extra)
        return services.room_archive(room=room) if archived else room

    return make


@pytest.fixture
async def connect():
    """`await connect(user)`: an open, authenticated socket, closed at the end of the test."""
    from channels.db import database_sync_to_async

    sockets: list[Socket] = []

    async def _connect(user) -> Socket:
        cookie = await database_sync_to_async(session_cookie)(user)
        socket, connected, _ = await open_socket(cookie)
        assert connected
        sockets.append(socket)
        return socket

    yield _connect
    for socket in sockets:
        await socket.close()


# Real processes, one per test module: a Daphne worker with the demo data, and Debian's Chromium.
# A module that needs its worker configured otherwise defines its own `server`.


@pytest.fixture(scope="module")
def server():
    from tests.daphne_server import DaphneServer

    with DaphneServer() as daphne:
        yield daphne


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
