from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

# Field lengths that the wire protocol, the forms and the API check as well (chat.realtime.protocol).
MAX_SLUG_LENGTH = 50
MAX_ROOM_NAME_LENGTH = 100
MAX_ROOM_TOPIC_LENGTH = 300
MAX_CLIENT_ID_LENGTH = 64
MAX_EMOJI_LENGTH = 32  # one emoji, however many code points (a family, a flag with a skin tone)
MAX_REACTIONS_PER_MESSAGE = 20  # distinct emoji on one message
MAX_DIRECT_MEMBERS = 9  # people in one direct conversation, its starter included

slug_validator = RegexValidator(
    rf"^[a-z0-9](?:[a-z0-9-]{{0,{MAX_SLUG_LENGTH - 2}}}[a-z0-9])?$",
    f"Use 1 to {MAX_SLUG_LENGTH} lowercase letters, digits or hyphens, not starting or ending with a hyphen.",
)
# /rooms/new/ is the page that creates rooms; "dm-..." addresses belong to direct conversations.
reserved_slug_validator = RegexValidator(
    r"^(new$|dm-)", "'new' and addresses that start with 'dm-' are reserved: choose another.", inverse_match=True
)


class Room(models.Model):
    class Kind(models.TextChoices):
        ROOM = "room", "Room"
        DIRECT = "direct", "Direct conversation"

    slug = models.CharField(
        max_length=MAX_SLUG_LENGTH, unique=True, validators=[slug_validator, reserved_slug_validator]
    )
    name = models.CharField(max_length=MAX_ROOM_NAME_LENGTH)
    topic = models.CharField(max_length=MAX_ROOM_TOPIC_LENGTH, blank=True)
    private = models.BooleanField(default=False, help_text="Only members may see and join it.")
    archived = models.BooleanField(default=False, help_text="Read-only and hidden; sockets are closed.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The seq of the newest message: incremented in the same transaction that stores a message.
    last_seq = models.PositiveBigIntegerField(default=0, editable=False)
    # The rev of the latest change to any of its messages (a new one, an edit, a deletion, a
    # reaction, a thread's summary), taken in the same transaction as the change.
    last_rev = models.PositiveBigIntegerField(default=0, editable=False)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.ROOM, editable=False)
    # A direct conversation's members, as their sorted ids ("3,7,12"): the same people always meet
    # in the same conversation. NULL for ordinary rooms.
    direct_key = models.CharField(max_length=200, unique=True, null=True, blank=True, editable=False)  # noqa: DJ001

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_direct(self) -> bool:
        return self.kind == self.Kind.DIRECT


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MODERATOR = "moderator", "Moderator"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    # Membership also keeps read markers, so everyone who ever opened a public room has one.
    # Only invited members and moderators may enter the room while it is private.
    invited = models.BooleanField(
        default=False,
        help_text="May enter the room while it is private. Joining a public room does not invite.",
    )
    joined_at = models.DateTimeField(auto_now_add=True)
    last_read_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"

    @property
    def grants_private_access(self) -> bool:
        return self.invited or self.role == self.Role.MODERATOR


# The memberships that let their user into a private room (see Membership.invited).
PRIVATE_ACCESS = Q(invited=True) | Q(role=Membership.Role.MODERATOR)


class Ban(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bans")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bans")
    reason = models.CharField(max_length=300, blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="ban_unique")]

    def __str__(self) -> str:
        return f"{self.user} banned from {self.room}"


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="messages")
    body = models.TextField()
    seq = models.PositiveBigIntegerField()
    # NULL, not "": the idempotency constraint below applies only to messages that carry one.
    client_id = models.CharField(max_length=MAX_CLIENT_ID_LENGTH, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    edited_at = models.DateTimeField(null=True, blank=True, editable=False)
    deleted = models.BooleanField(default=False)
    # The room's rev at this message's latest change (chat.services takes it with the change).
    rev = models.PositiveBigIntegerField(default=0, editable=False)
    # The body as safe HTML (chat.formatting), made when it is stored or edited.
    html = models.TextField(blank=True, editable=False)
    # A reply names its thread's first message; replies of replies are not allowed.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies", editable=False
    )
    # A thread's summary, on its first message, kept with each reply stored or deleted.
    reply_count = models.PositiveIntegerField(default=0, editable=False)
    repliers = models.JSONField(default=list, blank=True, editable=False)  # usernames, newest first
    last_reply_at = models.DateTimeField(null=True, blank=True, editable=False)
    # [[emoji, [username, ...]], ...] in the order of each emoji's first use, rebuilt from Reaction
    # rows in the transaction that changes them, so a message goes on the wire without a query per
    # message. A list, not an object: PostgreSQL's jsonb does not keep the order of an object's keys.
    reactions = models.JSONField(default=list, blank=True, editable=False)
    # The files sent with it, exactly as on the wire (chat.files.attachment_wire), written in the
    # transaction that stores the message and emptied when it is deleted: no query per message.
    attachments = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        ordering = ["room", "seq"]
        indexes = [models.Index(fields=["room", "rev"], name="message_room_rev")]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq_unique"),
            models.UniqueConstraint(
                fields=["room", "author", "client_id"],
                condition=Q(client_id__isnull=False),
                name="message_client_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} in {self.room_id}"


class Reaction(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reaction_set")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions")
    emoji = models.CharField(max_length=MAX_EMOJI_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["message", "user", "emoji"], name="reaction_unique")]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user} on {self.message}"


class ApiToken(models.Model):
    """A bearer token for bots and scripts. Only a SHA-256 hash of the token is stored: the
    token itself is shown once, when it is made (tokens are 256 random bits, so a fast hash is
    enough; nothing can be brute-forced from it)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What it is for, e.g. 'deploy bot'.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="The token's first characters.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class EmailPreference(models.Model):
    """Whether a user gets notification emails. Its row is also what a notification run locks,
    so that of several workers looking at once only one writes to this user (chat/notifications.py)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_preference")
    notify = models.BooleanField(
        default=True, help_text="Email me when a direct message or a mention waits unread (chat.notifications)."
    )

    def __str__(self) -> str:
        return f"{self.user}: {'emails' if self.notify else 'no emails'}"


class EmailNotice(models.Model):
    """The newest message of a room a user has been emailed about: later runs email only what is
    newer, so each waiting message is in one email at most."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()
    sent_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="email_notice_unique")]

    def __str__(self) -> str:
        return f"{self.user} emailed up to #{self.seq} in {self.room_id}"


class Mention(models.Model):
    """`user` was named (@username) in `message`, a message of `room` with seq `seq` (kept here so
    "mentions of this user after their read marker" is one index range, without the messages)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mentions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mentions")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["user", "room", "seq"], name="mention_user_room_seq")]
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="mention_unique")]

    def __str__(self) -> str:
        return f"@{self.user} in {self.message}"


class NotifyLevel(models.TextChoices):
    """Which messages of a room notify a user (a desktop notification, and the badge's emphasis)."""

    ALL = "all", "All messages"
    MENTIONS = "mentions", "Mentions and direct messages only"
    MUTE = "mute", "Nothing (muted)"


class RoomNotify(models.Model):
    """A user's notification setting for one room; without a row it is NotifyLevel.ALL."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_notify")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    level = models.CharField(max_length=8, choices=NotifyLevel.choices, default=NotifyLevel.ALL)

    class Meta:
        verbose_name = "room notification setting"
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="room_notify_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}: {self.level}"


MAX_UPLOAD_NAME_LENGTH = 255


class Upload(models.Model):
    """A file uploaded to a room (chat/files.py). Pending until a message takes it
    (`message` set in that message's transaction); pending ones are purged after
    CHAT_UPLOAD_PENDING_HOURS. Its storage files go when the row goes (chat.receivers)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="uploads")
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads"
    )
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads")
    name = models.CharField(max_length=MAX_UPLOAD_NAME_LENGTH, help_text="The original file name, sanitised.")
    size = models.PositiveBigIntegerField(help_text="Bytes, as stored.")
    content_type = models.CharField(max_length=100, help_text="Decided by the server from the content.")
    file = models.FileField(max_length=255)
    thumbnail = models.FileField(max_length=255, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.size} bytes) in {self.room_id}"
