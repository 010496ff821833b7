"""The client's address behind a proxy, believed only when the proxy itself is the direct peer.

Daphne's `--proxy-headers` takes the client address from X-Forwarded-For whoever sends it: a client
that reaches a worker directly could pick the address that login lockouts, sign-up and token limits
count by, and claim 127.0.0.1 to read /metrics. Daphne has no option to trust only the proxy, so
`trust_only_our_proxies` (called by config.asgi and chat.worker) wraps the function Daphne parses
the headers with, for HTTP and WebSocket alike: the headers count only when the direct peer is in CHAT_TRUSTED_PROXIES (addresses
or networks); from any other peer they are ignored and the peer's own address stays. Daphne then
uses the result everywhere, its access log included.

Daphne reads the first X-Forwarded-For entry: the trusted proxy must set the header, not append to
it (deploy/nginx/chat.conf.template sets it to the address nginx saw).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=1)
def trusted_networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_trusted_proxy(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trusted_networks(tuple(settings.CHAT_TRUSTED_PROXIES)))


def only_from_trusted_proxies(parse):
    """Daphne's parse_x_forwarded_for(headers, address, port, proto header names, original_addr,
    original_scheme), applied only when original_addr (the direct peer) is a trusted proxy."""

    def parse_if_trusted(headers, *names, original_addr=None, original_scheme=None, **kwargs):
        if len(names) > 3:  # Daphne passes everything positionally
            names, (original_addr, *rest) = names[:3], names[3:]
            original_scheme = rest[0] if rest else original_scheme
        if not original_addr or not is_trusted_proxy(original_addr[0]):
            return original_addr, original_scheme
        return parse(headers, *names, original_addr, original_scheme, **kwargs)

    return parse_if_trusted


def trust_only_our_proxies() -> None:
    """Make Daphne's --proxy-headers believe only the proxies in CHAT_TRUSTED_PROXIES, in both
    places Daphne reads them (HTTP and WebSocket). Called by bin/daphne-worker (chat.worker) and
    by config.asgi, which any Daphne imports before it serves, so a worker started as plain
    `daphne config.asgi:application` is covered too. Once is enough; a second call does nothing."""
    from daphne import http_protocol, ws_protocol

    for module in (http_protocol, ws_protocol):
        if not getattr(module.parse_x_forwarded_for, "trusts_only_our_proxies", False):
            wrapped = only_from_trusted_proxies(module.parse_x_forwarded_for)
            wrapped.trusts_only_our_proxies = True
            module.parse_x_forwarded_for = wrapped
