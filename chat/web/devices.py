"""Known browsers: a login lockout that a colleague on the same network cannot turn against you.

django-axes locks a (username, address) pair after CHAT_LOGIN_FAILURE_LIMIT wrong passwords. Behind
one NAT or proxy everyone shares the address, so anyone there could lock a colleague out by typing
wrong passwords for their name. A browser that has logged in to an account carries a signed cookie
naming that account (set at every successful login or sign-up, kept across logouts, for
CHAT_LOGIN_DEVICE_DAYS days): for that account, axes neither counts that browser's failures nor
refuses it (AXES_WHITELIST_CALLABLE). So the owner keeps logging in from their usual browser while
every other browser on the network, the guesser's included, stays locked.

What keeps the cookie from becoming a way around the lockout:

- it is bound to the account's password: each entry carries a digest of the user's session auth
  hash, which changes with the password, so a password change (or the name passing to another
  account) revokes every known browser;
- a known browser has its own budget of CHAT_LOGIN_FAILURE_LIMIT wrong passwords per account in a
  cool-off period (counted per cookie, in Django's cache); past it, it is a stranger again and
  axes counts and locks it like any other browser;
- a login from a known browser does not reset the failures recorded for its address (axes would:
  AXES_RESET_ON_SUCCESS is off, and `reset_on_login` below does it only for other browsers), so
  the owner's login does not hand a guesser on the same address a fresh set of guesses.

The trade-off: the owner on a browser they never used before is locked like anyone else on that
network (until the cool-off ends or an administrator resets it); and whoever takes the cookie from
a browser where the owner logged in (a shared computer after a logout) gets
CHAT_LOGIN_FAILURE_LIMIT guesses per cool-off period that do not lock the owner out, no more.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare, salted_hmac

from chat import throttle

COOKIE = "chat_known_login"
SALT = "chat.devices.known-login"  # signs the cookies browsers hold: a new salt would forget them all
MAX_ACCOUNTS = 5  # accounts one browser is remembered for (the most recent)


def _password_digest(user: User) -> str:
    """Changes when the user's password does (Django's session auth hash is derived from it)."""
    return salted_hmac(SALT, user.get_session_auth_hash()).hexdigest()[:20]


def _entries(request: HttpRequest) -> list[list[str]]:
    """[username, password digest, browser id] for each account this browser is known for."""
    raw = request.COOKIES.get(COOKIE)
    if not raw:
        return []
    try:
        entries = signing.loads(raw, salt=SALT, max_age=settings.CHAT_LOGIN_DEVICE_DAYS * 86400)
    except signing.BadSignature:  # tampered with, or expired (SignatureExpired is a BadSignature)
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, list) and len(e) == 3 and all(isinstance(v, str) for v in e)]


def _entry_for(request: HttpRequest | None, username: str | None) -> list[str] | None:
    if request is None or not username:
        return None
    return next((entry for entry in _entries(request) if entry[0] == username), None)


def _failures_key(browser_id: str) -> str:
    return f"chat:known-login-failures:{browser_id}"


def remember(request: HttpRequest, response: HttpResponse, user: User) -> HttpResponse:
    """Mark this browser as one `user` has logged in from."""
    username = user.get_username()
    old = _entry_for(request, username)
    entry = [username, _password_digest(user), old[2] if old else secrets.token_urlsafe(12)]
    entries = [entry, *(e for e in _entries(request) if e[0] != username)][:MAX_ACCOUNTS]
    response.set_cookie(
        COOKIE,
        signing.dumps(entries, salt=SALT),
        max_age=settings.CHAT_LOGIN_DEVICE_DAYS * 86400,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return response


def is_known_device(request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
    """AXES_WHITELIST_CALLABLE: the login is for an account this browser has logged in to, with
    the account's current password, and the browser has wrong passwords left in its budget."""
    username = (credentials or {}).get("username")
    entry = _entry_for(request, username)
    if entry is None:
        return False
    if throttle.cache_count(_failures_key(entry[2])) >= settings.AXES_FAILURE_LIMIT:
        return False
    user = get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    return user is not None and constant_time_compare(entry[1], _password_digest(user))


def count_failure(
    sender: str, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: object
) -> None:
    """(user_login_failed) A wrong password from a known browser spends its budget."""
    entry = _entry_for(request, (credentials or {}).get("username"))
    if entry is not None:
        throttle.cache_hit(_failures_key(entry[2]), int(settings.AXES_COOLOFF_TIME.total_seconds()))


def reset_on_login(sender: type[User], request: HttpRequest | None, user: User, **kwargs: object) -> None:
    """(user_logged_in) A successful login clears the failures recorded for its account and
    address, as axes' AXES_RESET_ON_SUCCESS would, unless it came from a known browser: that one
    was let past the lock, and clearing it would give a guesser on the same address fresh tries."""
    if request is None or is_known_device(request, {"username": user.get_username()}):
        return
    from axes.utils import reset

    reset(ip=getattr(request, "axes_ip_address", None), username=user.get_username())


def connect() -> None:
    """Count failed logins and remember successful ones (called from ChatConfig.ready)."""
    user_login_failed.connect(count_failure, dispatch_uid="chat.known_login_failed")
    user_logged_in.connect(reset_on_login, dispatch_uid="chat.known_login_reset")
