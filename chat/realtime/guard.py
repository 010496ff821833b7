"""A WebSocket handshake that fails because Redis or the database is not answering gets a close
code, not HTTP 500.

The session middleware reads the session (the database) and the consumer checks Redis
(`Presence.ready`) before the handshake is answered; an error from either would escape to Daphne,
which answers the handshake with HTTP 500, which a browser only reports as 1006. Here the
handshake is accepted and closed at once with 4503 ("the service is unavailable: try again"),
which the page, like any close but 4401/4403/4429, answers by reconnecting with backoff. Errors
after the handshake are the consumer's to handle.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from redis.exceptions import RedisError

from chat.ops import metrics
from chat.realtime import ASGIApp, Message, Receive, Scope, Send
from chat.realtime.codes import CloseCode

logger = logging.getLogger(__name__)


class _WatchedSend:
    """The server's `send`, noting whether the handshake was answered. Kept as `real_send` (the
    name channels' session middleware uses too), so chat.realtime.daphne.transport_backlog can still
    reach Daphne's transport through it."""

    def __init__(self, real_send: Send) -> None:
        self.real_send = real_send
        self.answered = False

    async def send(self, message: Message) -> None:
        if message["type"] in {"websocket.accept", "websocket.close", "websocket.http.response.start"}:
            self.answered = True
        await self.real_send(message)


class BackendsDownGuard:
    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watched = _WatchedSend(send)
        try:
            await self.inner(scope, receive, watched.send)
        except (RedisError, DatabaseError, OSError) as error:
            if watched.answered or scope.get("type") != "websocket":
                raise
            code = CloseCode.UNAVAILABLE
            backend = "the database" if isinstance(error, DatabaseError) else "Redis"
            logger.warning("WebSocket handshake closed with %d: %s is not answering (%s)", code, backend, error)
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": int(code)})  # autobahn takes an int, not a subclass
            metrics.ws_refused(code)
