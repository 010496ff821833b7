"""Django's PostgreSQL backend with its connection pool (OPTIONS "pool", psycopg_pool), failing
fast while PostgreSQL is down.

A pool with no idle connection waits for one, up to its `timeout`, while it tries to connect in
the background: with PostgreSQL down, every query would wait that long before its error. The
consumers' ORM calls all run in one sync thread, so a worker would queue every socket's work
behind those waits (a join answered after seconds instead of an error at once; a page's
handshake probe timed out in tests/e2e/test_faults.py). Here, once a wait has timed out because
PostgreSQL refused the pool's attempts to connect, each request for a connection in the next
RETRY_SECONDS fails at once unless the pool has one idle; the next one after that waits again (and,
if PostgreSQL is back, gets its connection).

A wait that timed out while PostgreSQL is healthy (every connection busy: the pool is exhausted)
starts no fail-fast: the next request waits for a connection as usual. The two are told apart by
the pool's counters during the wait: attempts to connect failed and none succeeded. (The pool
retries a failed connection every half second, so a wait of CHAT_DB_POOL_TIMEOUT, 1 s by default,
sees an attempt; a much shorter timeout may see none, and then only waits.)
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db.backends.postgresql import base
from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

RETRY_SECONDS = 1.0
clock = time.monotonic

# psycopg_pool retries a failed connection attempt after 1 s, then 2, 4, 8, ... seconds: after an
# outage of a few seconds, the pool went on waiting that long once PostgreSQL was back (/readyz
# stayed 503 after the restart in tests/e2e/test_readiness.py). A retry every half second costs
# one refused connection per missing slot and recovers as soon as PostgreSQL answers. (Class
# attributes meant for tuning; the pool reads them for each attempt.)
AttemptWithBackoff.INITIAL_DELAY = 0.5
AttemptWithBackoff.DELAY_BACKOFF = 1.0

_lock = threading.Lock()
_failing_until = 0.0


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        global _failing_until
        pool = getattr(self, "pool")  # noqa: B009 (Django 5.1+; the stubs do not name it)
        if pool is not None and clock() < _failing_until and not pool.get_stats().get("pool_available"):
            raise OperationalError("PostgreSQL did not answer a moment ago; not waiting for it again yet")
        before = _attempts(pool)
        try:
            return super().get_new_connection(conn_params)
        except PoolTimeout:
            if pool is not None and _cannot_connect(before, _attempts(pool)):
                with _lock:
                    _failing_until = clock() + RETRY_SECONDS
            raise


def _attempts(pool: Any) -> tuple[int, int]:
    """(connections made, connection attempts that failed) by the pool so far."""
    if pool is None:
        return 0, 0
    stats = pool.get_stats()
    errors = stats.get("connections_errors", 0)
    return stats.get("connections_num", 0) - errors, errors


def _cannot_connect(before: tuple[int, int], after: tuple[int, int]) -> bool:
    """During the wait, the pool's attempts to connect failed and none succeeded: PostgreSQL is
    down or refusing, rather than every connection merely being busy."""
    return after[1] > before[1] and after[0] == before[0]
