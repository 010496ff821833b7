"""A small W1 (fan-out) of `make bench`, through the same code (tests/support/load.py, loadgen.py):
the product on 2 workers + Redis (PostgreSQL when its binaries are installed, else SQLite), 100
authenticated sockets in 4 rooms of 25, 2 senders a room (one on each worker), 40 messages/s for
3 s. Every send must be acked and every acked message delivered to each member of its room once:
0 lost, 0 duplicated. Seconds, not minutes; the figures themselves are `make bench`'s business.
"""

from __future__ import annotations

import pytest

from tests.support.load import LIFTED, SMOKE, ProductTarget, run_w1


@pytest.mark.timeout(90)
def test_fan_out_at_a_modest_load_loses_nothing():
    with ProductTarget(workers=2, rooms=SMOKE["w1_rooms"], env=LIFTED) as target:
        result = run_w1(target, SMOKE)
    [step] = result["steps"]
    summary = {k: step[k] for k in ("sent", "acked", "expected", "deliveries", "lost", "duplicates", "errors")}
    assert step["sent"] == SMOKE["w1_rates"][0] * SMOKE["w1_seconds"], summary
    assert step["acked"] == step["sent"], summary
    assert step["deliveries"] == step["acked"] * SMOKE["w1_room_size"], summary
    assert (step["lost"], step["duplicates"]) == (0, 0), summary
    assert step["errors"] == {} and step["socket_closes"] == {}, step
