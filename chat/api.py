"""The HTTP API (Django REST framework), for scripts and bots beside the WebSocket:

    GET  /api/rooms/                          the rooms the caller may enter
    GET  /api/rooms/<slug>/messages/          history: ?before=<seq>&limit=<1..100>
    POST /api/rooms/<slug>/messages/          {"body": ..., "client_id": ...} -> 201 with the message
    GET  /api/schema/                         the OpenAPI description (public)

Callers authenticate with a bearer token (`Authorization: Bearer <token>`) or the browser
session (with its CSRF token on POST). Errors are JSON, `{"code": ..., "detail": ...}`, with the
socket's codes plus `unauthorized` (401). A message posted here is stored, numbered and broadcast
exactly as one sent on the socket, and `client_id` makes a retry safe in the same way.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from . import selectors, services
from .errors import ChatError
from .protocol import HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, MAX_CLIENT_ID_LENGTH, MAX_SEQ

logger = logging.getLogger(__name__)

UNAUTHORIZED = "unauthorized"
HTTP_STATUS = {
    ChatError.BAD_REQUEST: status.HTTP_400_BAD_REQUEST,
    ChatError.UNKNOWN_TYPE: status.HTTP_400_BAD_REQUEST,
    ChatError.NOT_JOINED: status.HTTP_400_BAD_REQUEST,
    ChatError.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    ChatError.FORBIDDEN: status.HTTP_403_FORBIDDEN,
    ChatError.TOO_LARGE: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    ChatError.RATE_LIMITED: status.HTTP_429_TOO_MANY_REQUESTS,
    ChatError.INTERNAL: status.HTTP_500_INTERNAL_SERVER_ERROR,
}


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI description how chat.auth.BearerTokenAuthentication works."""

    target_class = "chat.auth.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token (manage.py create_token)."}


# Errors ---------------------------------------------------------------------------------------


def _sentence(detail) -> str:
    """DRF's error details (strings, lists, dicts of lists) as one readable line."""
    if isinstance(detail, dict):
        return " ".join(f"'{field}': {_sentence(value)}" for field, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_sentence(item) for item in detail)
    return str(detail)


def _codes(exc: exceptions.ValidationError) -> dict:
    codes = exc.get_codes()
    return codes if isinstance(codes, dict) else {}


def exception_handler(exc, context):
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
            {"code": ChatError.INTERNAL, "detail": "The server could not do that; try again."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError) and "max_length" in _codes(exc).get("body", []):
        return exception_handler(
            ChatError(ChatError.TOO_LARGE, f"The message is longer than {settings.CHAT_MAX_BODY} characters."), context
        )
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        code = UNAUTHORIZED
    elif isinstance(exc, exceptions.Throttled):
        code = ChatError.RATE_LIMITED
    elif isinstance(exc, exceptions.PermissionDenied):
        code = ChatError.FORBIDDEN
    elif isinstance(exc, exceptions.NotFound):
        code = ChatError.NOT_FOUND
    else:  # ValidationError, ParseError, MethodNotAllowed, UnsupportedMediaType, ...
        code = ChatError.BAD_REQUEST
    detail = _sentence(response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data)
    response.data = {"code": code, "detail": detail}
    return response


# Shapes (the OpenAPI description is generated from these) ----------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=[*HTTP_STATUS, UNAUTHORIZED])
    detail = serializers.CharField()


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    seq = serializers.IntegerField(help_text="The message's position in its room: 1, 2, 3... without gaps.")
    room = serializers.CharField()
    author = serializers.CharField()
    body = serializers.CharField(help_text="Empty for a deleted message.")
    created_at = serializers.DateTimeField()
    edited_at = serializers.DateTimeField(allow_null=True)
    client_id = serializers.CharField(allow_null=True)
    deleted = serializers.BooleanField(required=False, help_text="Present (true) on a deleted message.")


class MessagePageSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True, help_text="Oldest first.")
    has_more = serializers.BooleanField(help_text="Older messages exist: ask again with before=<first seq>.")


class HistoryQuerySerializer(serializers.Serializer):
    before = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEQ)
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=HISTORY_MAX_LIMIT, default=HISTORY_DEFAULT_LIMIT
    )


class StringOnly:
    """DRF's text fields turn numbers and booleans into text; the socket refuses them as the
    wrong type, and so does the API."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictRegexField(StringOnly, serializers.RegexField):
    default_error_messages = {"not_a_string": "Must be a string."}


class MessageCreateSerializer(serializers.Serializer):
    body = StrictRegexField(
        # Not blank (something besides whitespace) and no NUL character anywhere: `\S` alone would
        # let one NUL through as the non-blank character.
        r"^[^\x00]*[^\s\x00][^\x00]*$",
        max_length=settings.CHAT_MAX_BODY,
        trim_whitespace=False,
        error_messages={"invalid": "The message is empty."},
        help_text=f"The text, up to {settings.CHAT_MAX_BODY} characters; not only whitespace.",
    )
    client_id = StrictRegexField(
        r"^[^\x00]*$",  # as on the socket: any text but NUL, whitespace kept as sent
        required=False,
        allow_null=True,
        trim_whitespace=False,
        max_length=MAX_CLIENT_ID_LENGTH,
        error_messages={"invalid": "The client_id contains a NUL character."},
        help_text="Your id for this message: sending it again stores nothing new and returns the first one.",
    )


class RoomSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    topic = serializers.CharField()
    private = serializers.BooleanField()
    last_seq = serializers.IntegerField(help_text="The seq of the newest message (0: none yet).")
    unread = serializers.IntegerField(help_text="Messages after the caller's read marker.")


class RoomListSerializer(serializers.Serializer):
    rooms = RoomSerializer(many=True)


ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 413, 429)}


# Views ------------------------------------------------------------------------------------------


class RoomListView(APIView):
    @extend_schema(
        summary="The rooms the caller may enter",
        responses={200: RoomListSerializer, 401: ErrorSerializer, 429: ErrorSerializer},
    )
    def get(self, request):
        rooms = selectors.room_list_for(user=request.user)
        return Response(RoomListSerializer({"rooms": [vars(room) for room in rooms]}).data)


class RoomMessagesView(APIView):
    @extend_schema(
        summary="A page of a room's history, oldest first",
        parameters=[HistoryQuerySerializer],
        responses={200: MessagePageSerializer, **ERRORS},
    )
    def get(self, request, slug: str):
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = selectors.room_get_for(slug=slug, user=request.user)
        messages, has_more = selectors.messages_before(
            room=room, before=query.validated_data.get("before"), limit=query.validated_data["limit"]
        )
        return Response({"messages": messages, "has_more": has_more})

    @extend_schema(
        summary="Post a message (stored, numbered and broadcast like one sent on the socket)",
        request=MessageCreateSerializer,
        responses={201: MessageSerializer, **ERRORS},
        parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The room's slug.")],
    )
    def post(self, request, slug: str):
        data = MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        room = selectors.room_get_for(slug=slug, user=request.user)
        message, _created = services.message_send(
            room=room,
            author=request.user,
            body=data.validated_data["body"],
            client_id=data.validated_data.get("client_id"),
        )
        # A retry with the same client_id gets the first answer again (201 and the same message),
        # as idempotency keys work elsewhere: the caller cannot tell a retry from a first success.
        return Response(message, status=status.HTTP_201_CREATED)


def api_not_found(request, path: str = "") -> JsonResponse:
    """Any other path under /api/ (a slug with a slash in it, say): a JSON 404, like the API's
    own refusals, instead of the HTML page."""
    return JsonResponse({"code": ChatError.NOT_FOUND, "detail": "There is no such API path."}, status=404)
