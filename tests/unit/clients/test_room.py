"""clients.connection's pure parts: the reconnect backoff, and a room's bookkeeping of seqs (each
message once, in order; a gap held until the catch-up fills it)."""

import pytest

from clients.connection import Room, backoff_delay


@pytest.mark.parametrize(("attempt", "ceiling"), [(0, 0.5), (1, 1.0), (3, 4.0), (5, 15.0), (10_000, 15.0)])
def test_backoff_is_full_jitter_under_a_doubling_ceiling(attempt, ceiling):
    assert backoff_delay(attempt, 15.0, uniform=lambda low, high: high) == ceiling
    assert backoff_delay(attempt, 15.0, uniform=lambda low, high: low) == 0
    assert 0 <= backoff_delay(attempt, 15.0) <= ceiling


def test_backoff_respects_a_lower_cap():
    assert backoff_delay(4, 1.0, uniform=lambda low, high: high) == 1.0


def message(seq: int, body: str = "") -> dict:
    return {"seq": seq, "id": 100 + seq, "body": body or f"m{seq}"}


def test_messages_are_taken_once_and_in_order():
    room = Room("lobby", last=0)
    assert room.take([message(1), message(2)]) == ([message(1), message(2)], False)
    assert room.take([message(2)]) == ([], False)  # a duplicate (live and caught up)
    assert room.take([message(3)]) == ([message(3)], False)
    assert room.last == 3


def test_a_gap_is_held_until_the_catch_up_fills_it():
    room = Room("lobby", last=2)
    assert room.take([message(5)]) == ([], True)  # 3 and 4 were lost on the way: catch up
    assert room.take([message(6)]) == ([], True)
    assert room.last == 2 and sorted(room.held) == [5, 6]
    ready, gap = room.take([message(3), message(4), message(5, "edited since")])  # the catch-up
    assert [m["seq"] for m in ready] == [3, 4, 5, 6] and not gap
    assert ready[2]["body"] == "edited since"  # the catch-up's copy replaces the held one
    assert room.last == 6 and room.held == {}


def test_nothing_is_taken_before_the_first_join_without_history():
    room = Room("lobby")
    assert room.since() == {}
    assert room.take([message(7)]) == ([], False)
    assert room.first_join([message(s) for s in range(1, 11)], 3) == [message(8), message(9), message(10)]
    assert room.last == 7 and room.since() == {"since": 7}


@pytest.mark.parametrize(("seqs", "backlog", "last"), [([], 5, 0), ([4, 5, 6], 0, 6), ([4, 5, 6], 10, 3)])
def test_the_first_join_sets_last_below_what_it_shows(seqs, backlog, last):
    room = Room("lobby")
    shown = room.first_join([message(s) for s in seqs], backlog)
    assert room.last == last and [m["seq"] for m in shown] == seqs[len(seqs) - min(backlog, len(seqs)) :]


def test_keep_bounds_the_messages_remembered():
    room = Room("lobby", last=0, keep=2)
    for seq in (1, 2, 3):
        room.remember(message(seq))
    assert list(room.messages) == [2, 3]
