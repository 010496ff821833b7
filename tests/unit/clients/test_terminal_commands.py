"""clients.terminal's room settings commands without a server: what /private and /archive take,
and that a mistyped one sends nothing (archiving closes the room for everyone)."""

import asyncio
from typing import Any

import pytest

from clients.endpoint import Endpoint
from clients.terminal import Credentials, TerminalClient, archive_target, build_parser, parse_switch


def test_private_takes_on_or_off_and_nothing_else():
    assert parse_switch("on") is True
    assert parse_switch(" OFF ") is False
    for typo in ("", "yes", "of", "on off", "1"):
        assert parse_switch(typo) is None, typo


def test_archive_needs_the_current_room_named():
    assert archive_target("term", "term") == "term"
    assert archive_target("#term", "term") == "term"
    for arg in ("", "lobby", "term now", "#"):
        assert archive_target(arg, "term") is None, arg
    assert archive_target("term", None) is None


class Recorder(TerminalClient):
    """The client with its requests recorded instead of sent."""

    def __init__(self) -> None:
        args = build_parser().parse_args(["--room", "term"])
        super().__init__(args, Endpoint("ws://127.0.0.1:9/ws/chat/"), Credentials(token="t"))
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def room_update(self, room: str, **fields: Any) -> dict[str, Any]:
        fields.pop("timeout", None)
        self.sent.append(("room_update", {"room": room, **fields}))
        return {"slug": room, "name": room, "private": fields.get("private")}

    async def archive(self, room: str, **fields: Any) -> None:
        self.sent.append(("archive", {"room": room}))


@pytest.mark.parametrize(
    ("line", "sent", "said"),
    [
        ("/private on", [("room_update", {"room": "term", "private": True})], "* #term is now private"),
        ("/private off", [("room_update", {"room": "term", "private": False})], "* #term is now public"),
        ("/private", [], "! usage: /private on|off"),
        ("/private yes", [], "! usage: /private on|off"),
        ("/archive term", [("archive", {"room": "term"})], "* archived #term"),
        ("/archive", [], "! usage: /archive ROOM, naming the current room (/archive term)"),
        ("/archive lobby", [], "! usage: /archive ROOM, naming the current room (/archive term)"),
    ],
)
def test_a_settings_command_sends_only_what_was_asked(capsys, line, sent, said):
    client = Recorder()
    assert asyncio.run(client.command(line)) is True
    assert client.sent == sent
    captured = capsys.readouterr()
    assert said in captured.out + captured.err
