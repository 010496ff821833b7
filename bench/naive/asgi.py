"""ASGI entry point of the naive baseline: `daphne naive.asgi:application` from bench/.

The tutorial's asgi.py routes `ws/chat/<room_name>/` to its consumer. Its
AllowedHostsOriginValidator and AuthMiddlewareStack are left out: the baseline checks nothing (and
has no database for sessions), so it measures the layer and the consumer only.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "naive.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 (after Django's setup)
from django.urls import re_path  # noqa: E402

from naive.consumers import ChatConsumer  # noqa: E402

websocket_urlpatterns = [re_path(r"ws/chat/(?P<room_name>\w+)/$", ChatConsumer.as_asgi())]

application = ProtocolTypeRouter({"websocket": URLRouter(websocket_urlpatterns)})
