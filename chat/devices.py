"""Known browsers: a login lockout that a colleague on the same network cannot turn against you.

django-axes locks a (username, address) pair after CHAT_LOGIN_FAILURE_LIMIT wrong passwords. Behind
one NAT or proxy everyone shares the address, so anyone there could lock a colleague out by typing
wrong passwords for their name. A browser that has logged in to an account before carries a signed
cookie naming that account (set at every successful login or sign-up, kept across logouts, for
CHAT_LOGIN_DEVICE_DAYS days): for that account, axes neither counts that browser's failures nor
refuses it (AXES_WHITELIST_CALLABLE). So the owner keeps logging in from their usual browser while
every other browser on the network, the guesser's included, stays locked.

The trade-off: the owner on a browser they never used before is locked like anyone else on that
network (until the cool-off ends or an administrator resets it); and whoever copies the cookie out
of the owner's browser may guess that account's password without the lockout, which needs access
to a browser where the owner was logged in (the cookie is HttpOnly, and Secure with
DJANGO_SECURE_COOKIES), i.e. the account was within reach already.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

COOKIE = "chat_known_login"
SALT = "chat.devices.known-login"
MAX_ACCOUNTS = 5  # accounts one browser is remembered for (the most recent)


def known_usernames(request: HttpRequest) -> list[str]:
    raw = request.COOKIES.get(COOKIE)
    if not raw:
        return []
    try:
        names = signing.loads(raw, salt=SALT, max_age=settings.CHAT_LOGIN_DEVICE_DAYS * 86400)
    except signing.BadSignature:  # tampered with, or expired (SignatureExpired is a BadSignature)
        return []
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def remember(request: HttpRequest, response: HttpResponse, username: str) -> HttpResponse:
    """Mark this browser as one `username` has logged in from."""
    names = [username, *(name for name in known_usernames(request) if name != username)][:MAX_ACCOUNTS]
    response.set_cookie(
        COOKIE,
        signing.dumps(names, salt=SALT),
        max_age=settings.CHAT_LOGIN_DEVICE_DAYS * 86400,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return response


def is_known_device(request: HttpRequest, credentials: dict | None = None) -> bool:
    """AXES_WHITELIST_CALLABLE: the login is for an account this browser has logged in to."""
    username = (credentials or {}).get("username")
    return bool(request is not None and username and username in known_usernames(request))
