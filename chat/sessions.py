"""The session engine with REDIS_URL (SESSION_ENGINE "chat.sessions"): Django's `cached_db`
(the database, with a copy in the shared cache), on the process's one cache object
(chat.cache.shared_cache) instead of one per thread and asyncio task: each WebSocket keeps its
session for its lifetime, and with it whatever cache object the session was made with.

Two changes to how the copy is kept (chat.cache): a load that read the database fills the cache
with `add`, and a deletion (logout, a key cycled at login) leaves a tombstone, which that `add`
does not overwrite. Django's own order (read the row, then `set`) could put back the copy of a
session logged out between the two, for as long as the entry lives.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends import cached_db
from django.contrib.sessions.backends.db import SessionStore as DBStore

from chat.cache import FailOpenRedisCache, shared_cache


class SessionStore(cached_db.SessionStore):
    def __init__(self, session_key: str | None = None) -> None:
        self._cache = shared_cache(settings.SESSION_CACHE_ALIAS)
        DBStore.__init__(self, session_key)

    def load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] | None = self._cache.get(self.cache_key)
        except Exception:  # as Django: a key the cache refuses is a miss
            data = None
        if data is None:
            row = self._get_session_from_db()  # type: ignore[attr-defined]  # not in the stubs
            if not row:
                return {}
            data = self.decode(row.session_data)
            self._cache.add(self.cache_key, data, self.get_expiry_age(expiry=row.expire_date))
        return data

    async def aload(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] | None = await self._cache.aget(await self.acache_key())
        except Exception:
            data = None
        if data is None:
            row = await self._aget_session_from_db()  # type: ignore[attr-defined]
            if not row:
                return {}
            data = self.decode(row.session_data)
            expiry_age = await self.aget_expiry_age(expiry=row.expire_date)
            await self._cache.aadd(await self.acache_key(), data, expiry_age)
        return data

    def delete(self, session_key: str | None = None) -> None:
        DBStore.delete(self, session_key)
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self._forget(self.cache_key_prefix + session_key)

    async def adelete(self, session_key: str | None = None) -> None:
        await DBStore.adelete(self, session_key)
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        await sync_to_async(self._forget)(self.cache_key_prefix + session_key)

    def _forget(self, key: str) -> None:
        if isinstance(self._cache, FailOpenRedisCache):
            self._cache.invalidate(key)
        else:  # another backend in the settings: Django's delete
            self._cache.delete(key)
