"""HTTP middleware: a request id for every request (see chat.log)."""

from __future__ import annotations

import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from chat.ops import logs

HEADER = "X-Request-ID"

access_logger = logging.getLogger("chat.access")


class RequestIdMiddleware:
    """Reuse the request's `X-Request-ID` when it is a short safe token (a proxy's id), else make
    one; bind it for every log line of the request, set `request.request_id`, and echo it in the
    response's `X-Request-ID`. First in MIDDLEWARE, so every other middleware runs inside it.

    The id is unbound when the response leaves this middleware. Django logs 4xx/5xx responses
    ("Not Found: ...") after the middleware chain has returned, but with the request attached to
    the record: chat.log.ContextFilter takes the id from `request.request_id` then.

    With DJANGO_LOG_FORMAT=json it also logs one `chat.access` line per request (method, path,
    status, duration, client address), because Daphne's own access log is plain text written
    straight to stdout."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.access_log = getattr(settings, "LOG_FORMAT", "plain") == "json"
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _bind(self, request: HttpRequest):
        value = logs.clean_request_id(request.headers.get(HEADER)) or logs.new_id()
        request.request_id = value
        return value, logs.request_id.set(value)

    def _done(self, request: HttpRequest, response: HttpResponse, value: str, started: float) -> HttpResponse:
        response[HEADER] = value
        if self.access_log:
            elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
            access_logger.info(
                "%s %s %s",
                request.method,
                request.get_full_path(),
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": elapsed_ms,
                    "remote_addr": request.META.get("REMOTE_ADDR"),
                },
            )
        return response

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        started = time.perf_counter()
        value, token = self._bind(request)
        try:
            return self._done(request, self.get_response(request), value, started)
        finally:
            logs.request_id.reset(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        value, token = self._bind(request)
        try:
            return self._done(request, await self.get_response(request), value, started)
        finally:
            logs.request_id.reset(token)
