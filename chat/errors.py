"""The refusal a client may see, shared by services, the consumer and the HTTP API. Its codes are
the wire protocol's (chat/realtime/codes.py), re-exported here for the domain's convenience."""

from chat.realtime.codes import ErrorCode

__all__ = ["ChatError", "ErrorCode"]


class ChatError(Exception):
    """A refusal a client may see: `code` is one of the wire protocol's error codes (docs/protocol.md).
    `ref` is the request's, set by the frame parser when the frame carried a valid one, so the
    error reply can echo it."""

    code: ErrorCode
    detail: str
    room: str | None
    ref: str | None

    def __init__(self, code: ErrorCode, detail: str, *, room: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.room = room
        self.ref = None
