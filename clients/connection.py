"""A chat client library for bots, scripts, the terminal client and the tests: `ChatClient`.

It speaks the wire protocol of docs/protocol.md the way the browser page (chat.js) does:

- authenticates with an API token (`Authorization: Bearer`) or a session cookie (clients.login
  gets one through the login form) and an `Origin`;
- reconnects after any close but a final one (4401, 4403, 4429), with exponential backoff and
  full jitter; the attempt count restarts at the next `joined`;
- rejoins every room with `since` = the last seq it holds, and takes each message once, in seq
  order: a seq it holds is a duplicate, one beyond the next is held until the catch-up (a
  `join` with `since`) fills the gap; a `pong.seqs` ahead of what it holds also starts one;
- sends each message with a `client_id` and sends it again, with the same `client_id`, on the
  next socket until it is acked (the server stores it once); a send refused with
  `rate_limited` is sent again 1 to 2 s later, one refused otherwise is `failed` until
  `retry()`;
- pings every `ping_interval` seconds; no `pong` within `pong_timeout` closes the socket (4000)
  and reconnects.

Two ways to use it. Await `start()` (or `async with`) and read `incoming()`, `messages`,
`presence`; or subclass and override the `on_*` hooks, which run as frames arrive (they must not
wait for the server: `send(..., wait=False)` there). docs/client.md has an echo bot.

Needs the standard library, `websockets` and chat/realtime/codes.py (plain Python, no Django).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any, Self

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from chat.realtime.codes import FINAL_CLOSES, CloseCode, ErrorCode
from clients.endpoint import ClientError, Endpoint, describe_os_error

Frame = dict[str, Any]
Message = dict[str, Any]

USER_AGENT = "chat-client/1 (python websockets)"
# chat.js's reconnect backoff: full jitter over BASE * FACTOR**attempt seconds, capped.
BACKOFF_BASE, BACKOFF_FACTOR = 0.5, 2
RESEND_DELAY = 1.0  # a send refused for now (rate_limited) goes again after 1 to 2 s
PONG_TIMEOUT = 10.0  # seconds a ping waits for its pong before the connection counts as dead
REJOIN_DELAY = 1.0  # seconds before a join refused with rate_limited is tried again
RECENT = 1000  # frames and live bodies kept for inspection (`frames`, `live_bodies`)


def backoff_delay(attempt: int, cap: float, *, uniform: Callable[[float, float], float] = random.uniform) -> float:
    """How long to wait before reconnection attempt `attempt` (0 for the first): a random time
    between 0 and min(cap, 0.5 s x 2^attempt), full jitter so that clients dropped together do
    not come back together."""
    return uniform(0, min(cap, BACKOFF_BASE * BACKOFF_FACTOR ** min(attempt, 20)))


class Room:
    """What the client holds of one room: messages taken in seq order (`last` the highest with
    nothing missing below it), those held beyond a gap, presence, and the state of its join."""

    def __init__(self, slug: str, *, last: int | None = None, keep: int | None = None) -> None:
        self.slug = slug
        # None until the first `joined` when the client joins without `since` (recent messages
        # only); 0 from the start when it wants every message.
        self.last = last
        self.held: dict[int, Message] = {}  # beyond a gap, until the catch-up fills it
        self.messages: OrderedDict[int, Message] = OrderedDict()  # taken, by seq; at most `keep`
        self.keep = keep
        self.presence: list[str] | None = None
        self.info: dict[str, Any] = {}
        self.joined_here = False  # a `joined` arrived on the current socket
        self.joined_once = False
        self.catching_up = False  # a join with `since` is in flight

    def since(self) -> dict[str, Any]:
        """The `since` field of the next join: none before the first one without history."""
        return {} if self.last is None else {"since": self.last}

    def take(self, messages: Iterable[Message]) -> tuple[list[Message], bool]:
        """Messages that arrived (live or in a catch-up): which are now new and in order, and
        whether a gap is left (messages held beyond a missing seq). A later copy of a held seq
        replaces the earlier one (a catch-up brings the edited or deleted state)."""
        if self.last is None:
            return [], False
        for message in messages:
            if message["seq"] > self.last:
                self.held[message["seq"]] = message
        ready = []
        while self.last + 1 in self.held:
            self.last += 1
            ready.append(self.held.pop(self.last))
        return ready, bool(self.held)

    def remember(self, message: Message) -> None:
        self.messages[message["seq"]] = message
        while self.keep is not None and len(self.messages) > self.keep:
            self.messages.popitem(last=False)

    def first_join(self, messages: list[Message], backlog: int) -> list[Message]:
        """The first `joined` of a join without `since` (the latest messages): the newest
        `backlog` of them are new; `last` is set just below those."""
        shown = messages[-backlog:] if backlog > 0 else []
        skipped = messages[: len(messages) - len(shown)]
        self.last = skipped[-1]["seq"] if skipped else (messages[0]["seq"] - 1 if messages else 0)
        return shown

    def __repr__(self) -> str:
        return f"<Room {self.slug} last={self.last} held={sorted(self.held)}>"


class ChatClient:
    """One user's connection to the chat, kept alive across disconnects. See the module's
    docstring; the attributes below are what a user of the connection would notice."""

    # Error codes after which a send is tried again by itself (else it is `failed`).
    resent_send_errors: frozenset[str] = frozenset({ErrorCode.RATE_LIMITED})

    def __init__(
        self,
        url: str | Endpoint,
        *,
        token: str | None = None,
        cookie: str | None = None,
        origin: str | None = None,
        rooms: Iterable[str] = (),
        backlog: int | None = None,
        keep: int | None = None,
        name: str = "",
        reconnect: bool = True,
        reconnect_max: float = 15.0,
        ping_interval: float | None = 25.0,
        pong_timeout: float | None = PONG_TIMEOUT,
        open_timeout: float = 30.0,
    ) -> None:
        """`url`: the chat socket (ws:// or wss://). `token` or `cookie` (with `origin`, by
        default the http(s) address of `url`) authenticate. `backlog`: None takes every message
        of a room from seq 1; a number joins without `since` and takes only that many of the
        latest (0: only what comes after joining). `keep`: messages kept per room (None: all).
        `reconnect_max`: the longest wait between attempts. `ping_interval` None: no pings."""
        self.endpoint = url if isinstance(url, Endpoint) else Endpoint(url)
        self.token, self.cookie = token, cookie
        self.origin = origin if origin is not None else (self.endpoint.http_base if cookie else None)
        self.name = name
        self.backlog, self.keep = backlog, keep
        self.reconnect, self.reconnect_max = reconnect, reconnect_max
        self.ping_interval, self.pong_timeout, self.open_timeout = ping_interval, pong_timeout, open_timeout
        self.rooms: dict[str, Room] = {}
        for slug in rooms:
            self.add_room(slug)
        self.ws: ClientConnection | None = None
        self.pending: OrderedDict[str, tuple[str, str]] = OrderedDict()  # client_id -> (room, body), until acked
        self.acks: dict[str, Frame] = {}  # client_id -> its ack
        self.failed: dict[str, Frame] = {}  # client_id -> the error that refused it (still pending)
        self.requests: dict[str, tuple[str, str | None, dict[str, Any]]] = {}  # ref -> (type, room, extra)
        self.frames: deque[Frame] = deque(maxlen=RECENT)  # recent frames but joined, message, ack, presence, typing
        self.live = 0  # `message` frames received (duplicates included)
        self.live_bodies: deque[str] = deque(maxlen=RECENT)
        self.connections = 0  # successful handshakes
        self.reconnects = 0
        self.closes: list[int] = []  # close code of each socket that ended (1006 for a failed attempt)
        self.recoveries: list[float] = []  # seconds from each drop until every room was joined again
        self.opened_at: list[float] = []  # monotonic time of each successful handshake
        self._attempt = 0
        self._down_at: float | None = None
        self._refs = 0
        self._stopped = False
        self._task: asyncio.Task[int | None] | None = None
        self._later_tasks: set[asyncio.Task[None]] = set()
        self._inboxes: list[asyncio.Queue[tuple[str, Message] | None]] = []
        self._changed = asyncio.Event()
        self._pong = asyncio.Event()

    # Rooms ---------------------------------------------------------------------------------

    def new_room(self, slug: str) -> Room:
        """A Room for `slug` (a subclass may return its own kind)."""
        return Room(slug, last=0 if self.backlog is None else None, keep=self.keep)

    def add_room(self, slug: str) -> Room:
        if slug not in self.rooms:
            self.rooms[slug] = self.new_room(slug)
        return self.rooms[slug]

    def drop_room(self, slug: str) -> None:
        """Forget a room and the messages waiting to be sent there."""
        self.rooms.pop(slug, None)
        for client_id, (room, _body) in list(self.pending.items()):
            if room == slug:
                self.discard(client_id)

    async def join(self, slug: str) -> bool:
        """Join a room (now if connected, else on the next connection); False when not sent now."""
        return await self._join(self.add_room(slug)) is not None

    async def leave(self, slug: str) -> bool:
        """Leave a room; False when it was not joined."""
        room = self.rooms.get(slug)
        if room is None:
            return False
        joined = room.joined_here
        self.drop_room(slug)
        if joined:
            await self.request("leave", slug)
        return True

    # Life cycle ----------------------------------------------------------------------------

    async def start(self, *rooms: str, timeout: float = 10.0) -> Self:  # noqa: ASYNC109
        """Connect in the background and return once every room is joined. Raises ClientError
        when the connection ends for good first, TimeoutError when it takes longer."""
        for slug in rooms:
            self.add_room(slug)
        task = self._task
        if task is None:
            task = self._task = asyncio.create_task(self.run(), name=f"chat-client-{self.name}")
        await self.wait_for(
            lambda: task.done() or (self.connected and all(r.joined_once for r in self.rooms.values())),
            timeout,
            "a first join",
        )
        if task.done():
            self._raise_end(task)
        return self

    async def stop(self) -> None:
        """Close the socket, stop reconnecting, and end `incoming()`."""
        await self.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._end_inboxes()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def close(self) -> None:
        """Close the socket (1000) and stop reconnecting: `run()` returns None."""
        self._stopped = True
        for task in list(self._later_tasks):
            task.cancel()
        ws = self.ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(CloseCode.NORMAL, "bye"), 5)
            except (TimeoutError, ConnectionClosed, OSError):
                pass

    def abort(self) -> bool:
        """Cut the connection without a close frame, as a network failure does (the client
        reconnects); False when there is none."""
        if self.ws is None:
            return False
        self.ws.transport.abort()
        return True

    async def run(self) -> int | None:
        """Connect, serve, and reconnect with backoff until `close()` (None) or a final close
        (its code; any close with `reconnect=False`). A hook may raise to end it."""
        try:
            while not self.stopped():
                error: ClientError | None = None
                code: int
                try:
                    ws = await self._connect()
                except ClientError as failure:
                    self.on_connect_failed(failure)
                    code, reason, error = CloseCode.ABNORMAL, "", failure
                else:
                    code, reason = await self._serve(ws)
                self.closes.append(int(code))
                if self._down_at is None:
                    self._down_at = time.monotonic()
                self._notify()
                if self.stopped():
                    break
                if code in FINAL_CLOSES or not self.reconnect:
                    return code
                delay = backoff_delay(self._attempt, self.reconnect_max)
                self._attempt += 1
                self.reconnects += 1
                self.on_reconnecting(delay, code, reason, error)
                await asyncio.sleep(delay)
            return None
        finally:
            self._end_inboxes()

    async def _connect(self) -> ClientConnection:
        headers = {"User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            return await websockets.connect(
                self.endpoint.ws_url,
                origin=None if self.origin is None else websockets.Origin(self.origin),
                additional_headers=headers,
                user_agent_header=None,
                open_timeout=self.open_timeout,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=3,
                max_size=2**22,
            )
        except InvalidStatus as error:
            status = error.response.status_code
            raise ClientError(self.describe_refusal(status), fixable=status in (400, 401, 403, 404)) from None
        except InvalidURI as error:
            raise ClientError(f"Bad URL {self.endpoint.ws_url!r}: {error}.", fixable=True) from None
        except InvalidHandshake as error:
            raise ClientError(f"{self.endpoint.ws_url} did not answer as a WebSocket server ({error}).") from None
        except (OSError, TimeoutError) as error:
            raise ClientError(describe_os_error(error, self.endpoint)) from None

    async def _serve(self, ws: ClientConnection) -> tuple[int, str]:
        """Run one socket until it closes; its close code and reason."""
        self.ws = ws
        self.connections += 1
        self.opened_at.append(time.monotonic())
        self.requests.clear()  # answers to the previous socket's frames will not come
        for room in self.rooms.values():
            room.joined_here = room.catching_up = False
        pinger = asyncio.create_task(self._pinger(ws)) if self.ping_interval else None
        try:
            async with ws:
                self.on_connected()
                for room in list(self.rooms.values()):
                    await self._join(room)
                self._notify()
                async for text in ws:
                    try:
                        frame = json.loads(text)
                    except (TypeError, ValueError):
                        continue
                    if isinstance(frame, dict):
                        await self.handle_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            if pinger is not None:
                pinger.cancel()
            self.ws = None
            self._notify()
        return (ws.close_code if ws.close_code is not None else CloseCode.ABNORMAL), ws.close_reason or ""

    async def _pinger(self, ws: ClientConnection) -> None:
        """An application ping every `ping_interval`: `pong.seqs` reveals a lost last message;
        no pong within `pong_timeout` means a dead connection."""
        assert self.ping_interval is not None
        try:
            while True:
                await asyncio.sleep(self.ping_interval)
                self._pong.clear()
                if await self.ping() is None:
                    return
                if self.pong_timeout is None:
                    continue
                try:
                    await asyncio.wait_for(self._pong.wait(), self.pong_timeout)
                except TimeoutError:
                    self.on_ping_unanswered()
                    await ws.close(CloseCode.NO_PONG, "no pong")
                    return
        except ConnectionClosed:
            return

    def describe_refusal(self, status: int) -> str:
        """One sentence for an HTTP refusal of the handshake."""
        url = self.endpoint.ws_url
        if status == 404:
            return f"There is no chat WebSocket at {url} (HTTP 404): check the path (usually /ws/chat/)."
        if status in (401, 403) and self.token:
            # A token handshake needs no Origin and a bad token is closed 4401 after the upgrade, so
            # an HTTP refusal here is about the address: the path, or a server without tokens.
            return (
                f"The server refused the WebSocket handshake (HTTP {status}): check the path {url} "
                f"(usually /ws/chat/); if it is right, this server does not take API tokens "
                f"(try an Origin of {self.endpoint.http_base})."
            )
        if status == 403:
            origin = self.origin or self.endpoint.http_base
            return (
                f"The server refused the WebSocket handshake (HTTP 403): the Origin {origin} is not allowed "
                f"(its host must be in the server's DJANGO_ALLOWED_HOSTS) or the path {url} is wrong."
            )
        return f"The server refused the WebSocket handshake with HTTP {status}."

    def final_close_error(self, code: int) -> ClientError:
        """Why the connection ended for good, in one sentence."""
        if code == CloseCode.SESSION_ENDED:
            if self.token:
                return ClientError(
                    "The server rejected the API token (close 4401): it is invalid or has been revoked.", fixable=True
                )
            return ClientError(
                "The server ended the session (close 4401): it was logged out, the password changed, "
                "or the account was deactivated; run the client again to log in.",
                fixable=True,
            )
        if code == CloseCode.DEACTIVATED:
            return ClientError("The server refused the account: it is deactivated (close 4403).", fixable=True)
        if code == CloseCode.ABUSE:
            return ClientError(
                "The server closed the connection after too many refused or rate-limited frames (close 4429)."
            )
        return ClientError(f"The connection closed (close {code}).")

    def _raise_end(self, task: asyncio.Task[int | None]) -> None:
        """Raise what ended `task` (a run()): its exception, or the final close it returned."""
        code = task.result()
        if code is not None:
            raise self.final_close_error(code)

    # Sending -------------------------------------------------------------------------------

    def _ref(self, kind: str) -> str:
        self._refs += 1
        return f"{kind[0]}{self._refs}"

    async def raw(self, frame: Frame) -> bool:
        """Send a frame as it is; False when there is no open socket."""
        if self.ws is None:
            return False
        try:
            await self.ws.send(json.dumps(frame))
        except ConnectionClosed:
            return False
        return True

    async def request(
        self, kind: str, room: str | None = None, *, extra: dict[str, Any] | None = None, **fields: Any
    ) -> str | None:
        """Send a frame with a fresh `ref`, remembered until its answer; the ref, or None when
        there is no open socket."""
        if self.ws is None:
            return None
        ref = self._ref(kind)
        self.requests[ref] = (kind, room, extra or {})
        if not await self.raw({"type": kind, **({"room": room} if room is not None else {}), **fields, "ref": ref}):
            self.requests.pop(ref, None)
            return None
        return ref

    async def ping(self) -> str | None:
        """An application ping; its ref (the `pong` carries it), or None when not connected."""
        ref = self._ref("ping")
        return ref if await self.raw({"type": "ping", "ref": ref}) else None

    async def _join(self, room: Room) -> str | None:
        if room.last is not None:
            room.catching_up = True
        return await self.request("join", room.slug, **room.since())

    def queue(self, room: str, body: str) -> str:
        """Put a message in the outbox (sent once `room` is joined); its client_id."""
        client_id = uuid.uuid4().hex
        self.pending[client_id] = (room, body)
        return client_id

    def discard(self, client_id: str) -> None:
        """Give up on a message that is not acked: it is not sent again."""
        self.pending.pop(client_id, None)
        self.failed.pop(client_id, None)

    async def _transmit(self, client_id: str) -> None:
        # Only on a socket where the room is joined: the next `joined` sends the rest.
        slug, body = self.pending[client_id]
        room = self.rooms.get(slug)
        if room is not None and room.joined_here and self.ws is not None:
            await self.request("send", slug, extra={"client_id": client_id}, body=body, client_id=client_id)

    async def send(self, room: str, body: str, *, wait: bool = True, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """Send a message; its client_id. With `wait`, return once the server has stored it
        (its ack is in `acks`): ClientError if it was refused, TimeoutError after `timeout`."""
        client_id = self.queue(room, body)
        await self._transmit(client_id)
        if wait:
            await self.wait_for(
                lambda: client_id in self.acks or client_id in self.failed, timeout, f"ack for {body!r}"
            )
            if client_id in self.failed:
                refusal = self.failed[client_id]
                raise ClientError(
                    f"Message not sent to {room!r}: {refusal.get('detail') or refusal.get('code')}", fixable=True
                )
        return client_id

    async def retry(self, client_id: str) -> None:
        """Send a failed message again with the same client_id (the page's Retry button)."""
        if client_id in self.failed:
            del self.failed[client_id]
            await self._transmit(client_id)

    def _later(self, delay: float, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await action()

        task = asyncio.create_task(run())
        self._later_tasks.add(task)
        task.add_done_callback(self._later_tasks.discard)

    # Incoming frames -----------------------------------------------------------------------

    async def handle_frame(self, frame: Frame) -> None:
        """Take one frame from the server (what the connection does with each)."""
        kind = frame.get("type")
        if kind not in ("joined", "message", "ack", "presence", "typing"):
            self.frames.append(frame)
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            await handler(self, frame)
        self._notify()

    async def _on_joined_frame(self, frame: Frame) -> None:
        self._answered(frame)
        room = self._room(frame)
        if room is None:  # left meanwhile
            return
        first = not room.joined_once
        room.info = frame.get("info") or {}
        messages = [m for m in frame.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("seq"), int)]
        if room.last is None:
            messages = room.first_join(messages, self.backlog or 0)
        self.on_joining(room, first)
        room.catching_up = False
        await self._take(room, messages)
        if frame.get("complete") is False and not room.catching_up:  # more than a batch behind: the next one
            await self._join(room)
        users = frame.get("presence")
        if isinstance(users, list):
            before, room.presence = room.presence, sorted(str(user) for user in users)
            self.on_presence(room, before)
        room.joined_once = True
        if not room.joined_here:
            room.joined_here = True
            self._attempt = 0
            for client_id, (slug, _body) in list(self.pending.items()):
                if slug == room.slug and client_id not in self.failed:
                    await self._transmit(client_id)
        if self._down_at is not None and all(r.joined_here for r in self.rooms.values()):
            self.recoveries.append(time.monotonic() - self._down_at)
            self._down_at = None
        self.on_joined(room, first)

    async def _take(self, room: Room, messages: list[Message]) -> None:
        ready, gap = room.take(messages)
        for message in ready:
            room.remember(message)
            for inbox in self._inboxes:
                inbox.put_nowait((room.slug, message))
            self.on_message(room, message)
        if gap and not room.catching_up:  # something was lost on the way: ask for it
            await self._join(room)

    async def _on_message_frame(self, frame: Frame) -> None:
        message = frame.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("seq"), int):
            return
        self.live += 1
        self.live_bodies.append(str(message.get("body")))
        slug = str(frame.get("room"))
        self.on_live_message(slug, message)
        room = self.rooms.get(slug)
        if room is not None:
            await self._take(room, [message])

    async def _on_message_edited_frame(self, frame: Frame) -> None:
        self._answered(frame)
        room = self._room(frame)
        message = frame.get("message")
        if room is None or not isinstance(message, dict):
            return
        seq = message.get("seq")
        if isinstance(seq, int) and room.last is not None and seq > room.last:
            return  # not taken yet: the catch-up brings the edited text
        merged = {**room.messages.get(seq, {}), **message} if isinstance(seq, int) else dict(message)
        if isinstance(seq, int):
            room.remember(merged)
        self.on_message_edited(room, merged)

    async def _on_message_deleted_frame(self, frame: Frame) -> None:
        self._answered(frame)
        room = self._room(frame)
        if room is None:
            return
        seq = frame.get("seq")
        if isinstance(seq, int) and room.last is not None and seq > room.last:
            return  # not taken yet: the catch-up brings the tombstone
        known = room.messages.get(seq) if isinstance(seq, int) else None
        if known is not None:
            known = {**known, "deleted": True, "body": ""}
            room.messages[known["seq"]] = known
        self.on_message_deleted(room, seq if isinstance(seq, int) else None, known)

    async def _on_ack_frame(self, frame: Frame) -> None:
        self._answered(frame)
        client_id = frame.get("client_id")
        if isinstance(client_id, str) and client_id in self.pending:
            slug, _body = self.pending.pop(client_id)
            self.failed.pop(client_id, None)
            self.acks[client_id] = frame
            self.on_ack(client_id, slug, frame)

    async def _on_presence_frame(self, frame: Frame) -> None:
        room = self._room(frame)
        users = frame.get("users")
        if room is not None and isinstance(users, list):
            before, room.presence = room.presence, sorted(str(user) for user in users)
            self.on_presence(room, before)

    async def _on_pong_frame(self, frame: Frame) -> None:
        self._answered(frame)
        self._pong.set()
        seqs = frame.get("seqs")
        if isinstance(seqs, dict):
            for slug, seq in seqs.items():
                room = self.rooms.get(slug)
                if room and room.joined_here and room.last is not None and isinstance(seq, int):
                    if seq > room.last and not room.catching_up:
                        await self._join(room)  # the newest message never reached us

    async def _on_history_frame(self, frame: Frame) -> None:
        self._answered(frame)
        room = self._room(frame)
        if room is not None:
            self.on_history(room, frame)

    async def _on_typing_frame(self, frame: Frame) -> None:
        self.on_typing(frame)

    async def _on_left_frame(self, frame: Frame) -> None:
        self._answered(frame)

    async def _on_room_closed_frame(self, frame: Frame) -> None:
        slug = frame.get("room")
        if isinstance(slug, str) and slug in self.rooms:
            self.drop_room(slug)
            self.on_room_closed(slug, frame)

    async def _on_error_frame(self, frame: Frame) -> None:
        room_field = frame.get("room")
        kind, slug, extra = self._answered(frame) or (None, room_field if isinstance(room_field, str) else None, {})
        code = str(frame.get("code"))
        if kind == "join" and slug is not None:
            room = self.rooms.get(slug)
            if room is not None and not self.join_refused_for_good(code):
                ws = self.ws

                async def rejoin() -> None:
                    current = self.rooms.get(slug)
                    if current is not None and self.ws is ws and ws is not None:
                        await self._join(current)

                self._later(REJOIN_DELAY, rejoin)
                return
            if room is not None:
                self.drop_room(slug)
            self.on_join_failed(slug, frame)
            return
        if kind == "send":
            client_id = extra.get("client_id")
            if not isinstance(client_id, str) or client_id not in self.pending:
                return
            if code in self.resent_send_errors:  # not processed: the same client_id again, a little later

                async def resend() -> None:
                    if client_id in self.pending and self.ws is not None:
                        await self._transmit(client_id)

                self._later(RESEND_DELAY + random.random(), resend)
                return
            self.failed[client_id] = frame
            room_slug, body = self.pending[client_id]
            self.on_send_failed(client_id, room_slug, body, frame)
            return
        self.on_error(frame, kind, slug)

    _handlers: dict[str, Callable[[ChatClient, Frame], Coroutine[Any, Any, None]]] = {
        "joined": _on_joined_frame,
        "message": _on_message_frame,
        "message_edited": _on_message_edited_frame,
        "message_deleted": _on_message_deleted_frame,
        "ack": _on_ack_frame,
        "presence": _on_presence_frame,
        "pong": _on_pong_frame,
        "history": _on_history_frame,
        "typing": _on_typing_frame,
        "left": _on_left_frame,
        "room_closed": _on_room_closed_frame,
        "error": _on_error_frame,
    }

    def join_refused_for_good(self, code: str) -> bool:
        """Whether a join refused with `code` ends that room (else it is tried again in 2 s)."""
        return code in (ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN)

    # Hooks: override to act as frames arrive. They run in the connection's task: they must not
    # wait for the server (no `send(..., wait=True)` here).

    def on_connected(self) -> None:
        """A socket opened (`connections` counts them); the rooms are joined next."""

    def on_connect_failed(self, error: ClientError) -> None:
        """A connection attempt failed. Raise to stop (run() raises it); by default that happens
        for what needs fixing first (a refused handshake: path, origin), else it tries again."""
        if error.fixable:
            raise error

    def on_reconnecting(self, delay: float, code: int, reason: str, error: ClientError | None) -> None:
        """The next attempt starts in `delay` seconds; `error` when the last attempt failed, else
        the close code and reason of the socket that ended."""

    def on_ping_unanswered(self) -> None:
        """No pong within `pong_timeout`: the socket is closed and reconnected."""

    def on_joining(self, room: Room, first: bool) -> None:
        """A `joined` arrived (`room.info` is set); its messages come next, through on_message."""

    def on_joined(self, room: Room, first: bool) -> None:
        """A `joined` was taken: messages, presence, and the outbox for that room sent."""

    def on_message(self, room: Room, message: Message) -> None:
        """A message new to this client, in seq order, once (live or caught up)."""

    def on_live_message(self, room: str, message: Message) -> None:
        """Every `message` frame as it arrives, before ordering (duplicates included)."""

    def on_message_edited(self, room: Room, message: Message) -> None:
        """A message this client holds was edited (`message` is the merged new state)."""

    def on_message_deleted(self, room: Room, seq: int | None, message: Message | None) -> None:
        """A message was deleted; `message` is the tombstone when this client holds it."""

    def on_presence(self, room: Room, before: list[str] | None) -> None:
        """`room.presence` changed (`before`: None on the first list)."""

    def on_ack(self, client_id: str, room: str, frame: Frame) -> None:
        """The server stored a message of the outbox."""

    def on_send_failed(self, client_id: str, room: str, body: str, frame: Frame) -> None:
        """The server refused a message (it is in `failed`: `retry()` or `discard()` it)."""

    def on_join_failed(self, room: str, frame: Frame) -> None:
        """A room could not be joined (unknown, forbidden); it was dropped."""

    def on_room_closed(self, room: str, frame: Frame) -> None:
        """A room was archived or deleted, or the user banned or removed; it was dropped."""

    def on_history(self, room: Room, frame: Frame) -> None:
        """The answer to a `history` request."""

    def on_typing(self, frame: Frame) -> None:
        """Someone is typing."""

    def on_error(self, frame: Frame, kind: str | None, room: str | None) -> None:
        """An `error` for another request than a join or a send (`kind`: that request's type)."""

    # Waiting and reading -------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()

    def _answered(self, frame: Frame) -> tuple[str | None, str | None, dict[str, Any]] | None:
        """The request `frame` answers, forgotten now (None when it answers none)."""
        ref = frame.get("ref")
        return self.requests.pop(ref, None) if isinstance(ref, str) else None

    def _room(self, frame: Frame) -> Room | None:
        slug = frame.get("room")
        return self.rooms.get(slug) if isinstance(slug, str) else None

    def _end_inboxes(self) -> None:
        for inbox in self._inboxes:
            inbox.put_nowait(None)

    def stopped(self) -> bool:
        """Whether close() or stop() was called: no more reconnecting."""
        return self._stopped

    @property
    def connected(self) -> bool:
        """A socket is open and every room is joined on it."""
        return self.ws is not None and all(room.joined_here for room in self.rooms.values())

    @property
    def messages(self) -> dict[str, OrderedDict[int, Message]]:
        """Room -> seq -> message, for the messages taken (at most `keep` a room)."""
        return {slug: room.messages for slug, room in self.rooms.items()}

    @property
    def presence(self) -> dict[str, list[str]]:
        """Room -> who is online, once known."""
        return {slug: room.presence for slug, room in self.rooms.items() if room.presence is not None}

    def newest(self, room: str) -> int:
        """The highest seq taken in `room` with every lower one taken too (0 before any)."""
        held = self.rooms.get(room)
        return (held.last or 0) if held is not None else 0

    def bodies(self, room: str) -> list[str]:
        held = self.rooms.get(room)
        return [] if held is None else [held.messages[seq]["body"] for seq in sorted(held.messages)]

    def frames_of(self, kind: str) -> list[Frame]:
        return [frame for frame in self.frames if frame.get("type") == kind]

    def incoming(self) -> AsyncIterator[tuple[str, Message]]:
        """(room, message) for each new message from this call on, in seq order per room, once.
        Ends when the client stops; raises ClientError when the connection ended for good."""
        inbox: asyncio.Queue[tuple[str, Message] | None] = asyncio.Queue()
        self._inboxes.append(inbox)  # now, not at the first iteration: nothing in between is missed
        return self._drain(inbox)

    async def _drain(self, inbox: asyncio.Queue[tuple[str, Message] | None]) -> AsyncIterator[tuple[str, Message]]:
        try:
            while (item := await inbox.get()) is not None:
                yield item
        finally:
            self._inboxes.remove(inbox)
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._raise_end(self._task)

    async def wait_until(self, predicate: Callable[[], object], timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until `predicate()` holds (checked as frames arrive); False after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass
        return True

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:  # noqa: ASYNC109
        """As wait_until, but TimeoutError after `timeout`, naming `what`."""
        if not await self.wait_until(predicate, timeout):
            raise TimeoutError(f"{self.name or 'client'}: no {what} within {timeout} s (closes {self.closes})")

    async def catch_up(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Until this client holds, without gaps, every room's newest seq as the server reports
        it (`pong.seqs`); rejoins with `since` on the way. TimeoutError after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self.wait_for(lambda: self.connected, max(0.1, deadline - loop.time()), "a connection")
            sent = await self.ping()
            if sent is None:
                await asyncio.sleep(0.2)
                continue
            ref: str = sent

            def answered_now(answer: str = ref) -> bool:
                return any(f.get("ref") == answer for f in self.frames)

            answered = await self.wait_until(answered_now, min(5, max(0.1, deadline - loop.time())))
            if not answered:
                if loop.time() > deadline:
                    raise TimeoutError(f"{self.name or 'client'}: no answer to a ping within {timeout} s")
                continue
            pong = next(f for f in reversed(self.frames) if f.get("ref") == ref)
            seqs = pong.get("seqs", {})
            if pong.get("type") == "pong" and all(self.newest(room) >= seqs.get(room, 0) for room in self.rooms):
                return
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name or 'client'}: not caught up within {timeout} s")
            await asyncio.sleep(0.3)
