"""The shared cache (CACHES["shared"], with REDIS_URL): Django's Redis cache that fails open.

It holds copies of what the database holds (sessions, through the `cached_db` session engine, and
the accounts a handshake authenticates: chat.usercache), so a cache that does not answer must
never stop a page or a handshake: they read the database instead. Django's RedisCache raises
whatever redis-py raises (a refused connection, a timeout), and the `cached_db` engine lets that
escape from `load` (its cache write after a database read) and `delete` (logout): a 500 while
Redis restarts. Here:

- every read that fails is a miss, every write that fails is logged and skipped;
- after a failure the cache is left alone for RETRY_SECONDS, so a burst of handshakes during an
  outage does not wait on a connection attempt each; removals (`delete`, `invalidate`) are tried
  all the same: skipping one would leave a copy the other workers still read;
- `invalidate` replaces an entry with a tombstone for TOMBSTONE_SECONDS, read as a miss, and the
  copies are filled with `add` (SET NX), which a standing tombstone refuses: a read of the
  database made before an invalidation cannot put the old row back after it;
- a key whose write or delete failed (a logout, a password change while Redis was away) is kept
  in a list in this process and read as a miss until it is deleted when Redis is back (or until
  its entry must have expired): this worker never serves the copy it could not remove;
- no entry lives longer than MAX_TIMEOUT (the settings' `MAX_TIMEOUT`, default 300 s), so a copy
  another worker could not remove lapses within that; the sockets opened meanwhile are closed by
  the check each worker makes of every new cookie socket within about a second, which reads the
  database (chat.realtime.session_watch).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_SECONDS = 2.0
# How long an invalidated key refuses fills: longer than any read of the database a fill follows.
TOMBSTONE_SECONDS = 30
TOMBSTONE = "chat.cache:tombstone"
clock = time.monotonic


class _Health:
    """Per process (Django makes a cache object per thread): when the cache failed last, and the
    keys whose removal is owed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.stale: dict[str, float] = {}  # made key -> when its entry has expired for sure


_health = _Health()


# Django keeps a cache object per thread and, through asgiref's Local, per asyncio task: every
# WebSocket handshake would make its own, with its own redis-py client, pool and connection, kept
# for as long as the socket holds its session (10 sockets held 11 Redis connections). The clients
# are shared here, one per server and options in the process (redis-py's pools are thread-safe),
# and shared_cache() gives one cache object per alias for the code that keeps one (sessions).
_clients: dict[str, Any] = {}
_instances: dict[str, BaseCache] = {}
_shared_lock = threading.Lock()


def shared_cache(alias: str) -> BaseCache:
    """One cache object of `alias` for the whole process (settings changes make a new one)."""
    key = f"{alias}:{settings.CACHES.get(alias)!r}"
    found = _instances.get(key)
    if found is None:
        with _shared_lock:
            found = _instances.get(key)
            if found is None:
                found = _instances[key] = caches.create_connection(alias)
    return found


class FailOpenRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self.max_timeout = int(params.get("MAX_TIMEOUT", 300))

    @cached_property
    def _cache(self) -> Any:
        servers, options = getattr(self, "_servers"), getattr(self, "_options")  # noqa: B009 (not in the stubs)
        key = f"{servers!r}:{options!r}"
        with _shared_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = getattr(self, "_class")(servers, **options)  # noqa: B009
        return client

    def get_backend_timeout(self, timeout: float | None = DEFAULT_TIMEOUT) -> float | None:
        seconds = super().get_backend_timeout(timeout)
        return self.max_timeout if seconds is None else min(seconds, self.max_timeout)

    # The guard --------------------------------------------------------------------------------

    def _call(self, operation: Callable[[], T], fallback: T, *, written: Iterable[str] = (), always: bool = False) -> T:
        """`operation`, or `fallback` if the cache fails (or failed less than RETRY_SECONDS ago,
        unless `always`: removals are tried whatever happened before)."""
        now = clock()
        if now < _health.down_until and not always:
            self._owe(written, now)
            return fallback
        try:
            result = operation()
        except (RedisError, OSError) as error:
            with _health.lock:
                first = now >= _health.down_until
                _health.down_until = now + RETRY_SECONDS
            if first:
                logger.warning("The shared cache is not answering (%s): reading the database instead", error)
            self._owe(written, now)
            return fallback
        if _health.stale:
            self._pay_debts(now)
        return result

    def _owe(self, keys: Iterable[str], now: float) -> None:
        with _health.lock:
            for key in keys:
                _health.stale[key] = now + self.max_timeout

    def _pay_debts(self, now: float) -> None:
        """Replace the entries owed with tombstones (still read as misses until that is done)."""
        with _health.lock:
            owed = dict(_health.stale)
        live = [key for key, until in owed.items() if until > now]
        if live:
            try:
                self._client().set_many(dict.fromkeys(live, TOMBSTONE), TOMBSTONE_SECONDS)
            except (RedisError, OSError):
                return
        with _health.lock:
            for key, until in owed.items():
                if _health.stale.get(key) == until:
                    del _health.stale[key]

    def _client(self) -> Any:
        """Django's RedisCacheClient, which takes keys already made."""
        return getattr(self, "_cache")  # noqa: B009 (a cached_property the stubs do not name)

    def _is_stale(self, key: str) -> bool:
        until = _health.stale.get(key)
        return until is not None and until > clock()

    # Django's cache API, through the guard ----------------------------------------------------

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        made = self.make_and_validate_key(key, version=version)
        if self._is_stale(made):
            return default
        found = self._call(lambda: self._client().get(made, default), default)
        return default if _is_tombstone(found) else found

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        keys = list(keys)
        found: dict[str, Any] = self._call(lambda: super(FailOpenRedisCache, self).get_many(keys, version=version), {})
        return {
            key: value
            for key, value in found.items()
            if not _is_tombstone(value) and not self._is_stale(self.make_key(key, version))
        }

    def has_key(self, key: str, version: int | None = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        return not self._is_stale(made) and self._call(lambda: bool(self._client().has_key(made)), False)

    def set(self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        made = self.make_and_validate_key(key, version=version)
        self._call(lambda: super(FailOpenRedisCache, self).set(key, value, timeout, version), None, written=[made])

    def add(self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        return self._call(
            lambda: super(FailOpenRedisCache, self).add(key, value, timeout, version), False, written=[made]
        )

    def touch(self, key: str, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._call(lambda: super(FailOpenRedisCache, self).touch(key, timeout, version), False)

    def delete(self, key: str, version: int | None = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        return self._call(
            lambda: super(FailOpenRedisCache, self).delete(key, version), False, written=[made], always=True
        )

    def invalidate(self, key: str, version: int | None = None) -> None:
        """Remove the copy under `key` and refuse fills (`add`) for TOMBSTONE_SECONDS."""
        made = self.make_and_validate_key(key, version=version)
        self._call(lambda: self._client().set(made, TOMBSTONE, TOMBSTONE_SECONDS), None, written=[made], always=True)

    def set_many(
        self, data: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        made = [self.make_key(key, version) for key in data]
        return self._call(lambda: super(FailOpenRedisCache, self).set_many(data, timeout, version), [], written=made)

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        keys = list(keys)
        made = [self.make_key(key, version) for key in keys]
        self._call(lambda: super(FailOpenRedisCache, self).delete_many(keys, version), None, written=made, always=True)

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        # Counters are not copies of the database: a failure is the caller's to handle.
        return super().incr(key, delta, version)

    def clear(self) -> None:
        self._call(lambda: super(FailOpenRedisCache, self).clear(), None)


def _is_tombstone(value: Any) -> bool:
    return isinstance(value, str) and value == TOMBSTONE


def reset_health() -> None:
    """Forget past failures (tests)."""
    with _health.lock:
        _health.down_until = 0.0
        _health.stale.clear()
