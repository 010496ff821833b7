"""Prometheus metrics of this worker process, served at `/metrics` (text exposition format).

The consumer calls the small functions below on every connection and frame. They only add to
plain ints and lists (no locks, no I/O): every caller runs on the worker's one event-loop thread,
and prometheus_client reads the numbers through `ChatCollector` when `/metrics` is scraped, on
that same thread. Process metrics (CPU, memory, open files, GC) come from prometheus_client's
default collectors.

Each worker has its own numbers: scrape every worker directly (e.g. 127.0.0.1:8001, :8002, ...),
not through the load balancer. `/metrics` answers loopback and private addresses
(REMOTE_ADDR, which Daphne takes from X-Forwarded-For when run with --proxy-headers), or any
client with `Authorization: Bearer <CHAT_METRICS_TOKEN>` when that setting is set.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from chat.ops.health import CHECK_TIMEOUT, channel_layer_ready
from chat.realtime.codes import CloseCode, ErrorCode
from chat.realtime.protocol import CLIENT_FRAMES, SERVER_FRAMES

logger = logging.getLogger(__name__)

# `chat_*_created` series only double the output; rates need the counters alone.
disable_created_metrics()

clock = time.perf_counter

# Label values are bounded: anything a client could vary freely is folded into "other".
RECEIVED_TYPES = (*CLIENT_FRAMES, "invalid", "binary", "oversized", "other")
SENT_TYPES = (*SERVER_FRAMES, "other")
# `unauthorized` is the HTTP API's alone: a socket closes with 4401 instead of sending it.
ERROR_CODES = (*(str(code) for code in ErrorCode if code is not ErrorCode.UNAUTHORIZED), "other")
# Every code the server sends, and those a close reports without the server sending them (1005,
# 1006, a client's 4000).
CLOSE_CODES = tuple(int(code) for code in CloseCode)

# From a millisecond to ten seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """A Prometheus histogram as plain numbers: counts[i] is the number of observations in
    (bounds[i-1], bounds[i]]; the last count is above the highest bound (+Inf)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        buckets, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


# The numbers ----------------------------------------------------------------------------------

open_sockets: weakref.WeakSet[object] = weakref.WeakSet()  # a socket whose task died without a word drops out
# The code the server closed each socket with, until the socket is counted (or collected).
closing_codes: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()
opened = 0
closed: dict[int | str, int] = dict.fromkeys((*CLOSE_CODES, "other"), 0)
received: dict[str, int] = dict.fromkeys(RECEIVED_TYPES, 0)
sent: dict[str, int] = dict.fromkeys(SENT_TYPES, 0)
errors: dict[str, int] = dict.fromkeys(ERROR_CODES, 0)
send_ack = LatencyHistogram(LATENCY_BUCKETS)
layer_rtt = LatencyHistogram(LATENCY_BUCKETS)
layer_up: float = float("nan")  # unknown until the first probe


# What the consumer calls ----------------------------------------------------------------------


def ws_opened(consumer: object) -> None:
    """A socket was accepted."""
    global opened
    opened += 1
    open_sockets.add(consumer)


def ws_closing(consumer: object, code: int) -> None:
    """The server closes the socket with `code` (counted as that code, whatever the client echoes)."""
    closing_codes[consumer] = int(code)


def ws_closed(consumer: object, code: int) -> int:
    """The socket is gone (the consumer's disconnect). Returns the close code it is counted as:
    the server's own when the server closed it, else the one the transport reported."""
    code = closing_codes.get(consumer) or int(code)
    if consumer in open_sockets:
        open_sockets.discard(consumer)
        _count_close(code)
    return code


def ws_refused(code: int) -> None:
    """A handshake answered before any consumer took the socket: accepted and closed at once with
    `code` (chat.realtime.guard, chat.realtime.middleware). Counted as opened and closed, so the
    open sockets stay opened minus closed."""
    global opened
    opened += 1
    _count_close(int(code))


def _count_close(code: int) -> None:
    closed[code if code in closed else "other"] += 1


def frame_received(frame_type: str) -> None:
    if frame_type in received:
        received[frame_type] += 1
    else:
        received["other"] += 1


_TYPE_PREFIX = '{"type":"'
_CODE_PREFIX = '","code":"'


def frame_sent(text: str | None) -> None:
    """Count one frame sent to one socket. `text` comes from chat.realtime.protocol.encode, which always
    writes `{"type":"<type>",` first (and an error's `"code":"<code>"` next), so the type is
    sliced out of the text instead of parsing the JSON again."""
    if text is None or not text.startswith(_TYPE_PREFIX):
        sent["other"] += 1
        return
    end = text.find('"', 9)
    frame_type = text[9:end]
    if frame_type not in sent:
        sent["other"] += 1
        return
    sent[frame_type] += 1
    if frame_type == "error":
        code = "other"
        if text.startswith(_CODE_PREFIX, end):
            start = end + len(_CODE_PREFIX)
            code = text[start : text.find('"', start)]
        if code in errors:
            errors[code] += 1
        else:
            errors["other"] += 1


def frame_kind(text: str) -> str | None:
    """The counter a frame of this text is counted under by `frames_sent` (None: an error frame,
    which `frame_sent` counts with its code). Read once per frame that goes to many sockets."""
    if not text.startswith(_TYPE_PREFIX):
        return "other"
    frame_type = text[9 : text.find('"', 9)]
    if frame_type == "error":
        return None
    return frame_type if frame_type in sent else "other"


def frames_sent(kind: str, count: int = 1) -> None:
    """Count `count` frames of `frame_kind` sent (one frame written to many sockets)."""
    sent[kind] += count


def observe_send_ack(started: float) -> None:
    """`started` is `clock()` when the `send` frame came in; call once its `ack` is sent."""
    send_ack.observe(clock() - started)


# The channel-layer probe ----------------------------------------------------------------------


async def probe_channel_layer() -> float | None:
    """Time one round trip through the channel layer (the check /readyz makes); None if it failed."""
    global layer_up
    started = clock()
    try:
        await asyncio.wait_for(channel_layer_ready(), timeout=CHECK_TIMEOUT)
    except Exception as error:  # an answer for the scrape, not a crash
        logger.warning("metrics: channel-layer probe failed: %r", error)
        layer_up = 0.0
        return None
    elapsed = clock() - started
    layer_rtt.observe(elapsed)
    layer_up = 1.0
    return elapsed


# Exposition -----------------------------------------------------------------------------------


def _counter(name: str, documentation: str, label: str, values: dict) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([str(key)], value)
    return family


class ChatCollector:
    """Reads the numbers above at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "chat_websocket_connections", "Open chat WebSocket connections of this worker.", value=len(open_sockets)
        )
        yield CounterMetricFamily(
            "chat_websocket_connections_opened", "Chat WebSocket connections accepted.", value=opened
        )
        yield _counter(
            "chat_websocket_connections_closed",
            "Chat WebSocket connections closed, by close code (the server's own code when it closed).",
            "code",
            closed,
        )
        yield _counter("chat_frames_received", "Frames received from clients, by type.", "type", received)
        yield _counter(
            "chat_frames_sent", "Frames sent to clients, by type (a broadcast counts once per socket).", "type", sent
        )
        yield _counter("chat_errors", "Error frames sent to clients, by error code.", "code", errors)
        yield send_ack.family(
            "chat_send_ack_seconds", "Time from receiving a send frame to sending its ack (stored and announced)."
        )
        yield layer_rtt.family(
            "chat_channel_layer_rtt_seconds", "Channel-layer round trips, one probe per scrape of /metrics."
        )
        yield GaugeMetricFamily(
            "chat_channel_layer_up", "1 if the last channel-layer probe came back, 0 if it failed.", value=layer_up
        )


_collector = ChatCollector()
REGISTRY.register(_collector)


# The view -------------------------------------------------------------------------------------

_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def from_private_network(address: str | None) -> bool:
    """Loopback or a private network; False for anything that is no IP address."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _PRIVATE_NETWORKS)


def has_metrics_token(request: HttpRequest) -> bool:
    token = getattr(settings, "CHAT_METRICS_TOKEN", "")
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
async def metrics_view(request: HttpRequest) -> HttpResponse:
    if not (from_private_network(request.META.get("REMOTE_ADDR")) or has_metrics_token(request)):
        return HttpResponse(
            "Forbidden: /metrics answers private networks, or a bearer token (CHAT_METRICS_TOKEN).\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    await probe_channel_layer()
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)
