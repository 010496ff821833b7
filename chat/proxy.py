"""The client's address behind a proxy, trusted only when the proxy itself is the direct peer.

Daphne's own `--proxy-headers` takes the client address from X-Forwarded-For whoever sends it: a
client that reaches a worker directly could then pick the address that login lockouts, sign-up and
token limits count by, and claim 127.0.0.1 to read /metrics. bin/daphne-worker therefore keeps
that flag from Daphne (chat/worker.py) and turns this middleware on instead: the header is honoured
only when the direct peer is in CHAT_TRUSTED_PROXIES (addresses or networks), and then its last
entry (the one our proxy wrote) becomes scope["client"], for HTTP and WebSocket alike. From any
other peer the header is ignored.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=1)
def trusted_networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def parse_address(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_trusted_proxy(address: str | None) -> bool:
    ip = parse_address(address or "")
    if ip is None:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trusted_networks(tuple(settings.CHAT_TRUSTED_PROXIES)))


def header(scope, name: bytes) -> str | None:
    values = [value for key, value in scope.get("headers", []) if key == name]
    return b",".join(values).decode("latin-1") if values else None


class TrustedProxyMiddleware:
    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] in {"http", "websocket"} and settings.CHAT_PROXY_HEADERS:
            peer = scope.get("client")
            forwarded = header(scope, b"x-forwarded-for")
            if peer and forwarded and is_trusted_proxy(peer[0]):
                client = parse_address(forwarded.split(",")[-1])
                if client is not None:
                    scope = {**scope, "client": (str(client), 0)}
                    proto = (header(scope, b"x-forwarded-proto") or "").strip().lower()
                    if proto in {"http", "https"}:
                        secure = proto == "https"
                        scheme = (
                            ("https" if secure else "http") if scope["type"] == "http" else ("wss" if secure else "ws")
                        )
                        scope["scheme"] = scheme
        return await self.inner(scope, receive, send)
