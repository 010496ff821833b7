"""The terminal client in a large room (CHAT_PRESENCE_LIST_MAX at 2): it says how many are
online, applies the changes the server sends, and /who pages through the rest with `online`."""

from __future__ import annotations

import pytest

from tests.e2e.test_client import Party
from tests.support.daphne_server import DaphneServer
from tests.support.terminal import PASSWORD, finish, spawn


@pytest.fixture(scope="module")
def server():
    with DaphneServer(env={"CHAT_PRESENCE_LIST_MAX": "2", "CHAT_PRESENCE_BATCH_SECONDS": "0.3"}) as daphne:
        yield daphne


def test_the_terminal_shows_the_count_changes_and_pages_with_who(server):
    with Party(server, "bob", "lobby"), Party(server, "carol", "lobby"):
        child = spawn(server, "--user", "alice", "--room", "lobby", env=PASSWORD)
        child.expect_exact("3 online in #lobby: alice, bob, …")  # capped: the joiner, then the first names
        child.expect_exact("type a message")
        child.sendline("/who")
        child.expect_exact("3 online in #lobby: alice, bob, carol\r\n")
        with Party(server, "admin", "lobby"):
            child.expect_exact("admin entered #lobby")
            child.sendline("/who")
            child.expect_exact("4 online in #lobby: admin, alice, bob, carol\r\n")
        child.expect_exact("admin left #lobby")
        child.sendline("/who")
        child.expect_exact("3 online in #lobby: alice, bob, carol\r\n")
    # Back under the threshold: whole lists again, shown as the same lines.
    child.expect_exact("carol left #lobby")
    child.expect_exact("bob left #lobby")
    child.sendline("/who")
    child.expect_exact("1 online in #lobby: alice\r\n")
    child.sendline("/quit")
    assert finish(child) == 0
