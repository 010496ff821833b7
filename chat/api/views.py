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

from django.contrib.auth.models import User
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.api.serializers import (
    ERRORS,
    ErrorSerializer,
    HistoryQuerySerializer,
    MessageCreateSerializer,
    MessagePageSerializer,
    MessageSerializer,
    RoomListSerializer,
)
from chat.errors import ErrorCode


class AuthenticatedRequest(Request):
    """What the API's views get: IsAuthenticated (settings.REST_FRAMEWORK) lets no other through."""

    user: User


class RoomListView(APIView):
    @extend_schema(
        summary="The rooms the caller may enter",
        responses={200: RoomListSerializer, 401: ErrorSerializer, 429: ErrorSerializer},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        rooms = selectors.room_list_for(user=request.user)
        return Response(RoomListSerializer({"rooms": [vars(room) for room in rooms]}).data)


class RoomMessagesView(APIView):
    @extend_schema(
        summary="A page of a room's history, oldest first",
        parameters=[HistoryQuerySerializer],
        responses={200: MessagePageSerializer, **ERRORS},
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
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
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
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


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other path under /api/ (a slug with a slash in it, say): a JSON 404, like the API's
    own refusals, instead of the HTML page."""
    return JsonResponse({"code": ErrorCode.NOT_FOUND, "detail": "There is no such API path."}, status=404)
