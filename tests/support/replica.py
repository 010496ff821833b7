"""A room as a client that follows the protocol's convergence rule holds it: every message object
it is given (in `joined`, `history`, `thread` or a live frame) replaces its copy when its `rev` is
newer; a live frame whose `rev` skips one, or a `pong` whose `revs` is ahead, means a change was
missed, and the client joins again with the last rev it applied. Tests compare a replica with a
fresh join, which is what the room looks like to someone who saw everything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHANGE_FRAMES = {"message", "message_edited", "message_deleted", "message_updated"}


@dataclass
class Replica:
    room: str
    rev: int = 0  # the highest rev applied without a gap
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> message

    def upsert(self, message: dict[str, Any]) -> None:
        held = self.messages.get(message["id"])
        if held is None or message["rev"] >= held["rev"]:
            self.messages[message["id"]] = message

    def joined(self, frame: dict[str, Any]) -> None:
        assert frame["type"] == "joined" and frame["room"] == self.room, frame
        for message in frame["messages"]:
            self.upsert(message)
        self.rev = max(self.rev, frame["rev"])

    def live(self, frame: dict[str, Any]) -> bool:
        """Apply a live frame; whether it revealed a gap (then join again with `rev=self.rev`
        as it was before this frame: `gap_from`)."""
        assert frame["type"] in CHANGE_FRAMES and frame["room"] == self.room, frame
        self.upsert(frame["message"])
        if frame["rev"] == self.rev + 1:
            self.rev = frame["rev"]
            return False
        return frame["rev"] > self.rev

    def behind(self, pong: dict[str, Any]) -> bool:
        return pong["revs"].get(self.room, 0) > self.rev

    def state(self) -> dict[int, dict[str, Any]]:
        """What a reader sees of each message (not when the copy was taken)."""
        shown = ("body", "html", "deleted", "reactions", "reply_count", "repliers", "reply_to", "edited_at")
        return {key: {name: message.get(name) for name in shown} for key, message in self.messages.items()}
