"""Handshakes with the shared cache on (as with REDIS_URL): sessions (`cached_db`) and accounts
(chat.usercache) read from a real Redis, and what must still hold: a session that ends, a
password that changes or an account that is deactivated shuts the sockets and the next
handshake out, and Redis away (stopped, or not answering) costs a database read, not an error."""

import asyncio
import subprocess
import time
from importlib import import_module

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends import cached_db
from django.db import OperationalError
from django.db.backends.utils import CursorWrapper
from django.test import Client

from chat import cache as shared_cache
from chat import selectors, usercache
from chat.realtime.session_watch import get_session_watch
from tests.support.redis_server import RedisServer
from tests.support.sockets import TEST_PASSWORD, open_socket, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def redis():
    with RedisServer() as server:
        yield server


@pytest.fixture(autouse=True)
def cache_on(redis, settings):
    if redis.process is None:
        redis.start()
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "shared": {
            "BACKEND": "chat.cache.FailOpenRedisCache",
            "LOCATION": redis.url,
            "KEY_PREFIX": "chat",
            "MAX_TIMEOUT": 300,
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        },
    }
    settings.SESSION_ENGINE = "chat.sessions"  # Django's cached_db on one cache object per process
    settings.SESSION_CACHE_ALIAS = "shared"
    settings.CHAT_USER_CACHE = "shared"
    shared_cache.reset_health()
    from django.core.cache import caches

    caches["shared"].clear()
    yield
    shared_cache.reset_health()


@pytest.fixture
def lobby(make_room):
    return make_room("lobby", name="Lobby")


def database_away(monkeypatch):
    """Every SQL statement, from any thread, fails (and is noted) as with PostgreSQL down."""
    statements: list[str] = []

    def refuse(self, sql, *args, **kwargs):
        statements.append(sql)
        raise OperationalError("connection refused (the test took the database away)")

    monkeypatch.setattr(CursorWrapper, "_execute", refuse)
    monkeypatch.setattr(CursorWrapper, "_executemany", refuse)
    return statements


def redis_clients(redis) -> list[str]:
    listed = subprocess.run(["redis-cli", "-p", str(redis.port), "CLIENT", "LIST"], capture_output=True, text=True)
    return listed.stdout.splitlines()


def redis_cli(redis, *args: str) -> None:
    subprocess.run(["redis-cli", "-p", str(redis.port), *args], check=True, capture_output=True)


async def test_a_known_session_connects_without_reading_the_database(alice, monkeypatch):
    cookie = await database_sync_to_async(session_cookie)(alice)
    first, connected, _ = await open_socket(cookie)  # reads the account once, into the cache
    assert connected and (await first.request("ping"))["type"] == "pong"
    await first.close()
    with monkeypatch.context() as patch:
        statements = database_away(patch)
        socket, connected, _ = await open_socket(cookie)
        assert connected
        assert (await socket.request("ping"))["type"] == "pong"  # open, and authenticated as alice
        await socket.close()
    assert statements == []


async def test_logout_closes_the_socket_and_refuses_the_next_handshake(alice, lobby):
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    socket, _, _ = await open_socket(cookie)
    await socket.join("lobby")
    response = await database_sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await socket.closed_with(timeout=5) == 4401
    again, connected, _ = await open_socket(cookie)
    assert connected and await again.closed_with() == 4401


async def test_a_password_change_closes_other_sessions_and_refuses_their_handshakes(alice, lobby):
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    other_cookie = await database_sync_to_async(session_cookie)(alice)
    other, _, _ = await open_socket(other_cookie)  # alice's account is now in the cache
    await other.join("lobby")
    response = await database_sync_to_async(client.post)(
        "/accounts/password_change/",
        {"old_password": TEST_PASSWORD, "new_password1": "new-horse-staple-9", "new_password2": "new-horse-staple-9"},
    )
    assert response.status_code == 302, response.content
    assert await other.closed_with(timeout=5) == 4401
    again, _, _ = await open_socket(other_cookie)
    assert await again.closed_with() == 4401
    # The session that changed it carries the new hash: it still connects.
    mine, _, _ = await open_socket(client.cookies[settings.SESSION_COOKIE_NAME].value)
    assert (await mine.request("ping"))["type"] == "pong"
    await mine.close()


async def test_a_deactivated_account_is_refused_at_the_next_handshake(alice, connect):
    cookie = await database_sync_to_async(session_cookie)(alice)
    socket = await connect(alice)  # cached
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    assert await socket.closed_with(timeout=5) == 4401
    again, _, _ = await open_socket(cookie)
    assert await again.closed_with() == 4403


async def test_with_redis_stopped_pages_and_handshakes_read_the_database(alice, lobby, redis):
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    redis.stop()
    page = await database_sync_to_async(client.get)("/rooms/lobby/")
    assert page.status_code == 200
    socket, connected, _ = await open_socket(cookie)
    assert connected
    assert (await socket.join("lobby"))["room"] == "lobby"
    assert (await database_sync_to_async(client.post)("/accounts/logout/")).status_code == 302
    assert await socket.closed_with(timeout=5) == 4401
    redis.start()


async def test_a_logout_while_redis_does_not_answer_is_honoured_when_it_answers_again(alice, redis):
    """Redis paused (its data kept): the cached copy of the session cannot be deleted at logout.
    This worker must not let that copy in again once Redis answers."""
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    first, connected, _ = await open_socket(cookie)  # session and account cached
    assert connected
    await first.close()
    redis_cli(redis, "CLIENT", "PAUSE", "2500", "ALL")
    started = time.monotonic()
    response = await database_sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    await asyncio.sleep(max(0.0, 2.6 - (time.monotonic() - started)) + shared_cache.RETRY_SECONDS)
    again, connected, _ = await open_socket(cookie)
    assert connected and await again.closed_with() == 4401


async def test_handshakes_share_the_workers_redis_connections(alice, redis):
    """Django keeps a cache object per thread and per asyncio task: used as is, every socket would
    hold a cache client, a pool and a Redis connection of its own."""
    cookie = await database_sync_to_async(session_cookie)(alice)
    sockets = []
    for _ in range(10):
        socket, connected, _ = await open_socket(cookie)
        assert connected and (await socket.request("ping"))["type"] == "pong"
        sockets.append(socket)
    clients = redis_clients(redis)
    assert len(clients) <= 3, clients  # redis-cli itself, and a pool's one or two
    for socket in sockets:
        await socket.close()


# A copy left behind: Redis did not answer the worker that ended the session, or the account was
# changed without a signal. The handshake is served from that copy without a query; the socket is
# then checked against the database within about a second (chat.realtime.session_watch).


def shared():
    return shared_cache.shared_cache("shared")


def session_cache_key(session_key: str) -> str:
    return cached_db.KEY_PREFIX + session_key


async def test_a_stale_copy_of_an_ended_session_lets_a_socket_in_for_a_second_at_most(alice):
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    first, connected, _ = await open_socket(cookie)  # session and account cached
    assert connected
    await first.close()
    copy = await database_sync_to_async(shared().get)(session_cache_key(cookie))
    assert copy is not None
    assert (await database_sync_to_async(client.post)("/accounts/logout/")).status_code == 302
    # The removal that another worker could not make: the copy is back in Redis.
    await database_sync_to_async(shared().set)(session_cache_key(cookie), copy)
    socket, connected, _ = await open_socket(cookie)
    assert connected
    started = time.monotonic()
    assert await socket.closed_with(timeout=1.5) == 4401
    assert time.monotonic() - started < 1.5


async def test_a_stale_copy_of_a_deactivated_account_is_refused_with_4403_within_a_second(alice):
    cookie = await database_sync_to_async(session_cookie)(alice)
    first, connected, _ = await open_socket(cookie)  # the account is cached
    assert connected
    await first.close()
    key = f"{usercache.PREFIX}{alice.pk}"
    copy = await database_sync_to_async(shared().get)(key)
    assert copy is not None and copy.is_active
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    await database_sync_to_async(shared().set)(key, copy)  # the active copy, left behind
    socket, connected, _ = await open_socket(cookie)
    assert connected
    assert await socket.closed_with(timeout=1.5) == 4403


def test_a_logout_soon_after_a_redis_failure_still_removes_the_copy(alice):
    """Within RETRY_SECONDS of a failure, reads and fills skip Redis; a removal must not."""
    client = Client()
    client.force_login(alice)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    made = shared().make_key(session_cache_key(cookie))
    assert shared()._client().get(made, None) is not None  # cached by the login
    shared_cache._health.down_until = shared_cache.clock() + shared_cache.RETRY_SECONDS  # a failure, just now
    assert client.post("/accounts/logout/").status_code == 302
    assert shared()._client().get(made, None) in (None, shared_cache.TOMBSTONE)


def fill_after(change, monkeypatch):
    """Run `change` (committed) just before the next write of a copy into the cache: a handshake
    that read the row, then lost the race to an invalidation."""
    done: list[bool] = []

    def wrap(name):
        real = getattr(shared_cache.FailOpenRedisCache, name)

        def write(self, key, value, *args, **kwargs):
            if not done:
                done.append(True)
                change()
            return real(self, key, value, *args, **kwargs)

        monkeypatch.setattr(shared_cache.FailOpenRedisCache, name, write)

    wrap("set")
    wrap("add")


def test_an_account_read_before_a_deactivation_is_not_cached_after_it(alice, monkeypatch):
    def deactivate():
        account = User.objects.get(pk=alice.pk)
        account.is_active = False
        account.save()

    with monkeypatch.context() as patch:
        fill_after(deactivate, patch)
        assert usercache.user_by_id(alice.pk).is_active  # the racing handshake's own read
    assert usercache.user_by_id(alice.pk).is_active is False
    assert shared().get(f"{usercache.PREFIX}{alice.pk}") is None


def test_a_session_read_before_its_logout_is_not_cached_after_it(alice, monkeypatch):
    cookie = session_cookie(alice)
    shared().delete(session_cache_key(cookie))  # the next load reads the database
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    with monkeypatch.context() as patch:
        fill_after(lambda: store_class(cookie).delete(), patch)
        assert store_class(cookie).load()  # the racing load's own read
    assert store_class(cookie).load() == {}
    assert shared().get(session_cache_key(cookie)) is None


async def test_a_session_hashed_with_a_fallback_key_is_kept_and_rotated(alice, settings):
    """As Django's get_user: a session made before SECRET_KEY changed (the old key kept in
    SECRET_KEY_FALLBACKS) still authenticates; the handshake and the database checks agree."""
    old_key = settings.SECRET_KEY
    cookie = await database_sync_to_async(session_cookie)(alice)
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = [old_key]
    states = await database_sync_to_async(selectors.session_states)(session_keys={cookie: alice.pk})
    assert states[cookie] == selectors.SessionState.VALID
    socket, connected, _ = await open_socket(cookie)
    assert connected and (await socket.request("ping"))["type"] == "pong"
    await asyncio.sleep(settings.CHAT_SESSION_VERIFY_SECONDS + 0.7)  # past the check of new sockets
    await get_session_watch().sweep()
    assert (await socket.request("ping"))["type"] == "pong"  # still open
    await socket.close()
    # Rotated: the session now carries the hash made with the current key.
    store = import_module(settings.SESSION_ENGINE).SessionStore(cookie)
    account = await database_sync_to_async(User.objects.get)(pk=alice.pk)
    assert await database_sync_to_async(store.get)(HASH_SESSION_KEY) == account.get_session_auth_hash()
