"""The HTTP API (Django REST framework), for scripts and bots beside the WebSocket:

    GET  /api/rooms/                          the rooms the caller may enter
    GET  /api/rooms/<slug>/messages/          history: ?before=<seq> | ?after=<seq> | ?around=<id>, &limit=<1..100>
    GET  /api/rooms/<slug>/online/            who is online: ?after=<username>&limit=<1..1000> (chat.api.presence)
    GET  /api/users/?q=<prefix>               active people whose username starts so (for @mentions)
    GET  /api/search/?q=<text>                messages containing it, newest first: &room= &author= &before=<id> &limit=<1..50> (chat.api.search)
    POST /api/rooms/<slug>/messages/          {"body": ..., "client_id": ..., "reply_to": ..., "attachments": [...]} -> 201
    POST /api/rooms/<slug>/uploads/           multipart `file` -> 201 with the upload (chat.api.files)
    GET  /api/rooms/<slug>/messages/<id>/replies/    a thread: its first message and a page of replies
    POST, DELETE /api/rooms/<slug>/messages/<id>/reactions/    {"emoji": ...} -> the message
    GET  /api/direct/                         the caller's direct conversations
    POST /api/direct/                         {"users": [...]} -> the conversation of those people and the caller
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
    DirectCreateSerializer,
    DirectListSerializer,
    DirectSerializer,
    ErrorSerializer,
    HistoryQuerySerializer,
    MessageCreateSerializer,
    MessagePageSerializer,
    MessageSerializer,
    ReactionSerializer,
    RoomHistoryQuerySerializer,
    RoomListSerializer,
    ThreadPageSerializer,
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


SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The room's slug.")
MESSAGE_ID = OpenApiParameter("message_id", int, OpenApiParameter.PATH, description="The message's id.")


class RoomMessagesView(APIView):
    @extend_schema(
        summary="A page of a room's history, oldest first",
        parameters=[RoomHistoryQuerySerializer],
        responses={200: MessagePageSerializer, **ERRORS},
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        query = RoomHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = selectors.room_get_for(slug=slug, user=request.user)
        limit = query.validated_data["limit"]
        if "around" in query.validated_data:
            messages, has_more, has_more_after = selectors.messages_around(
                room=room, message_id=query.validated_data["around"], limit=limit
            )
            return Response({"messages": messages, "has_more": has_more, "has_more_after": has_more_after})
        if "after" in query.validated_data:
            after = query.validated_data["after"]
            messages, has_more_after = selectors.messages_after(room=room, after=after, limit=limit)
            return Response({"messages": messages, "has_more": after > 0, "has_more_after": has_more_after})
        messages, has_more = selectors.messages_before(
            room=room, before=query.validated_data.get("before"), limit=limit
        )
        return Response({"messages": messages, "has_more": has_more})

    @extend_schema(
        summary="Post a message (stored, numbered and broadcast like one sent on the socket)",
        request=MessageCreateSerializer,
        responses={201: MessageSerializer, **ERRORS},
        parameters=[SLUG],
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
            reply_to=data.validated_data.get("reply_to"),
            attachments=data.validated_data.get("attachments") or [],
        )
        # A retry with the same client_id gets the first answer again (201 and the same message),
        # as idempotency keys work elsewhere: the caller cannot tell a retry from a first success.
        return Response(message, status=status.HTTP_201_CREATED)


class ThreadView(APIView):
    @extend_schema(
        summary="A thread: its first message and a page of its replies, oldest first",
        parameters=[SLUG, MESSAGE_ID, HistoryQuerySerializer],
        responses={200: ThreadPageSerializer, **ERRORS},
    )
    def get(self, request: AuthenticatedRequest, slug: str, message_id: int) -> Response:
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = selectors.room_get_for(slug=slug, user=request.user)
        root, messages, has_more = selectors.thread_page(
            room=room,
            root_id=message_id,
            before=query.validated_data.get("before"),
            limit=query.validated_data["limit"],
        )
        return Response({"root": root, "messages": messages, "has_more": has_more})


class ReactionsView(APIView):
    """Your reaction on a message, added or removed: the message comes back in its new state. Adding
    one you already made, or removing one you did not, changes nothing and is not an error."""

    def _set(self, request: AuthenticatedRequest, slug: str, message_id: int, *, on: bool) -> Response:
        data = request.data if request.data else request.query_params
        reaction = ReactionSerializer(data=data)
        reaction.is_valid(raise_exception=True)
        room = selectors.room_get_for(slug=slug, user=request.user)
        message, _changed = services.reaction_set(
            room=room, user=request.user, message_id=message_id, emoji=reaction.validated_data["emoji"], on=on
        )
        return Response(message)

    @extend_schema(
        summary="Add your reaction",
        parameters=[SLUG, MESSAGE_ID],
        request=ReactionSerializer,
        responses={200: MessageSerializer, **ERRORS},
    )
    def post(self, request: AuthenticatedRequest, slug: str, message_id: int) -> Response:
        return self._set(request, slug, message_id, on=True)

    @extend_schema(
        summary="Remove your reaction (the emoji in a JSON body, or as ?emoji=)",
        parameters=[SLUG, MESSAGE_ID, OpenApiParameter("emoji", str, required=False)],
        request=ReactionSerializer,
        responses={200: MessageSerializer, **ERRORS},
    )
    def delete(self, request: AuthenticatedRequest, slug: str, message_id: int) -> Response:
        return self._set(request, slug, message_id, on=False)


class DirectView(APIView):
    @extend_schema(
        summary="Your direct conversations, the latest active first",
        responses={200: DirectListSerializer, 401: ErrorSerializer, 429: ErrorSerializer},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        conversations = [
            {
                "room": summary.slug,
                "info": {
                    "slug": summary.slug,
                    "name": summary.name,
                    "topic": "",
                    "private": True,
                    "kind": summary.kind,
                    "members": list(summary.members),
                },
                "last_seq": summary.last_seq,
                "unread": summary.unread,
                "last_message_at": summary.last_message_at,
                "mentions": summary.mentions,
                "notify": summary.notify,
            }
            for summary in selectors.direct_list_for(user=request.user)
        ]
        return Response(DirectListSerializer({"conversations": conversations}).data)

    @extend_schema(
        summary="Open the direct conversation of these people and you (made the first time: 201)",
        request=DirectCreateSerializer,
        responses={200: DirectSerializer, 201: DirectSerializer, **ERRORS},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        data = DirectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        room, created = services.direct_open(user=request.user, usernames=data.validated_data["users"])
        info = selectors.room_info(room=room, viewer=request.user.username)
        return Response(
            {"room": room.slug, "info": info}, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other path under /api/ (a slug with a slash in it, say): a JSON 404, like the API's
    own refusals, instead of the HTML page."""
    return JsonResponse({"code": ErrorCode.NOT_FOUND, "detail": "There is no such API path."}, status=404)
