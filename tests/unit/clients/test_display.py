"""clients.display: the lines the terminal client prints for messages, threads, reactions and
direct conversations, with and without ANSI styles."""

import io
from typing import Any

import pytest

from clients.display import (
    Style,
    body_lines,
    format_direct_notice,
    format_message,
    format_reactions_change,
    format_thread,
    format_thread_line,
    hhmm,
    reactions_text,
    room_label,
    terminal_style,
    where_label,
)

ANSI = Style(ansi=True)
BOLD, DIM, NORMAL = "\x1b[1m", "\x1b[2m", "\x1b[22m"
AT = "2026-12-01T20:05:00Z"


def message(body: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"id": 12, "seq": 3, "author": "alice", "body": body, "created_at": AT, "edited_at": None, **fields}


def time() -> str:
    return hhmm(AT)  # local time, as the terminal shows it


def test_a_message_shows_its_id_time_author_and_body():
    assert format_message(message()) == f"#12 [{time()}] alice: hello"
    assert format_message(message(), "#random") == f"#12 [{time()}] #random alice: hello"
    assert format_message(message(edited_at=AT)) == f"#12 [{time()}] alice: hello (edited)"


def test_continuation_lines_line_up_after_the_time():
    assert format_message(message("two\nlines")) == f"#12 [{time()}] alice: two\n            lines"


def test_a_tombstone_is_one_line():
    tombstone = message("", deleted=True, reactions={}, reply_count=2, repliers=["bob"])
    assert format_message(tombstone) == f"#12 [{time()}] alice: (deleted)"


def test_a_thread_root_shows_its_replies_and_reactions():
    root = message(
        reply_count=3,
        repliers=["carol", "bob"],
        reactions={"👍": ["alice", "bob"], "🎉": ["carol"]},
        edited_at=AT,
    )
    assert format_message(root).split("\n") == [
        f"#12 [{time()}] alice: hello (edited) (3 replies: carol, bob)",
        "            👍 2 (alice, bob)  🎉 1 (carol)",
    ]
    assert format_message(message(reply_count=1, repliers=["bob"])).endswith("hello (1 reply: bob)")
    assert format_message(message(reply_count=0, repliers=[], reactions={})) == f"#12 [{time()}] alice: hello"


def test_reactions_keep_the_order_people_reacted_in():
    assert reactions_text({"🎉": ["carol"], "👍": ["bob", "alice"]}) == "🎉 1 (carol)  👍 2 (bob, alice)"
    assert reactions_text({}) == "" and reactions_text(None) == ""


def test_a_fenced_code_block_is_indented_by_four_and_its_fences_left_out():
    body = "look:\n```python\nx = 1\n  y = 2\n```\nafter"
    assert format_message(message(body)).split("\n") == [
        f"#12 [{time()}] alice: look:",
        "                x = 1",
        "                  y = 2",
        "            after",
    ]


def test_a_body_that_starts_with_code_puts_it_below_the_author():
    assert format_message(message("~~~\nls -l\n~~~")).split("\n") == [
        f"#12 [{time()}] alice:",
        "                ls -l",
    ]


def test_an_unclosed_fence_runs_to_the_end_and_a_shorter_fence_does_not_close_it():
    assert body_lines("````\na\n```\nb") == [("    a", True), ("    ```", True), ("    b", True)]


def test_markdown_is_left_as_written_without_ansi():
    body = "**bold** and `code` and https://example.com/a_b"
    assert body_lines(body) == [(body, False)]


def test_on_a_colour_terminal_bold_is_bold_code_dim_with_its_backticks_and_code_blocks_dim():
    lines = body_lines("a **big** `x **y**` https://example.com\n```\ncode\n```", ANSI)
    assert lines == [
        (f"a {BOLD}big{NORMAL} {DIM}`x **y**`{NORMAL} https://example.com", False),
        (f"{DIM}    code{NORMAL}", True),
    ]


def test_control_characters_never_reach_the_terminal():
    shown = format_message(message("\x1b]0;pwned\x07 **x**", author="eve\x1b[2J"), style=ANSI)
    assert "\x1b]" not in shown and "\x1b[2J" not in shown and "\x07" not in shown
    assert shown.count("\x1b") == 2  # only the bold added here


def test_a_reply_in_the_flow_is_one_line_naming_its_thread():
    reply = message("first line\nsecond", id=15, reply_to=12)
    assert format_thread_line(reply) == f"[thread #12] #15 [{time()}] alice: first line …"
    assert format_thread_line(reply, "#random", edited=True) == (
        f"[thread #12] #15 [{time()}] #random alice: first line … (edited)"
    )
    assert format_thread_line(message("", id=15, reply_to=12, deleted=True)).endswith("alice: (deleted)")


def test_the_thread_view_shows_the_root_then_each_reply():
    root = message("root", reply_count=2, repliers=["carol", "bob"])
    replies = [message("one", id=15, author="bob", reply_to=12), message("two\nlines", id=16, reply_to=12)]
    assert format_thread(root, replies) == [
        f"#12 [{time()}] alice: root (2 replies: carol, bob)",
        f"  ↳ #15 [{time()}] bob: one",
        f"  ↳ #16 [{time()}] alice: two\n                lines",
    ]


def test_a_reactions_change_names_the_message_and_its_reactions_now():
    changed = message("Standup in five minutes, everyone in the big room", reactions={"👍": ["alice", "bob"]})
    assert format_reactions_change(changed) == (
        "reactions on #12 (alice: Standup in five minutes, everyone in th…): 👍 2 (alice, bob)"
    )
    assert format_reactions_change(message(reactions={})) == "reactions on #12 (alice: hello): none"


def test_direct_conversations_are_named_after_the_others():
    info = {"slug": "dm-0123456789abcdef", "kind": "direct", "name": "bob, carol", "members": ["alice", "bob", "carol"]}
    assert room_label("dm-0123456789abcdef", info) == "dm with bob, carol"
    assert where_label("dm-0123456789abcdef", info) == "[dm with bob, carol]"
    assert room_label("lobby", {"kind": "room", "name": "Lobby"}) == "#lobby" == where_label("lobby", None)
    notice = format_direct_notice({"name": "bob"}, message("psst\nover here", author="bob"))
    assert notice == "[dm with bob] bob: psst over here"


@pytest.mark.parametrize(
    ("tty", "env", "ansi"),
    [
        (True, {"TERM": "xterm-256color"}, True),
        (False, {"TERM": "xterm-256color"}, False),
        (True, {"TERM": "dumb"}, False),
        (True, {}, False),
        (True, {"TERM": "xterm", "NO_COLOR": "1"}, False),
    ],
)
def test_ansi_only_on_a_terminal_that_has_it(tty, env, ansi):
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    assert terminal_style(Stream(), env).ansi is ansi
