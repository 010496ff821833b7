"""HTTP middleware: a request id for every request (see chat.ops.logs)."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from chat.ops import logs

HEADER = "X-Request-ID"

access_logger = logging.getLogger("chat.access")

GetResponse = Callable[[HttpRequest], HttpResponseBase] | Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class RequestIdMiddleware:
    """Reuse the request's `X-Request-ID` when it is a short safe token (a proxy's id), else make
    one; bind it for every log line of the request (chat.ops.logs.bind_request), and echo it in the
    response's `X-Request-ID`. First in MIDDLEWARE, so every other middleware runs inside it.

    The id is unbound when the response leaves this middleware. Django logs 4xx/5xx responses
    ("Not Found: ...") after the middleware chain has returned, but with the request attached to
    the record: chat.ops.logs.ContextFilter finds the request's id from the request then.

    With DJANGO_LOG_FORMAT=json it also logs one `chat.access` line per request (method, path,
    status, duration, client address), because Daphne's own access log is plain text written
    straight to stdout."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.access_log = getattr(settings, "LOG_FORMAT", "plain") == "json"
        # Django hands an async chain an async get_response, and a sync one a sync get_response.
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _bind(self, request: HttpRequest) -> tuple[str, contextvars.Token[str | None]]:
        value = logs.clean_request_id(request.headers.get(HEADER)) or logs.new_id()
        return value, logs.bind_request(request, value)

    def _done(self, request: HttpRequest, response: HttpResponseBase, value: str, started: float) -> HttpResponseBase:
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

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        started = time.perf_counter()
        value, token = self._bind(request)
        try:
            response = cast(HttpResponseBase, self.get_response(request))
            return self._done(request, response, value, started)
        finally:
            logs.request_id.reset(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        value, token = self._bind(request)
        try:
            response = await cast(Awaitable[HttpResponseBase], self.get_response(request))
            return self._done(request, response, value, started)
        finally:
            logs.request_id.reset(token)
