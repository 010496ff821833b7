"""Everything that reaches into Daphne's, Twisted's and autobahn's internals, in one place.

Three needs that Daphne has no option for:

- Writing one message, framed once, to many sockets (`prepare_frame`, `write_prepared`): the
  fan-out hands a room's frame to each local socket's autobahn protocol directly.
- The size of a socket's outgoing buffer (`transport_backlog`): Twisted's write buffer, which grows
  without bound when a client stops reading. The consumer closes such a socket (4008).
- Trusting X-Forwarded-For only from our own proxies (`trust_only_our_proxies`).

(server/worker.py, the worker process itself, subclasses Daphne's Server for its shutdown.)

Each function checks what it finds and falls back (None, or the unwrapped behaviour) where the
internals do not look as expected: another server, the test communicator, a newer Daphne.

The proxy rule: Daphne's `--proxy-headers` takes the client address from X-Forwarded-For whoever
sends it, so a client that reaches a worker directly could pick the address that login lockouts,
sign-up and token limits count by, and claim 127.0.0.1 to read /metrics. `trust_only_our_proxies`
(called by config.asgi and server.worker) wraps the function Daphne parses the headers with, for
HTTP and WebSocket alike: the headers count only when the direct peer is in CHAT_TRUSTED_PROXIES
(addresses or networks); from any other peer they are ignored and the peer's own address stays.
Daphne then uses the result everywhere, its access log included.

Daphne reads the first X-Forwarded-For entry: the trusted proxy must set the header, not append to
it (deploy/nginx/chat.conf.template sets it to the address nginx saw).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from autobahn.twisted.websocket import WebSocketServerProtocol
    from autobahn.websocket.protocol import PreparedMessage

# What Daphne's parse_x_forwarded_for returns: the client's [host, port] (or None) and its scheme.
Forwarded = tuple[Sequence[Any] | None, str | None]


@functools.lru_cache(maxsize=1)
def trusted_networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_trusted_proxy(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trusted_networks(tuple(settings.CHAT_TRUSTED_PROXIES)))


class OnlyFromTrustedProxies:
    """Daphne's parse_x_forwarded_for(headers, address, port, proto header names, original_addr,
    original_scheme), applied only when original_addr (the direct peer) is a trusted proxy."""

    def __init__(self, parse: Callable[..., Forwarded]) -> None:
        self.parse = parse

    def __call__(
        self,
        headers: object,
        *names: Any,
        original_addr: Sequence[Any] | None = None,
        original_scheme: str | None = None,
        **kwargs: Any,
    ) -> Forwarded:
        if len(names) > 3:  # Daphne passes everything positionally
            names, (original_addr, *rest) = names[:3], names[3:]
            original_scheme = rest[0] if rest else original_scheme
        if not original_addr or not is_trusted_proxy(original_addr[0]):
            return original_addr, original_scheme
        return self.parse(headers, *names, original_addr, original_scheme, **kwargs)


def trust_only_our_proxies() -> None:
    """Make Daphne's --proxy-headers believe only the proxies in CHAT_TRUSTED_PROXIES, in both
    places Daphne reads them (HTTP and WebSocket). Called by bin/daphne-worker (server.worker) and
    by config.asgi, which any Daphne imports before it serves, so a worker started as plain
    `daphne config.asgi:application` is covered too. Once is enough; a second call does nothing."""
    from daphne import http_protocol, ws_protocol

    for module in (http_protocol, ws_protocol):
        if not isinstance(module.parse_x_forwarded_for, OnlyFromTrustedProxies):
            module.parse_x_forwarded_for = OnlyFromTrustedProxies(module.parse_x_forwarded_for)


def daphne_protocol(send: Callable[..., Any]) -> WebSocketServerProtocol | None:
    """The Daphne (autobahn) protocol object behind an ASGI `send`, or None elsewhere.

    Daphne hands each ASGI `send` straight to Twisted (`partial(server.handle_reply, protocol)`).
    It is reached through Daphne's and channels' internals; where they do not look as expected
    (another server, the test communicator), this answers None and callers take the ASGI path."""
    found: object = send
    for _ in range(5):  # through send wrappers such as channels' session middleware's
        if isinstance(found, functools.partial):
            break
        found = getattr(getattr(found, "__self__", None), "real_send", None)
    if not isinstance(found, functools.partial) or not found.args:
        return None
    protocol = found.args[-1]
    return protocol if hasattr(protocol, "sendPreparedMessage") else None


def prepare_frame(text: str) -> PreparedMessage:
    """A text message framed once, for writing the same bytes to many sockets."""
    from autobahn.websocket.protocol import PreparedMessage

    # A server never masks; Daphne negotiates no compression.
    return PreparedMessage(text.encode(), False, False, True)


def is_open(protocol: WebSocketServerProtocol) -> bool:
    return bool(protocol.state == protocol.STATE_OPEN)


def write_prepared(protocol: WebSocketServerProtocol, prepared: PreparedMessage) -> None:
    """Queue a prepared frame on the socket, as autobahn's own sendPreparedMessage would, without
    its cost per call: its sendData formats the arguments of a debug log line (hltype, hlval) on
    every write, whether debug logging is on or not (3.8 us a write against 0.12 us, measured
    with a Twisted StringTransport). Where autobahn would only write the bytes to the transport
    (no compression negotiated, nothing queued), this does just that and counts them as it does."""
    if protocol._perMessageCompress is None and not protocol.send_queue:
        data = prepared.payloadHybi
        transport: Any = protocol.transport  # Twisted's TCP transport (its stub types it oddly)
        send_now(transport, data)
        stats = protocol.trafficStats
        if stats is not None:
            stats.outgoingOctetsWireLevel += len(data)
        return
    protocol.sendPreparedMessage(prepared)


def send_now(transport: Any, data: bytes) -> None:
    """Write to a Twisted TCP transport, handing the bytes to the kernel at once when nothing is
    waiting before them.

    Twisted's `write` only buffers: it registers the socket for writability (an epoll_ctl), sends
    on the next turn of the loop, then unregisters it (another epoll_ctl), with a few objects made
    on the way. For a frame fanned out to many idle sockets that bookkeeping cost more than the
    send itself: under W1 a py-spy profile of a worker put 20% of its event loop in add_writer
    and its selector's modify, against 34% for the sends. Here, when Twisted holds nothing for the
    socket (so order is kept), the frame goes straight to `socket.send`; whatever the kernel does
    not take (a slow reader) and every error go through Twisted's `write` as before, which then
    buffers, retries and reports a lost connection in its own way."""
    try:
        idle = (
            not transport.TLS
            and transport.connected
            and not transport._writeDisconnected
            and not transport._tempDataLen
            and transport.offset == len(transport.dataBuffer)
        )
        sock = transport.socket if idle else None
    except AttributeError:  # not Twisted's TCP transport: its own write
        sock = None
    if sock is None:
        transport.write(data)
        return
    try:
        sent = sock.send(data)
    except OSError:  # would block, or the peer is gone: Twisted's write finds out and handles it
        sent = 0
    if sent < len(data):
        transport.write(data[sent:])


def protocol_backlog(protocol: object) -> int | None:
    """Bytes of outgoing frames Daphne has taken for this socket that the kernel has not:
    Twisted's write buffer, which grows without bound when the client stops reading (None where
    the transport is not Twisted's TCP one, e.g. a TLS wrapper: the bound does not apply)."""
    # Twisted's private write buffer, read as found: anything unexpected is answered below.
    transport: Any = getattr(protocol, "transport", None)
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return None


def transport_backlog(send: Callable[..., Any]) -> int | None:
    """`protocol_backlog` of the socket behind an ASGI `send` (None where it cannot be known)."""
    protocol = daphne_protocol(send)
    return None if protocol is None else protocol_backlog(protocol)
