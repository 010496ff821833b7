"""The safety net under session-end events.

Logout, password changes, deactivation and token revocation close sockets through channel-layer
events within a second. The layer is at-most-once, so each worker also re-checks the sessions of
all its open sockets every CHAT_SESSION_SWEEP_SECONDS, and the API tokens of its token sockets
every CHAT_TOKEN_SWEEP_SECONDS, in a few queries, and closes those that no longer authenticate.
"""

import asyncio
import logging
import weakref
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from . import selectors

logger = logging.getLogger(__name__)


class Watched(Protocol):
    session_key: str | None
    token_id: int | None
    user_id: int | None

    async def session_ended(self) -> None: ...


class SessionWatch:
    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[Watched] = weakref.WeakSet()
        self.task: asyncio.Task | None = None

    def add(self, socket: Watched) -> None:
        self.sockets.add(socket)
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run(), name="chat-session-watch")

    def discard(self, socket: Watched) -> None:
        self.sockets.discard(socket)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sessions = loop.time() + settings.CHAT_SESSION_SWEEP_SECONDS
        while self.sockets:
            await asyncio.sleep(min(settings.CHAT_SESSION_SWEEP_SECONDS, settings.CHAT_TOKEN_SWEEP_SECONDS))
            try:
                await self.sweep_tokens()
                if loop.time() >= next_sessions:
                    next_sessions = loop.time() + settings.CHAT_SESSION_SWEEP_SECONDS
                    await self.sweep()
            except Exception:  # a database hiccup: try again next round
                logger.exception("Session sweep failed")

    async def sweep_tokens(self) -> None:
        """Close the sockets whose API token was revoked, expired or lost its user."""
        sockets = [s for s in list(self.sockets) if s.token_id]
        if not sockets:
            return
        valid = await database_sync_to_async(selectors.tokens_valid)(token_ids={s.token_id for s in sockets})
        for socket in sockets:
            if socket.token_id not in valid:
                await socket.session_ended()

    async def sweep(self) -> None:
        sockets = [s for s in list(self.sockets) if s.session_key]
        if not sockets:
            return
        keys = {s.session_key: s.user_id for s in sockets}
        states = await database_sync_to_async(selectors.session_states)(session_keys=keys)
        for socket in sockets:
            if states.get(socket.session_key) != selectors.SessionState.VALID:
                await socket.session_ended()


_watch = SessionWatch()


def get_session_watch() -> SessionWatch:
    return _watch
