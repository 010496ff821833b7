"""A chat client library for bots, scripts, the terminal client and the tests: `ChatClient`.

It speaks the wire protocol of docs/protocol.md the way the browser page (chat.js) does:

- authenticates with an API token (`Authorization: Bearer`) or a session cookie (clients.login
  gets one through the login form) and an `Origin`;
- reconnects after any close but a final one (4401, 4403, 4429), with exponential backoff and
  full jitter; the attempt count restarts at the next `joined`;
- rejoins every room with `since` = the last seq it holds, and takes each message once, in seq
  order: a seq it holds is a duplicate, one beyond the next is held until the catch-up (a
  `join` with `since`) fills the gap; a `pong.seqs` ahead of what it holds also starts one;
- follows each room's `rev` (every change to a message takes the next one) so that edits,
  deletions, reactions and thread summaries converge: a live change whose rev skips one, or a
  `pong.revs` ahead, starts a `join` with `rev` (every message changed since, in its current
  state); a copy of a message replaces the one held only when its `rev` is higher;
- sends each message with a `client_id` and sends it again, with the same `client_id`, on the
  next socket until it is acked (the server stores it once); a send refused with
  `rate_limited` is sent again 1 to 2 s later, one refused otherwise is `failed` until
  `retry()`;
- pings every `ping_interval` seconds; no `pong` within `pong_timeout` closes the socket (4000)
  and reconnects.

Two ways to use it. Await `start()` (or `async with`) and read `incoming()`, `messages`,
`presence`; or subclass and override the `on_*` hooks, which run as frames arrive (they must not
wait for the server: `send(..., wait=False)` there). The requests that answer (`react`, `edit`,
`delete`, `thread`, `direct`) wait for their answer, so they are for code outside the hooks.
docs/client.md has an echo bot.

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
from typing import Any, NamedTuple, Self

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from chat.realtime.codes import FINAL_CLOSES, CloseCode, ErrorCode
from clients.endpoint import ClientError, Endpoint, describe_os_error
from clients.uploads import upload_file

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


def rev_of(message: Message) -> int | None:
    revision = message.get("rev")
    return revision if isinstance(revision, int) and not isinstance(revision, bool) else None


def is_newer(message: Message, held: Message | None) -> bool:
    """Whether `message` should replace the copy `held`: the higher `rev` wins (a copy without a
    rev, from a server that sends none, is taken as the later one)."""
    if held is None:
        return True
    new, old = rev_of(message), rev_of(held)
    return new is None or old is None or new > old


class RequestError(ClientError):
    """The server refused a request: the `error` frame, its `code` (chat/realtime/codes.py) and
    its `detail` as the message."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.code = str(frame.get("code"))
        super().__init__(
            str(frame.get("detail") or self.code),
            fixable=self.code not in (ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL),
        )


class Outgoing(NamedTuple):
    """A message of the outbox, until the server acks it."""

    room: str
    body: str
    reply_to: int | None = None
    attachments: tuple[int, ...] = ()  # upload ids (the same on every resend)


class Room:
    """What the client holds of one room: messages taken in seq order (`last` the highest with
    nothing missing below it), those held beyond a gap, the last change applied (`rev`),
    presence, and the state of its join."""

    def __init__(self, slug: str, *, last: int | None = None, keep: int | None = None) -> None:
        self.slug = slug
        # None until the first `joined` when the client joins without `since` (recent messages
        # only); 0 from the start when it wants every message.
        self.last = last
        # The highest rev with every change up to it applied; None until a `joined` gives one.
        self.rev: int | None = None
        self.held: dict[int, Message] = {}  # beyond a gap, until the catch-up fills it
        self.messages: OrderedDict[int, Message] = OrderedDict()  # taken, by seq; at most `keep`
        self.ids: dict[int, int] = {}  # id -> seq of the messages taken
        self.keep = keep
        # Who is online, sorted: everyone, or in a large room (`presence_complete` False) the names
        # the server listed and those seen joining since; `online` is the server's count.
        self.presence: list[str] | None = None
        self.presence_complete = True
        self.online: int | None = None
        # The version of the last whole list: lists from different workers may arrive out of
        # order, and one older than this is dropped.
        self.presence_version: int | None = None
        self.info: dict[str, Any] = {}
        self.joined_here = False  # a `joined` arrived on the current socket
        self.joined_once = False
        self.catching_up = False  # a join with `since` is in flight

    def since(self) -> dict[str, Any]:
        """The `since` and `rev` fields of the next join: none before the first one without
        history. With a rev, `since` is the highest seq received: the messages in a gap below it
        changed after that rev, so the join brings them."""
        if self.last is None:
            return {}
        if self.rev is None:
            return {"since": self.last}
        return {"since": max([self.last, *self.held]), "rev": self.rev}

    def take(self, messages: Iterable[Message]) -> tuple[list[Message], bool]:
        """Messages that arrived (live or in a catch-up): which are now new and in order, and
        whether a gap is left (messages held beyond a missing seq). A copy of a held seq with a
        higher rev replaces the one held (a catch-up brings the edited or deleted state)."""
        if self.last is None:
            return [], False
        for message in messages:
            seq = message["seq"]
            if seq > self.last and is_newer(message, self.held.get(seq)):
                self.held[seq] = message
        ready = []
        while self.last + 1 in self.held:
            self.last += 1
            ready.append(self.held.pop(self.last))
        return ready, bool(self.held)

    def remember(self, message: Message) -> None:
        self.messages[message["seq"]] = message
        if isinstance(message.get("id"), int):
            self.ids[message["id"]] = message["seq"]
        while self.keep is not None and len(self.messages) > self.keep:
            _seq, evicted = self.messages.popitem(last=False)
            if isinstance(evicted.get("id"), int):
                self.ids.pop(evicted["id"], None)

    def find(self, message_id: int) -> Message | None:
        """The message with that id, taken or held beyond a gap; None when not held."""
        seq = self.ids.get(message_id)
        if seq is not None and seq in self.messages:
            return self.messages[seq]
        return next((m for m in self.held.values() if m.get("id") == message_id), None)

    def step(self, rev: object) -> bool:
        """A live change's rev (the client rule): the next one is applied; an older one changes
        nothing; one beyond the next means changes were missed: True, join again with `rev`."""
        if self.rev is None or not isinstance(rev, int) or isinstance(rev, bool):
            return False
        if rev == self.rev + 1:
            self.rev = rev
            return False
        return rev > self.rev + 1

    def caught_up_to(self, rev: object, messages: list[Message], complete: bool) -> None:
        """After a `joined`: its `rev` when it brought everything; else the highest rev of what it
        brought (the batches come in rev order: the next join asks for the rest)."""
        revs = [r for r in map(rev_of, messages) if r is not None]
        if complete and isinstance(rev, int) and not isinstance(rev, bool):
            self.rev = max(rev, self.rev or 0)
        elif revs:
            self.rev = max([*revs, self.rev or 0])

    def behind(self, seq: object, rev: object) -> bool:
        """Whether a pong's newest seq or rev for this room is ahead of what is held."""
        if self.last is None:
            return False
        ahead = isinstance(seq, int) and seq > self.last
        return ahead or (self.rev is not None and isinstance(rev, int) and rev > self.rev)

    def first_join(self, messages: list[Message], backlog: int) -> list[Message]:
        """The first `joined` of a join without `since` (the latest messages): the newest
        `backlog` of them are new; `last` is set just below those."""
        shown = messages[-backlog:] if backlog > 0 else []
        skipped = messages[: len(messages) - len(shown)]
        self.last = skipped[-1]["seq"] if skipped else (messages[0]["seq"] - 1 if messages else 0)
        return shown

    def __repr__(self) -> str:
        return f"<Room {self.slug} last={self.last} rev={self.rev} held={sorted(self.held)}>"


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
        self.pending: OrderedDict[str, Outgoing] = OrderedDict()  # client_id -> message, until acked
        self.acks: dict[str, Frame] = {}  # client_id -> its ack
        self.failed: dict[str, Frame] = {}  # client_id -> the error that refused it (still pending)
        self.requests: dict[str, tuple[str, str | None, dict[str, Any]]] = {}  # ref -> (type, room, extra)
        self._awaited: dict[str, asyncio.Future[Frame]] = {}  # ref -> the answer a caller waits for
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
        for client_id, outgoing in list(self.pending.items()):
            if outgoing.room == slug:
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
        """Connect in the background and return once every room is joined (rooms given while
        already connected are joined now). Raises ClientError when the connection ends for good
        first, TimeoutError when it takes longer."""
        for slug in rooms:
            if slug not in self.rooms and self._task is not None:
                await self.join(slug)
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
            for future in self._awaited.values():
                if not future.done():
                    future.set_exception(ClientError("The connection was lost before the server answered."))
            self._awaited.clear()
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

    def queue(self, room: str, body: str, *, reply_to: int | None = None, attachments: Iterable[int] = ()) -> str:
        """Put a message in the outbox (sent once `room` is joined); its client_id. `reply_to`:
        the id of the thread's first message, for a reply; `attachments`: ids of uploads (`upload`)."""
        client_id = uuid.uuid4().hex
        self.pending[client_id] = Outgoing(room, body, reply_to, tuple(attachments))
        return client_id

    def discard(self, client_id: str) -> None:
        """Give up on a message that is not acked: it is not sent again."""
        self.pending.pop(client_id, None)
        self.failed.pop(client_id, None)

    async def _transmit(self, client_id: str) -> None:
        # Only on a socket where the room is joined: the next `joined` sends the rest.
        slug, body, reply_to, attachments = self.pending[client_id]
        room = self.rooms.get(slug)
        if room is not None and room.joined_here and self.ws is not None:
            more: dict[str, Any] = {} if reply_to is None else {"reply_to": reply_to}
            if attachments:
                more["attachments"] = list(attachments)
            await self.request("send", slug, extra={"client_id": client_id}, body=body, client_id=client_id, **more)

    async def send(
        self,
        room: str,
        body: str,
        *,
        reply_to: int | None = None,
        attachments: Iterable[int] = (),
        wait: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> str:
        """Send a message (`reply_to`: in the thread of that message; `attachments`: ids of
        uploads, see `upload`, with which `body` may be empty); its client_id. With
        `wait`, return once the server has stored it (its ack is in `acks`): ClientError if it
        was refused, TimeoutError after `timeout`."""
        client_id = self.queue(room, body, reply_to=reply_to, attachments=attachments)
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

    async def call(self, kind: str, room: str | None = None, *, timeout: float = 10.0, **fields: Any) -> Frame:  # noqa: ASYNC109
        """Send a request and wait for its answer, which is taken first as any frame is (a
        changed message is held in its new state when this returns). RequestError when the
        server refuses it; ClientError when there is no connection or it is lost first;
        TimeoutError after `timeout`."""
        if self.ws is None:
            raise ClientError("Not connected: try again once the connection is back.")
        ref = self._ref(kind)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._awaited[ref] = future
        self.requests[ref] = (kind, room, {})
        try:
            sent = await self.raw({"type": kind, **({"room": room} if room is not None else {}), **fields, "ref": ref})
            if not sent:
                raise ClientError("Not connected: try again once the connection is back.")
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise TimeoutError(f"{self.name or 'client'}: no answer to {kind!r} within {timeout} s") from None
        finally:
            self._awaited.pop(ref, None)
            self.requests.pop(ref, None)

    async def upload(self, room: str, path: str, *, timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Upload a file for a message in `room` over HTTP, with this client's credentials; the
        attachment (`id` goes in `send(..., attachments=[id])`). ClientError when refused."""
        return await asyncio.to_thread(
            upload_file,
            self.endpoint,
            room,
            path,
            token=self.token,
            cookie=self.cookie,
            origin=self.origin,
            timeout=timeout,
        )

    async def search(
        self,
        q: str,
        room: str | None = None,
        author: str | None = None,
        before: int | None = None,
        *,
        limit: int | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Frame:
        """Messages of the rooms you may read with `q` in them, newest first: the `search` frame
        (`messages`, `has_more`); `room`, `author` narrow it, `before` (a message id) pages on."""
        fields: dict[str, Any] = {"q": q}
        if author is not None:
            fields["author"] = author
        if before is not None:
            fields["before"] = before
        if limit is not None:
            fields["limit"] = limit
        return await self.call("search", room, timeout=timeout, **fields)

    async def react(self, room: str, message_id: int, emoji: str, on: bool = True, *, timeout: float = 10.0) -> Message:  # noqa: ASYNC109
        """Add (`on`) or take back your `emoji` on a message; the message as it is now (the same
        as before when you had, or had not, reacted so already)."""
        answer = await self.call("react", room, id=message_id, emoji=emoji, on=on, timeout=timeout)
        return dict(answer.get("message") or {})

    async def edit(self, room: str, message_id: int, body: str, *, timeout: float = 10.0) -> Message:  # noqa: ASYNC109
        """Change the text of one of your messages; the message as it is now."""
        answer = await self.call("edit", room, id=message_id, body=body, timeout=timeout)
        return dict(answer.get("message") or {})

    async def delete(self, room: str, message_id: int, *, timeout: float = 10.0) -> Message:  # noqa: ASYNC109
        """Delete one of your messages; its tombstone."""
        answer = await self.call("delete", room, id=message_id, timeout=timeout)
        return dict(answer.get("message") or {"id": message_id, "seq": answer.get("seq"), "deleted": True})

    async def thread(
        self,
        room: str,
        message_id: int,
        before: int | None = None,
        limit: int = 50,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Frame:
        """A thread: the `thread` frame, with its first message (`root`), up to `limit` replies
        (`messages`, oldest first; those before seq `before`, given one) and `has_more`."""
        fields: dict[str, Any] = {"id": message_id, "limit": limit}
        if before is not None:
            fields["before"] = before
        return await self.call("thread", room, timeout=timeout, **fields)

    async def unread(self, rooms: Iterable[str] | None = None, *, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Each room's unread state (`room`, `kind`, `unread`, `mentions`, `last_seq`, `read`,
        `notify`): of the rooms named, or of every room and direct conversation you may enter.
        The socket then also hears each message, edit and deletion of those rooms as an
        `activity` frame (kept among `frames`)."""
        fields: dict[str, Any] = {} if rooms is None else {"rooms": list(rooms)}
        answer = await self.call("watch", timeout=timeout, **fields)
        return [dict(row) for row in answer.get("rooms") or [] if isinstance(row, dict)]

    async def notify(self, room: str, level: str, *, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """Set your notification setting in a room: `all`, `mentions` or `mute`; the setting."""
        answer = await self.call("notify", room, level=level, timeout=timeout)
        return str(answer.get("level"))

    async def direct(self, users: Iterable[str], *, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:  # noqa: ASYNC109
        """The direct conversation with these people (made the first time): its slug, to join
        as any room, and its `info` (`name`: the others' usernames; `members`)."""
        answer = await self.call("direct", users=list(users), timeout=timeout)
        return str(answer.get("room")), dict(answer.get("info") or {})

    # Room management: anyone who may read a room sees its members; its creator, moderators and
    # staff change it (the others get RequestError `forbidden`).

    async def members(self, room: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """The room's members: {username, role, creator, invited}, its managers first."""
        answer = await self.call("members", room, timeout=timeout)
        return list(answer.get("members") or [])

    async def invite(self, room: str, user: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Invite `user` (in a private room, the way in); the members as they are now."""
        answer = await self.call("invite", room, user=user, timeout=timeout)
        return list(answer.get("members") or [])

    async def remove_member(self, room: str, user: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Remove `user` from the room (their sockets get `room_closed`); the members left."""
        answer = await self.call("remove_member", room, user=user, timeout=timeout)
        return list(answer.get("members") or [])

    async def part(self, room: str, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Leave the room for good (`leave` only stops listening): it is not joined again."""
        await self.call("part", room, timeout=timeout)
        if room in self.rooms:
            self.drop_room(room)

    async def room_update(
        self,
        room: str,
        *,
        name: str | None = None,
        topic: str | None = None,
        private: bool | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Rename the room (its slug stays), change its topic or make it private or public; its
        new `info`."""
        changes = {
            key: value for key, value in (("name", name), ("topic", topic), ("private", private)) if value is not None
        }
        answer = await self.call("room_update", room, timeout=timeout, **changes)
        return dict(answer.get("info") or {})

    async def archive(self, room: str, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Archive the room: it closes for everyone in it."""
        await self.call("archive", room, timeout=timeout)

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
        ref = frame.get("ref")
        future = self._awaited.pop(ref, None) if isinstance(ref, str) else None
        if future is not None and not future.done():
            if kind == "error":
                future.set_exception(RequestError(frame))
            else:
                future.set_result(frame)
        self._notify()

    async def _on_joined_frame(self, frame: Frame) -> None:
        self._answered(frame)
        room = self._room(frame)
        if room is None:  # left meanwhile
            return
        first = not room.joined_once
        room.info = frame.get("info") or {}
        messages = self._message_list(frame.get("messages"))
        complete = frame.get("complete") is not False
        if room.last is None:
            messages = room.first_join(messages, self.backlog or 0)
            known: list[Message] = []
        else:  # in rev order: changes to messages taken before, and messages new to this client
            known = [m for m in messages if m["seq"] <= room.last]
            messages = [m for m in messages if m["seq"] > room.last]
        room.caught_up_to(frame.get("rev"), [*known, *messages], complete)
        self.on_joining(room, first)
        room.catching_up = False
        for message in known:
            self._apply(room, message, "updated")
        await self._take(room, messages)
        if not complete and not room.catching_up:  # more than a batch behind: the next one
            await self._join(room)
        users = frame.get("presence")
        if isinstance(users, list):
            before, room.presence = room.presence, sorted(str(user) for user in users)
            version = frame.get("presence_version")
            room.presence_version = version if isinstance(version, int) else None
            online = frame.get("online")
            room.online = online if isinstance(online, int) else len(room.presence)
            room.presence_complete = frame.get("presence_complete") is not False
            self.on_presence(room, before)
        room.joined_once = True
        if not room.joined_here:
            room.joined_here = True
            self._attempt = 0
            for client_id, outgoing in list(self.pending.items()):
                if outgoing.room == room.slug and client_id not in self.failed:
                    await self._transmit(client_id)
        if self._down_at is not None and all(r.joined_here for r in self.rooms.values()):
            self.recoveries.append(time.monotonic() - self._down_at)
            self._down_at = None
        self.on_joined(room, first)

    @staticmethod
    def _message_list(value: object) -> list[Message]:
        if not isinstance(value, list):
            return []
        return [m for m in value if isinstance(m, dict) and isinstance(m.get("seq"), int)]

    async def _take(self, room: Room, messages: list[Message]) -> None:
        ready, gap = room.take(messages)
        for message in ready:
            room.remember(message)
            for inbox in self._inboxes:
                inbox.put_nowait((room.slug, message))
            self.on_message(room, message)
        if gap and not room.catching_up:  # something was lost on the way: ask for it
            await self._join(room)

    def _apply(self, room: Room, message: Message, kind: str) -> bool:
        """A message taken before, in a state that may be newer than the copy held: kept if it is
        (the higher rev wins), then announced by the hook that fits. Whether it was kept."""
        seq = message["seq"]
        held = room.messages.get(seq)
        if not is_newer(message, held):
            return False
        merged = {**(held or {}), **message}
        room.remember(merged)
        if merged.get("deleted") and not (held or {}).get("deleted"):
            self.on_message_deleted(room, seq, merged)
        elif held is not None and (held.get("body"), held.get("edited_at")) != (
            merged.get("body"),
            merged.get("edited_at"),
        ):
            self.on_message_edited(room, merged)
        elif held is None and kind == "edited":
            self.on_message_edited(room, merged)
        else:
            self.on_message_updated(room, merged, held)
        return True

    def _refresh(self, room: Room, messages: Iterable[Message]) -> None:
        """Messages read again (history, a thread): a newer state of one held replaces it."""
        for message in messages:
            if message["seq"] in room.messages:
                self._apply(room, message, "updated")
            elif is_newer(message, room.held.get(message["seq"], message)):
                room.held[message["seq"]] = message

    async def _step(self, room: Room, frame: Frame) -> None:
        """The rev of a live change, after the change is applied: a skipped one is fetched."""
        if room.step(frame.get("rev")) and not room.catching_up and room.joined_here:
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
            await self._step(room, frame)

    async def _on_change_frame(self, frame: Frame, kind: str) -> None:
        """`message_edited`, `message_deleted`, `message_updated`: the message's new state."""
        self._answered(frame)
        room = self._room(frame)
        if room is None:
            return
        message = frame.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("seq"), int):
            message = self._tombstone(room, frame) if kind == "deleted" else None
        if message is not None and room.last is not None:
            if message["seq"] > room.last:  # not taken yet: held in this state until its turn
                await self._take(room, [message])
            else:
                self._apply(room, message, kind)
        await self._step(room, frame)

    def _tombstone(self, room: Room, frame: Frame) -> Message | None:
        """A deletion announced without the tombstone: made from the copy held, if any."""
        seq = frame.get("seq")
        if not isinstance(seq, int):
            return None
        held = room.messages.get(seq)
        if held is None:
            if room.last is None or seq <= room.last:
                self.on_message_deleted(room, seq, None)
            return None
        tombstone = {**held, "deleted": True, "body": "", "html": "", "reactions": {}}
        if "rev" in frame:
            tombstone["rev"] = frame["rev"]
        return tombstone

    async def _on_message_edited_frame(self, frame: Frame) -> None:
        await self._on_change_frame(frame, "edited")

    async def _on_message_deleted_frame(self, frame: Frame) -> None:
        await self._on_change_frame(frame, "deleted")

    async def _on_message_updated_frame(self, frame: Frame) -> None:
        await self._on_change_frame(frame, "updated")

    async def _on_ack_frame(self, frame: Frame) -> None:
        self._answered(frame)
        client_id = frame.get("client_id")
        if isinstance(client_id, str) and client_id in self.pending:
            slug = self.pending.pop(client_id).room
            self.failed.pop(client_id, None)
            self.acks[client_id] = frame
            self.on_ack(client_id, slug, frame)

    async def _on_presence_frame(self, frame: Frame) -> None:
        """The whole list (`users`), or in a large room the changes (`joined`, `left`) and the count."""
        room = self._room(frame)
        if room is None:
            return
        users = frame.get("users")
        before = room.presence
        if isinstance(users, list):
            version = frame.get("version")
            if isinstance(version, int):
                if room.presence_version is not None and version < room.presence_version:
                    return  # read before the list held: it arrived late
                room.presence_version = version
            room.presence = sorted(str(user) for user in users)
            room.online, room.presence_complete = len(room.presence), True
        elif isinstance(frame.get("online"), int):
            names = set(before or [])
            names.update(str(user) for user in frame.get("joined") or [])
            names.difference_update(str(user) for user in frame.get("left") or [])
            room.presence, room.online = sorted(names), frame["online"]
        else:
            return
        self.on_presence(room, before)

    async def online(
        self,
        room: str,
        after: str | None = None,
        limit: int = 500,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Frame:
        """A page of who is online in a joined room: the `online` frame, with up to `limit`
        usernames sorted after `after` (`users`), `has_more` and the count (`online`). The names
        are also added to the room's `presence`."""
        fields: dict[str, Any] = {"limit": limit}
        if after is not None:
            fields["after"] = after
        answer = await self.call("online", room, timeout=timeout, **fields)
        held = self.rooms.get(room)
        if held is not None and held.presence is not None:
            held.presence = sorted(set(held.presence) | {str(user) for user in answer.get("users") or []})
            if isinstance(answer.get("online"), int):
                held.online = answer["online"]
            if not answer.get("has_more") and after is not None:
                held.presence_complete = True
        return answer

    async def _on_pong_frame(self, frame: Frame) -> None:
        self._answered(frame)
        self._pong.set()
        seqs, revs = frame.get("seqs"), frame.get("revs")
        seqs = seqs if isinstance(seqs, dict) else {}
        revs = revs if isinstance(revs, dict) else {}
        for slug in {*seqs, *revs}:
            room = self.rooms.get(slug)
            if room and room.joined_here and not room.catching_up and room.behind(seqs.get(slug), revs.get(slug)):
                await self._join(room)  # the newest message or change never reached us

    async def _on_history_frame(self, frame: Frame) -> None:
        self._answered(frame)
        room = self._room(frame)
        if room is not None:
            self._refresh(room, self._message_list(frame.get("messages")))
            self.on_history(room, frame)

    async def _on_thread_frame(self, frame: Frame) -> None:
        self._answered(frame)
        room = self._room(frame)
        if room is not None:
            root = frame.get("root")
            self._refresh(room, self._message_list([root, *(frame.get("messages") or [])]))

    async def _on_direct_frame(self, frame: Frame) -> None:
        self._answered(frame)

    async def _on_direct_message_frame(self, frame: Frame) -> None:
        slug, info, message = frame.get("room"), frame.get("info"), frame.get("message")
        if isinstance(slug, str) and isinstance(message, dict):
            self.on_direct_message(slug, info if isinstance(info, dict) else {}, message)

    async def _on_room_updated_frame(self, frame: Frame) -> None:
        room, info = self._room(frame), frame.get("info")
        if room is not None and isinstance(info, dict):
            room.info = {**(room.info or {}), **info}
            if frame.get("ref") is None:  # another's change; one's own is the answer to room_update
                self.on_room_updated(room)

    async def _on_room_invited_frame(self, frame: Frame) -> None:
        slug, info = frame.get("room"), frame.get("info")
        if isinstance(slug, str):
            self.on_room_invited(slug, info if isinstance(info, dict) else {})

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
        if frame.get("ref") in self._awaited:  # its caller gets a RequestError
            return
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
            outgoing = self.pending[client_id]
            self.on_send_failed(client_id, outgoing.room, outgoing.body, frame)
            return
        self.on_error(frame, kind, slug)

    _handlers: dict[str, Callable[[ChatClient, Frame], Coroutine[Any, Any, None]]] = {
        "joined": _on_joined_frame,
        "message": _on_message_frame,
        "message_edited": _on_message_edited_frame,
        "message_deleted": _on_message_deleted_frame,
        "message_updated": _on_message_updated_frame,
        "ack": _on_ack_frame,
        "presence": _on_presence_frame,
        "pong": _on_pong_frame,
        "history": _on_history_frame,
        "thread": _on_thread_frame,
        "direct": _on_direct_frame,
        "direct_message": _on_direct_message_frame,
        "typing": _on_typing_frame,
        "left": _on_left_frame,
        "room_closed": _on_room_closed_frame,
        "room_updated": _on_room_updated_frame,
        "room_invited": _on_room_invited_frame,
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

    def on_message_updated(self, room: Room, message: Message, before: Message | None) -> None:
        """A message taken before changed otherwise (its reactions, its thread's reply count or
        repliers), or a catch-up brought the current state of one not held (`before` None)."""

    def on_direct_message(self, room: str, info: dict[str, Any], message: Message) -> None:
        """A new message in one of your direct conversations, joined or not (`info["name"]`:
        the other members); join `room` to follow it."""

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

    def on_room_updated(self, room: Room) -> None:
        """Someone renamed a joined room, changed its topic or made it private or public
        (`room.info` holds the new ones)."""

    def on_room_invited(self, room: str, info: dict[str, Any]) -> None:
        """You were invited to `room` (a private room's way in); join it to read it."""

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
        """Until this client holds, without gaps, every room's newest seq and its newest change as
        the server reports them (`pong.seqs`, `pong.revs`); rejoins on the way. TimeoutError
        after `timeout`."""
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
            seqs, revs = pong.get("seqs", {}), pong.get("revs", {})
            if pong.get("type") == "pong" and not any(
                room.catching_up or room.behind(seqs.get(slug, 0), revs.get(slug)) or room.last is None
                for slug, room in self.rooms.items()
            ):
                return
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name or 'client'}: not caught up within {timeout} s")
            await asyncio.sleep(0.3)
