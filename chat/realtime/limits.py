"""Limits: a token bucket for frames, a window counting refused frames, and the per-user counts of
a worker."""

import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)  # what the sockets are counted by: a user id, a client address


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


class SocketLimits(Generic[Key]):
    """What one key (a user, for chat sockets; a client address, for the echo socket) may do
    across all its sockets on this worker: how many it holds open, and a frame bucket they all
    share (on top of each socket's own). In-process: with
    several workers, each counts its own sockets, so a user may hold that many on every worker."""

    def __init__(self) -> None:
        self.sockets: dict[Key, set[object]] = {}
        self.buckets: dict[Key, TokenBucket] = {}
        self.searches: dict[Key, TokenBucket] = {}  # made at a key's first search

    def open(self, key: Key, socket: object, *, max_sockets: int, rate: float, burst: int) -> bool:
        """Count `socket` as one of the user's; False (and nothing counted) if they hold
        `max_sockets` already."""
        held = self.sockets.setdefault(key, set())
        if len(held) >= max_sockets:
            if not held:
                del self.sockets[key]
            return False
        held.add(socket)
        self.buckets.setdefault(key, TokenBucket(rate=rate, burst=burst))
        return True

    def close(self, key: Key, socket: object) -> None:
        held = self.sockets.get(key)
        if held is None:
            return
        held.discard(socket)
        if not held:  # the user's last socket here: forget them (and their bucket)
            del self.sockets[key]
            self.buckets.pop(key, None)
            self.searches.pop(key, None)

    def take(self, key: Key) -> bool:
        bucket = self.buckets.get(key)
        return bucket is None or bucket.take()

    def take_search(self, key: Key, *, per_minute: int) -> bool:
        """One search for `key` (searches cost more than other frames): `per_minute` of them a
        minute, a third of that at once."""
        if key not in self.sockets:
            return True  # not counted here (no socket open): nothing to keep a bucket for
        bucket = self.searches.get(key)
        if bucket is None:
            bucket = self.searches[key] = TokenBucket(rate=per_minute / 60, burst=max(1, per_minute // 3))
        return bucket.take()


_user_limits: SocketLimits[int] = SocketLimits()


def get_user_limits() -> SocketLimits[int]:
    return _user_limits


def reset_user_limits() -> None:
    """(Tests) forget every user."""
    global _user_limits
    _user_limits = SocketLimits()
