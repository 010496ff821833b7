"""The wire protocol in one place: client frame schemas, validation, and server frame encoding.

Every client frame is checked here before the consumer sees it; the consumer receives a
`Frame` whose fields have the types the schema promises, or a `ChatError` to send back.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from chat.errors import ChatError
from chat.models import (
    MAX_CLIENT_ID_LENGTH,
    MAX_DIRECT_MEMBERS,
    MAX_EMOJI_LENGTH,
    MAX_ROOM_NAME_LENGTH,
    MAX_ROOM_TOPIC_LENGTH,
    MAX_SLUG_LENGTH,
)
from chat.realtime.codes import ErrorCode

MAX_REF_LENGTH = 64
MAX_USERNAME_LENGTH = 150  # django.contrib.auth's
MAX_SEQ = 2**63 - 1
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 100
ONLINE_DEFAULT_LIMIT = 500  # names in one page of `online`
ONLINE_MAX_LIMIT = 1000
SEARCH_DEFAULT_LIMIT = 20  # messages in one page of `search` (chat.search)
SEARCH_MAX_LIMIT = 50
MAX_SEARCH_LENGTH = 200  # characters of `q`, after trimming
MAX_ATTACHMENT_IDS = 100  # ids one `send` may name at all (the real limit is CHAT_UPLOAD_MAX_FILES)
WATCH_MAX_ROOMS = 50  # rooms named in one `watch` (without names it watches the user's sidebar)


@dataclass(frozen=True)
class Field:
    kind: type[str] | type[int] | type[bool] | type[list[str]]  # a list is a list of strings
    required: bool = True
    max_length: int | None = None  # characters of a string, items of a list
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None
    items: type[str] | type[int] = str  # what a list holds: strings, or ids (integers of 1..MAX_SEQ)


def _slug() -> Field:
    return Field(str, max_length=MAX_SLUG_LENGTH)


def _seq(*, required: bool) -> Field:
    return Field(int, required=required, minimum=0, maximum=MAX_SEQ)


def _message_id(*, required: bool = True) -> Field:
    return Field(int, required=required, minimum=1, maximum=MAX_SEQ)


# Client-to-server frames: type -> {field: schema}. Unknown fields are ignored (the contract
# may grow); `type` and `ref` are common to all.
CLIENT_FRAMES: dict[str, dict[str, Field]] = {
    "join": {"room": _slug(), "since": _seq(required=False), "rev": _seq(required=False)},
    "leave": {"room": _slug()},
    "send": {
        "room": _slug(),
        "body": Field(str),
        "client_id": Field(str, required=False, max_length=MAX_CLIENT_ID_LENGTH),
        "reply_to": _message_id(required=False),
        # Ids of the sender's uploads (POST /api/rooms/<slug>/uploads/); chat.files checks them,
        # and their number against CHAT_UPLOAD_MAX_FILES.
        "attachments": Field(list, required=False, max_length=MAX_ATTACHMENT_IDS, items=int),
    },
    "history": {
        "room": _slug(),
        "before": _seq(required=False),
        "after": _seq(required=False),
        "around": _message_id(required=False),
        "limit": Field(int, required=False, minimum=1, maximum=HISTORY_MAX_LIMIT, default=HISTORY_DEFAULT_LIMIT),
    },
    "edit": {"room": _slug(), "id": _message_id(), "body": Field(str)},
    "delete": {"room": _slug(), "id": _message_id()},
    "react": {
        "room": _slug(),
        "id": _message_id(),
        "emoji": Field(str, max_length=MAX_EMOJI_LENGTH),
        "on": Field(bool, required=False, default=True),
    },
    "thread": {
        "room": _slug(),
        "id": _message_id(),
        "before": _seq(required=False),
        "limit": Field(int, required=False, minimum=1, maximum=HISTORY_MAX_LIMIT, default=HISTORY_DEFAULT_LIMIT),
    },
    "direct": {"users": Field(list, max_length=MAX_DIRECT_MEMBERS)},
    "typing": {"room": _slug()},
    "online": {
        "room": _slug(),
        "after": Field(str, required=False, max_length=MAX_USERNAME_LENGTH),
        "limit": Field(int, required=False, minimum=1, maximum=ONLINE_MAX_LIMIT, default=ONLINE_DEFAULT_LIMIT),
    },
    "read": {"room": _slug(), "seq": _seq(required=True)},
    "ping": {},
    "watch": {"rooms": Field(list, required=False, max_length=WATCH_MAX_ROOMS)},
    "notify": {"room": _slug(), "level": Field(str, max_length=16)},
    # Room management (chat.realtime.manage): the members list, and what the room's managers do.
    "members": {"room": _slug()},
    "invite": {"room": _slug(), "user": Field(str, max_length=MAX_USERNAME_LENGTH)},
    "remove_member": {"room": _slug(), "user": Field(str, max_length=MAX_USERNAME_LENGTH)},
    "part": {"room": _slug()},
    "room_update": {
        "room": _slug(),
        "name": Field(str, required=False, max_length=MAX_ROOM_NAME_LENGTH),
        "topic": Field(str, required=False, max_length=MAX_ROOM_TOPIC_LENGTH),
        "private": Field(bool, required=False),
    },
    "archive": {"room": _slug()},
    # Messages containing `q` in the rooms the user may read (chat.search); `room` narrows to one
    # room (it need not be joined), `author` to one person's messages, `before` pages by id.
    "search": {
        "q": Field(str, max_length=4 * MAX_SEARCH_LENGTH),  # trimmed, then checked by chat.search
        "room": Field(str, required=False, max_length=MAX_SLUG_LENGTH),
        "author": Field(str, required=False, max_length=MAX_USERNAME_LENGTH),
        "before": _message_id(required=False),
        "limit": Field(int, required=False, minimum=1, maximum=SEARCH_MAX_LIMIT, default=SEARCH_DEFAULT_LIMIT),
    },
}

# Server-to-client frames: type -> the fields each always carries (tests check every frame the
# server sends against this; `ref` is added to replies).
SERVER_FRAMES: dict[str, set[str]] = {
    "joined": {"room", "info", "messages", "complete", "presence", "presence_complete", "online", "rev"},
    "left": {"room"},
    "message": {"room", "message", "rev"},
    "ack": {"room", "client_id", "id", "seq", "rev"},
    "history": {"room", "messages", "has_more"},
    "typing": {"room", "username"},
    "presence": {"room"},  # and `users` (the whole list), or `online` with `joined` and/or `left`
    "online": {"room", "users", "has_more", "online"},
    "message_edited": {"room", "message", "rev"},
    "message_deleted": {"room", "id", "seq", "rev", "message"},
    "message_updated": {"room", "message", "rev"},
    "thread": {"room", "id", "root", "messages", "has_more"},
    "direct": {"room", "info"},
    "direct_message": {"room", "info", "message"},
    "room_closed": {"room", "reason"},
    "members": {"room", "members"},
    "room_updated": {"room", "info"},
    "room_invited": {"room", "info"},
    "pong": {"seqs", "revs"},
    "error": {"code", "detail"},
    "watching": {"rooms"},
    "activity": {"room", "kind", "id", "seq", "rev", "author", "reply_to", "mentions"},
    "unread": {"room", "kind", "unread", "mentions", "last_seq", "read", "notify"},
    "notify": {"room", "level"},
    "search": {"q", "messages", "has_more"},
}
MESSAGE_FIELDS = {
    "id",
    "seq",
    "rev",
    "room",
    "author",
    "body",
    "html",
    "created_at",
    "edited_at",
    "client_id",
    "reply_to",
    "reply_count",
    "repliers",
    "last_reply_at",
    "reactions",
    "attachments",
}


@dataclass(frozen=True)
class Frame:
    type: str
    ref: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


def is_text(value: str) -> bool:
    """Whether `value` can travel as UTF-8. JSON may carry lone surrogates ("\\ud800"), which
    Python decodes into a str that nothing can encode: not storable, not echoable."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


MAX_LIST_ITEM_LENGTH = 150  # a username


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false", list: "a list of strings"}[kind]


def _check_text(name: str, value: str, max_length: int | None) -> str:
    if not is_text(value):
        raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' is not valid Unicode text.")
    if "\x00" in value:
        raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' contains a NUL character.")
    if max_length is not None and len(value) > max_length:
        raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' is longer than {max_length} characters.")
    return value


def _check_field(name: str, spec: Field, value: object) -> str | int | bool | list[str] | list[int]:
    if spec.kind is str and isinstance(value, str):
        return _check_text(name, value, spec.max_length)
    if spec.kind is bool and isinstance(value, bool):
        return value
    if spec.kind is list and spec.items is int and isinstance(value, list):
        if spec.max_length is not None and len(value) > spec.max_length:
            raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' has more than {spec.max_length} items.")
        if not all(isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= MAX_SEQ for item in value):
            raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' must be a list of ids.")
        return value
    if spec.kind is list and isinstance(value, list) and all(isinstance(item, str) for item in value):
        if spec.max_length is not None and len(value) > spec.max_length:
            raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' has more than {spec.max_length} items.")
        return [_check_text(name, item, MAX_LIST_ITEM_LENGTH) for item in value]
    # bool is an int subclass in Python, but `true` is not a seq.
    if spec.kind is int and isinstance(value, int) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' must be at least {spec.minimum}.")
        if spec.maximum is not None and value > spec.maximum:
            raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' must be at most {spec.maximum}.")
        return value
    raise ChatError(ErrorCode.BAD_REQUEST, f"'{name}' must be {_type_name(spec.kind)}.")


def parse_frame(text: str) -> Frame:
    """Decode and validate one text frame. Raises ChatError; its `ref` attribute is set when
    the frame carried a valid one, so the error reply can echo it."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ChatError(ErrorCode.BAD_REQUEST, "The frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ChatError(ErrorCode.BAD_REQUEST, "A frame must be a JSON object.")

    # `ref` and `room` are copied into the reply: only text that can be sent back is echoed.
    ref = data.get("ref")
    if ref is not None and not (isinstance(ref, str) and len(ref) <= MAX_REF_LENGTH):
        raise ChatError(ErrorCode.BAD_REQUEST, f"'ref' must be a string of at most {MAX_REF_LENGTH} characters.")
    if ref is not None and not is_text(ref):
        raise ChatError(ErrorCode.BAD_REQUEST, "'ref' is not valid Unicode text.")

    try:
        frame_type = data.get("type")
        if not isinstance(frame_type, str):
            raise ChatError(ErrorCode.BAD_REQUEST, "A frame needs a string 'type'.")
        schema = CLIENT_FRAMES.get(frame_type)
        if schema is None:
            raise ChatError(ErrorCode.UNKNOWN_TYPE, f"Unknown frame type {frame_type[:40]!r}.")
        fields: dict[str, Any] = {}
        for name, spec in schema.items():
            value = data.get(name)
            if value is None:
                if spec.required:
                    raise ChatError(ErrorCode.BAD_REQUEST, f"'{frame_type}' needs '{name}'.")
                fields[name] = spec.default
                continue
            fields[name] = _check_field(name, spec, value)
    except ChatError as error:
        error.ref = ref
        room = data.get("room")
        if isinstance(room, str) and len(room) <= MAX_SLUG_LENGTH and is_text(room):
            error.room = room
        raise
    return Frame(type=frame_type, ref=ref, fields=fields)


def encode(frame_type: str, ref: str | None = None, **fields: Any) -> str:
    """A server frame as JSON text that always encodes as UTF-8: should a lone surrogate reach a
    field despite the checks above, it goes out escaped (`\\udfff`) instead of failing the send,
    which would end the socket."""
    payload: dict[str, Any] = {"type": frame_type, **fields}
    if ref is not None:
        payload["ref"] = ref
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if is_text(text):
        return text
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":"))


def fit_messages(messages: list[dict[str, Any]], *, budget: int, keep: str) -> tuple[list[dict[str, Any]], bool]:
    """As many of `messages` as fit in `budget` bytes of JSON, taken from the `keep` end
    ("oldest" or "newest"); and whether all of them fit. Daphne refuses to send a frame over
    its --websocket-max-message-size (64 KiB), outgoing as well as incoming."""
    total, count = 0, 0
    for message in messages if keep == "oldest" else reversed(messages):
        total += len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        if total > budget:
            break
        count += 1
    if count == len(messages):
        return messages, True
    return (messages[:count] if keep == "oldest" else messages[len(messages) - count :]), False


def fit_around(messages: list[dict[str, Any]], *, center: int, budget: int) -> tuple[list[dict[str, Any]], bool, bool]:
    """As many of `messages` as fit in `budget` bytes of JSON around the one at index `center`,
    taken one at a time from each side in turn; and whether all the older and all the newer fit."""
    sizes = [len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()) + 1 for message in messages]
    low, high = center, center + 1
    total = sizes[center]
    grew = True
    while grew:
        grew = False
        if high < len(messages) and total + sizes[high] <= budget:
            total += sizes[high]
            high += 1
            grew = True
        if low > 0 and total + sizes[low - 1] <= budget:
            low -= 1
            total += sizes[low]
            grew = True
    return messages[low:high], low == 0, high == len(messages)


def error_frame(error: ChatError, ref: str | None = None) -> str:
    fields: dict[str, Any] = {"code": error.code, "detail": error.detail}
    if error.room is not None:
        fields["room"] = error.room
    return encode("error", ref if ref is not None else error.ref, **fields)
