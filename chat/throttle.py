"""Counters of what one client address may do in a time window: sign-ups, failed token logins.

Two kinds, for two needs:

- `AddressWindow`: in-process, a dict guarded by a lock, nothing that waits on I/O, so the event
  loop may call it directly (the WebSocket handshake) as well as the HTTP views' threads. Each
  worker process counts on its own: with N workers behind a balancer a client gets up to N times
  the limit. Used for failed token authentications (CHAT_TOKEN_FAILURES_PER_MINUTE).
- `cache_hit`: Django's cache (the `default` one), so a shared cache (Redis, Memcached) in CACHES
  makes the count shared by every worker; with no CACHES setting it is the per-process LocMem
  cache. A cache that fails lets the request through, logged: sign-up stays up without Redis.
  Used for sign-ups (CHAT_SIGNUP_PER_HOUR).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import threading
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)

clock = time.monotonic


def address_key(address: str | None) -> str:
    """What per-address limits count by: an IPv4 address as it is (an IPv4-mapped IPv6 one as
    IPv4), an IPv6 address by its /64 (written as the /64's first address, still an address),
    since one host commonly gets a whole /64 and could otherwise take a fresh address for every
    attempt. Anything else as given."""
    try:
        ip = ipaddress.ip_address((address or "").strip("[]").split("%", 1)[0])
    except ValueError:
        return address or ""
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address)
    return str(ip)


def request_address_key(request: HttpRequest) -> str:
    """AXES_CLIENT_IP_CALLABLE: the login lockout counts by the same key."""
    return address_key(request.META.get("REMOTE_ADDR"))


class AddressWindow:
    """At most `limit` events per address in a fixed window of `seconds` (it starts at the first)."""

    MAX_ADDRESSES = 100_000  # past it, expired entries are dropped; a flood of addresses cannot grow it for long

    def __init__(self, *, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.windows: dict[str, tuple[float, int]] = {}  # address -> (window start, count)
        self.lock = threading.Lock()

    def charge(self, address: str) -> int:
        """Count one attempt now (before it is checked, so attempts in flight together cannot
        pass the limit together); return 0 if the address was still within its limit, else the
        whole seconds until its window ends."""
        with self.lock:
            start, count = self.windows.get(address, (0.0, 0))
            now = clock()
            if now - start >= self.seconds:
                start, count = now, 0
            left = start + self.seconds - now
            wait = max(1, math.ceil(left)) if count >= self.limit else 0
            self.windows[address] = (start, count + 1)
            if len(self.windows) > self.MAX_ADDRESSES:
                self.windows = {a: w for a, w in self.windows.items() if now - w[0] < self.seconds}
            return wait

    def refund(self, address: str) -> None:
        """Take back an attempt that `charge` counted and that turned out fine."""
        with self.lock:
            start, count = self.windows.get(address, (0.0, 0))
            if count > 0:
                self.windows[address] = (start, count - 1)

    def clear(self) -> None:
        with self.lock:
            self.windows.clear()


def cache_count(key: str) -> int:
    """How many times `key` was hit in its current window (0 if the cache is unavailable)."""
    try:
        return int(cache.get(key, 0))
    except Exception:  # noqa: BLE001 (any backend's failure: count nothing, serve the page)
        logger.warning("The cache did not answer; %s is not limited for now", key, exc_info=True)
        return 0


def cache_hit(key: str, seconds: int) -> None:
    """One more hit on `key`; its window (`seconds`) starts at the first hit."""
    try:
        if not cache.add(key, 1, timeout=seconds):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr: a new window
                cache.add(key, 1, timeout=seconds)
    except Exception:  # noqa: BLE001
        logger.warning("The cache did not answer; %s was not counted", key, exc_info=True)


@functools.cache
def token_failures() -> AddressWindow:
    """This worker's count of failed token authentications per client address."""
    return AddressWindow(limit=settings.CHAT_TOKEN_FAILURES_PER_MINUTE, seconds=60)
