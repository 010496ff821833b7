"""ASGI entry point: `daphne config.asgi:application`.

HTTP goes to Django. A chat WebSocket authenticates with a bearer token (scripts, bots), or else
passes the Origin check (cross-site WebSocket hijacking) and the session authentication
(chat.realtime.middleware). Only /ws/echo/, which reads and stores nothing, is open to anyone (when
CHAT_ECHO_ENABLED; limited per client address).
"""

import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

from config.checkout import prepare_checkout

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Set up Django (apps, models) before importing anything that touches models. Plain `daphne
# config.asgi:application` is an entry point too: it makes what the settings read, as manage.py does.
try:
    prepare_checkout()
    django_asgi_app = get_asgi_application()
except ImproperlyConfigured as error:
    # A configuration mistake stops the worker with one sentence, not a stack trace.
    sys.stderr.write(f"Configuration error: {error}\n")
    raise SystemExit(2) from None

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.realtime.daphne import trust_only_our_proxies  # noqa: E402
from chat.realtime.guard import BackendsDownGuard  # noqa: E402
from chat.realtime.routing import websocket_urlpatterns  # noqa: E402

# --proxy-headers believes X-Forwarded-For only from CHAT_TRUSTED_PROXIES (chat/realtime/daphne.py), however
# Daphne was started.
trust_only_our_proxies()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Redis or the database down at the handshake: close 4503 instead of HTTP 500 (chat/realtime/guard.py).
        # URLRouter's stub names a pattern type of its own; django.urls.path makes the patterns.
        "websocket": BackendsDownGuard(URLRouter(websocket_urlpatterns)),  # type: ignore[arg-type]
    }
)
