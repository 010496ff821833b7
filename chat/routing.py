from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from .consumers import ChatConsumer, EchoConsumer

# Open to any page: the echo socket reads and stores nothing (see config/asgi.py).
public_websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
]

# Behind the Origin check and session authentication.
websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    # Any other path is refused at the handshake (HTTP 403) instead of raising in the router.
    re_path(r"", WebsocketDenier.as_asgi()),
]
