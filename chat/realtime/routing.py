from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from chat.realtime.consumers import ChatConsumer, EchoConsumer
from chat.realtime.middleware import ChatAuthMiddleware

# One router level (config/asgi.py): a router and its copy of the scope stay alive for as long as
# each socket, so each chat route carries its own authentication instead of a nested router
# (docs/performance.md, W2 memory). Each route's `type: ignore`: django.urls.path is typed for
# HTTP views, and Channels' URLRouter routes ASGI applications with it.
websocket_urlpatterns = [
    # Open to any page when CHAT_ECHO_ENABLED (else 403): it reads and stores nothing, and has the
    # chat's limits per client address (EchoConsumer).
    path("ws/echo/", EchoConsumer.as_asgi()),  # type: ignore[arg-type]
    # Behind the Origin check and session (or token) authentication.
    path("ws/chat/", ChatAuthMiddleware(ChatConsumer.as_asgi())),  # type: ignore[arg-type]
    # Any other path is refused at the handshake (HTTP 403) instead of raising in the router,
    # after the same checks as the chat.
    re_path(r"", ChatAuthMiddleware(WebsocketDenier.as_asgi())),  # type: ignore[arg-type]
]
