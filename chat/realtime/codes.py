"""The wire protocol's numbers and names, defined once: close codes and error codes.

The server, /metrics, the terminal client and the tests import them from here; the browser page
(chat/static/chat/chat.js) has its own copy, which a test compares with these. Pure Python with
no Django import, so a client can use it without the server's settings. docs/protocol.md says
what each one means to a client.
"""

from enum import IntEnum, StrEnum


class CloseCode(IntEnum):
    """WebSocket close codes. The 1000s are RFC 6455's; the 4000s are this server's own."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the worker is shutting down (SIGTERM): reconnect, another worker answers
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never sent in a close frame: the peer closed without a code
    ABNORMAL = 1006  # never sent: the connection dropped without a close frame
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # Daphne's own, for a frame over --websocket-max-message-size
    INTERNAL_ERROR = 1011  # the consumer failed; Daphne closes with it
    SERVICE_RESTART = 1012
    NO_PONG = 4000  # sent by a client (the page, clients.terminal) that got no pong in time; never by the server
    SLOW_READER = 4008  # its outgoing buffer passed CHAT_MAX_SEND_BUFFER_BYTES: it does not read
    FRAME_TOO_LARGE = 4009  # only where Daphne runs without --websocket-max-message-size
    SESSION_ENDED = 4401  # anonymous, unknown token, or a session that ended: log in again
    DEACTIVATED = 4403  # the account is deactivated: log in again will not help
    TOO_MANY_SOCKETS = 4408  # the user holds CHAT_MAX_SOCKETS_PER_USER sockets on this worker
    ABUSE = 4429  # too many refused frames, or wrong tokens from one address
    UNAVAILABLE = 4503  # Redis or the database did not answer at the handshake


# Closes after which a client should not reconnect by itself: the user (or the bot's owner) has to
# act first (log in, get a new token, fix the client).
FINAL_CLOSES = frozenset({CloseCode.SESSION_ENDED, CloseCode.DEACTIVATED, CloseCode.ABUSE})


class ErrorCode(StrEnum):
    """The `code` of an `error` frame, and of the HTTP API's error bodies."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    NOT_JOINED = "not_joined"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"
    UNAUTHORIZED = "unauthorized"  # the HTTP API only (401); the socket closes with 4401 instead
