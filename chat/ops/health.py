"""Health endpoints: /healthz (the process answers) and /readyz (the database and a channel-layer
round trip answer; what a load balancer asks before sending sockets here)."""

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from chat.events import channel_layer

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0  # seconds each check of /readyz (and the /metrics probe) may take


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def database_ready() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@dataclass
class _Probe:
    channel: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_probes: weakref.WeakKeyDictionary[BaseChannelLayer, _Probe] = weakref.WeakKeyDictionary()


async def channel_layer_ready() -> None:
    """A message sent to this worker's own probe channel comes back through the layer.

    One probe channel per worker (per layer object), made on first use and reused: a new channel
    per check would leave a subscription behind on every call with the pub/sub layer (it only
    unsubscribes a channel whose receive is cancelled). The default prefix matters on
    RedisChannelLayer: it reads every process-specific channel of the worker through one loop
    keyed by that prefix, and a channel with another prefix is never read while a socket holds
    that loop. A nonce tells this check's message from one a timed-out check left behind.
    """
    layer = channel_layer()
    probe = _probes.get(layer)
    if probe is None:
        probe = _probes[layer] = _Probe(channel=await layer.new_channel())
    async with probe.lock:
        nonce = uuid.uuid4().hex
        await layer.send(probe.channel, {"type": "readyz.ping", "nonce": nonce})
        while (await layer.receive(probe.channel)).get("nonce") != nonce:
            pass


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    """200 when the database and a channel-layer round trip answer; 503 naming what failed."""
    checks: dict[str, str] = {}
    for name, check in (("database", database_sync_to_async(database_ready)), ("channel_layer", channel_layer_ready)):
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT)
            checks[name] = "ok"
        except Exception as error:  # any failure is an answer here, not a crash
            logger.warning("readyz: %s failed: %r", name, error)
            checks[name] = f"failed: {error.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
