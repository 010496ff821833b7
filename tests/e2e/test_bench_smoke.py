"""A small W1 (fan-out) of `make bench`, through the same code (tests/support/load.py, loadgen.py):
the product on 2 workers + Redis (PostgreSQL when its binaries are installed, else SQLite), 100
authenticated sockets in 4 rooms of 25, 2 senders a room (one on each worker), 40 messages/s for
3 s. Every send must be acked and every acked message delivered to each member of its room once:
0 lost, 0 duplicated. Seconds, not minutes; the figures themselves are `make bench`'s business.
And a small W4 (big room): 100 sockets into one room, nothing lost, the frames measured.
"""

from __future__ import annotations

import pytest

from bench.bigroom import SMOKE as W4_SMOKE
from bench.bigroom import run_w4
from tests.support.load import LIFTED, SMOKE, ProductTarget, run_w1


@pytest.fixture(scope="module")
def target():
    """One product for both tests (starting one takes most of a test's time): 2 workers, the
    frame limits lifted as W1 needs (W4's few messages stay far below them), 250 users."""
    with ProductTarget(workers=2, rooms=SMOKE["w1_rooms"], env=LIFTED) as target:
        yield target


@pytest.mark.timeout(90)
def test_fan_out_at_a_modest_load_loses_nothing(target):
    result = run_w1(target, SMOKE)
    [step] = result["steps"]
    summary = {k: step[k] for k in ("sent", "acked", "expected", "deliveries", "lost", "duplicates", "errors")}
    assert step["sent"] == SMOKE["w1_rates"][0] * SMOKE["w1_seconds"], summary
    assert step["acked"] == step["sent"], summary
    assert step["deliveries"] == step["acked"] * SMOKE["w1_room_size"], summary
    assert (step["lost"], step["duplicates"]) == (0, 0), summary
    assert step["errors"] == {} and step["socket_closes"] == {}, step


@pytest.mark.timeout(90)
def test_a_big_room_fills_and_loses_nothing(target):
    """W4 at a small size: 100 sockets (one user each) join one room on 2 workers while two probes
    write into it; then messages into the full room. Nothing is lost, and every frame the sockets
    got was counted, the `joined` frames among them."""
    config = W4_SMOKE
    result = run_w4(target, config)
    assert result["complete"], result.get("stopped")
    points = result["checkpoints"]
    assert [(c["size"], c["open"], c["failed"]) for c in points] == [(50, 50, 0), (100, 100, 0)], points
    # Each socket got its `joined` (at least the room's info and the people in it), and more than
    # that in all: the presence of those who joined after it, the probes' messages.
    assert 200 < result["joined_max_bytes"] < 64 * 1024, result["joined_max_bytes"]
    assert points[-1]["bytes_per_socket"] > result["joined_max_bytes"] / 2, points[-1]
    during = result["during_fill"]
    assert during["sent"] > 0 and during["error"] is None, during
    assert (during["lost"], during["duplicates"], during["unacked"]) == (0, 0, 0), during
    step = result["after_fill"]
    summary = {k: step[k] for k in ("sent", "acked", "expected", "deliveries", "lost", "duplicates", "errors")}
    assert step["sent"] == config["w4_rate"] * config["w4_seconds"], summary
    assert step["acked"] == step["sent"] and step["deliveries"] == step["acked"] * 98, summary
    assert (step["lost"], step["duplicates"], step["socket_closes"]) == (0, 0, {}), summary
