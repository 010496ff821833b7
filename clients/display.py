"""How the terminal client shows messages, as lines of text: pure functions of message objects
(docs/protocol.md), so they are tested without a server.

A message is `#ID [HH:MM] author: body`: the id is what `/reply`, `/react`, `/edit` and the
others take. The body is the raw text as written, with its Markdown shown the terminal's way:
fenced code blocks set off (indented, dim on a colour terminal), `**bold**` in bold on a colour
terminal (as written otherwise), inline `code` kept with its backticks (dim on a colour
terminal), links as they are. Control characters from the network are replaced before any of
that, so only the escape sequences added here reach the terminal.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

INDENT = 8  # continuation lines line up after "[HH:MM] "
CODE_INDENT = " " * 4
PREVIEW = 40  # characters of a body quoted in a one-line notice

# Control characters from the network never reach the terminal: a message body could otherwise
# carry escape sequences that rewrite the screen or the window title.
_CONTROL = {c: "\ufffd" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n"}

# CommonMark's fences: three or more backticks or tildes, indented by at most three spaces; an
# info string after backticks may not hold one.
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}(?=[^`]*$)|~{3,})")
_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*$")
_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")


def clean(text: Any) -> str:
    return str(text).replace("\r\n", "\n").translate(_CONTROL)


def clean_line(text: Any) -> str:
    return clean(text).replace("\n", " ")


class Style:
    """Bold and dim as ANSI escape sequences, or nothing (`ansi` False: a pipe, a file, a
    terminal without them)."""

    def __init__(self, ansi: bool = False) -> None:
        self.ansi = ansi

    def bold(self, text: str) -> str:
        return f"\x1b[1m{text}\x1b[22m" if self.ansi and text else text

    def dim(self, text: str) -> str:
        return f"\x1b[2m{text}\x1b[22m" if self.ansi and text else text


PLAIN = Style(ansi=False)


def terminal_style(stream: TextIO, env: Mapping[str, str]) -> Style:
    """ANSI on a terminal that has them; the NO_COLOR convention (no-color.org) turns them off."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    term = env.get("TERM", "")
    return Style(ansi=tty and bool(term) and term != "dumb" and "NO_COLOR" not in env)


def hhmm(stamp: Any) -> str:
    """An ISO-8601 UTC timestamp as local HH:MM."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).astimezone().strftime("%H:%M")
    except ValueError:
        return "--:--"


def inline(line: str, style: Style) -> str:
    """One line of text outside code blocks: **bold** in bold, `code` dim with its backticks."""
    if not style.ansi:
        return line

    def emphasise(text: str) -> str:
        return _BOLD.sub(lambda match: style.bold(match.group(1)), text)

    parts, position = [], 0
    for span in _CODE_SPAN.finditer(line):  # no bold inside code
        parts.append(emphasise(line[position : span.start()]))
        parts.append(style.dim(span.group(0)))
        position = span.end()
    parts.append(emphasise(line[position:]))
    return "".join(parts)


def body_lines(body: Any, style: Style = PLAIN) -> list[tuple[str, bool]]:
    """The lines of a body as shown: (text, whether it is code). A fence's own lines are left
    out; an unclosed fence runs to the end, as in CommonMark."""
    lines: list[tuple[str, bool]] = []
    fence = ""
    for line in clean(body).split("\n"):
        if fence:
            closing = _FENCE_CLOSE.match(line)
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                fence = ""
            else:
                lines.append((style.dim(CODE_INDENT + line), True))
            continue
        opening = _FENCE_OPEN.match(line)
        if opening:
            fence = opening.group(1)
            continue
        lines.append((inline(line, style), False))
    return lines or [("", False)]


def reactions_text(reactions: Any) -> str:
    """`👍 2 (alice, bob)  🎉 1 (carol)`, in the order people reacted; "" for none."""
    if not isinstance(reactions, dict):
        return ""
    shown = []
    for emoji, users in reactions.items():
        names = [clean_line(user) for user in users] if isinstance(users, list) else []
        if names:
            shown.append(f"{clean_line(emoji)} {len(names)} ({', '.join(names)})")
    return "  ".join(shown)


def replies_text(message: Mapping[str, Any]) -> str:
    """`(3 replies: alice, bob)` after a thread's first message (the latest repliers); ""
    when it has none."""
    count = message.get("reply_count")
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        return ""
    repliers = message.get("repliers")
    names = ", ".join(clean_line(name) for name in repliers) if isinstance(repliers, list) else ""
    return f"({count} {'reply' if count == 1 else 'replies'}{': ' + names if names else ''})"


def human_size(size: Any) -> str:
    """1234567 -> `1.2 MB` (1024 to a KB, as the page counts)."""
    try:
        value = float(size)
    except (TypeError, ValueError):
        return "?"
    units = ["bytes", "KB", "MB", "GB", "TB"]
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return "1 byte" if value == 1 else f"{int(value)} bytes"
    shown = f"{value:.1f}".removesuffix(".0") if value < 10 else str(round(value))
    return f"{shown} {units[unit]}"


def attachment_lines(message: Mapping[str, Any], base: str = "") -> list[str]:
    """A message's files: `[name (size)] <url>`, the url made absolute against `base` (the
    server's http(s) address)."""
    attachments = message.get("attachments")
    if message.get("deleted") or not isinstance(attachments, list):
        return []
    lines = []
    for item in attachments:
        if not isinstance(item, Mapping):
            continue
        url = clean_line(item.get("url") or "")
        if base and url:
            url = urllib.parse.urljoin(base, url)
        lines.append(f"[{clean_line(item.get('name') or '?')} ({human_size(item.get('size'))})] {url}".rstrip())
    return lines


def preview(message: Mapping[str, Any], width: int = PREVIEW) -> str:
    """The start of a body on one line, for notices: `alice: Standup in 5 minutes`."""
    author = clean_line(message.get("author") or "?")
    if message.get("deleted"):
        return f"{author}: (deleted)"
    text = " ".join(clean(message.get("body", "")).split())
    return f"{author}: {text if len(text) <= width else text[: width - 1] + '…'}"


def format_message(
    message: Mapping[str, Any],
    where: str | None = None,
    *,
    style: Style = PLAIN,
    edited: bool = False,
    lead: str = "",
    base: str = "",
) -> str:
    """`#ID [HH:MM] author: body`, with `where` (a room that is not the current one) before the
    author, continuation lines indented, code blocks set off, ` (edited)` and the thread's
    summary after the body, the files (`[name (size)] <url>`, absolute against `base`) and the
    reactions on lines below; `(deleted)` for a tombstone. `lead` starts the first line (a
    thread's replies)."""
    ident = f"#{message['id']} " if isinstance(message.get("id"), int) else ""
    place = f"{clean_line(where)} " if where else ""
    head = f"{lead}{ident}[{hhmm(message.get('created_at'))}] {place}{clean_line(message.get('author') or '?')}: "
    if message.get("deleted"):
        return head + "(deleted)"
    indent = " " * (len(lead) + len(ident) + INDENT)
    lines = body_lines(message.get("body", ""), style)
    first, first_is_code = lines[0]
    text = head.rstrip() if first_is_code else head + first
    for line, _code in lines if first_is_code else lines[1:]:
        text += "\n" + indent + line
    suffix = " (edited)" if edited or message.get("edited_at") else ""
    replies = replies_text(message)
    text += suffix + (" " + replies if replies else "")
    for line in attachment_lines(message, base):
        text += "\n" + indent + line
    reactions = reactions_text(message.get("reactions"))
    if reactions:
        text += "\n" + indent + reactions
    return text


def format_thread_line(message: Mapping[str, Any], where: str | None = None, *, edited: bool = False) -> str:
    """A reply outside its thread's view, on one line: `[thread #12] #15 [HH:MM] bob: text`
    (the first line of its body, or its first file's name; `/thread 12` shows it all)."""
    root = message.get("reply_to")
    ident = f"#{message['id']} " if isinstance(message.get("id"), int) else ""
    place = f"{clean_line(where)} " if where else ""
    head = f"[thread #{root}] {ident}[{hhmm(message.get('created_at'))}] {place}{clean_line(message.get('author') or '?')}: "
    if message.get("deleted"):
        return head + "(deleted)"
    lines = [line for line in clean(message.get("body", "")).split("\n") if line.strip()]
    lines += [line.split("] ")[0] + "]" for line in attachment_lines(message)]
    lines = lines or [""]
    text = head + lines[0] + (" …" if len(lines) > 1 else "")
    return text + (" (edited)" if edited or message.get("edited_at") else "")


def format_thread(
    root: Mapping[str, Any], replies: Sequence[Mapping[str, Any]], *, style: Style = PLAIN, base: str = ""
) -> list[str]:
    """The `/thread` view: the first message as in the room, then each reply after `  ↳ `."""
    return [format_message(root, style=style, base=base)] + [
        format_message(reply, style=style, lead="  ↳ ", base=base) for reply in replies
    ]


def format_search_result(message: Mapping[str, Any], room: str, *, base: str = "") -> str:
    """A search result: `#lobby #12 [Thu 3 Dec 14:05] alice: text`, its files below."""
    ident = f"#{message['id']} " if isinstance(message.get("id"), int) else ""
    try:
        moment = datetime.fromisoformat(str(message.get("created_at")).replace("Z", "+00:00")).astimezone()
        stamp = moment.strftime("%a %d %b %Y %H:%M")
    except ValueError:
        stamp = "--"
    head = f"{clean_line(room)} {ident}[{stamp}] {clean_line(message.get('author') or '?')}: "
    text = head + " ".join(clean(message.get("body", "")).split())
    for line in attachment_lines(message, base):
        text += "\n" + " " * INDENT + line
    return text


def format_reactions_change(message: Mapping[str, Any]) -> str:
    """A status line for a message whose reactions changed: `reactions on #12 (alice: Standup
    in 5 minutes): 👍 2 (alice, bob)`."""
    return (
        f"reactions on #{message.get('id')} ({preview(message)}): {reactions_text(message.get('reactions')) or 'none'}"
    )


def room_label(slug: str, info: Mapping[str, Any] | None) -> str:
    """How a room is named in status lines: `#lobby`, or `dm with bob` for a direct
    conversation (its other members, as the server names it for you)."""
    if info and info.get("kind") == "direct":
        return f"dm with {clean_line(info.get('name') or slug)}"
    return f"#{clean_line(slug)}"


def where_label(slug: str, info: Mapping[str, Any] | None) -> str:
    """How a room is named before a message of it that is not the current room's."""
    label = room_label(slug, info)
    return label if label.startswith("#") else f"[{label}]"


def format_direct_notice(info: Mapping[str, Any], message: Mapping[str, Any]) -> str:
    """A new message in a direct conversation that is not open: `[dm with bob] bob: text`."""
    name = clean_line(info.get("name") or "?")
    return f"[dm with {name}] {preview(message, width=120)}"
