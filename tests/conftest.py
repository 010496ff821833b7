import fcntl
import os
import tempfile
from pathlib import Path

import pytest
from channels.layers import channel_layers
from django.core.cache import cache

from chat import group_commit, services, throttle
from chat.realtime import limits, presence, session_watch
from tests.support.sockets import TEST_PASSWORD, Socket, open_socket, session_cookie

# pytest-xdist runs the modules on three processes (pyproject.toml: -n 3 --dist loadfile), since
# most tests wait on sockets and subprocesses. A test marked `exclusive` (hundreds of sockets at
# once, whose handshakes must finish within Daphne's timeouts) runs while the other processes are
# idle: it holds a lock file exclusively, every other test holds it shared, from its setup to its
# teardown (module fixtures included).  Without xdist, nothing is locked.
HEAVY_MODULES_FIRST = ("test_faults.py", "test_cluster.py")


def pytest_collection_modifyitems(items):
    """The longest modules first, so that under xdist no process is left with one at the end."""
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
    The real workers (tests/support/daphne_server.py, tests/support/cluster_server.py) keep the configured hasher."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def fresh_realtime_state():
    """Each test gets an empty channel layer and presence (they hold asyncio queues bound to
    the test's own event loop)."""
    channel_layers.backends.clear()
    presence.reset_presence()
    session_watch.reset_session_watch()
    limits.reset_user_limits()
    group_commit.forget_access()
    # Per-address counts (sign-ups in the cache, failed tokens in memory): every in-process test
    # comes from 127.0.0.1, so one test's count must not limit the next.
    cache.clear()
    throttle.token_failures.cache_clear()
    yield
    channel_layers.backends.clear()


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
    from tests.support.daphne_server import DaphneServer

    with DaphneServer() as daphne:
        yield daphne


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
