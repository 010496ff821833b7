"""The safety net under session-end and access events.

Logout, password changes, deactivation and token revocation close sockets through channel-layer
events within a second; bans, removal from a private room, a room made private, archived or
deleted take sockets out of the room the same way. The layer is at-most-once, and a change made
where no event is sent (a `manage.py shell` without Redis) announces nothing, so each worker also
re-checks, in a few queries for all its open sockets together:

- the API tokens of its token sockets every CHAT_TOKEN_SWEEP_SECONDS (closed with 4401);
- which of its sockets' rooms their users may still be in, every CHAT_ACCESS_SWEEP_SECONDS
  (`room_closed` for the others), and at once when a `chat.access_changed` event asks;
- the sessions of its cookie sockets every CHAT_SESSION_SWEEP_SECONDS (closed with 4401);
- the session of every new cookie socket, within CHAT_SESSION_VERIFY_SECONDS of its opening, in
  one query for all the sockets opened meanwhile (closed with 4401, or 4403 for a deactivated
  account, as at a handshake). A handshake may be served from the shared cache without a query
  (chat.session_auth): a copy another worker could not remove (Redis not answering when the
  session ended, a change made with QuerySet.update()) would otherwise let an ended session in
  until the next sweep; the session-end event was sent before the socket could hear it.
"""

import asyncio
import logging
import weakref
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from chat import selectors

logger = logging.getLogger(__name__)


class Watched(Protocol):
    session_key: str | None
    token_id: int | None
    user_id: int | None
    rooms: dict[int, str]
    watched: dict[int, str]  # rooms whose activity it gets without having joined them

    async def session_ended(self, *, deactivated: bool = False) -> None: ...

    async def room_lost(self, room_id: int, reason: str) -> None: ...


class SessionWatch:
    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[Watched] = weakref.WeakSet()
        self.task: asyncio.Task[None] | None = None
        self.access_asked: asyncio.Event | None = None  # set: re-check rooms now
        self.fresh: weakref.WeakSet[Watched] = weakref.WeakSet()  # cookie sockets not yet verified
        self.verifier: asyncio.Task[None] | None = None

    def add(self, socket: Watched) -> None:
        self.sockets.add(socket)
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run(), name="chat-session-watch")
        if socket.session_key:
            self.fresh.add(socket)
            if self.verifier is None or self.verifier.done() or self.verifier.get_loop() is not loop:
                self.verifier = loop.create_task(self._verify_fresh(), name="chat-session-verify")

    def discard(self, socket: Watched) -> None:
        self.sockets.discard(socket)
        self.fresh.discard(socket)

    def recheck_access(self) -> None:
        """Re-check every socket's rooms now (coalesced: many asks, one sweep)."""
        if self.access_asked is not None:
            self.access_asked.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self.access_asked = asyncio.Event()
        periods = {
            self.sweep_tokens: settings.CHAT_TOKEN_SWEEP_SECONDS,
            self.sweep_access: settings.CHAT_ACCESS_SWEEP_SECONDS,
            self.sweep: settings.CHAT_SESSION_SWEEP_SECONDS,
        }
        due = {sweep: loop.time() + period for sweep, period in periods.items()}
        while self.sockets:
            try:
                await asyncio.wait_for(self.access_asked.wait(), max(0.0, min(due.values()) - loop.time()))
            except TimeoutError:
                pass
            now = loop.time()
            if self.access_asked.is_set():
                self.access_asked.clear()
                due[self.sweep_access] = now
            for sweep, period in periods.items():
                if now < due[sweep]:
                    continue
                due[sweep] = now + period
                try:
                    await sweep()
                except Exception:  # a database hiccup: try again next round
                    logger.exception("%s failed", sweep.__name__)

    async def _verify_fresh(self) -> None:
        while self.fresh:
            await asyncio.sleep(settings.CHAT_SESSION_VERIFY_SECONDS)
            batch = {s: s.session_key for s in list(self.fresh) if s.session_key}
            for socket in batch:
                self.fresh.discard(socket)
            if not batch:
                continue
            keys = {key: s.user_id for s, key in batch.items() if key}
            try:
                states = await database_sync_to_async(selectors.session_states)(session_keys=keys)
            except Exception as error:  # the database is away: these stay unverified, tried again
                logger.warning("Could not verify the sessions of %d new sockets (%s)", len(batch), error)
                self.fresh.update(s for s in batch if s in self.sockets)
                continue
            for socket, key in batch.items():
                state = states.get(key)
                if state == selectors.SessionState.VALID:
                    continue
                try:
                    await socket.session_ended(deactivated=state == selectors.SessionState.INACTIVE)
                except Exception:  # one socket's failure must not spare the others
                    logger.exception("Could not close a socket whose session ended")

    async def sweep_access(self) -> None:
        """Take sockets out of the rooms their users may no longer be in (banned, removed from a
        private room, a room made private without inviting them, archived, deleted)."""
        # Each socket's rooms as they were when asked about: a room joined while the query ran
        # is left to the next sweep (the join itself checked access).
        asked = {
            s: (s.user_id, list(s.rooms.keys() | s.watched.keys()))
            for s in list(self.sockets)
            if s.user_id is not None and (s.rooms or s.watched)
        }
        if not asked:
            return
        pairs = {(user_id, room_id) for user_id, room_ids in asked.values() for room_id in room_ids}
        lost = await database_sync_to_async(selectors.rooms_access_lost)(pairs=pairs)
        for socket, (user_id, room_ids) in asked.items():
            for room_id in room_ids:
                reason = lost.get((user_id, room_id))
                if reason is None:
                    continue
                try:
                    await socket.room_lost(room_id, reason)
                except Exception:  # one socket's failure must not spare the others
                    logger.exception("Could not take a socket out of room %s", room_id)

    async def sweep_tokens(self) -> None:
        """Close the sockets whose API token was revoked, expired or lost its user."""
        tokens = {s: s.token_id for s in list(self.sockets) if s.token_id}
        if not tokens:
            return
        valid = await database_sync_to_async(selectors.tokens_valid)(token_ids=set(tokens.values()))
        for socket, token_id in tokens.items():
            if token_id not in valid:
                await socket.session_ended()

    async def sweep(self) -> None:
        sessions = {s: s.session_key for s in list(self.sockets) if s.session_key}
        if not sessions:
            return
        keys = {key: s.user_id for s, key in sessions.items()}
        states = await database_sync_to_async(selectors.session_states)(session_keys=keys)
        for socket, key in sessions.items():
            if states.get(key) != selectors.SessionState.VALID:
                await socket.session_ended()


_watch = SessionWatch()


def get_session_watch() -> SessionWatch:
    return _watch


def reset_session_watch() -> None:
    """A new, empty watch (tests: its task belongs to one event loop)."""
    global _watch
    _watch = SessionWatch()
