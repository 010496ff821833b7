"""The session engine with REDIS_URL (SESSION_ENGINE "chat.sessions"): Django's `cached_db`
(the database, with a copy in the shared cache), on the process's one cache object
(chat.cache.shared_cache) instead of one per thread and asyncio task: each WebSocket keeps its
session for its lifetime, and with it whatever cache object the session was made with.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.backends import cached_db
from django.contrib.sessions.backends.db import SessionStore as DBStore

from chat.cache import shared_cache


class SessionStore(cached_db.SessionStore):
    def __init__(self, session_key: str | None = None) -> None:
        self._cache = shared_cache(settings.SESSION_CACHE_ALIAS)
        DBStore.__init__(self, session_key)
