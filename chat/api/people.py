"""GET /api/users/?q=<prefix>: the people whose username starts with a prefix, for @mention
autocomplete (the page asks as someone types `@bo`)."""

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors
from chat.api.serializers import ERRORS

MAX_PREFIX_LENGTH = 150  # Django's username length


class UserLookupQuerySerializer(serializers.Serializer):
    # Any text is a prefix: one that no username starts with (a space, a NUL) finds nobody.
    q = serializers.CharField(
        max_length=MAX_PREFIX_LENGTH,
        trim_whitespace=False,
        help_text="The start of a username (any case).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["q"]
        field.validators = [v for v in field.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class UserSummarySerializer(serializers.Serializer):
    username = serializers.CharField()


class UserLookupSerializer(serializers.Serializer):
    users = UserSummarySerializer(
        many=True,
        help_text=f"Active accounts only, alphabetically, at most {selectors.MENTION_LOOKUP_LIMIT}.",
    )


class UserLookupView(APIView):
    @extend_schema(
        summary="People whose username starts with a prefix (for @mentions)",
        parameters=[UserLookupQuerySerializer],
        responses={200: UserLookupSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = UserLookupQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        prefix = query.validated_data["q"]
        names = [] if "\x00" in prefix else selectors.usernames_starting(prefix=prefix)  # no database stores a NUL
        return Response(UserLookupSerializer({"users": [{"username": name} for name in names]}).data)
