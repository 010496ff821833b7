"""The accounts WebSocket handshakes authenticate, copied in the shared cache (chat.cache).

A handshake with a session cookie needs the session (the `cached_db` engine caches it) and its
user, whose password hash and `is_active` decide whether the session still authenticates. With
CHAT_USER_CACHE set (the settings set it with REDIS_URL), the user is read from that cache, keyed
by id, and read from the database only on a miss. Any save or deletion of the account replaces
the copy with a tombstone (chat.cache), at once and again after the transaction commits, and a
miss fills the cache with `add`, which a tombstone refuses: a handshake that read the row before
the change cannot put the old row back after it. A password change, a deactivation or a deletion
is seen by the next handshake. Sockets already open are closed by the events of chat.receivers
and the checks of chat.realtime.session_watch, which read the database, never this cache.

Changes that send no post_save (QuerySet.update(), raw SQL, another program on the database)
leave the copy in place until it expires (the cache's MAX_TIMEOUT): a socket opened with it is
still checked against the database within about a second (see docs/security.md).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db import transaction

from chat.cache import FailOpenRedisCache, shared_cache

PREFIX = "chat.user:"


def _alias() -> str | None:
    alias: str | None = getattr(settings, "CHAT_USER_CACHE", None)
    return alias


def user_by_id(user_id: Any) -> User | None:
    """The account of that id (active or not), from the cache when it holds it; None if none."""
    model = get_user_model()
    alias = _alias()
    if alias is None:
        return model._default_manager.filter(pk=user_id).first()
    cache = shared_cache(alias)
    user: User | None = cache.get(f"{PREFIX}{user_id}")
    if user is None:
        user = model._default_manager.filter(pk=user_id).first()
        if user is not None:
            cache.add(f"{PREFIX}{user_id}", user)
    return user


def forget(user_id: Any) -> None:
    alias = _alias()
    if alias is None:
        return
    cache = shared_cache(alias)
    key = f"{PREFIX}{user_id}"
    invalidate = cache.invalidate if isinstance(cache, FailOpenRedisCache) else cache.delete
    invalidate(key)
    transaction.on_commit(lambda: invalidate(key))


def on_user_changed(sender: type, instance: AbstractBaseUser, **kwargs: Any) -> None:
    """post_save / post_delete of the user model. An account just created has no copy yet (a
    miss caches nothing), and a login's save of `last_login` alone changes nothing a handshake
    checks: neither leaves a tombstone, which would keep the next handshakes on the database for
    TOMBSTONE_SECONDS."""
    update_fields = kwargs.get("update_fields")
    if kwargs.get("created") or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    if instance.pk is not None:
        forget(instance.pk)
