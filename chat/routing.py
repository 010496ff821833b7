from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from .consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    # Any other path is refused at the handshake (HTTP 403) instead of raising in the router.
    re_path(r"", WebsocketDenier.as_asgi()),
]
