"""The error codes of the wire protocol, shared by services, the consumer and the HTTP API."""


class ChatError(Exception):
    """A refusal a client may see: `code` is one of the wire protocol's error codes (docs/protocol.md)."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    NOT_JOINED = "not_joined"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"

    def __init__(self, code: str, detail: str, *, room: str | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.room = room
