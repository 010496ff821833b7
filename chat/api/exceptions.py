"""The API's errors: `{"code": ..., "detail": ...}` with the socket's error codes (plus
`unauthorized`, 401) and one readable sentence, whatever DRF or Django raised."""

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chat.errors import ChatError, ErrorCode

logger = logging.getLogger(__name__)

HTTP_STATUS = {
    ErrorCode.BAD_REQUEST: status.HTTP_400_BAD_REQUEST,
    ErrorCode.UNKNOWN_TYPE: status.HTTP_400_BAD_REQUEST,
    ErrorCode.NOT_JOINED: status.HTTP_400_BAD_REQUEST,
    ErrorCode.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    ErrorCode.FORBIDDEN: status.HTTP_403_FORBIDDEN,
    ErrorCode.TOO_LARGE: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.RATE_LIMITED: status.HTTP_429_TOO_MANY_REQUESTS,
    ErrorCode.INTERNAL: status.HTTP_500_INTERNAL_SERVER_ERROR,
}


def _sentence(detail: object) -> str:
    """DRF's error details (strings, lists, dicts of lists) as one readable line."""
    if isinstance(detail, dict):
        return " ".join(f"'{field}': {_sentence(value)}" for field, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_sentence(item) for item in detail)
    return str(detail)


def _codes(exc: exceptions.ValidationError) -> dict[str, Any]:
    codes = exc.get_codes()
    return codes if isinstance(codes, dict) else {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    # Django's own (a 404 from content negotiation, say) become DRF's, so they get the right code.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, ChatError):
        return Response({"code": exc.code, "detail": exc.detail}, status=HTTP_STATUS[exc.code])
    response = drf_exception_handler(exc, context)
    if response is None:  # an unexpected failure: logged with its traceback, answered in JSON
        logger.exception("API request failed", exc_info=exc)
        return Response(
            {"code": ErrorCode.INTERNAL, "detail": "The server could not do that; try again."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError) and "max_length" in _codes(exc).get("body", []):
        return exception_handler(
            ChatError(ErrorCode.TOO_LARGE, f"The message is longer than {settings.CHAT_MAX_BODY} characters."), context
        )
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        code = ErrorCode.UNAUTHORIZED
    elif isinstance(exc, exceptions.Throttled):
        code = ErrorCode.RATE_LIMITED
    elif isinstance(exc, exceptions.PermissionDenied):
        code = ErrorCode.FORBIDDEN
    elif isinstance(exc, exceptions.NotFound):
        code = ErrorCode.NOT_FOUND
    else:  # ValidationError, ParseError, MethodNotAllowed, UnsupportedMediaType, ...
        code = ErrorCode.BAD_REQUEST
    detail = _sentence(response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data)
    response.data = {"code": code, "detail": detail}
    return response
