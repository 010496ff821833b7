"""GET /api/rooms/<slug>/online/: who is online in a room, a sorted page at a time (as the
socket's `online` frame), for the people who may read the room."""

from asgiref.sync import async_to_sync
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors
from chat.api.serializers import ERRORS
from chat.api.views import AuthenticatedRequest
from chat.realtime.presence import get_presence
from chat.realtime.protocol import MAX_USERNAME_LENGTH, ONLINE_DEFAULT_LIMIT, ONLINE_MAX_LIMIT


class OnlineQuerySerializer(serializers.Serializer):
    after = serializers.CharField(
        required=False,
        max_length=MAX_USERNAME_LENGTH,
        help_text="A username: the names after it (the last one of the previous page).",
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=ONLINE_MAX_LIMIT, default=ONLINE_DEFAULT_LIMIT
    )


class OnlinePageSerializer(serializers.Serializer):
    room = serializers.CharField(help_text="The room's slug.")
    users = serializers.ListField(child=serializers.CharField(), help_text="Usernames online, sorted.")
    has_more = serializers.BooleanField(help_text="More follow: ask again with after=<the last one>.")
    online = serializers.IntegerField(help_text="How many users are online in the room.")


async def _page(*, room_id: int, after: str | None, limit: int) -> tuple[list[str], bool, int]:
    presence = get_presence()
    users, has_more = await presence.page(room_id=room_id, after=after, limit=limit)
    return users, has_more, await presence.count(room_id=room_id)


class OnlineView(APIView):
    @extend_schema(
        summary="Who is online in the room: a page of usernames, sorted",
        parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH), OnlineQuerySerializer],
        responses={200: OnlinePageSerializer, **ERRORS},
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        query = OnlineQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = selectors.room_get_for(slug=slug, user=request.user)
        users, has_more, online = async_to_sync(_page)(
            room_id=room.pk, after=query.validated_data.get("after"), limit=query.validated_data["limit"]
        )
        return Response({"room": room.slug, "users": users, "has_more": has_more, "online": online})
