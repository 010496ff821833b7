"""Per-connection limits: a token bucket for frames, and a window counting refused frames."""

import time
from collections import deque


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
        self.times: deque[float] = deque()

    def add(self) -> bool:
        now = time.monotonic()
        self.times.append(now)
        while self.times and now - self.times[0] > self.seconds:
            self.times.popleft()
        return len(self.times) > self.limit
