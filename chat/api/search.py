"""GET /api/search/: messages containing a text, in the rooms the caller may read, newest first
(chat.search; docs/search.md). Searches cost more than other reads: besides the API's rate per
user, each user gets CHAT_SEARCH_PER_MINUTE of them a minute (the `search` throttle scope)."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from chat.api.serializers import ERRORS, MessageSerializer, StrictRegexField
from chat.api.views import AuthenticatedRequest
from chat.models import MAX_SLUG_LENGTH
from chat.realtime.protocol import MAX_SEQ, MAX_USERNAME_LENGTH
from chat.search import MAX_QUERY_LENGTH, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT, search_messages

NO_NUL = r"^[^\x00]*$"


class SearchQuerySerializer(serializers.Serializer):
    q = StrictRegexField(
        # Something besides spaces (they are trimmed), and no NUL anywhere: as a message's body.
        r"^[^\x00]*[^\s\x00][^\x00]*$",
        max_length=MAX_QUERY_LENGTH,
        error_messages={"invalid": _("Give the text to search for (not only spaces, no NUL character).")},
        help_text=(
            f"The text to find: 1 to {MAX_QUERY_LENGTH} characters (spaces around it are trimmed), any case,"
            " anywhere in a message (a substring, in any script)."
        ),
    )
    # As the schema says: an empty value is refused, and one of spaces is taken as written (no such
    # room: 404; no such person: no messages) rather than trimmed into an empty one.
    room = StrictRegexField(
        NO_NUL,
        required=False,
        min_length=1,
        trim_whitespace=False,
        max_length=MAX_SLUG_LENGTH,
        help_text="Only this room (its slug).",
    )
    author = StrictRegexField(
        NO_NUL,
        required=False,
        min_length=1,
        trim_whitespace=False,
        max_length=MAX_USERNAME_LENGTH,
        help_text="Only this person's messages (a username).",
    )
    before = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_SEQ, help_text="A message id: only older messages (the next page)."
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=SEARCH_MAX_LIMIT, default=SEARCH_DEFAULT_LIMIT
    )


class SearchResultSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True, help_text="Newest first, each with its room's slug in `room`.")
    has_more = serializers.BooleanField(help_text="Older matches exist: ask again with before=<the last id>.")


class SearchView(APIView):
    throttle_classes = [UserRateThrottle, ScopedRateThrottle]
    throttle_scope = "search"

    @extend_schema(
        summary="Search messages in the rooms the caller may read, newest first",
        parameters=[SearchQuerySerializer],
        responses={200: SearchResultSerializer, **ERRORS},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        query = SearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        messages, has_more = search_messages(
            user=request.user,
            q=data["q"],
            room=data.get("room"),
            author=data.get("author"),
            before=data.get("before"),
            limit=data["limit"],
        )
        return Response({"messages": messages, "has_more": has_more})
