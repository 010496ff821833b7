"""A chat client for tests over real sockets, behaving as the browser page does (chat.js):

- reconnects with backoff and jitter after any close except a final one (4401, 4403, 4429);
- rejoins its rooms with `since` = the newest seq it holds, and keeps messages by seq, so a
  message delivered twice (live and in catch-up) is shown once;
- sees a gap (a seq beyond the next one, or a `pong.seqs` ahead of what it holds) and catches up
  with a rejoin;
- resends unacknowledged messages with the same client_id after a reconnect;
- a `send` answered with an `error` (its ref is the client_id, as on the page) is `failed`: not
  resent by itself (the page shows "Not sent" and a Retry button); `rate_limited` is retried;
- a `join` answered with an `error` (the database is away) is tried again 2 s later.

Not a test module. Counts what a user would notice: `messages[room]` (seq -> message), `live`
(message frames received), `reconnects`, `presence[room]`, `closes` (codes), `recoveries`
(seconds from each drop until every room was joined again), `failed` (client_id -> error frame).
bench/faults.py drives hundreds of these against a cluster while it injects faults.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import websockets

from chat.realtime.codes import FINAL_CLOSES, CloseCode

# chat.js's reconnect backoff: full jitter over BASE * FACTOR**attempt seconds, capped; the
# attempt count restarts at a successful `joined`, not at the handshake.
BACKOFF_BASE, BACKOFF_FACTOR, BACKOFF_CAP = 0.5, 2, 15.0


class ChatClient:
    def __init__(
        self,
        url: str,
        cookie: str,
        origin: str,
        *,
        name: str = "",
        reconnect: bool = True,
        ping_every: float | None = None,
    ) -> None:
        self.url, self.cookie, self.origin, self.name = url, cookie, origin, name
        self.reconnect = reconnect
        self.ping_every = ping_every  # the page pings every 25 s; tests that need it sooner say so
        self.rooms: set[str] = set()
        self.messages: dict[str, dict[int, dict]] = {}
        self.presence: dict[str, list[str]] = {}
        self.frames: list[dict] = []  # every frame but messages, presence and typing, in order
        self.live = 0
        self.live_bodies: list[str] = []  # bodies that arrived as live `message` frames
        self.reconnects = 0
        self.closes: list[int] = []
        self.pending: dict[str, tuple[str, str]] = {}  # client_id -> (room, body), until acked
        self.acks: dict[str, dict] = {}
        self.failed: dict[str, dict] = {}  # client_id -> the error frame that answered its send
        self.recoveries: list[float] = []  # seconds from a drop until every room was joined again
        self.opened_at: list[float] = []  # monotonic times of each successful handshake
        self._down_at: float | None = None
        self._awaiting: set[str] = set()  # rooms not yet joined on this socket
        self._retry_tasks: set[asyncio.Task] = set()
        self.on_live = None  # optional callable(client, message) for each live `message` frame
        self._ws = None
        self._task: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()
        self._stopped = False
        self._refs = 0

    # Life cycle ----------------------------------------------------------------------------

    async def start(self, *rooms: str) -> ChatClient:
        self.rooms.update(rooms)
        for room in rooms:
            self.messages.setdefault(room, {})
        self._task = asyncio.create_task(self._run(), name=f"client-{self.name}")
        await self.wait_for(lambda: self._connected.is_set() and all(r in self.presence for r in self.rooms), 10)
        return self

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._retry_tasks):
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        self._attempt = 0
        while not self._stopped:
            try:
                async with websockets.connect(
                    self.url,
                    additional_headers={"Cookie": self.cookie, "Origin": self.origin},
                    open_timeout=30,  # a browser waits long for a handshake; 5 s gave up on a busy server
                    close_timeout=2,
                    max_size=2**20,
                ) as ws:
                    self._ws = ws
                    self.opened_at.append(time.monotonic())
                    self._awaiting = set(self.rooms)
                    for room in sorted(self.rooms):
                        await self._join(room)
                    self._connected.set()
                    self._notify()
                    pinger = asyncio.create_task(self._pinger()) if self.ping_every else None
                    try:
                        async for text in ws:
                            await self._handle(json.loads(text))
                    finally:
                        if pinger is not None:
                            pinger.cancel()
                code = ws.close_code
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as error:
                code = getattr(getattr(error, "rcvd", None), "code", None) or CloseCode.ABNORMAL
            self._ws = None
            self._connected.clear()
            self.closes.append(code)
            if self._down_at is None:
                self._down_at = time.monotonic()
            self._notify()
            if self._stopped or not self.reconnect or code in FINAL_CLOSES:
                return
            self.reconnects += 1
            # Full jitter, as chat.js: a random wait up to a cap that doubles per attempt.
            await asyncio.sleep(
                random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * BACKOFF_FACTOR ** min(self._attempt, 20)))
            )
            self._attempt += 1

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(self.ping_every)
            try:
                await self.ping()
            except websockets.exceptions.ConnectionClosed:
                return

    # Frames --------------------------------------------------------------------------------

    def _ref(self) -> str:
        self._refs += 1
        return f"{self.name}-{self._refs}"

    def newest(self, room: str) -> int:
        """The highest seq held with every lower one held too (what `since` may safely be)."""
        seqs = self.messages.get(room, {})
        n = 0
        while n + 1 in seqs:
            n += 1
        return n

    async def _join(self, room: str) -> None:
        frame = {"type": "join", "room": room, "since": self.newest(room), "ref": f"join-{self._ref()}"}
        await self._ws.send(json.dumps(frame))

    async def _join_later(self, room: str, ws, delay: float = 2.0) -> None:
        await asyncio.sleep(delay)
        if self._ws is ws and not self._stopped:
            try:
                await self._join(room)
            except websockets.exceptions.ConnectionClosed:
                pass

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "joined":
            room = frame["room"]
            self._store(room, frame["messages"])
            self.presence[room] = frame["presence"]
            self._awaiting.discard(room)
            self._attempt = 0
            if not self._awaiting and self._down_at is not None:
                self.recoveries.append(time.monotonic() - self._down_at)
                self._down_at = None
            if not frame["complete"]:  # more than the catch-up limit behind: join again from there
                await self._join(room)
            for client_id, (pending_room, body) in list(self.pending.items()):
                if pending_room == room and client_id not in self.failed:
                    await self._send_frame(pending_room, body, client_id)
        elif kind == "message":
            self.live += 1
            self.live_bodies.append(frame["message"]["body"])
            if self.on_live is not None:
                self.on_live(self, frame["message"])
            room = frame["room"]
            self._store(room, [frame["message"]])
            if frame["message"]["seq"] > self.newest(room):  # a gap: something was dropped
                await self._join(room)
        elif kind == "presence":
            self.presence[frame["room"]] = frame["users"]
        elif kind == "pong":
            for room, seq in frame.get("seqs", {}).items():
                if seq > self.newest(room):
                    await self._join(room)
            self.frames.append(frame)
        elif kind == "ack":
            self.pending.pop(frame["client_id"], None)
            self.failed.pop(frame["client_id"], None)
            self.acks[frame["client_id"]] = frame
        elif kind == "error" and frame.get("ref") in self.pending:
            client_id = frame["ref"]
            if frame["code"] == "rate_limited":  # as the page: try again a little later
                room, body = self.pending[client_id]
                self._later(self._resend_later(room, body, client_id))
            else:
                self.failed[client_id] = frame
            self.frames.append(frame)
        elif kind == "error" and str(frame.get("ref", "")).startswith("join-") and frame.get("room") in self.rooms:
            if frame["code"] not in {"not_found", "forbidden"}:  # as the page: catch up again in 2 s
                self._later(self._join_later(frame["room"], self._ws))
            self.frames.append(frame)
        elif kind == "message_deleted":
            room = frame["room"]
            for message in self.messages.get(room, {}).values():
                if message["id"] == frame["id"]:
                    message["deleted"] = True
            self.frames.append(frame)
        elif kind != "typing":
            self.frames.append(frame)
        self._notify()

    def _later(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def _resend_later(self, room: str, body: str, client_id: str) -> None:
        await asyncio.sleep(1 + random.random() / 2)
        if client_id in self.pending:
            await self._send_frame(room, body, client_id)

    def _store(self, room: str, messages: list[dict]) -> None:
        held = self.messages.setdefault(room, {})
        for message in messages:
            held.setdefault(message["seq"], message)

    def _notify(self) -> None:
        self._changed.set()

    async def _send_frame(self, room: str, body: str, client_id: str) -> None:
        # As the page: only on a socket where the room is joined; the rejoin resends the rest.
        if self._ws is not None and room not in self._awaiting:
            try:
                await self._ws.send(
                    json.dumps({"type": "send", "room": room, "body": body, "client_id": client_id, "ref": client_id})
                )
            except websockets.exceptions.ConnectionClosed:
                pass  # resent after the reconnect

    # What tests call -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and not self._awaiting

    async def send(self, room: str, body: str, *, wait: bool = True, timeout: float = 10) -> str:
        client_id = uuid.uuid4().hex
        self.pending[client_id] = (room, body)
        await self._send_frame(room, body, client_id)
        if wait:
            await self.wait_for(lambda: client_id in self.acks, timeout, f"ack for {body!r}")
        return client_id

    async def raw(self, frame: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(frame))

    async def ping(self) -> None:
        await self.raw({"type": "ping", "ref": self._ref()})

    async def wait_for(self, predicate, timeout: float = 10, what: str = "condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no {what} within {timeout} s (closes {self.closes})")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass

    async def retry(self, client_id: str) -> None:
        """The page's Retry button on a failed message: the same client_id again."""
        if client_id in self.failed:
            del self.failed[client_id]
            room, body = self.pending[client_id]
            await self._send_frame(room, body, client_id)

    async def catch_up(self, timeout: float = 30) -> None:
        """Until this client holds, gaplessly, every room's newest seq as the server reports it
        (`pong.seqs`, the page's periodic check); rejoins with `since` on the way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self.wait_for(lambda: self.connected, max(0.1, deadline - loop.time()), "a connection")
            ref = self._ref()
            try:
                await self.raw({"type": "ping", "ref": ref})
            except (websockets.exceptions.ConnectionClosed, AttributeError):
                await asyncio.sleep(0.2)
                continue
            try:
                await self.wait_for(
                    lambda ref=ref: any(f.get("ref") == ref for f in self.frames),
                    min(5, max(0.1, deadline - loop.time())),
                )
            except AssertionError:
                if loop.time() > deadline:
                    raise
                continue
            pong = next(f for f in reversed(self.frames) if f.get("ref") == ref)
            seqs = pong.get("seqs", {})
            if pong["type"] == "pong" and all(self.newest(room) >= seqs.get(room, 0) for room in self.rooms):
                return
            if loop.time() > deadline:
                raise AssertionError(f"{self.name}: not caught up within {timeout} s")
            await asyncio.sleep(0.3)

    def bodies(self, room: str) -> list[str]:
        return [self.messages[room][seq]["body"] for seq in sorted(self.messages.get(room, {}))]

    def frames_of(self, kind: str) -> list[dict]:
        return [frame for frame in self.frames if frame["type"] == kind]
