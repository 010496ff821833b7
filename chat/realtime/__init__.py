"""The WebSocket transport: the wire protocol, the consumer, fan-out, presence, limits and the
handshake's checks. It calls the domain (chat.services, chat.selectors); the domain reaches it
only through chat.events."""

from collections.abc import Awaitable, Callable
from typing import Any

# ASGI as the handshake's middleware sees it. asgiref.typing describes each message exactly, but
# a scope here also carries Channels' keys and ours (user, session, token_id), and the middleware
# builds its messages as plain dicts: so they are typed loosely, as dicts.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any ASGI 3 application: the middleware wraps Channels' (typed with asgiref's exact scopes) and
# its own alike, so its arguments are left open.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
