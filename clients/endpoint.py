"""Where the chat server is: the WebSocket URL and what derives from it (the http(s) address, which
is also the `Origin`, and the login page), and the one-sentence errors every client part raises."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.parse

DEFAULT_URL = "ws://127.0.0.1:8000/ws/chat/"


class ClientError(Exception):
    """A failure explained in one sentence. `fixable`: something has to change first (the URL,
    the credentials, the room, the message); trying again as it is will not help."""

    def __init__(self, message: str, *, fixable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.fixable = fixable


class Endpoint:
    """The WebSocket URL and what derives from it: the http(s) base (also the `Origin`) and the
    login page. `http://` and `https://` are taken as `ws://` and `wss://`; no path means
    `/ws/chat/`."""

    def __init__(self, raw: str) -> None:
        parts = urllib.parse.urlsplit(raw.strip())
        schemes = {"ws": ("ws", "http"), "wss": ("wss", "https"), "http": ("ws", "http"), "https": ("wss", "https")}
        if parts.scheme.lower() not in schemes:
            raise ClientError(
                f"Bad URL {raw!r}: it must start with ws:// or wss:// (for example {DEFAULT_URL}).", fixable=True
            )
        ws_scheme, http_scheme = schemes[parts.scheme.lower()]
        try:
            port = parts.port
        except ValueError:
            raise ClientError(f"Bad URL {raw!r}: the port is not a number from 1 to 65535.", fixable=True) from None
        if not parts.hostname:
            raise ClientError(f"Bad URL {raw!r}: there is no host name in it.", fixable=True)
        netloc = parts.netloc.rpartition("@")[2]  # never user:password@ in an Origin
        path = parts.path if parts.path not in ("", "/") else "/ws/chat/"
        # A server mounted under a prefix (/chat/ws/chat/) has its login page under it too.
        prefix = path[: -len("ws/chat/")] if path.endswith("/ws/chat/") else "/"
        self.host: str = parts.hostname
        self.port: int = port or (443 if http_scheme == "https" else 80)
        self.ws_url = urllib.parse.urlunsplit((ws_scheme, netloc, path, parts.query, ""))
        self.http_base = f"{http_scheme}://{netloc}"
        self.site_url = f"{self.http_base}{prefix}"
        self.login_url = f"{self.site_url}accounts/login/"

    def message_url(self, room: str, message_id: int, *, thread: int | None = None) -> str:
        """The page's link to a message (a reply's: to its thread's first message, with the thread open)."""
        shown = thread if thread is not None else message_id
        anchor = f"#thread-{thread}" if thread is not None else ""
        return f"{self.site_url}rooms/{urllib.parse.quote(room, safe='')}/?message={shown}{anchor}"

    def __repr__(self) -> str:
        return f"<Endpoint {self.ws_url}>"


def describe_os_error(error: BaseException, endpoint: Endpoint) -> str:
    """One sentence for a failure to reach the server."""
    where = f"{endpoint.host}:{endpoint.port}"
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, BaseException) else OSError(str(error.reason))
    if isinstance(error, ConnectionRefusedError):
        return f"Cannot connect to {where}: connection refused (is the chat server running there?)."
    if isinstance(error, socket.gaierror):
        return f"Cannot find the host {endpoint.host!r} (DNS lookup failed)."
    if isinstance(error, TimeoutError | socket.timeout):
        return f"Cannot connect to {where}: no answer in time."
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return f"Cannot connect to {where}: TLS failed ({getattr(error, 'reason', None) or error})."
    if isinstance(error, ConnectionError):
        return f"The connection to {where} failed: {error.strerror or type(error).__name__}."
    return f"Cannot connect to {where}: {getattr(error, 'strerror', None) or error}."
