"""GET /api/rooms/<slug>/online/: who is online in a room, a sorted page at a time (as the
socket's `online` frame), for the people who may read the room.

The view is DRF's, so sync: under Daphne it runs in the worker's one sync thread, which every
socket's database work shares. Its Redis calls are therefore given REDIS_TIMEOUT seconds (not the
client's 5 s); past that, or with Redis away, it answers 503 at once."""

import asyncio
import logging

from asgiref.sync import async_to_sync
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from redis.exceptions import RedisError
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors
from chat.api.serializers import ERRORS, ErrorSerializer, StrictRegexField
from chat.api.views import AuthenticatedRequest
from chat.errors import ErrorCode
from chat.realtime.presence import get_presence
from chat.realtime.protocol import MAX_USERNAME_LENGTH, ONLINE_DEFAULT_LIMIT, ONLINE_MAX_LIMIT

logger = logging.getLogger(__name__)

REDIS_TIMEOUT = 1.0  # seconds the view waits for presence (Redis) before answering 503
UNAVAILABLE = "Who is online cannot be read right now; try again in a moment."


class OnlineQuerySerializer(serializers.Serializer):
    after = StrictRegexField(
        r"^[^\x00]*$",  # the schema says what DRF refuses: no NUL
        required=False,
        allow_blank=True,  # blank: from the first name, as when it is left out
        trim_whitespace=False,  # a name is compared as sent; trimming a tab would turn it into a blank
        max_length=MAX_USERNAME_LENGTH,
        error_messages={"invalid": "The username contains a NUL character."},
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
    async with asyncio.timeout(REDIS_TIMEOUT):
        users, has_more = await presence.page(room_id=room_id, after=after, limit=limit)
        return users, has_more, await presence.count(room_id=room_id)


class OnlineView(APIView):
    @extend_schema(
        summary="Who is online in the room: a page of usernames, sorted",
        parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH), OnlineQuerySerializer],
        responses={
            200: OnlinePageSerializer,
            **ERRORS,
            503: OpenApiResponse(ErrorSerializer, description="Presence (Redis) did not answer in time."),
        },
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        query = OnlineQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = selectors.room_get_for(slug=slug, user=request.user)
        try:
            users, has_more, online = async_to_sync(_page)(
                room_id=room.pk, after=query.validated_data.get("after") or None, limit=query.validated_data["limit"]
            )
        except (TimeoutError, RedisError, OSError) as error:
            logger.warning("Online list of room %s: presence did not answer: %r", room.slug, error)
            return Response(
                {"code": ErrorCode.INTERNAL, "detail": UNAVAILABLE},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": "1"},
            )
        return Response({"room": room.slug, "users": users, "has_more": has_more, "online": online})
