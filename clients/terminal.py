"""A terminal client for the chat server: `python -m clients.terminal --help`.

The terminal's face of clients.connection (the library that connects, catches up and resends)
and clients.login (the login form). Like them it needs only the standard library and
`websockets`, not Django. It speaks the wire protocol of docs/protocol.md:

- authenticates with an API token (`Authorization: Bearer`) or logs in over HTTP with a username
  and password exactly as a browser does (login form, CSRF token, session cookie, `Origin`);
- interactive mode prints the rooms' messages (clients.display: ids, threads, reactions,
  Markdown set off) and sends the lines typed on standard input; commands reply in threads,
  react, edit, delete and open direct conversations; `--send` posts one message, waits for the
  server's acknowledgement and exits (bots, cron);
- reconnects with exponential backoff and full jitter, rejoins every room with `since` and
  `rev`, prints each message once (by seq) and each change once in its latest state, catches up
  on gaps (a seq or rev jump, or `pong.seqs` / `pong.revs` ahead), and resends unacknowledged
  messages with their original `client_id` (the server stores each one once).

Exit codes: 0 done; 1 a failure that may pass (server unreachable, connection lost for good, no
acknowledgement in time); 2 something to fix first (arguments, URL, credentials, room); 130
interrupted (Ctrl+C).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TextIO, cast

try:
    import websockets  # noqa: F401 (the library needs it: a sentence rather than a traceback)
except ImportError:  # pragma: no cover
    sys.stderr.write("clients.terminal needs the 'websockets' package: pip install websockets\n")
    raise SystemExit(2) from None

from chat.realtime.codes import FINAL_CLOSES, ErrorCode
from clients.connection import PONG_TIMEOUT, ChatClient, Frame, Message, Room
from clients.display import (
    clean_line,
    format_direct_notice,
    format_message,
    format_reactions_change,
    format_search_result,
    format_thread,
    format_thread_line,
    room_label,
    terminal_style,
    where_label,
)
from clients.endpoint import DEFAULT_URL, ClientError, Endpoint
from clients.login import login

EXIT_OK, EXIT_FAILED, EXIT_FIX, EXIT_INTERRUPTED = 0, 1, 2, 130

DEFAULT_ROOM = "lobby"
SEEN_KEEP = 2000  # messages remembered per room (to show who wrote a deleted one)

COMMANDS_HELP = """\
commands (interactive mode; ID is the number after # at the start of a message):
  TEXT                send TEXT to the current room (start it with // to send a line beginning with /)
  /join ROOM          join ROOM (if needed) and make it the current room
  /dm USER[,USER...]  open your direct conversation with USER (and the others named) and make it
                      the current room; the first message makes it appear to them
  /leave [ROOM]       leave ROOM (default: the current room); you stay a member
  /part [ROOM]        leave ROOM for good: you are no longer a member (a private room needs a new invitation)
  /members            the members of the current room, with their roles
  /invite USER        invite USER to the current room (its creator and moderators)
  /remove USER        remove USER from the current room (its creator and moderators)
  /topic TEXT         set the current room's topic (its creator and moderators; empty TEXT clears it)
  /rename NAME        rename the current room; its address stays (its creator and moderators)
  /private on|off     make the current room private (only invited members may enter; the others
                      are shut out) or public again (its creator and moderators)
  /archive ROOM       archive the current room for everyone (its creator and moderators); ROOM must
                      name it, so that a stray /archive archives nothing
  /history [N]        show N older messages of the current room (default 20; repeat to go further back)
  /reply ID TEXT      answer message ID in its thread
  /thread ID          show message ID and the replies in its thread
  /link ID            print the web page's link to message ID (it opens there with the history around it)
  /upload PATH [TEXT] send the file at PATH (in quotes if it has spaces) to the current room, with
                      TEXT if given; a message's files show under it as [name (size)] URL
  /search TEXT        find messages with TEXT in every room you may read, newest first; in:#ROOM
                      and from:@USER narrow it; /search again with nothing pages further back
  /react ID EMOJI     react to message ID with EMOJI
  /unreact ID EMOJI   take back your EMOJI on message ID
  /edit ID TEXT       replace the text of your message ID
  /delete ID          delete your message ID (moderators: anyone's)
  /who                who is online in the current room
  /rooms              the rooms joined, the current one marked with *, and where messages wait
                      unread (with the mentions of you and direct messages among them)
  /notify LEVEL [ROOM]  notifications of ROOM (default: the current room): all, mentions or mute
  /help               this list
  /quit               exit (so does Ctrl+D)"""


NOTIFY_LEVELS = ("all", "mentions", "mute")


def format_unread(row: dict[str, Any], rooms: Mapping[str, Room]) -> str:
    """`#lobby 3 (1 mention)`: a room's unread count, and its mentions of you when there are any."""
    slug = str(row.get("room"))
    room = rooms.get(slug)
    info = room.info if room is not None else {"kind": row.get("kind"), "name": slug}
    unread, mentions = int(row.get("unread") or 0), int(row.get("mentions") or 0)
    text = f"{room_label(slug, info)} {unread}"
    if mentions:
        text += f" ({mentions} {'mention' if mentions == 1 else 'mentions'})"
    if row.get("notify") == "mute":
        text += " (muted)"
    return text


def split_path(arg: str) -> tuple[str, str]:
    """`/upload`'s argument: the path (in quotes if it has spaces) and the text after it."""
    arg = arg.strip()
    if arg[:1] in ("'", '"'):
        end = arg.find(arg[0], 1)
        if end > 0:
            return arg[1:end], arg[end + 1 :].strip()
    path, _, text = arg.partition(" ")
    return path, text.strip()


def parse_switch(arg: str) -> bool | None:
    """`/private`'s argument: True for `on`, False for `off`, None for anything else (a typo
    must not change who may enter the room)."""
    return {"on": True, "off": False}.get(arg.strip().lower())


def archive_target(arg: str, current: str | None) -> str | None:
    """`/archive ROOM`: the room to archive, when ROOM names the current room (`#` optional);
    else None. Archiving closes the room for everyone, so it is never the default: an /archive
    typed in the wrong window, or with the wrong room, archives nothing."""
    slug = arg.strip().lstrip("#")
    return slug if slug and slug == current else None


def parse_search(arg: str) -> tuple[str, str | None, str | None]:
    """`/search`'s argument: the text, and the room (`in:#lobby`) and author (`from:@bob`) filters."""
    room = author = None
    words = []
    for word in arg.split():
        lower = word.lower()
        if lower.startswith("in:") and len(word) > 3:
            room = word[3:].lstrip("#")
        elif lower.startswith("from:") and len(word) > 5:
            author = word[5:].lstrip("@")
        else:
            words.append(word)
    return " ".join(words), room, author


def exit_code(error: ClientError) -> int:
    return EXIT_FIX if error.fixable else EXIT_FAILED


# Output -------------------------------------------------------------------------------------


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:  # e.g. piped into `head`
        os._exit(EXIT_OK)
    except UnicodeEncodeError:
        stream.write(text.encode(stream.encoding or "ascii", "replace").decode(stream.encoding or "ascii") + "\n")
        stream.flush()


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
    def __init__(self, *, token: str | None = None, username: str | None = None, password: str | None = None) -> None:
        self.token, self.username, self.password = token, username, password
        self.cookie: str | None = None  # after logging in


def resolve_credentials(args: argparse.Namespace, env: dict[str, str]) -> Credentials:
    if args.token is not None and args.user is not None:
        raise ClientError("Give either --token or --user, not both.", fixable=True)
    token = args.token if args.token is not None else (None if args.user is not None else env.get("CHAT_TOKEN"))
    if token is not None:
        token = token.strip()
        if not token:
            raise ClientError("The token is empty.", fixable=True)
        return Credentials(token=token)
    username = args.user or env.get("CHAT_USER")
    if not username:
        raise ClientError(
            "No credentials: give --token TOKEN (or CHAT_TOKEN), or --user NAME with --password-stdin "
            "(or CHAT_PASSWORD).",
            fixable=True,
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
        raise ClientError(f"No password for {username!r}: use --password-stdin or set CHAT_PASSWORD.", fixable=True)
    if not password:
        raise ClientError(f"The password for {username!r} is empty.", fixable=True)
    return Credentials(username=username, password=password)


# The client ---------------------------------------------------------------------------------


def format_members(members: list[dict[str, Any]]) -> str:
    """`alice (creator), bob (moderator), carol`."""

    def one(member: dict[str, Any]) -> str:
        role = "creator" if member.get("creator") else "moderator" if member.get("role") == "moderator" else ""
        name = clean_line(member.get("username"))
        return f"{name} ({role})" if role else name

    return ", ".join(one(member) for member in members) or "-"


class TerminalRoom(Room):
    """A room as the terminal shows it."""

    def __init__(self, slug: str, *, last: int | None = None, keep: int | None = None) -> None:
        super().__init__(slug, last=last, keep=keep)
        self.oldest: int | None = None  # smallest seq shown: /history pages below it
        self.history_busy = False
        self.switch_on_join = False  # joined by /join: becomes the current room when joined
        self.backlog = False  # the first join's recent messages are arriving (replies stay in their threads)


class TerminalClient(ChatClient):
    # Also `internal` (the database is away): not stored, so the same client_id again is safe.
    resent_send_errors = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL})

    def __init__(self, args: argparse.Namespace, endpoint: Endpoint, credentials: Credentials) -> None:
        self.args = args
        self.credentials = credentials
        self.sending = args.send is not None  # non-interactive: send, wait for the ack, exit
        self.startup_rooms: list[str] = list(dict.fromkeys(args.room or [DEFAULT_ROOM]))
        super().__init__(
            endpoint,
            token=credentials.token,
            cookie=credentials.cookie,
            origin=args.origin,
            rooms=self.startup_rooms,
            backlog=args.backlog,
            keep=SEEN_KEEP,
            reconnect_max=args.reconnect_max,
            ping_interval=args.ping_interval,
            pong_timeout=PONG_TIMEOUT,
            open_timeout=args.timeout,
        )
        self.current: str | None = self.startup_rooms[0]
        self.unechoed: set[tuple[str, int]] = set()  # acked messages whose broadcast has not come yet
        self.ever_connected = False
        self.started = asyncio.Event()  # every startup room joined once
        self.style = terminal_style(sys.stdout, os.environ)
        self.base = self.endpoint.http_base  # a file's URL is absolute against it
        self.last_search: tuple[str, str | None, str | None, int | None] | None = None  # q, room, author, next before

    def new_room(self, slug: str) -> TerminalRoom:
        return TerminalRoom(slug, last=None, keep=SEEN_KEEP)

    def view(self, slug: str | None) -> TerminalRoom | None:
        return cast(TerminalRoom | None, self.rooms.get(slug) if slug is not None else None)

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

    def where(self, room: Room) -> str | None:
        """The room to name before a message: none for the current one."""
        return None if room.slug == self.current else where_label(room.slug, room.info)

    def label(self, slug: str | None) -> str:
        """`#lobby`, or `dm with bob` for a direct conversation."""
        room = self.rooms.get(slug) if slug is not None else None
        return room_label(slug or "", room.info if room is not None else None)

    def show(self, room: Room, message: Message, *, edited: bool = False) -> None:
        """A message in the flow: a thread's reply on one line, any other in full."""
        if isinstance(message.get("reply_to"), int):
            self.out(format_thread_line(message, self.where(room), edited=edited))
        else:
            self.out(format_message(message, self.where(room), style=self.style, edited=edited, base=self.base))

    # Connection -----------------------------------------------------------------------------

    def describe_refusal(self, status: int) -> str:
        if status in (401, 403) and self.token:
            return (
                f"The server refused the WebSocket handshake (HTTP {status}): check the path {self.endpoint.ws_url} "
                f"(usually /ws/chat/); if it is right, this server does not take API tokens "
                f"(try --origin {self.endpoint.http_base})."
            )
        return super().describe_refusal(status)

    async def run_connection(self) -> None:
        """Connect, serve, and reconnect with backoff until a final close or an error."""
        code = await self.run()
        if code is not None and code in FINAL_CLOSES:
            raise self.final_close_error(code)

    def on_connect_failed(self, error: ClientError) -> None:
        if not self.ever_connected or error.fixable:
            raise error

    def on_connected(self) -> None:
        self.ever_connected = True
        for slug in self.rooms:
            room = self.view(slug)
            if room is not None:
                room.history_busy = False
        if self.connections == 1:
            who = f"as {self.credentials.username}" if self.credentials.username else "with a token"
            self.info(f"connected to {self.endpoint.ws_url} {clean_line(who)}")
        else:
            self.info("reconnected; catching up")

    def on_reconnecting(self, delay: float, code: int, reason: str, error: ClientError | None) -> None:
        if error is not None:
            failure = error.message
        else:
            failure = f"disconnected (close {code}{': ' + clean_line(reason) if reason else ''})"
        self.info(f"{failure.rstrip('.')}; reconnecting in {delay:.1f} s")

    def on_ping_unanswered(self) -> None:
        self.info(f"no answer to a ping in {PONG_TIMEOUT:.0f} s")

    # Incoming -------------------------------------------------------------------------------

    def on_joining(self, room: Room, first: bool) -> None:
        view = self.view(room.slug)
        if view is not None and view.switch_on_join:  # before the backlog, so it shows as the current room's
            self.current = room.slug
        if view is not None:
            view.backlog = first
        if first and room.info.get("kind") == "direct":
            self.info(f"joined {self.label(room.slug)}")
        elif first:
            name, topic = room.info.get("name") or room.slug, room.info.get("topic")
            self.info(
                f"joined #{clean_line(room.slug)}: {clean_line(name)}" + (f" — {clean_line(topic)}" if topic else "")
            )

    def on_joined(self, room: Room, first: bool) -> None:
        view = self.view(room.slug)
        if view is not None:
            view.backlog = False
        if first:
            if view is not None:
                view.oldest = min(room.messages) if room.messages else (room.last or 0) + 1
            self.show_online(room)
        if view is not None and view.switch_on_join:
            view.switch_on_join = False
            self.switch(room.slug)
        self.check_started()

    def check_started(self) -> None:
        if not self.started.is_set() and all(
            self.rooms.get(slug) is None or self.rooms[slug].joined_here for slug in self.startup_rooms
        ):
            self.started.set()

    def on_message(self, room: Room, message: Message) -> None:
        self.unechoed.discard((room.slug, message["seq"]))
        view = self.view(room.slug)
        if view is not None and view.backlog and isinstance(message.get("reply_to"), int):
            return  # its thread's first message shows the count; /thread shows it
        self.show(room, message)

    def on_message_edited(self, room: Room, message: Message) -> None:
        self.show(room, message, edited=True)

    def on_message_deleted(self, room: Room, seq: int | None, message: Message | None) -> None:
        if message is None:
            self.info(f"a message of {self.label(room.slug)} was deleted")
            return
        self.show(room, message)

    def on_message_updated(self, room: Room, message: Message, before: Message | None) -> None:
        if before is None:  # one this client had not kept: shown as it is now
            self.show(room, message)
        elif (before.get("reactions") or {}) != (message.get("reactions") or {}):
            self.info(format_reactions_change(message) + (f" in {self.label(room.slug)}" if self.where(room) else ""))
        # A thread's reply count changed: the reply itself is shown as it comes.

    def on_direct_message(self, room: str, info: dict[str, Any], message: Message) -> None:
        if room not in self.rooms:  # an open one shows the message itself
            self.out(format_direct_notice(info, message))

    def on_ack(self, client_id: str, room: str, frame: Frame) -> None:
        held = self.rooms.get(room)
        seq = frame.get("seq")
        if held is not None and isinstance(seq, int) and (held.last is None or seq > held.last):
            self.unechoed.add((room, seq))

    def on_history(self, room: Room, frame: Frame) -> None:
        view = self.view(room.slug)
        if view is None:
            return
        view.history_busy = False
        messages = [m for m in frame.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("seq"), int)]
        if view.oldest is not None:
            messages = [m for m in messages if m["seq"] < view.oldest]
        if messages:
            self.info(f"older messages of {self.label(room.slug)}:")
            for message in messages:
                if not isinstance(message.get("reply_to"), int):  # in their threads: /thread ID
                    self.out(format_message(message, self.where(room), style=self.style, base=self.base))
            view.oldest = messages[0]["seq"]
        if not frame.get("has_more") or not messages:
            view.oldest = 1 if not messages else view.oldest
            self.info(f"that is the beginning of {self.label(room.slug)}")

    def on_presence(self, room: Room, before: list[str] | None) -> None:
        if before is None or room.presence is None:  # the first list is shown as `online in`
            return
        where = self.label(room.slug)
        for user in sorted(set(room.presence) - set(before)):
            self.info(f"{clean_line(user)} entered {where}")
        for user in sorted(set(before) - set(room.presence)):
            self.info(f"{clean_line(user)} left {where}")

    def on_typing(self, frame: Frame) -> None:
        if self.args.typing and frame.get("room") in self.rooms:
            self.info(f"{clean_line(frame.get('username'))} is typing in {self.label(str(frame.get('room')))}…")

    def on_room_closed(self, room: str, frame: Frame) -> None:
        reasons = {
            "archived": "it was archived",
            "deleted": "it was deleted",
            "banned": "you were banned from it",
            "removed": "you were removed from it",
            "left": "you left it (elsewhere)",
        }
        reason = reasons.get(str(frame.get("reason")), f"reason: {clean_line(frame.get('reason'))}")
        if self.sending:
            raise ClientError(f"The room {room!r} was closed: {reason}.", fixable=True)
        self.warn(f"#{clean_line(room)} was closed: {reason}")

    def on_room_updated(self, room: Room) -> None:
        info = room.info or {}
        topic = clean_line(info.get("topic")) or "-"
        self.info(f"#{clean_line(room.slug)} is now named {clean_line(info.get('name'))}; topic: {topic}")

    def on_room_invited(self, room: str, info: dict[str, Any]) -> None:
        self.info(f"you were invited to {room_label(room, info)}: /join {clean_line(room)}")

    def join_refused_for_good(self, code: str) -> bool:
        return code != ErrorCode.RATE_LIMITED

    def on_join_failed(self, room: str, frame: Frame) -> None:
        code = frame.get("code")
        detail = clean_line(frame.get("detail") or code or "error")
        if code == ErrorCode.NOT_FOUND:
            sentence = f"There is no room {room!r} (or it is archived)."
        elif code == ErrorCode.FORBIDDEN:
            sentence = f"You may not enter the room {room!r}: {detail}"
        else:
            sentence = f"Cannot join the room {room!r}: {detail}"
        if not self.started.is_set() and room in self.startup_rooms:
            raise ClientError(sentence, fixable=True)
        self.warn(sentence)
        self.check_started()

    def on_send_failed(self, client_id: str, room: str, body: str, frame: Frame) -> None:
        self.discard(client_id)
        detail = clean_line(frame.get("detail") or frame.get("code") or "error")
        sentence = f"Message not sent to {room!r}: {detail}"
        if self.sending:
            raise ClientError(sentence, fixable=True)
        preview = clean_line(body)[:40]
        self.warn(f"{sentence} ({preview!r})" if preview else sentence)

    def on_error(self, frame: Frame, kind: str | None, room: str | None) -> None:
        code = frame.get("code")
        view = self.view(room)
        if kind == "history" and view is not None:
            view.history_busy = False
        self.warn(f"{clean_line(frame.get('detail') or code or 'error')} [{code}]")

    def drop_room(self, slug: str) -> None:
        super().drop_room(slug)
        if self.current == slug:
            joined = [other for other, room in self.rooms.items() if room.last is not None]
            self.current = joined[0] if joined else next(iter(self.rooms), None)
            if joined and self.started.is_set():
                self.info(f"now in {self.label(self.current)}")

    def switch(self, slug: str) -> None:
        self.current = slug
        self.info(f"now in {self.label(slug)}")

    # Commands -------------------------------------------------------------------------------

    async def command(self, line: str) -> bool:
        """Handle one input line; False to quit."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return True
        if text.startswith("/") and not text.startswith("//"):
            name, _, arg = text[1:].strip().partition(" ")
            name, arg = name.lower(), arg.strip()
            handlers: dict[str, Callable[[str], Awaitable[None]] | None] = {
                "quit": None,
                "exit": None,
                "help": self.cmd_help,
                "join": self.cmd_join,
                "leave": self.cmd_leave,
                "part": self.cmd_part,
                "members": self.cmd_members,
                "invite": self.cmd_invite,
                "remove": self.cmd_remove,
                "topic": self.cmd_topic,
                "rename": self.cmd_rename,
                "private": self.cmd_private,
                "archive": self.cmd_archive,
                "history": self.cmd_history,
                "dm": self.cmd_dm,
                "reply": self.cmd_reply,
                "thread": self.cmd_thread,
                "link": self.cmd_link,
                "upload": self.cmd_upload,
                "search": self.cmd_search,
                "react": self.cmd_react,
                "unreact": self.cmd_unreact,
                "edit": self.cmd_edit,
                "delete": self.cmd_delete,
                "who": self.cmd_who,
                "rooms": self.cmd_rooms,
                "notify": self.cmd_notify,
            }
            if name not in handlers:
                self.warn(f"unknown command /{clean_line(name)}: /help lists the commands")
                return True
            handler = handlers[name]
            if handler is None:
                return False
            await handler(arg)
            return True
        body = text[1:] if text.startswith("//") else text
        if self.current is None:
            self.warn("you are in no room: /join ROOM first")
            return True
        room = self.rooms[self.current]
        connected = room.joined_here and self.ws is not None
        await self.send(self.current, body, wait=False)
        if not connected:
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
        await self.open_room(slug)

    async def open_room(self, slug: str, info: dict[str, Any] | None = None) -> None:
        """Make `slug` the current room, joining it first if needed."""
        room = self.view(slug)
        if room is not None and room.last is not None:
            self.switch(slug)
            return
        room = cast(TerminalRoom, self.add_room(slug))
        room.info = info or room.info
        room.switch_on_join = True
        if not await self.join(slug):
            self.info(f"not connected: {self.label(slug)} will be joined after reconnecting")

    async def cmd_dm(self, arg: str) -> None:
        users = [name.lstrip("@") for name in arg.replace(",", " ").split() if name.lstrip("@")]
        if not users:
            self.warn("usage: /dm USER[,USER...]")
            return
        answer = await self.ask(self.direct(users, timeout=self.args.timeout))
        if answer is not None:
            slug, info = answer
            await self.open_room(slug, info)

    async def cmd_leave(self, arg: str) -> None:
        slug = (arg.split()[0].lstrip("#") if arg else None) or self.current
        if slug is None or slug not in self.rooms:
            self.warn(f"you are not in #{clean_line(slug)}" if slug else "you are in no room")
            return
        label = self.label(slug)
        await self.leave(slug)
        self.info(f"left {label}")

    # Room management -------------------------------------------------------------------------

    def managed_room(self) -> str | None:
        if self.current is None:
            self.warn("you are in no room: /join ROOM first")
        return self.current

    async def cmd_part(self, arg: str) -> None:
        slug = (arg.split()[0].lstrip("#") if arg else None) or self.current
        if slug is None:
            self.warn("you are in no room")
            return
        label = self.label(slug)
        try:
            await self.part(slug, timeout=self.args.timeout)
        except ClientError as error:
            self.warn(clean_line(error.message))
            return
        except TimeoutError:
            self.warn(f"no answer from the server within {self.args.timeout:g} s")
            return
        self.info(f"left {label} for good")
        if self.current == slug:
            self.current = next(iter(self.rooms), None)

    async def cmd_members(self, _arg: str) -> None:
        slug = self.managed_room()
        if slug is not None:
            members = await self.ask(self.members(slug, timeout=self.args.timeout))
            if members is not None:
                self.info(f"members of {self.label(slug)}: {format_members(members)}")

    async def change_member(self, arg: str, *, invite: bool) -> None:
        user = arg.split()[0].lstrip("@") if arg else ""
        slug = self.managed_room() if user else None
        if not user:
            self.warn(f"usage: /{'invite' if invite else 'remove'} USER")
        if slug is None or not user:
            return
        action = self.invite if invite else self.remove_member
        members = await self.ask(action(slug, user, timeout=self.args.timeout))
        if members is not None:
            done = "invited to" if invite else "removed from"
            self.info(f"{clean_line(user)} {done} {self.label(slug)}; members: {format_members(members)}")

    async def cmd_invite(self, arg: str) -> None:
        await self.change_member(arg, invite=True)

    async def cmd_remove(self, arg: str) -> None:
        await self.change_member(arg, invite=False)

    async def cmd_topic(self, arg: str) -> None:
        slug = self.managed_room()
        if slug is not None:
            info = await self.ask(self.room_update(slug, topic=arg, timeout=self.args.timeout))
            if info is not None:
                self.info(f"topic of {self.label(slug)}: {clean_line(info.get('topic')) or '-'}")

    async def cmd_rename(self, arg: str) -> None:
        if not arg:
            self.warn("usage: /rename NAME")
            return
        slug = self.managed_room()
        if slug is not None:
            info = await self.ask(self.room_update(slug, name=arg, timeout=self.args.timeout))
            if info is not None:
                self.info(f"#{clean_line(slug)} is now named {clean_line(info.get('name'))}")

    async def cmd_private(self, arg: str) -> None:
        private = parse_switch(arg)
        if private is None:
            self.warn("usage: /private on|off")
            return
        slug = self.managed_room()
        if slug is not None:
            info = await self.ask(self.room_update(slug, private=private, timeout=self.args.timeout))
            if info is not None:
                state = "private: only invited members may enter" if info.get("private") else "public"
                self.info(f"{self.label(slug)} is now {state}")

    async def cmd_archive(self, arg: str) -> None:
        slug = self.managed_room()
        if slug is None:
            return
        target = archive_target(arg, slug)
        if target is None:
            self.warn(
                f"usage: /archive ROOM, naming the current room (/archive {clean_line(slug)}): it closes for everyone"
            )
            return
        label = self.label(target)
        try:
            await self.archive(target, timeout=self.args.timeout)
        except ClientError as error:
            self.warn(clean_line(error.message))
            return
        except TimeoutError:
            self.warn(f"no answer from the server within {self.args.timeout:g} s")
            return
        self.info(f"archived {label}")

    def message_room(self, message_id: int) -> str | None:
        """The room of a message this client holds (the current room's first), else the
        current room: the server says so when it is not there."""
        for slug in dict.fromkeys([self.current, *self.rooms]):
            room = self.rooms.get(slug) if slug is not None else None
            if room is not None and room.find(message_id) is not None:
                return slug
        return self.current

    def parse_id(self, arg: str, usage: str, *, needs_rest: bool = False) -> tuple[int, str, str] | None:
        """`ID REST` (`#ID` too): the id, the rest, and the room it is in; None (said why) when
        the arguments or the current room do not allow it."""
        first, _, rest = arg.partition(" ")
        try:
            message_id = int(first.lstrip("#"))
        except ValueError:
            message_id = 0
        if message_id <= 0 or (needs_rest and not rest.strip()):
            self.warn(f"usage: {usage}")
            return None
        slug = self.message_room(message_id)
        if slug is None:
            self.warn("you are in no room: /join ROOM first")
            return None
        return message_id, rest.strip(), slug

    def thread_of(self, slug: str, message_id: int) -> int:
        """The thread a message is in: its first message's id (a reply's `reply_to`)."""
        held = self.rooms[slug].find(message_id)
        root = held.get("reply_to") if held is not None else None
        return root if isinstance(root, int) else message_id

    async def ask(self, action: Awaitable[Any]) -> Any:
        """Wait for a request's answer; a refusal or a lost connection is a warning (None)."""
        try:
            return await action
        except ClientError as error:
            self.warn(clean_line(error.message))
        except TimeoutError:
            self.warn(f"no answer from the server within {self.args.timeout:g} s")
        return None

    async def cmd_reply(self, arg: str) -> None:
        parsed = self.parse_id(arg, "/reply ID TEXT", needs_rest=True)
        if parsed is not None:
            message_id, body, slug = parsed
            connected = self.rooms[slug].joined_here and self.ws is not None
            await self.send(slug, body, reply_to=self.thread_of(slug, message_id), wait=False)
            if not connected:
                self.info("not connected: the reply is queued and will be sent after reconnecting")

    async def cmd_thread(self, arg: str) -> None:
        parsed = self.parse_id(arg, "/thread ID")
        if parsed is None:
            return
        message_id, _rest, slug = parsed
        message_id = self.thread_of(slug, message_id)
        answer = await self.ask(self.thread(slug, message_id, limit=100, timeout=self.args.timeout))
        if answer is None or not isinstance(answer.get("root"), dict):
            return
        replies = [m for m in answer.get("messages") or [] if isinstance(m, dict)]
        count = answer["root"].get("reply_count", len(replies))
        more = ", the latest 100 shown" if answer.get("has_more") else ""
        self.info(f"thread #{message_id} in {self.label(slug)}: {count} {'reply' if count == 1 else 'replies'}{more}")
        for line in format_thread(answer["root"], replies, style=self.style, base=self.base):
            self.out(line)

    async def cmd_link(self, arg: str) -> None:
        parsed = self.parse_id(arg, "/link ID")
        if parsed is None:
            return
        message_id, _rest, slug = parsed
        root = self.thread_of(slug, message_id)
        self.out(self.endpoint.message_url(slug, message_id, thread=root if root != message_id else None))

    async def cmd_upload(self, arg: str) -> None:
        path, text = split_path(arg)
        if not path:
            self.warn("usage: /upload PATH [TEXT]")
            return
        if self.current is None:
            self.warn("you are in no room: /join ROOM first")
            return
        slug = self.current
        self.info(f"uploading {clean_line(os.path.basename(path))}…")
        upload = await self.ask(self.upload(slug, path, timeout=max(60.0, self.args.timeout)))
        if upload is None:
            return
        connected = self.rooms[slug].joined_here and self.ws is not None if slug in self.rooms else False
        await self.send(slug, text, attachments=[upload["id"]], wait=False)
        if not connected:
            self.info("not connected: the message is queued and will be sent after reconnecting")

    async def cmd_search(self, arg: str) -> None:
        if not arg.strip():
            if self.last_search is None or self.last_search[3] is None:
                self.warn("usage: /search TEXT (in:#ROOM and from:@USER narrow it)")
                return
            q, room, author, before = self.last_search
        else:
            q, room, author = parse_search(arg)
            before = None
            if not q:
                self.warn("usage: /search TEXT (in:#ROOM and from:@USER narrow it)")
                return
        answer = await self.ask(self.search(q, room=room, author=author, before=before, timeout=self.args.timeout))
        if answer is None:
            return
        messages = [m for m in answer.get("messages") or [] if isinstance(m, dict)]
        more = bool(answer.get("has_more")) and bool(messages)
        last = messages[-1].get("id") if messages else None
        self.last_search = (q, room, author, last if more and isinstance(last, int) else None)
        if not messages:
            self.info(f"no messages match {clean_line(q)!r}" if before is None else "no more results")
            return
        count = len(messages)
        self.info(f"{count} {'message' if count == 1 else 'messages'} with {clean_line(q)!r}, newest first:")
        for message in messages:
            slug = str(message.get("room") or "")
            self.out(
                format_search_result(message, self.label(slug) if slug in self.rooms else f"#{slug}", base=self.base)
            )
        if more:
            self.info("more results: /search again (with nothing after it)")

    async def react_to(self, arg: str, *, on: bool) -> None:
        parsed = self.parse_id(arg, f"/{'react' if on else 'unreact'} ID EMOJI", needs_rest=True)
        if parsed is None:
            return
        message_id, emoji, slug = parsed
        held = self.rooms[slug].find(message_id)
        before = held.get("rev") if held is not None else None
        message = await self.ask(self.react(slug, message_id, emoji, on, timeout=self.args.timeout))
        if message and message.get("rev") == before:  # nothing changed: say how it stands
            self.info(format_reactions_change(message))

    async def cmd_react(self, arg: str) -> None:
        await self.react_to(arg, on=True)

    async def cmd_unreact(self, arg: str) -> None:
        await self.react_to(arg, on=False)

    async def cmd_edit(self, arg: str) -> None:
        parsed = self.parse_id(arg, "/edit ID TEXT", needs_rest=True)
        if parsed is not None:
            message_id, body, slug = parsed
            await self.ask(self.edit(slug, message_id, body, timeout=self.args.timeout))

    async def cmd_delete(self, arg: str) -> None:
        parsed = self.parse_id(arg, "/delete ID")
        if parsed is not None:
            message_id, _rest, slug = parsed
            await self.ask(self.delete(slug, message_id, timeout=self.args.timeout))

    async def cmd_history(self, arg: str) -> None:
        room = self.view(self.current)
        if room is None:
            self.warn("you are in no room: /join ROOM first")
            return
        try:
            limit = int(arg) if arg else 20
        except ValueError:
            self.warn("usage: /history [N], N from 1 to 100")
            return
        limit = max(1, min(100, limit))
        if room.oldest is not None and room.oldest <= 1:
            self.info(f"that is the beginning of {self.label(room.slug)}")
            return
        if not room.joined_here or self.ws is None:
            self.warn("not connected: try /history again after reconnecting")
            return
        if room.history_busy:
            return
        room.history_busy = True
        fields: dict[str, Any] = {"limit": limit} if room.oldest is None else {"before": room.oldest, "limit": limit}
        await self.request("history", room.slug, **fields)

    def show_online(self, room: Room) -> None:
        """`N online in ROOM: names` (in a large room, the names known so far, then `…`)."""
        users = room.presence or []
        count = room.online if room.online is not None else len(users)
        names = ", ".join(map(clean_line, users)) or "-"
        more = ", …" if not room.presence_complete and len(users) < count else ""
        self.info(f"{count} online in {self.label(room.slug)}: {names}{more}")

    async def cmd_who(self, _arg: str) -> None:
        if self.current is None:
            self.warn("you are in no room: /join ROOM first")
            return
        room = self.rooms[self.current]
        if not room.presence_complete:  # a large room: ask for the names after those known, page by page
            after = room.presence[-1] if room.presence else None
            try:
                while True:
                    page = await self.online(room.slug, after=after, limit=1000)
                    users = page.get("users") or []
                    if not page.get("has_more") or not users:
                        break
                    after = users[-1]
            except (ClientError, TimeoutError) as error:  # a RequestError is a ClientError
                self.warn(f"could not list who is online: {error}")
        self.show_online(room)

    async def cmd_rooms(self, _arg: str) -> None:
        if not self.rooms:
            self.info("no rooms joined: /join ROOM")
            return
        names = [
            ("*" if slug == self.current else "") + self.label(slug) + ("" if room.last is not None else " (joining)")
            for slug, room in self.rooms.items()
        ]
        self.info("rooms: " + ", ".join(names))
        await self.show_unread()

    async def show_unread(self) -> None:
        if self.ws is None:
            return
        counts = await self.ask(self.unread(timeout=self.args.timeout))
        if counts is None:
            return
        waiting = [format_unread(row, self.rooms) for row in counts if row.get("unread") or row.get("mentions")]
        self.info("unread: " + (", ".join(waiting) if waiting else "nothing"))

    async def cmd_notify(self, arg: str) -> None:
        level, _, slug = arg.partition(" ")
        slug = slug.strip() or self.current or ""
        if level not in NOTIFY_LEVELS or not slug:
            self.warn("usage: /notify all|mentions|mute [ROOM]")
            return
        answer = await self.ask(self.notify(slug, level, timeout=self.args.timeout))
        if answer is not None:
            self.info(f"notifications of {self.label(slug)}: {answer}")

    # Modes ----------------------------------------------------------------------------------

    async def close(self) -> None:
        # Our own last messages come back as broadcasts shortly after their acks: wait for them
        # (briefly) so the socket does not close while the server is sending to it.
        if self.ws is not None and self.unechoed:
            await self.wait_until(lambda: not self.unechoed or self.ws is None, 2.0)
        await super().close()

    async def run_send(self, body: str) -> int:
        ids = {self.queue(slug, body): slug for slug in self.startup_rooms}
        connection = asyncio.create_task(self.run_connection())
        done = asyncio.create_task(self.wait_until(lambda: all(i in self.acks for i in ids), self.args.timeout))
        try:
            await asyncio.wait({connection, done}, return_when=asyncio.FIRST_COMPLETED)
            if connection.done():
                connection.result()  # raises the ClientError
            if not done.result():
                raise ClientError(
                    f"No acknowledgement from the server within {self.args.timeout:g} s: the message may not "
                    f"have been stored."
                )
        finally:
            done.cancel()
            await self.close()
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)
        if not self.args.quiet:
            for client_id, slug in ids.items():
                # The id, as the interactive client shows messages: what /reply and /react take.
                _write(sys.stdout, f"Sent message #{self.acks[client_id].get('id')} to {slug}.")
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


def start_stdin_reader(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
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
as `#ID [HH:MM] author: body` and sends the lines you type to the current room. With --send it posts
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
  full jitter (at most --reconnect-max seconds), rejoins every room with `since` and `rev`,
  prints only the messages it had not printed and each message changed meanwhile (edited,
  deleted, reacted to) as it is now, and sends the lines typed meanwhile (each once, by client_id).

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
        credentials.cookie = await asyncio.to_thread(
            login, endpoint, credentials.username, credentials.password or "", timeout=args.timeout
        )
    client = TerminalClient(args, endpoint, credentials)
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
                raise ClientError("A room name is empty.", fixable=True)
        args.room = [slug.strip().lstrip("#") for slug in args.room or [DEFAULT_ROOM]]
        credentials = resolve_credentials(args, env)
        body = None
        if args.send is not None:
            body = _read_stdin_all().rstrip("\n") if args.send == "-" else args.send
            if not body.strip():
                raise ClientError("There is nothing to send: the message is empty.", fixable=True)
        return asyncio.run(_main(args, endpoint, credentials, body))
    except ClientError as error:
        _write(sys.stderr, f"clients.terminal: {error.message}")
        return exit_code(error)
    except KeyboardInterrupt:
        _write(sys.stderr, "")
        return EXIT_INTERRUPTED
    except EOFError:  # Ctrl+D at the password prompt
        _write(sys.stderr, "")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
