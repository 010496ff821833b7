"""The API's shapes: requests are validated with these, and the OpenAPI description is generated
from them."""

from typing import Any

from django.conf import settings
from rest_framework import serializers

from chat.api.exceptions import HTTP_STATUS
from chat.errors import ErrorCode
from chat.models import MAX_CLIENT_ID_LENGTH, MAX_DIRECT_MEMBERS, MAX_EMOJI_LENGTH, NotifyLevel
from chat.realtime.protocol import HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, MAX_ATTACHMENT_IDS, MAX_SEQ


class ErrorSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=[*HTTP_STATUS, ErrorCode.UNAUTHORIZED])
    detail = serializers.CharField()


class AttachmentSerializer(serializers.Serializer):
    """An uploaded file: the answer to an upload, and each of a message's `attachments`."""

    id = serializers.IntegerField(help_text="Name it in a message's `attachments` to send it.")
    name = serializers.CharField(help_text="The file's name as sent, cleaned.")
    size = serializers.IntegerField(help_text="Bytes, as stored (an image is re-encoded without its metadata).")
    content_type = serializers.CharField(help_text="What the server found the content to be.")
    url = serializers.CharField(help_text="Where to download it: /files/<id>/<name>, for those who may read the room.")
    thumbnail_url = serializers.CharField(allow_null=True, help_text="An image's thumbnail; null for other files.")
    width = serializers.IntegerField(allow_null=True, help_text="An image's width in pixels; null otherwise.")
    height = serializers.IntegerField(allow_null=True, help_text="An image's height in pixels; null otherwise.")


class UploadRequestSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text=f"The file (multipart field `file`), at most {settings.CHAT_UPLOAD_MAX_BYTES} bytes."
    )


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    seq = serializers.IntegerField(help_text="The message's position in its room: 1, 2, 3... without gaps.")
    rev = serializers.IntegerField(help_text="The room's change counter at this message's latest change.")
    room = serializers.CharField()
    author = serializers.CharField()
    body = serializers.CharField(help_text="The text as written (Markdown); empty for a deleted message.")
    html = serializers.CharField(help_text="The text formatted as safe HTML; empty for a deleted message.")
    created_at = serializers.DateTimeField()
    edited_at = serializers.DateTimeField(allow_null=True)
    client_id = serializers.CharField(allow_null=True)
    reply_to = serializers.IntegerField(allow_null=True, help_text="A reply's thread: its first message's id.")
    reply_count = serializers.IntegerField(help_text="Replies in the thread this message starts.")
    repliers = serializers.ListField(child=serializers.CharField(), help_text="The latest repliers, newest first.")
    last_reply_at = serializers.DateTimeField(allow_null=True)
    reactions = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="{emoji: [username, ...]}, in the order people reacted.",
    )
    attachments = AttachmentSerializer(many=True, help_text="Files sent with it; empty on a deleted message.")
    deleted = serializers.BooleanField(required=False, help_text="Present (true) on a deleted message.")


class ThreadPageSerializer(serializers.Serializer):
    root = MessageSerializer(help_text="The thread's first message.")
    messages = MessageSerializer(many=True, help_text="Replies, oldest first.")
    has_more = serializers.BooleanField(help_text="Older replies exist: ask again with before=<first seq>.")


class MessagePageSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True, help_text="Oldest first.")
    has_more = serializers.BooleanField(help_text="Older messages exist: ask again with before=<first seq>.")
    has_more_after = serializers.BooleanField(
        required=False,
        help_text="With after or around only: newer messages exist: ask again with after=<last seq>.",
    )


class HistoryQuerySerializer(serializers.Serializer):
    before = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEQ)
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=HISTORY_MAX_LIMIT, default=HISTORY_DEFAULT_LIMIT
    )


class RoomHistoryQuerySerializer(HistoryQuerySerializer):
    """A room's history also pages forwards, and opens around a message (a link to it)."""

    after = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_SEQ, help_text="A seq: the messages just after it."
    )
    around = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_SEQ,
        help_text="A message id: that message with the messages just before and after it (a link to a message).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if sum(name in attrs for name in ("before", "after", "around")) > 1:
            raise serializers.ValidationError("Give at most one of 'before', 'after' and 'around'.")
        return attrs


class StringOnly(serializers.CharField):
    """DRF's text fields turn numbers and booleans into text; the socket refuses them as the
    wrong type, and so does the API."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictRegexField(StringOnly, serializers.RegexField):
    """A RegexField that refuses what is not a string, as StringOnly does."""


class MessageCreateSerializer(serializers.Serializer):
    body = StrictRegexField(
        r"^[^\x00]*$",  # no NUL character anywhere; blank only with attachments (validate)
        max_length=settings.CHAT_MAX_BODY,
        trim_whitespace=False,
        allow_blank=True,
        required=False,
        default="",
        error_messages={"invalid": "The message contains a NUL character."},
        help_text=f"The text, up to {settings.CHAT_MAX_BODY} characters; not only whitespace, unless files go with it.",
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
    reply_to = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_SEQ,
        help_text="Reply in the thread of this message (the id of a message in the room that is not a reply).",
    )
    attachments = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_SEQ),
        required=False,
        max_length=MAX_ATTACHMENT_IDS,
        help_text=(
            f"Ids of your uploads to this room (POST .../uploads/) to send with it, at most"
            f" {settings.CHAT_UPLOAD_MAX_FILES}; each goes with one message only."
        ),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("attachments") and not attrs.get("body", "").strip():
            raise serializers.ValidationError({"body": "The message is empty."})
        return attrs


class ReactionSerializer(serializers.Serializer):
    emoji = StrictRegexField(
        r"^[^\x00]*$", max_length=MAX_EMOJI_LENGTH, trim_whitespace=False, help_text="One emoji, such as 👍."
    )


class DirectCreateSerializer(serializers.Serializer):
    users = serializers.ListField(
        child=StrictRegexField(r"^[^\x00]+$", max_length=150, trim_whitespace=False),
        min_length=1,
        max_length=MAX_DIRECT_MEMBERS - 1,
        help_text=f"The other people's usernames (you are added): up to {MAX_DIRECT_MEMBERS - 1}.",
    )


class RoomInfoSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField(help_text="A direct conversation's is its other members' names.")
    topic = serializers.CharField()
    private = serializers.BooleanField()
    kind = serializers.ChoiceField(choices=["room", "direct"])
    members = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="A direct conversation's members."
    )


MENTIONS_HELP = (
    "Unread messages that mention the caller (in a direct conversation: every unread message, and"
    " mentions in its threads)."
)
NOTIFY_HELP = "The caller's notification setting here: all, mentions (mentions and direct messages only), mute."


class DirectSerializer(serializers.Serializer):
    room = serializers.CharField(help_text="The conversation's slug: join it, read and post as in any room.")
    info = RoomInfoSerializer()


class DirectSummarySerializer(serializers.Serializer):
    room = serializers.CharField()
    info = RoomInfoSerializer()
    last_seq = serializers.IntegerField()
    unread = serializers.IntegerField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    mentions = serializers.IntegerField(help_text=MENTIONS_HELP)
    notify = serializers.ChoiceField(choices=NotifyLevel.values, help_text=NOTIFY_HELP)


class DirectListSerializer(serializers.Serializer):
    conversations = DirectSummarySerializer(many=True, help_text="The latest active first.")


class RoomSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    topic = serializers.CharField()
    private = serializers.BooleanField()
    kind = serializers.ChoiceField(choices=["room", "direct"])
    last_seq = serializers.IntegerField(help_text="The seq of the newest message (0: none yet).")
    unread = serializers.IntegerField(
        help_text="Messages after the caller's read marker, not counting their own, deleted ones or thread replies."
    )
    mentions = serializers.IntegerField(help_text=MENTIONS_HELP)
    notify = serializers.ChoiceField(choices=NotifyLevel.values, help_text=NOTIFY_HELP)


class RoomListSerializer(serializers.Serializer):
    rooms = RoomSerializer(many=True)


ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 413, 429)}
