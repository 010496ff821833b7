"""Limits: a token bucket for frames, a window counting refused frames, the per-user counts of a
worker, and the size of a socket's outgoing buffer."""

import functools
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; each frame takes one."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class StrikeWindow:
    """Counts strikes in the last `seconds`; `add` says whether the limit is now exceeded."""

    def __init__(self, *, limit: int, seconds: float = 60.0) -> None:
        self.limit = limit
        self.seconds = seconds
        self.times: deque[float] | None = None  # made at the first strike: most sockets never get one

    def add(self) -> bool:
        now = time.monotonic()
        if self.times is None:
            self.times = deque()
        self.times.append(now)
        while self.times and now - self.times[0] > self.seconds:
            self.times.popleft()
        return len(self.times) > self.limit


class UserLimits:
    """What one user may do across all their sockets on this worker: how many sockets they hold
    open, and a frame bucket they all share (on top of each socket's own). In-process: with
    several workers, each counts its own sockets, so a user may hold that many on every worker."""

    def __init__(self) -> None:
        self.sockets: dict[int, set[object]] = {}
        self.buckets: dict[int, TokenBucket] = {}

    def open(self, user_id: int, socket: object, *, max_sockets: int, rate: float, burst: int) -> bool:
        """Count `socket` as one of the user's; False (and nothing counted) if they hold
        `max_sockets` already."""
        held = self.sockets.setdefault(user_id, set())
        if len(held) >= max_sockets:
            if not held:
                del self.sockets[user_id]
            return False
        held.add(socket)
        self.buckets.setdefault(user_id, TokenBucket(rate=rate, burst=burst))
        return True

    def close(self, user_id: int, socket: object) -> None:
        held = self.sockets.get(user_id)
        if held is None:
            return
        held.discard(socket)
        if not held:  # the user's last socket here: forget them (and their bucket)
            del self.sockets[user_id]
            self.buckets.pop(user_id, None)

    def take(self, user_id: int) -> bool:
        bucket = self.buckets.get(user_id)
        return bucket is None or bucket.take()


_user_limits = UserLimits()


def get_user_limits() -> UserLimits:
    return _user_limits


def reset_user_limits() -> None:
    """(Tests) forget every user."""
    global _user_limits
    _user_limits = UserLimits()


def daphne_protocol(send: Callable[..., Any]) -> Any | None:
    """The Daphne (autobahn) protocol object behind an ASGI `send`, or None elsewhere.

    Daphne hands each ASGI `send` straight to Twisted (`partial(server.handle_reply, protocol)`).
    It is reached through Daphne's and channels' internals; where they do not look as expected
    (another server, the test communicator), this answers None and callers take the ASGI path."""
    for _ in range(5):  # through send wrappers such as channels' session middleware's
        if isinstance(send, functools.partial):
            break
        send = getattr(getattr(send, "__self__", None), "real_send", None)
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[-1]
    return protocol if hasattr(protocol, "sendPreparedMessage") else None


def protocol_backlog(protocol: Any) -> int | None:
    """Bytes of outgoing frames Daphne has taken for this socket that the kernel has not:
    Twisted's write buffer, which grows without bound when the client stops reading (None where
    the transport is not Twisted's TCP one, e.g. a TLS wrapper: the bound does not apply)."""
    transport = getattr(protocol, "transport", None)
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return None


def transport_backlog(send: Callable[..., Any]) -> int | None:
    """`protocol_backlog` of the socket behind an ASGI `send` (None where it cannot be known)."""
    protocol = daphne_protocol(send)
    return None if protocol is None else protocol_backlog(protocol)
