"""Who a browser's WebSocket belongs to: its session cookie, its session and its account, in one
middleware and one trip to the sync thread.

Channels' AuthMiddlewareStack does this in three middlewares (cookies, session, auth), each of
which keeps a coroutine frame and a copy of the scope for as long as the socket lives, and reads
the account from the database on every handshake. Here the session comes from the session engine
(`cached_db` with REDIS_URL: the shared cache, else the database) and the account from
chat.usercache; a handshake whose session and account are both cached makes no database query.
The checks are Django's own (django.contrib.auth.get_user): the session names a user and a
backend that is still configured, the user may authenticate (is active), and the session carries
the hash of the user's current password. A session that fails them is not deleted here, as
Django's request path would: the socket is closed with 4401 (or 4403 for a deactivated account).
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.db import DatabaseError
from django.http.cookie import parse_cookie
from django.utils.crypto import constant_time_compare

from chat import selectors, usercache
from chat.realtime import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def session_key_of(scope: Scope) -> str | None:
    cookies = "; ".join(value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"cookie")
    return parse_cookie(cookies).get(settings.SESSION_COOKIE_NAME) if cookies else None


def _hash_verified(session: SessionBase, user: Any) -> bool:
    stored = session.get(HASH_SESSION_KEY)
    if not stored or not selectors.session_hash_verified(stored, user):
        return False
    current = user.get_session_auth_hash()
    if not constant_time_compare(stored, current):
        # Made with a key still in SECRET_KEY_FALLBACKS: accepted, as Django accepts it, and
        # rotated to the current key as Django's get_user does (without cycling the session key,
        # which a WebSocket cannot hand back to the browser). The session checks of
        # chat.realtime.session_watch accept it too, whether or not the rotation could be saved.
        session[HASH_SESSION_KEY] = current
        try:
            session.save()
        except UpdateError:  # the session was deleted meanwhile (a logout)
            return False
        except DatabaseError:  # the database is away: rotated at a later handshake or page
            logger.warning("Could not rotate the session hash of user %s", user.pk, exc_info=True)
    return True


def session_user(session: SessionBase) -> Any:
    """The account the session authenticates, or AnonymousUser (sync: may read the database)."""
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return AnonymousUser()
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    if backend_path == MODEL_BACKEND:
        user = usercache.user_by_id(user_id)
        if user is not None and not _model_backend.user_can_authenticate(user):
            user = None
    else:
        user = load_backend(backend_path).get_user(user_id)
    if user is None or not _hash_verified(session, user):
        return AnonymousUser()
    return user


_model_backend = ModelBackend()
_session_user = database_sync_to_async(session_user)


class SessionAuthMiddleware:
    """Sets scope["session"] (a session store, loaded) and scope["user"]."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = import_module(settings.SESSION_ENGINE).SessionStore(session_key_of(scope))
        user = await _session_user(session)
        await self.inner({**scope, "session": session, "user": user}, receive, send)
