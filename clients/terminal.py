"""A terminal client for the chat server: `python -m clients.terminal --help`.

It needs only the standard library, `websockets` and chat/realtime/codes.py (plain Python, no
Django). It speaks the wire protocol of docs/protocol.md:

- authenticates with an API token (`Authorization: Bearer`) or logs in over HTTP with a username
  and password exactly as a browser does (login form, CSRF token, session cookie, `Origin`);
- interactive mode prints the rooms' messages and sends the lines typed on standard input;
  `--send` posts one message, waits for the server's acknowledgement and exits (bots, cron);
- reconnects with exponential backoff and full jitter, rejoins every room with `since`, prints
  each message once (by seq), catches up on gaps (a seq jump or `pong.seqs` ahead), and resends
  unacknowledged messages with their original `client_id` (the server stores each one once).

Exit codes: 0 done; 1 a failure that may pass (server unreachable, connection lost for good, no
acknowledgement in time); 2 something to fix first (arguments, URL, credentials, room); 130
interrupted (Ctrl+C).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import html.parser
import http.cookiejar
import json
import os
import random
import signal
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

try:
    import websockets
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
except ImportError:  # pragma: no cover - a message rather than a traceback
    sys.stderr.write("clients.terminal needs the 'websockets' package: pip install websockets\n")
    raise SystemExit(2) from None

from chat.realtime.codes import FINAL_CLOSES, CloseCode

EXIT_OK, EXIT_FAILED, EXIT_FIX, EXIT_INTERRUPTED = 0, 1, 2, 130

DEFAULT_URL = "ws://127.0.0.1:8000/ws/chat/"
DEFAULT_ROOM = "lobby"
INDENT = " " * 8  # continuation lines of a multi-line body line up after "[HH:MM] "
PONG_TIMEOUT = 10.0
BACKOFF_BASE = 0.5
SEEN_KEEP = 2000  # messages remembered per room (to show who wrote a deleted one)

COMMANDS_HELP = """\
commands (interactive mode):
  TEXT            send TEXT to the current room (start it with // to send a line beginning with /)
  /join ROOM      join ROOM (if needed) and make it the current room
  /leave [ROOM]   leave ROOM (default: the current room)
  /history [N]    show N older messages of the current room (default 20; repeat to go further back)
  /who            who is online in the current room
  /rooms          the rooms joined, the current one marked with *
  /help           this list
  /quit           exit (so does Ctrl+D)"""


class ClientError(Exception):
    """A failure explained in one sentence, ending the program with `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# Output -------------------------------------------------------------------------------------

# Control characters from the network never reach the terminal: a message body could otherwise
# carry escape sequences that rewrite the screen or the window title.
_CONTROL = {c: "\ufffd" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n"}


def clean(text: Any) -> str:
    return str(text).replace("\r\n", "\n").translate(_CONTROL)


def clean_line(text: Any) -> str:
    return clean(text).replace("\n", " ")


def _write(stream, text: str) -> None:
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:  # e.g. piped into `head`
        os._exit(EXIT_OK)
    except UnicodeEncodeError:
        stream.write(text.encode(stream.encoding or "ascii", "replace").decode(stream.encoding or "ascii") + "\n")
        stream.flush()


def hhmm(stamp: Any) -> str:
    """An ISO-8601 UTC timestamp as local HH:MM."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).astimezone().strftime("%H:%M")
    except ValueError:
        return "--:--"


def format_message(message: dict[str, Any], room: str | None = None, *, edited: bool = False) -> str:
    """`[HH:MM] author: body`, with `#room ` before the author for a room that is not the
    current one, continuation lines indented, `(deleted)` for a tombstone and `(edited)` after
    an edited body."""
    where = f"#{clean_line(room)} " if room else ""
    head = f"[{hhmm(message.get('created_at'))}] {where}{clean_line(message.get('author') or '?')}: "
    if message.get("deleted"):
        return head + "(deleted)"
    lines = clean(message.get("body", "")).split("\n")
    text = head + lines[0] + "".join("\n" + INDENT + line for line in lines[1:])
    if edited or message.get("edited_at"):
        text += " (edited)"
    return text


# URLs and logging in ------------------------------------------------------------------------


class Endpoint:
    """The WebSocket URL and what derives from it: the http(s) base (also the `Origin`) and the
    login page."""

    def __init__(self, raw: str) -> None:
        parts = urllib.parse.urlsplit(raw.strip())
        schemes = {"ws": ("ws", "http"), "wss": ("wss", "https"), "http": ("ws", "http"), "https": ("wss", "https")}
        if parts.scheme.lower() not in schemes:
            raise ClientError(
                f"Bad URL {raw!r}: it must start with ws:// or wss:// (for example {DEFAULT_URL}).", EXIT_FIX
            )
        ws_scheme, http_scheme = schemes[parts.scheme.lower()]
        try:
            port = parts.port
        except ValueError:
            raise ClientError(f"Bad URL {raw!r}: the port is not a number from 1 to 65535.", EXIT_FIX) from None
        if not parts.hostname:
            raise ClientError(f"Bad URL {raw!r}: there is no host name in it.", EXIT_FIX)
        netloc = parts.netloc.rpartition("@")[2]  # never user:password@ in an Origin
        path = parts.path if parts.path not in ("", "/") else "/ws/chat/"
        # A server mounted under a prefix (/chat/ws/chat/) has its login page under it too.
        prefix = path[: -len("ws/chat/")] if path.endswith("/ws/chat/") else "/"
        self.host, self.port = parts.hostname, port or (443 if http_scheme == "https" else 80)
        self.ws_url = urllib.parse.urlunsplit((ws_scheme, netloc, path, parts.query, ""))
        self.http_base = f"{http_scheme}://{netloc}"
        self.login_url = f"{self.http_base}{prefix}accounts/login/"


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


class _LoginFormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.csrf: list[str] = []
        self.password_field = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "input":
            return
        values = dict(attrs)
        if values.get("name") == "csrfmiddlewaretoken" and values.get("value"):
            self.csrf.append(values["value"])
        if values.get("type") == "password":
            self.password_field = True


def _parse_form(body: bytes) -> _LoginFormParser:
    parser = _LoginFormParser()
    parser.feed(body.decode("utf-8", "replace"))
    return parser


def http_login(endpoint: Endpoint, username: str, password: str, *, timeout: float = 10.0) -> str:
    """Log in through the login form as a browser does; return a `Cookie:` header value with
    the session cookie. Raises ClientError with one sentence."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", "chat-client/1 (python urllib)")]

    def fetch(request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()
        except (OSError, urllib.error.URLError) as error:
            raise ClientError(describe_os_error(error, endpoint)) from None

    status, page = fetch(urllib.request.Request(endpoint.login_url))
    if status != 200:
        raise ClientError(
            f"The login page {endpoint.login_url} answered HTTP {status}: is this the chat server's URL?",
            EXIT_FIX if status in (400, 403, 404) else EXIT_FAILED,
        )
    form = _parse_form(page)
    if not form.csrf or not any(cookie.name == "csrftoken" for cookie in jar):
        raise ClientError(f"No login form at {endpoint.login_url}: is this the chat server's URL?", EXIT_FIX)
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": form.csrf[0], "username": username, "password": password, "next": ""}
    ).encode()
    request = urllib.request.Request(
        endpoint.login_url, data=data, method="POST", headers={"Referer": endpoint.login_url}
    )
    status, page = fetch(request)
    if status == 403:
        raise ClientError(
            f"The server refused the login form (HTTP 403, CSRF check): behind a proxy, "
            f"DJANGO_CSRF_TRUSTED_ORIGINS must include {endpoint.http_base}.",
            EXIT_FIX,
        )
    if status != 200:
        raise ClientError(f"Logging in answered HTTP {status}.", EXIT_FAILED)
    if _parse_form(page).password_field:  # the login page again: Django refused the credentials
        raise ClientError(
            f"Login as {username!r} failed: wrong username or password (or the account is deactivated).",
            EXIT_FIX,
        )
    cookies = [f"{cookie.name}={cookie.value}" for cookie in jar]
    if not any(cookie.name != "csrftoken" for cookie in jar):
        raise ClientError("Logging in set no session cookie: is this the chat server's URL?", EXIT_FIX)
    return "; ".join(cookies)


# Credentials --------------------------------------------------------------------------------


def _read_stdin_line() -> str:
    """One line from file descriptor 0, byte by byte, so that nothing after it is consumed (the
    rest of standard input is the message or the chat lines)."""
    data = bytearray()
    while True:
        chunk = os.read(0, 1)
        if not chunk or chunk == b"\n":
            break
        data += chunk
    return data.decode("utf-8", "replace").rstrip("\r")


def _read_stdin_all() -> str:
    chunks = []
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


class Credentials:
    def __init__(self, *, token: str | None = None, username: str | None = None, password: str | None = None):
        self.token, self.username, self.password = token, username, password
        self.cookie: str | None = None  # after logging in


def resolve_credentials(args: argparse.Namespace, env: dict[str, str]) -> Credentials:
    if args.token is not None and args.user is not None:
        raise ClientError("Give either --token or --user, not both.", EXIT_FIX)
    token = args.token if args.token is not None else (None if args.user is not None else env.get("CHAT_TOKEN"))
    if token is not None:
        token = token.strip()
        if not token:
            raise ClientError("The token is empty.", EXIT_FIX)
        return Credentials(token=token)
    username = args.user or env.get("CHAT_USER")
    if not username:
        raise ClientError(
            "No credentials: give --token TOKEN (or CHAT_TOKEN), or --user NAME with --password-stdin "
            "(or CHAT_PASSWORD).",
            EXIT_FIX,
        )
    if args.password is not None:
        password = args.password
    elif args.password_stdin:
        if os.isatty(0):
            password = getpass.getpass(f"Password for {username}: ")
        else:
            password = _read_stdin_line()
    elif env.get("CHAT_PASSWORD") is not None:
        password = env["CHAT_PASSWORD"]
    elif os.isatty(0) and os.isatty(1) and not args.send:
        password = getpass.getpass(f"Password for {username}: ")
    else:
        raise ClientError(f"No password for {username!r}: use --password-stdin or set CHAT_PASSWORD.", EXIT_FIX)
    if not password:
        raise ClientError(f"The password for {username!r} is empty.", EXIT_FIX)
    return Credentials(username=username, password=password)


# The client ---------------------------------------------------------------------------------


class Room:
    """What the client holds of one room."""

    def __init__(self, slug: str) -> None:
        self.slug = slug
        self.last: int | None = None  # highest seq taken with nothing missing below it
        self.held: dict[int, dict] = {}  # messages beyond a gap, until the catch-up fills it
        self.seen: OrderedDict[int, dict] = OrderedDict()  # recent messages by seq
        self.oldest: int | None = None  # smallest seq shown: /history pages below it
        self.presence: list[str] | None = None
        self.info: dict[str, Any] = {}
        self.joined_here = False  # a `joined` arrived on the current socket
        self.catching_up = False  # a join with `since` is in flight
        self.history_busy = False
        self.switch_on_join = False  # joined by /join: becomes the current room when joined


class ChatClient:
    def __init__(self, args: argparse.Namespace, endpoint: Endpoint, credentials: Credentials) -> None:
        self.args = args
        self.endpoint = endpoint
        self.credentials = credentials
        self.sending = args.send is not None  # non-interactive: send, wait for the ack, exit
        self.startup_rooms: list[str] = list(dict.fromkeys(args.room or [DEFAULT_ROOM]))
        self.rooms: dict[str, Room] = {slug: Room(slug) for slug in self.startup_rooms}
        self.current: str | None = self.startup_rooms[0]
        self.pending: OrderedDict[str, tuple[str, str]] = OrderedDict()  # client_id -> (room, body)
        self.acks: dict[str, dict] = {}
        self.unechoed: set[tuple[str, int]] = set()  # acked messages whose broadcast has not come yet
        self.requests: dict[str, tuple[str, str | None, dict]] = {}  # ref -> (type, room, extra)
        self.ws: Any = None
        self.ever_connected = False
        self.connections = 0
        self.closing = False  # we are closing the socket ourselves: no reconnect
        self.attempt = 0
        self.refs = 0
        self.pong = asyncio.Event()
        self.changed = asyncio.Event()
        self.started = asyncio.Event()  # every startup room joined once

    # Output ---------------------------------------------------------------------------------

    def out(self, text: str) -> None:
        if not self.sending:
            _write(sys.stdout, text)

    def info(self, text: str) -> None:
        """A status line (connection, rooms, presence): `* ...`."""
        if not self.sending:
            _write(sys.stdout, "* " + text)

    def warn(self, text: str) -> None:
        """A problem the user should see; on standard error, `! ...`."""
        _write(sys.stderr, "! " + text)

    def _notify(self) -> None:
        self.changed.set()

    # Sending --------------------------------------------------------------------------------

    def _ref(self, kind: str) -> str:
        self.refs += 1
        return f"{kind[0]}{self.refs}"

    async def request(self, kind: str, room: str | None = None, *, extra: dict | None = None, **fields: Any) -> bool:
        """Send a frame with a fresh `ref`; False when there is no open socket."""
        ref = self._ref(kind)
        frame = {"type": kind, **({"room": room} if room is not None else {}), **fields, "ref": ref}
        if self.ws is None:
            return False
        self.requests[ref] = (kind, room, extra or {})
        try:
            await self.ws.send(json.dumps(frame))
        except ConnectionClosed:
            self.requests.pop(ref, None)
            return False
        return True

    async def join(self, room: Room, *, switch: bool = False) -> None:
        fields = {} if room.last is None else {"since": room.last}
        if room.last is not None:
            room.catching_up = True
        await self.request("join", room.slug, extra={"switch": switch}, **fields)

    async def send_pending(self, client_id: str) -> None:
        slug, body = self.pending[client_id]
        room = self.rooms.get(slug)
        if room is not None and room.joined_here:
            await self.request("send", slug, extra={"client_id": client_id}, body=body, client_id=client_id)

    def queue_message(self, slug: str, body: str) -> str:
        client_id = uuid.uuid4().hex
        self.pending[client_id] = (slug, body)
        return client_id

    # Connection -----------------------------------------------------------------------------

    async def connect(self):
        headers: dict[str, str] = {"User-Agent": "chat-client/1 (python websockets)"}
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        if self.credentials.cookie:
            headers["Cookie"] = self.credentials.cookie
        origin = self.args.origin or (self.endpoint.http_base if self.credentials.cookie else None)
        try:
            return await websockets.connect(
                self.endpoint.ws_url,
                origin=origin,
                additional_headers=headers,
                user_agent_header=None,
                open_timeout=self.args.timeout,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=3,
                max_size=2**22,
            )
        except InvalidStatus as error:
            raise ClientError(self._describe_refusal(error.response.status_code), self._refusal_code(error)) from None
        except InvalidURI as error:
            raise ClientError(f"Bad URL {self.endpoint.ws_url!r}: {error}.", EXIT_FIX) from None
        except InvalidHandshake as error:
            raise ClientError(
                f"{self.endpoint.ws_url} did not answer as a WebSocket server ({error}).", EXIT_FAILED
            ) from None
        except (OSError, TimeoutError) as error:
            raise ClientError(describe_os_error(error, self.endpoint), EXIT_FAILED) from None

    def _refusal_code(self, error: InvalidStatus) -> int:
        return EXIT_FIX if error.response.status_code in (400, 401, 403, 404) else EXIT_FAILED

    def _describe_refusal(self, status: int) -> str:
        url = self.endpoint.ws_url
        if status == 404:
            return f"There is no chat WebSocket at {url} (HTTP 404): check the path (usually /ws/chat/)."
        if status in (401, 403) and self.credentials.token:
            # A token handshake needs no Origin and a bad token is closed 4401 after the upgrade, so
            # an HTTP refusal here is about the address: the path, or a server without tokens.
            return (
                f"The server refused the WebSocket handshake (HTTP {status}): check the path {url} "
                f"(usually /ws/chat/); if it is right, this server does not take API tokens "
                f"(try --origin {self.endpoint.http_base})."
            )
        if status == 403:
            origin = self.args.origin or self.endpoint.http_base
            return (
                f"The server refused the WebSocket handshake (HTTP 403): the Origin {origin} is not allowed "
                f"(its host must be in the server's DJANGO_ALLOWED_HOSTS) or the path {url} is wrong."
            )
        return f"The server refused the WebSocket handshake with HTTP {status}."

    def describe_final_close(self, code: int) -> ClientError:
        if code == CloseCode.SESSION_ENDED:
            if self.credentials.token:
                return ClientError(
                    "The server rejected the API token (close 4401): it is invalid or has been revoked.", EXIT_FIX
                )
            return ClientError(
                "The server ended the session (close 4401): it was logged out, the password changed, "
                "or the account was deactivated; run the client again to log in.",
                EXIT_FIX,
            )
        if code == CloseCode.DEACTIVATED:
            return ClientError("The server refused the account: it is deactivated (close 4403).", EXIT_FIX)
        return ClientError(
            "The server closed the connection after too many refused or rate-limited frames (close 4429).",
            EXIT_FAILED,
        )

    async def run_connection(self) -> None:
        """Connect, serve, and reconnect with backoff until a final close or an error."""
        while True:
            try:
                ws = await self.connect()
            except ClientError as error:
                if not self.ever_connected or error.code == EXIT_FIX:
                    raise
                failure = error.message
            else:
                self.ever_connected = True
                code, reason = await self.serve(ws)
                if self.closing:
                    return
                if code in FINAL_CLOSES:
                    raise self.describe_final_close(code)
                failure = f"disconnected (close {code}{': ' + clean_line(reason) if reason else ''})"
            # Exponential backoff with full jitter; `attempt` restarts at the next `joined`.
            delay = random.uniform(0, min(self.args.reconnect_max, BACKOFF_BASE * 2**self.attempt))
            self.attempt += 1
            self.info(f"{failure.rstrip('.')}; reconnecting in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def serve(self, ws: ClientConnection) -> tuple[int, str]:
        """Run one socket until it closes; return its close code and reason."""
        self.connections += 1
        self.ws = ws
        self.requests.clear()
        for room in self.rooms.values():
            room.joined_here = room.catching_up = room.history_busy = False
        pinger = asyncio.create_task(self.pinger(ws))
        try:
            async with ws:
                if self.connections == 1:
                    who = f"as {self.credentials.username}" if self.credentials.username else "with a token"
                    self.info(f"connected to {self.endpoint.ws_url} {clean_line(who)}")
                else:
                    self.info("reconnected; catching up")
                for room in list(self.rooms.values()):
                    await self.join(room, switch=room.switch_on_join)
                async for text in ws:
                    try:
                        frame = json.loads(text)
                    except (TypeError, ValueError):
                        continue
                    if isinstance(frame, dict):
                        await self.handle(frame)
        except ConnectionClosed:
            pass
        finally:
            pinger.cancel()
            self.ws = None
            self._notify()
        code = ws.close_code if ws.close_code is not None else CloseCode.ABNORMAL
        return code, ws.close_reason or ""

    async def pinger(self, ws: ClientConnection) -> None:
        """An application ping every --ping-interval seconds: `pong.seqs` reveals a dropped
        last message; no pong within 10 s means a dead connection."""
        try:
            while True:
                await asyncio.sleep(self.args.ping_interval)
                self.pong.clear()
                await ws.send(json.dumps({"type": "ping", "ref": self._ref("ping")}))
                try:
                    await asyncio.wait_for(self.pong.wait(), PONG_TIMEOUT)
                except TimeoutError:
                    self.info(f"no answer to a ping in {PONG_TIMEOUT:.0f} s")
                    await ws.close(CloseCode.NO_PONG, "no pong")
                    return
        except ConnectionClosed:
            return

    # Incoming frames ------------------------------------------------------------------------

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        handler = getattr(self, f"on_{kind}", None) if isinstance(kind, str) and kind.isidentifier() else None
        if handler is not None:
            await handler(frame)
        self._notify()

    async def on_joined(self, frame: dict[str, Any]) -> None:
        _kind, _slug, extra = self.requests.pop(frame.get("ref"), ("join", None, {}))
        room = self.rooms.get(frame.get("room"))
        if room is None:  # left meanwhile
            return
        switching = bool(extra.get("switch") or room.switch_on_join)
        if switching:  # before the backlog is shown, so that it shows as the current room's
            room.switch_on_join = False
            self.current = room.slug
        room.info = frame.get("info") or {}
        messages = [m for m in frame.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("seq"), int)]
        first = room.last is None
        if first:
            shown = messages[-self.args.backlog :] if self.args.backlog > 0 else []
            skipped = messages[: len(messages) - len(shown)]
            room.last = skipped[-1]["seq"] if skipped else (messages[0]["seq"] - 1 if messages else 0)
            room.oldest = shown[0]["seq"] if shown else room.last + 1
            messages = shown
            name, topic = room.info.get("name") or room.slug, room.info.get("topic")
            self.info(
                f"joined #{clean_line(room.slug)}: {clean_line(name)}" + (f" — {clean_line(topic)}" if topic else "")
            )
        room.catching_up = False
        for message in messages:
            await self.take(room, message)
        if frame.get("complete") is False:  # more than one batch behind: ask for the next one
            await self.join(room)
        self.set_presence(room, frame.get("presence"), announce=not first)
        if first:
            self.info(f"online in #{clean_line(room.slug)}: {', '.join(map(clean_line, room.presence or [])) or '-'}")
        if switching:
            self.switch(room.slug)
        if not room.joined_here:
            room.joined_here = True
            self.attempt = 0
            for client_id, (slug, _body) in list(self.pending.items()):
                if slug == room.slug:
                    await self.send_pending(client_id)
        if not self.started.is_set() and all(
            self.rooms.get(slug) is None or self.rooms[slug].joined_here for slug in self.startup_rooms
        ):
            self.started.set()

    async def take(self, room: Room, message: dict[str, Any]) -> None:
        """Show a message once, in seq order: a seq already taken is a duplicate; one beyond the
        next is held, and a catch-up fills the gap."""
        seq = message["seq"]
        if room.last is None or seq <= room.last:
            return
        if seq > room.last + 1:
            room.held[seq] = message
            if not room.catching_up:
                await self.join(room)
            return
        self.show(room, message)
        while room.last + 1 in room.held:
            self.show(room, room.held.pop(room.last + 1))
        for stale in [s for s in room.held if s <= room.last]:
            del room.held[stale]

    def show(self, room: Room, message: dict[str, Any]) -> None:
        room.last = message["seq"]
        self.unechoed.discard((room.slug, message["seq"]))
        room.seen[message["seq"]] = message
        while len(room.seen) > SEEN_KEEP:
            room.seen.popitem(last=False)
        self.out(format_message(message, None if room.slug == self.current else room.slug))

    async def on_message(self, frame: dict[str, Any]) -> None:
        room = self.rooms.get(frame.get("room"))
        message = frame.get("message")
        if room is not None and isinstance(message, dict) and isinstance(message.get("seq"), int):
            await self.take(room, message)

    async def on_message_edited(self, frame: dict[str, Any]) -> None:
        self.requests.pop(frame.get("ref"), None)
        room = self.rooms.get(frame.get("room"))
        message = frame.get("message")
        if room is None or not isinstance(message, dict):
            return
        seq = message.get("seq")
        if isinstance(seq, int) and room.last is not None and seq > room.last:
            return  # not shown yet: the catch-up brings the edited text
        known = room.seen.get(seq, {})
        merged = {**known, **message}
        if isinstance(seq, int):
            room.seen[seq] = merged
        self.out(format_message(merged, None if room.slug == self.current else room.slug, edited=True))

    async def on_message_deleted(self, frame: dict[str, Any]) -> None:
        self.requests.pop(frame.get("ref"), None)
        room = self.rooms.get(frame.get("room"))
        if room is None:
            return
        seq = frame.get("seq")
        if isinstance(seq, int) and room.last is not None and seq > room.last:
            return  # not shown yet: the catch-up brings the tombstone
        known = room.seen.get(seq)
        if known is None:
            self.info(f"message #{seq} in #{clean_line(room.slug)} was deleted")
            return
        known = {**known, "deleted": True, "body": ""}
        room.seen[seq] = known
        self.out(format_message(known, None if room.slug == self.current else room.slug))

    async def on_ack(self, frame: dict[str, Any]) -> None:
        self.requests.pop(frame.get("ref"), None)
        client_id = frame.get("client_id")
        if client_id in self.pending:
            slug, _body = self.pending.pop(client_id)
            self.acks[client_id] = frame
            room = self.rooms.get(slug)
            seq = frame.get("seq")
            if room is not None and isinstance(seq, int) and (room.last is None or seq > room.last):
                self.unechoed.add((slug, seq))

    async def on_history(self, frame: dict[str, Any]) -> None:
        self.requests.pop(frame.get("ref"), None)
        room = self.rooms.get(frame.get("room"))
        if room is None:
            return
        room.history_busy = False
        messages = [m for m in frame.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("seq"), int)]
        if room.oldest is not None:
            messages = [m for m in messages if m["seq"] < room.oldest]
        where = None if room.slug == self.current else room.slug
        if messages:
            self.info(f"older messages of #{clean_line(room.slug)}, #{messages[0]['seq']} to #{messages[-1]['seq']}:")
            for message in messages:
                self.out(format_message(message, where))
            room.oldest = messages[0]["seq"]
        if not frame.get("has_more") or not messages:
            room.oldest = 1 if not messages else room.oldest
            self.info(f"that is the beginning of #{clean_line(room.slug)}")

    async def on_presence(self, frame: dict[str, Any]) -> None:
        room = self.rooms.get(frame.get("room"))
        if room is not None:
            self.set_presence(room, frame.get("users"), announce=True)

    def set_presence(self, room: Room, users: Any, *, announce: bool) -> None:
        if not isinstance(users, list):
            return
        before = set(room.presence or [])
        room.presence = sorted(str(user) for user in users)
        if announce and room.presence is not None:
            where = clean_line(room.slug)
            for user in sorted(set(room.presence) - before):
                self.info(f"{clean_line(user)} entered #{where}")
            for user in sorted(before - set(room.presence)):
                self.info(f"{clean_line(user)} left #{where}")

    async def on_typing(self, frame: dict[str, Any]) -> None:
        if self.args.typing and frame.get("room") in self.rooms:
            self.info(f"{clean_line(frame.get('username'))} is typing in #{clean_line(frame.get('room'))}…")

    async def on_left(self, frame: dict[str, Any]) -> None:
        self.requests.pop(frame.get("ref"), None)

    async def on_room_closed(self, frame: dict[str, Any]) -> None:
        slug = frame.get("room")
        if slug not in self.rooms:
            return
        reasons = {
            "archived": "it was archived",
            "deleted": "it was deleted",
            "banned": "you were banned from it",
            "removed": "you were removed from it",
        }
        reason = reasons.get(frame.get("reason"), f"reason: {clean_line(frame.get('reason'))}")
        self.drop_room(slug)
        if self.sending:
            raise ClientError(f"The room {slug!r} was closed: {reason}.", EXIT_FIX)
        self.warn(f"#{clean_line(slug)} was closed: {reason}")

    async def on_pong(self, frame: dict[str, Any]) -> None:
        self.requests.pop(frame.get("ref"), None)
        self.pong.set()
        seqs = frame.get("seqs")
        if isinstance(seqs, dict):
            for slug, seq in seqs.items():
                room = self.rooms.get(slug)
                if room and room.joined_here and room.last is not None and isinstance(seq, int):
                    if seq > room.last and not room.catching_up:
                        await self.join(room)  # the newest message never reached us

    async def on_error(self, frame: dict[str, Any]) -> None:
        kind, slug, extra = self.requests.pop(frame.get("ref"), (None, frame.get("room"), {}))
        code = frame.get("code")
        detail = clean_line(frame.get("detail") or code or "error")
        if kind == "join" and slug is not None:
            room = self.rooms.get(slug)
            if code == "rate_limited" and room is not None:
                asyncio.get_running_loop().call_later(1.0, lambda: asyncio.ensure_future(self._rejoin(slug)))
                return
            if room is not None:
                self.drop_room(slug)
            if code == "not_found":
                sentence = f"There is no room {slug!r} (or it is archived)."
            elif code == "forbidden":
                sentence = f"You may not enter the room {slug!r}: {detail}"
            else:
                sentence = f"Cannot join the room {slug!r}: {detail}"
            if not self.started.is_set() and slug in self.startup_rooms:
                raise ClientError(sentence, EXIT_FIX)
            self.warn(sentence)
            if not self.started.is_set() and all(
                self.rooms.get(s) is None or self.rooms[s].joined_here for s in self.startup_rooms
            ):
                self.started.set()
            return
        if kind == "send":
            client_id = extra.get("client_id")
            if code in ("rate_limited", "internal") and client_id in self.pending:
                # Not processed: the same client_id again, a little later.
                asyncio.get_running_loop().call_later(
                    1.0 + random.random(), lambda: asyncio.ensure_future(self._resend(client_id))
                )
                return
            body = self.pending.pop(client_id, (None, ""))[1]
            sentence = f"Message not sent to {slug!r}: {detail}"
            if self.sending:
                raise ClientError(sentence, EXIT_FIX)
            preview = clean_line(body)[:40]
            self.warn(f"{sentence} ({preview!r})" if preview else sentence)
            return
        if kind == "history" and slug in self.rooms:
            self.rooms[slug].history_busy = False
        self.warn(f"{detail} [{code}]")

    async def _rejoin(self, slug: str) -> None:
        room = self.rooms.get(slug)
        if room is not None and self.ws is not None:
            await self.join(room)

    async def _resend(self, client_id: str) -> None:
        if client_id in self.pending and self.ws is not None:
            await self.send_pending(client_id)

    def drop_room(self, slug: str) -> None:
        self.rooms.pop(slug, None)
        for client_id, (room, _body) in list(self.pending.items()):
            if room == slug:
                self.pending.pop(client_id)
        if self.current == slug:
            joined = [other for other, room in self.rooms.items() if room.last is not None]
            self.current = (joined or list(self.rooms) or [None])[0]
            if joined and self.started.is_set():
                self.info(f"now in #{clean_line(self.current)}")

    def switch(self, slug: str) -> None:
        if self.current != slug:
            self.current = slug
        self.info(f"now in #{clean_line(slug)}")

    # Commands -------------------------------------------------------------------------------

    async def command(self, line: str) -> bool:
        """Handle one input line; False to quit."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return True
        if text.startswith("/") and not text.startswith("//"):
            name, _, arg = text[1:].strip().partition(" ")
            name, arg = name.lower(), arg.strip()
            handler = {
                "quit": None,
                "exit": None,
                "help": self.cmd_help,
                "join": self.cmd_join,
                "leave": self.cmd_leave,
                "part": self.cmd_leave,
                "history": self.cmd_history,
                "who": self.cmd_who,
                "rooms": self.cmd_rooms,
            }
            if name not in handler:
                self.warn(f"unknown command /{clean_line(name)}: /help lists the commands")
                return True
            if handler[name] is None:
                return False
            await handler[name](arg)
            return True
        body = text[1:] if text.startswith("//") else text
        if self.current is None:
            self.warn("you are in no room: /join ROOM first")
            return True
        client_id = self.queue_message(self.current, body)
        room = self.rooms[self.current]
        if room.joined_here and self.ws is not None:
            await self.send_pending(client_id)
        else:
            self.info("not connected: the message is queued and will be sent after reconnecting")
        return True

    async def cmd_help(self, _arg: str) -> None:
        for line in COMMANDS_HELP.splitlines()[1:]:
            self.out(line)

    async def cmd_join(self, arg: str) -> None:
        slug = arg.split()[0].lstrip("#") if arg else ""
        if not slug:
            self.warn("usage: /join ROOM")
            return
        room = self.rooms.get(slug)
        if room is not None and room.last is not None:
            self.switch(slug)
            return
        if room is None:
            room = self.rooms[slug] = Room(slug)
        room.switch_on_join = True
        if not await self.request("join", slug, extra={"switch": True}):
            self.info(f"not connected: #{clean_line(slug)} will be joined after reconnecting")

    async def cmd_leave(self, arg: str) -> None:
        slug = (arg.split()[0].lstrip("#") if arg else None) or self.current
        if slug is None or slug not in self.rooms:
            self.warn(f"you are not in #{clean_line(slug)}" if slug else "you are in no room")
            return
        was_joined = self.rooms[slug].joined_here
        self.drop_room(slug)
        if was_joined:
            await self.request("leave", slug)
        self.info(f"left #{clean_line(slug)}")

    async def cmd_history(self, arg: str) -> None:
        if self.current is None:
            self.warn("you are in no room: /join ROOM first")
            return
        try:
            limit = int(arg) if arg else 20
        except ValueError:
            self.warn("usage: /history [N], N from 1 to 100")
            return
        limit = max(1, min(100, limit))
        room = self.rooms[self.current]
        if room.oldest is not None and room.oldest <= 1:
            self.info(f"that is the beginning of #{clean_line(room.slug)}")
            return
        if not room.joined_here or self.ws is None:
            self.warn("not connected: try /history again after reconnecting")
            return
        if room.history_busy:
            return
        room.history_busy = True
        fields = {"limit": limit} if room.oldest is None else {"before": room.oldest, "limit": limit}
        await self.request("history", room.slug, **fields)

    async def cmd_who(self, _arg: str) -> None:
        if self.current is None:
            self.warn("you are in no room: /join ROOM first")
            return
        users = self.rooms[self.current].presence or []
        self.info(f"online in #{clean_line(self.current)}: {', '.join(map(clean_line, users)) or '-'}")

    async def cmd_rooms(self, _arg: str) -> None:
        if not self.rooms:
            self.info("no rooms joined: /join ROOM")
            return
        names = [
            ("*" if slug == self.current else "")
            + "#"
            + clean_line(slug)
            + ("" if room.last is not None else " (joining)")
            for slug, room in self.rooms.items()
        ]
        self.info("rooms: " + ", ".join(names))

    # Modes ----------------------------------------------------------------------------------

    async def wait_until(self, predicate, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass
        return True

    async def close(self) -> None:
        # Our own last messages come back as broadcasts shortly after their acks: wait for them
        # (briefly) so the socket does not close while the server is sending to it.
        if self.ws is not None and self.unechoed:
            await self.wait_until(lambda: not self.unechoed or self.ws is None, 2.0)
        self.closing = True
        ws = self.ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(CloseCode.NORMAL, "bye"), 5)
            except (TimeoutError, ConnectionClosed, OSError):
                pass

    async def run_send(self, body: str) -> int:
        ids = {self.queue_message(slug, body): slug for slug in self.startup_rooms}
        connection = asyncio.create_task(self.run_connection())
        done = asyncio.create_task(self.wait_until(lambda: all(i in self.acks for i in ids), self.args.timeout))
        try:
            await asyncio.wait({connection, done}, return_when=asyncio.FIRST_COMPLETED)
            if connection.done():
                connection.result()  # raises the ClientError
            if not done.result():
                raise ClientError(
                    f"No acknowledgement from the server within {self.args.timeout:g} s: the message may not "
                    f"have been stored.",
                    EXIT_FAILED,
                )
        finally:
            done.cancel()
            await self.close()
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)
        if not self.args.quiet:
            for client_id, slug in ids.items():
                _write(sys.stdout, f"Sent message #{self.acks[client_id].get('seq')} to {slug}.")
        return EXIT_OK

    async def run_interactive(self) -> int:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        if not self.args.follow:
            start_stdin_reader(loop, lines)
        try:  # SIGTERM (kill, systemd) ends the session as /quit does
            loop.add_signal_handler(signal.SIGTERM, lines.put_nowait, None)
        except (NotImplementedError, RuntimeError):  # not on this platform
            pass
        connection = asyncio.create_task(self.run_connection())
        chat = asyncio.create_task(self.chat_loop(lines))
        try:
            await asyncio.wait({connection, chat}, return_when=asyncio.FIRST_COMPLETED)
            if connection.done():
                connection.result()  # raises the ClientError
            return chat.result()
        finally:
            chat.cancel()
            await self.close()
            connection.cancel()
            await asyncio.gather(connection, chat, return_exceptions=True)

    async def chat_loop(self, lines: asyncio.Queue[str | None]) -> int:
        await self.started.wait()
        if self.args.follow:
            self.info("following: new messages appear here; Ctrl+C to stop")
        else:
            self.info("type a message and press Enter; /help for commands, /quit or Ctrl+D to exit")
        while True:
            line = await lines.get()
            if line is None or not await self.command(line):
                break
        # Lines typed (or piped) just before the end: wait for their acks and for the answers to
        # the last commands (/join, /history), so that a script's output is complete.
        if not await self.wait_until(lambda: not self.pending and not self.requests, self.args.timeout):
            if self.pending:
                self.warn(f"{len(self.pending)} message(s) were not acknowledged by the server before exiting")
                return EXIT_FAILED
        return EXIT_OK


def start_stdin_reader(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue) -> None:
    """Read standard input in a thread, line by line, into `lines` (None at end of input), so
    incoming messages are printed while the user types. os.read, not sys.stdin: no buffer lock
    is held by a thread that is still reading when the program exits."""

    def put(item: str | None) -> bool:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
            return True
        except RuntimeError:  # the loop is closed: the program is exiting
            return False

    def reader() -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(0, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                if buffer:
                    put(buffer.decode("utf-8", "replace"))
                put(None)
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not put(line.decode("utf-8", "replace")):
                    return

    threading.Thread(target=reader, name="stdin-reader", daemon=True).start()


# Command line -------------------------------------------------------------------------------

DESCRIPTION = """\
A terminal client for the chat server. Interactive by default: prints the messages of the rooms
as `[HH:MM] author: body` and sends the lines you type to the current room. With --send it posts
one message, waits for the server's acknowledgement and exits (for bots and cron jobs)."""

EPILOG = f"""\
{COMMANDS_HELP}

authentication (one of):
  --token TOKEN or CHAT_TOKEN   an API token (`manage.py create_token USER`), sent as
                                `Authorization: Bearer TOKEN` on the WebSocket handshake
  --user NAME or CHAT_USER      log in over HTTP through the login form, as a browser does; the
                                password comes from --password-stdin (the first line of standard
                                input; a prompt without echo on a terminal), CHAT_PASSWORD, a
                                prompt on a terminal, or --password (visible to other users of
                                the machine: avoid)

environment:
  CHAT_URL, CHAT_TOKEN, CHAT_USER, CHAT_PASSWORD   defaults for --url, --token, --user, password

reliability:
  After any disconnect except 4401/4403/4429 the client reconnects with exponential backoff and
  full jitter (at most --reconnect-max seconds), rejoins every room with `since`, prints only the
  messages it had not printed, and sends the lines typed meanwhile (each once, by client_id).

exit codes:
  0    done (/quit, Ctrl+D, end of input; --send: the message was acknowledged)
  1    a failure that may pass: server unreachable, no acknowledgement in time, close 4429,
       messages left unacknowledged at exit
  2    something to fix first: arguments, URL, wrong password, invalid or revoked token (4401),
       deactivated account (4403), unknown or forbidden room, message refused (too long, empty)
  130  interrupted (Ctrl+C)

examples:
  python -m clients.terminal --url ws://127.0.0.1:8000/ws/chat/ --user alice --room lobby
  CHAT_TOKEN=... python -m clients.terminal --room ops --send "deploy done"
  ./backup.sh 2>&1 | tail -n 5 | python -m clients.terminal --token "$TOKEN" --room ops --send -
"""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clients.terminal",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=None,
        help=f"the chat WebSocket, ws://HOST:PORT/ws/chat/ or wss://... behind TLS (default: CHAT_URL or "
        f"{DEFAULT_URL}); the http(s) address for logging in and the Origin derive from it",
    )
    auth = parser.add_argument_group("authentication")
    auth.add_argument("--token", help="API token (default: CHAT_TOKEN)")
    auth.add_argument("--user", help="username to log in with (default: CHAT_USER)")
    auth.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (a hidden prompt on a terminal)",
    )
    auth.add_argument("--password", help="the password on the command line (visible in `ps`: prefer the others)")
    auth.add_argument(
        "--origin",
        help="the Origin header to send (default: the http(s) address of --url when logging in with a "
        "password; none with a token)",
    )
    parser.add_argument(
        "--room",
        action="append",
        metavar="ROOM",
        help=f"room to join; repeat for several, the first is the current one (default: {DEFAULT_ROOM})",
    )
    parser.add_argument(
        "--send",
        metavar="TEXT",
        help="send TEXT to the room(s), wait for the acknowledgement and exit; '-' reads the message from "
        "standard input (after the password line with --password-stdin)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="with --send: print nothing on success")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=15.0,
        metavar="SECONDS",
        help="how long to wait for connecting, for logging in, and for acknowledgements of --send or of "
        "messages still pending at exit (default: 15)",
    )
    parser.add_argument(
        "--backlog",
        type=non_negative_int,
        default=20,
        metavar="N",
        help="recent messages to show when joining a room (0 to 50, default 20); /history shows older ones",
    )
    parser.add_argument("--typing", action="store_true", help="show when others are typing (off by default)")
    parser.add_argument(
        "--follow",
        action="store_true",
        help="do not read standard input: only print the rooms' messages until interrupted (logging)",
    )
    parser.add_argument(
        "--reconnect-max",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="the longest wait between reconnection attempts (default: 10)",
    )
    parser.add_argument(
        "--ping-interval",
        type=positive_float,
        default=25.0,
        metavar="SECONDS",
        help="seconds between application pings that check the connection and catch missed messages (default: 25)",
    )
    return parser


async def _main(args: argparse.Namespace, endpoint: Endpoint, credentials: Credentials, body: str | None) -> int:
    if credentials.username is not None:
        login = asyncio.to_thread(
            http_login, endpoint, credentials.username, credentials.password or "", timeout=args.timeout
        )
        credentials.cookie = await login
    client = ChatClient(args, endpoint, credentials)
    if body is not None:
        return await client.run_send(body)
    return await client.run_interactive()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = dict(os.environ)
    try:
        endpoint = Endpoint(args.url or env.get("CHAT_URL") or DEFAULT_URL)
        for slug in args.room or []:
            if not slug.strip():
                raise ClientError("A room name is empty.", EXIT_FIX)
        args.room = [slug.strip().lstrip("#") for slug in args.room or [DEFAULT_ROOM]]
        credentials = resolve_credentials(args, env)
        body = None
        if args.send is not None:
            body = _read_stdin_all().rstrip("\n") if args.send == "-" else args.send
            if not body.strip():
                raise ClientError("There is nothing to send: the message is empty.", EXIT_FIX)
        return asyncio.run(_main(args, endpoint, credentials, body))
    except ClientError as error:
        _write(sys.stderr, f"clients.terminal: {error.message}")
        return error.code
    except KeyboardInterrupt:
        _write(sys.stderr, "")
        return EXIT_INTERRUPTED
    except EOFError:  # Ctrl+D at the password prompt
        _write(sys.stderr, "")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
