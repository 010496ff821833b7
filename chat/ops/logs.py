"""Log context: a request id per HTTP request and a connection id per WebSocket connection.

Both live in context variables, so every line logged while handling that request or connection
carries them: in async code, and in the threads that sync_to_async / database_sync_to_async run
(asgiref copies the context into them). `ContextFilter` (on the console handler, see
settings.LOGGING) copies them onto each record; `JsonFormatter` writes one JSON object a line
when DJANGO_LOG_FORMAT=json.

Not named `logging.py`: a script run from this folder would import it instead of the standard library's.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
import weakref
from datetime import UTC, datetime

from django.http import HttpRequest

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("chat_request_id", default=None)
connection_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("chat_connection_id", default=None)

# Each request's id while the request lives: for the records Django logs with the request attached
# after the request's context is gone (see ContextFilter).
_request_ids: weakref.WeakKeyDictionary[HttpRequest, str] = weakref.WeakKeyDictionary()

# An incoming X-Request-ID is reused only if it is a short token that is safe in any log format.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str | None:
    """`value` if it is a short safe token (letters, digits, `.`, `_`, `-`; at most 64), else None."""
    if value and _SAFE_ID.fullmatch(value):
        return value
    return None


def bind_request(request: HttpRequest, value: str) -> contextvars.Token[str | None]:
    """Give an HTTP request the id `value`, for every log line logged while handling it (reset the
    returned token when it is done) and for those Django logs about it afterwards."""
    _request_ids[request] = value
    return request_id.set(value)


def bind_connection() -> str:
    """Give the current WebSocket connection (the consumer's task) a new id, and return it."""
    value = new_id()
    connection_id.set(value)
    return value


class ContextFilter(logging.Filter):
    """Adds `request_id` and `connection_id` (None when unknown) to every record. A record that
    Django logs with the request attached (django.request, django.security) after the request's
    context is gone takes the id that `bind_request` gave the request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request = getattr(record, "request", None)
            record.request_id = request_id.get() or (
                _request_ids.get(request) if isinstance(request, HttpRequest) else None
            )
        if getattr(record, "connection_id", None) is None:
            record.connection_id = connection_id.get()
        return True


# The attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
    "connection_id",
    "taskName",
}
_JSON_TYPES = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message; request_id and
    connection_id when known; exception (the traceback text) when there is one; and the plain
    values (str, number, bool) a caller passed with `extra=` (e.g. Django's `status_code`)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "connection_id"):
            value = getattr(record, name, None)
            if value is None:  # a record that did not pass through ContextFilter
                value = (request_id if name == "request_id" else connection_id).get()
            if value is not None:
                entry[name] = value
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and not name.startswith("_") and isinstance(value, _JSON_TYPES):
                entry.setdefault(name, value)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
