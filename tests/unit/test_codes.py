"""The wire protocol's codes are defined once, in chat/realtime/codes.py. The browser page cannot
import them: chat.js keeps a copy of the ones it acts on, in two tables (CLOSE, ERROR), and these
tests fail when that copy disagrees. docs/protocol.md's tables must name the same codes."""

import re
from pathlib import Path

import pytest

from chat.realtime.codes import CloseCode, ErrorCode

ROOT = Path(__file__).resolve().parents[2]
CHAT_JS = ROOT / "chat" / "static" / "chat" / "chat.js"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"


def js_table(source: str, name: str) -> dict[str, str]:
    """`const NAME = Object.freeze({ KEY: value, ... });` as {KEY: value's source text}."""
    match = re.search(rf"^const {name} = Object\.freeze\(\{{(?P<body>[^}}]*)\}}\);", source, re.MULTILINE)
    assert match, f"chat.js has no `const {name} = Object.freeze({{ ... }});` table"
    entries = [entry.strip() for entry in match["body"].split(",") if entry.strip()]
    table = {}
    for entry in entries:
        key, separator, value = entry.partition(":")
        assert separator and re.fullmatch(r"[A-Z_]+", key.strip()), f"{name}: cannot read {entry!r}"
        table[key.strip()] = value.strip()
    return table


def close_table(source: str) -> dict[str, int]:
    table = js_table(source, "CLOSE")
    for name, value in table.items():
        assert re.fullmatch(r"\d+", value), f"CLOSE.{name} is not a number: {value}"
    return {name: int(value) for name, value in table.items()}


def error_table(source: str) -> dict[str, str]:
    table = js_table(source, "ERROR")
    for name, value in table.items():
        assert re.fullmatch(r"'[a-z_]+'", value), f"ERROR.{name} is not a quoted code: {value}"
    return {name: value.strip("'") for name, value in table.items()}


def disagreements(close: dict[str, int], error: dict[str, str]) -> list[str]:
    """What in chat.js's tables is not in chat/realtime/codes.py, or differs from it."""
    wrong = []
    for name, number in close.items():
        if name not in CloseCode.__members__:
            wrong.append(f"CLOSE.{name} is not a CloseCode")
        elif CloseCode[name] != number:
            wrong.append(f"CLOSE.{name} is {number}, CloseCode.{name} is {int(CloseCode[name])}")
    for name, code in error.items():
        if name not in ErrorCode.__members__:
            wrong.append(f"ERROR.{name} is not an ErrorCode")
        elif ErrorCode[name] != code:
            wrong.append(f"ERROR.{name} is {code!r}, ErrorCode.{name} is {str(ErrorCode[name])!r}")
    return wrong


@pytest.fixture(scope="module")
def chat_js() -> str:
    return CHAT_JS.read_text(encoding="utf-8")


def test_chat_js_tables_agree_with_the_codes(chat_js):
    close, error = close_table(chat_js), error_table(chat_js)
    assert disagreements(close, error) == []
    # The ones the page acts on: a final close stops it, and these errors change what it shows.
    assert {"SESSION_ENDED", "DEACTIVATED", "NO_PONG", "NORMAL"} <= close.keys()
    assert {"NOT_FOUND", "FORBIDDEN", "RATE_LIMITED"} <= error.keys()


def test_a_wrong_number_or_name_in_chat_js_is_caught(chat_js):
    wrong_number = chat_js.replace("SESSION_ENDED: 4401", "SESSION_ENDED: 4410", 1)
    assert wrong_number != chat_js
    assert disagreements(close_table(wrong_number), error_table(wrong_number)) == [
        "CLOSE.SESSION_ENDED is 4410, CloseCode.SESSION_ENDED is 4401"
    ]
    wrong_code = chat_js.replace("RATE_LIMITED: 'rate_limited'", "RATE_LIMITED: 'rate_limit'", 1)
    assert wrong_code != chat_js
    assert disagreements(close_table(wrong_code), error_table(wrong_code)) == [
        "ERROR.RATE_LIMITED is 'rate_limit', ErrorCode.RATE_LIMITED is 'rate_limited'"
    ]
    unknown = chat_js.replace("NO_PONG: 4000", "NO_ANSWER: 4000", 1)
    assert disagreements(close_table(unknown), error_table(unknown)) == ["CLOSE.NO_ANSWER is not a CloseCode"]


def test_chat_js_uses_the_tables_not_literal_codes(chat_js):
    tables = re.compile(r"^const (CLOSE|ERROR) = .*$", re.MULTILINE)
    code = "\n".join(line.split("//", 1)[0] for line in tables.sub("", chat_js).splitlines())
    assert not re.findall(r"code === \d|close\(\d|onClose\(ws, \d", code)
    quoted = [value for value in ErrorCode if f"'{value}'" in code or f'"{value}"' in code]
    assert quoted == []


def protocol_table(heading: str) -> list[str]:
    """The first column of the table under `## heading` in docs/protocol.md."""
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| code ")]
    return [row.split("|")[1].strip().strip("`") for row in rows]


def test_docs_list_every_close_code_the_server_sends():
    documented = {int(code) for code in protocol_table("Close codes")}
    assert documented <= set(CloseCode), documented - set(CloseCode)
    sent = {code for code in CloseCode if code >= 4000} - {CloseCode.NO_PONG} | {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
    }
    assert sent <= documented, sorted(sent - documented)


def test_docs_list_every_error_code_of_the_socket():
    documented = set(protocol_table("Errors"))
    assert documented == {str(code) for code in ErrorCode} - {ErrorCode.UNAUTHORIZED}
