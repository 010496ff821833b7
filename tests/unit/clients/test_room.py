"""clients.connection's pure parts: the reconnect backoff, and a room's bookkeeping of seqs (each
message once, in order; a gap held until the catch-up fills it) and of revs (each change applied
once, the newest copy of a message kept, a skipped change fetched again)."""

import pytest

from clients.connection import Room, backoff_delay, is_newer


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


# Revs: every change converges ---------------------------------------------------------------------


def changed(seq: int, rev: int, body: str = "", **fields) -> dict:
    return {**message(seq, body), "rev": rev, **fields}


def test_a_live_change_advances_rev_only_when_it_is_the_next_one():
    room = Room("lobby", last=3)
    room.rev = 10
    assert room.step(11) is False and room.rev == 11
    assert room.step(9) is False and room.step(11) is False and room.rev == 11  # already applied
    assert room.step(13) is True and room.rev == 11  # 12 was missed: join again from 11
    assert room.step(None) is False and room.step(True) is False


def test_no_rev_before_a_join_gives_one():
    room = Room("lobby", last=0)
    assert room.step(1) is False and room.rev is None
    assert room.since() == {"since": 0}


def test_a_join_after_revs_asks_for_changes_and_for_seqs_beyond_what_it_received():
    room = Room("lobby", last=4)
    room.rev = 20
    assert room.since() == {"since": 4, "rev": 20}
    room.take([changed(7, 23)])  # 5 and 6 lost: their changes are after rev 20, the rev brings them
    assert room.since() == {"since": 7, "rev": 20}


def test_a_complete_join_sets_its_rev_and_a_partial_one_the_highest_received():
    room = Room("lobby", last=0)
    room.caught_up_to(40, [changed(1, 3), changed(2, 9)], complete=True)
    assert room.rev == 40
    partial = Room("lobby", last=0)
    partial.caught_up_to(40, [changed(2, 12), changed(1, 17)], complete=False)
    assert partial.rev == 17  # the next batch: every change after 17
    partial.caught_up_to(None, [], complete=True)
    assert partial.rev == 17


def test_a_pong_ahead_in_seq_or_rev_means_behind():
    room = Room("lobby", last=5)
    room.rev = 8
    assert not room.behind(5, 8)
    assert room.behind(6, 8) and room.behind(5, 9)
    assert not Room("lobby").behind(9, 9)  # not joined yet


@pytest.mark.parametrize(
    ("new", "held", "kept"),
    [
        (changed(1, 5), None, True),
        (changed(1, 6), changed(1, 5), True),
        (changed(1, 5), changed(1, 5), False),  # the same change twice: once
        (changed(1, 4), changed(1, 5), False),  # an older copy (a history read before the edit)
        (message(1), changed(1, 5), True),  # a server without revs: the latest copy
    ],
)
def test_the_copy_with_the_higher_rev_wins(new, held, kept):
    assert is_newer(new, held) is kept


def test_a_held_message_is_replaced_only_by_a_newer_copy():
    room = Room("lobby", last=0)
    room.take([changed(2, 9, "edited"), changed(2, 7, "stale")])
    assert room.held[2]["body"] == "edited"
    ready, _gap = room.take([changed(1, 1)])
    assert [m["body"] for m in ready] == ["m1", "edited"]


def test_messages_are_found_by_id_taken_or_held():
    room = Room("lobby", last=0, keep=2)
    for seq in (1, 2, 3):
        room.remember(message(seq))
    room.take([message(9)])
    assert room.find(103)["seq"] == 3 and room.find(109)["seq"] == 9
    assert room.find(101) is None  # no longer kept
