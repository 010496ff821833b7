"""The accounts WebSocket handshakes authenticate, copied in the shared cache (chat.cache).

A handshake with a session cookie needs the session (the `cached_db` engine caches it) and its
user, whose password hash and `is_active` decide whether the session still authenticates. With
CHAT_USER_CACHE set (the settings set it with REDIS_URL), the user is read from that cache, keyed
by id, and read from the database only on a miss. Any save or deletion of the account removes the
copy, at once and again after the transaction commits (so a read between the two cannot put the
old row back): a password change, a deactivation or a deletion is seen by the next handshake.
Sockets already open are closed by the events of chat.receivers and the session sweep, which
read the database, never this cache.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db import transaction

from chat.cache import shared_cache

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
            cache.set(f"{PREFIX}{user_id}", user)
    return user


def forget(user_id: Any) -> None:
    alias = _alias()
    if alias is None:
        return
    cache = shared_cache(alias)
    cache.delete(f"{PREFIX}{user_id}")
    transaction.on_commit(lambda: cache.delete(f"{PREFIX}{user_id}"))


def on_user_changed(sender: type, instance: AbstractBaseUser, **kwargs: object) -> None:
    """post_save / post_delete of the user model."""
    if instance.pk is not None:
        forget(instance.pk)
