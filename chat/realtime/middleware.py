"""Who is on a WebSocket: a bearer token, or the browser's session (chat.api.authentication does
the same for the HTTP API).

Scripts and bots authenticate with an API token, in an `Authorization: Bearer <token>` header or,
where a client cannot set headers, a `?token=<token>` query parameter. Such handshakes skip the
Origin check: they do not come from pages, and a page on another site cannot know the token.
Every other handshake goes through the Origin check (chat.realtime.origin: scheme, host and port exactly;
cross-site WebSocket hijacking) and Django's session authentication.

Failed token authentications are limited per client address (CHAT_TOKEN_FAILURES_PER_MINUTE, in
each worker's memory): past the limit, until the address's minute ends, a wrong token on HTTP gets
429 (`rate_limited`, with Retry-After) and a wrong token on the socket is accepted and closed with
4429. A right token is always let in: tokens are 256 random bits, so refusing it would protect
nothing, and it would let any web page a user visits (a WebSocket handshake needs no CORS
preflight, and a token handshake no Origin) lock every bot behind that user's network address out
with a few wrong `?token=` handshakes.
"""

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from chat import services
from chat.ops import metrics
from chat.realtime import ASGIApp, Receive, Scope, Send
from chat.realtime.codes import CloseCode
from chat.realtime.origin import OriginValidator
from chat.realtime.session_auth import SessionAuthMiddleware
from chat.throttle import address_key, token_failures


async def refuse_socket(receive: Receive, send: Send, code: CloseCode) -> None:
    """Accept the handshake and close at once with `code` (a refusal before accept is a bare 403,
    which clients cannot tell from other failures)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": int(code)})  # autobahn takes an int, not a subclass
        metrics.ws_refused(code)


def bearer_token(scope: Scope) -> str | None:
    """The token the handshake carries, if any (the header wins over the query string)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


class TokenAuthMiddleware:
    """Sets scope["user"] and scope["token_id"] from the bearer token; an unknown, revoked or
    expired token leaves an anonymous user, whom the consumer closes with 4401 (4403 when the
    token is live but its user is deactivated: scope["token_inactive"])."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = address_key((scope.get("client") or ("",))[0])
        throttled = token_failures().charge(address)
        raw = bearer_token(scope) or ""
        found = await database_sync_to_async(services.token_authenticate)(raw)
        if found is not None:
            token_failures().refund(address)
        elif throttled:
            await refuse_socket(receive, send, CloseCode.ABUSE)
            return
        user, token_id = found if found else (AnonymousUser(), None)
        inactive = found is None and await database_sync_to_async(services.token_of_inactive_user)(raw)
        await self.inner({**scope, "user": user, "token_id": token_id, "token_inactive": inactive}, receive, send)


class ChatAuthMiddleware:
    def __init__(self, inner: ASGIApp) -> None:
        self.with_token = TokenAuthMiddleware(inner)
        # Cookie, session and user in one middleware (chat.realtime.session_auth).
        self.with_session = OriginValidator(SessionAuthMiddleware(inner))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app: ASGIApp = self.with_token if bearer_token(scope) is not None else self.with_session
        await app(scope, receive, send)
