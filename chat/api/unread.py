"""The HTTP API's doors to unread state (chat.unread):

GET  /api/unread/                       every room and direct conversation of the sidebar, with its counts
GET  /api/rooms/<slug>/notify/          the caller's notification setting in a room
PUT  /api/rooms/<slug>/notify/          {"level": "all" | "mentions" | "mute"} -> the setting
"""

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, unread
from chat.api.serializers import ERRORS, NOTIFY_HELP, ErrorSerializer
from chat.models import NotifyLevel

SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The room's slug.")


class AuthenticatedRequest(Request):
    user: User


class NotifySerializer(serializers.Serializer):
    room = serializers.CharField(read_only=True)
    level = serializers.ChoiceField(choices=NotifyLevel.values, help_text=NOTIFY_HELP)


class RoomCountsSerializer(serializers.Serializer):
    room = serializers.CharField()
    kind = serializers.ChoiceField(choices=["room", "direct"])
    unread = serializers.IntegerField(
        help_text="Messages after the read marker, not counting the caller's own, deleted ones or thread replies."
    )
    mentions = serializers.IntegerField(
        help_text="Unread messages that mention the caller (in a direct conversation: every unread message, "
        "and mentions in its threads)."
    )
    last_seq = serializers.IntegerField()
    read = serializers.IntegerField(help_text="The caller's read marker (a seq).")
    notify = serializers.ChoiceField(choices=NotifyLevel.values, help_text=NOTIFY_HELP)


class UnreadSerializer(serializers.Serializer):
    rooms = RoomCountsSerializer(many=True)


class UnreadView(APIView):
    @extend_schema(
        summary="Unread and mention counts of every room and direct conversation the caller may enter",
        responses={200: UnreadSerializer, 401: ErrorSerializer, 429: ErrorSerializer},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        targets = unread.watch_targets(user=request.user, slugs=None)
        rooms = unread.room_counts(user=request.user, room_ids=list(targets))
        return Response(UnreadSerializer({"rooms": rooms}).data)


class NotifyView(APIView):
    @extend_schema(
        summary="Your notification setting in a room", parameters=[SLUG], responses={200: NotifySerializer, **ERRORS}
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        room = selectors.room_get_for(slug=slug, user=request.user)
        level = selectors.notify_levels(user=request.user, room_ids=[room.pk])[room.pk]
        return Response({"room": room.slug, "level": level})

    @extend_schema(
        summary="Set your notification setting in a room: all, mentions (mentions and direct messages only) or mute",
        parameters=[SLUG],
        request=NotifySerializer,
        responses={200: NotifySerializer, **ERRORS},
    )
    def put(self, request: AuthenticatedRequest, slug: str) -> Response:
        data = NotifySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        room = selectors.room_get_for(slug=slug, user=request.user)
        level = unread.notify_set(user=request.user, room=room, level=data.validated_data["level"])
        return Response({"room": room.slug, "level": level})
