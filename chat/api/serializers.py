"""The API's shapes: requests are validated with these, and the OpenAPI description is generated
from them."""

from django.conf import settings
from rest_framework import serializers

from chat.api.exceptions import HTTP_STATUS
from chat.errors import ErrorCode
from chat.models import MAX_CLIENT_ID_LENGTH
from chat.realtime.protocol import HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, MAX_SEQ


class ErrorSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=[*HTTP_STATUS, ErrorCode.UNAUTHORIZED])
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


class StringOnly(serializers.CharField):
    """DRF's text fields turn numbers and booleans into text; the socket refuses them as the
    wrong type, and so does the API."""

    def to_internal_value(self, data: object) -> str:
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
