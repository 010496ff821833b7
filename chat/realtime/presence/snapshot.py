"""What a presence backend reads of a room in one go (see `Snapshot`)."""

from __future__ import annotations

import time
from typing import NamedTuple


class Snapshot(NamedTuple):
    """The room's first names, its count and the moment they were read, all read at once.

    `version` orders snapshots of one room: a later read has a larger (or, within the same
    microsecond, equal) version. Lists read on different workers can reach a client in any order
    (the channel layer orders only what one process sends), so a client keeps the list with the
    highest version it has seen and drops an older one that arrives after it."""

    names: list[str]
    online: int
    version: int


def now_us() -> int:
    """A version from this process's clock: microseconds since the epoch."""
    return time.time_ns() // 1000
