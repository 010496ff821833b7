"""The Origin check of browser WebSocket handshakes (cross-site WebSocket hijacking).

A browser sends its session cookie with a WebSocket handshake to any page that opens one, and
WebSockets have no same-origin policy: the `Origin` header is the only sign of which page asked.
The check compares it exactly (scheme, host and port; the case of scheme and host, and an
explicit default port, do not matter) with the allowed origins:

- with CHAT_ALLOWED_ORIGINS set, exactly the origins it lists;
- otherwise what Django's CSRF check accepts for a form POST: the handshake's own origin (http or
  https, as Django's `request.is_secure()` would say, then `://` and the `Host` header) and each
  exact entry of CSRF_TRUSTED_ORIGINS (wildcard entries such as `https://*.example.com` are not
  taken for sockets).

Either way the `Host` header must be allowed by ALLOWED_HOSTS, as for any HTTP request. A
missing, `null` or malformed Origin is refused; a refusal is HTTP 403 at the handshake.
Channels' AllowedHostsOriginValidator compares host names only, so any other web application
on an allowed host (another port or scheme) could drive a user's chat socket: hence this.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import host_validation_re, split_domain_port, validate_host

from chat.realtime import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host (lower case; IPv6 in brackets), port


def parse_origin(value: str) -> Origin | None:
    """`scheme://host[:port]` (http or https) as a comparable triple, the default port filled
    in; None for anything else: `null`, a path or a trailing slash, user info, a wildcard."""
    scheme, sep, netloc = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        return None
    host_port = _host_port(netloc)
    if host_port is None:
        return None
    host, port = host_port
    return scheme, host, DEFAULT_PORTS[scheme] if port is None else port


def _host_port(netloc: str) -> tuple[str, int | None] | None:
    """`host[:port]` (as in a Host header) split and checked; None if it is not one."""
    if not host_validation_re.match(netloc.lower()):
        return None
    host, port = split_domain_port(netloc)
    if not host:
        return None
    try:
        number = int(port) if port else None
        if number is not None:
            urlsplit(f"//{netloc}").port  # noqa: B018 (raises ValueError outside 0..65535)
    except ValueError:
        return None
    return host, number


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a header, or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def handshake_scheme(scope: Scope) -> str:
    """`https` if the page reached this socket over TLS, else `http`: decided as Django's
    `request.is_secure()` does, by SECURE_PROXY_SSL_HEADER when it is set and the proxy sent it
    (DJANGO_BEHIND_PROXY), else by the connection itself (`wss`)."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        value = _header(scope, name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1"))
        if value is not None:
            return "https" if value.split(",", 1)[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in {"wss", "https"} else "http"


def allowed_host(scope: Scope) -> tuple[str, int | None] | None:
    """The handshake's `Host` header, split, if ALLOWED_HOSTS allows it; else None."""
    host = _header(scope, b"host")
    if host is None:
        return None
    host_port = _host_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:  # as Django's request.get_host() does
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    if host_port is None or not validate_host(host_port[0], allowed_hosts):
        return None
    return host_port


def origin_allowed(scope: Scope) -> bool:
    raw = _header(scope, b"origin")
    origin = parse_origin(raw) if raw is not None else None
    host_port = allowed_host(scope)
    if origin is None or host_port is None:
        return False
    if settings.CHAT_ALLOWED_ORIGINS:
        return origin in {parse_origin(entry) for entry in settings.CHAT_ALLOWED_ORIGINS}
    scheme = handshake_scheme(scope)
    host, port = host_port
    if origin == (scheme, host, DEFAULT_PORTS[scheme] if port is None else port):
        return True
    return origin in {parse_origin(entry) for entry in settings.CSRF_TRUSTED_ORIGINS}


class OriginValidator:
    """Lets a handshake through to `inner` only with an allowed Origin; refuses it (HTTP 403)
    otherwise."""

    def __init__(self, inner: ASGIApp) -> None:
        from channels.security.websocket import WebsocketDenier

        self.inner = inner
        self.denier: ASGIApp = WebsocketDenier.as_asgi()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if origin_allowed(scope):
            await self.inner(scope, receive, send)
            return
        logger.info(
            "WebSocket handshake refused: Origin %r is not allowed (Host %r)",
            _header(scope, b"origin"),
            _header(scope, b"host"),
        )
        await self.denier(scope, receive, send)
