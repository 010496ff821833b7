"""Reads. Keyword-only, typed; each returns plain data or models and never writes."""

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import User
from django.contrib.sessions.backends import db as db_sessions
from django.contrib.sessions.backends.base import SessionBase
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from chat.errors import ChatError, ErrorCode
from chat.models import MAX_SLUG_LENGTH, PRIVATE_ACCESS, ApiToken, Ban, Membership, Message, Room

DELETED_AUTHOR = "[deleted]"
_MESSAGE_COLUMNS = ("id", "seq", "body", "created_at", "edited_at", "client_id", "deleted", "author__username")


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_wire(row: dict[str, Any], *, room_slug: str) -> dict[str, Any]:
    """A message as the protocol shows it. A deleted message keeps its seq (so clients see no
    gap) and loses its body: `deleted: true` is an addition to the contract."""
    wire = {
        "id": row["id"],
        "seq": row["seq"],
        "room": room_slug,
        "author": row["author__username"] or DELETED_AUTHOR,
        "body": "" if row["deleted"] else row["body"],
        "created_at": iso_utc(row["created_at"]),
        "edited_at": iso_utc(row["edited_at"]) if row["edited_at"] else None,
        "client_id": row["client_id"],
    }
    if row["deleted"]:
        wire["deleted"] = True
    return wire


def message_to_wire(message: Message, *, room_slug: str) -> dict[str, Any]:
    author = message.author if message.author_id else None
    return message_wire(
        {
            "id": message.id,
            "seq": message.seq,
            "body": message.body,
            "created_at": message.created_at,
            "edited_at": message.edited_at,
            "client_id": message.client_id,
            "deleted": message.deleted,
            "author__username": author.username if author is not None else None,
        },
        room_slug=room_slug,
    )


def _rows(queryset: QuerySet[Message], *, room_slug: str) -> list[dict[str, Any]]:
    return [message_wire(row, room_slug=room_slug) for row in queryset.values(*_MESSAGE_COLUMNS)]


def last_read_seq(*, room: Room, user: User) -> int:
    """The user's read marker in a room (0 before they ever joined it)."""
    seq = Membership.objects.filter(room=room, user=user).values_list("last_read_seq", flat=True).first()
    return seq or 0


def room_info(*, room: Room) -> dict[str, Any]:
    return {"slug": room.slug, "name": room.name, "topic": room.topic, "private": room.private}


def room_access_check(*, room: Room, user: User) -> None:
    """Raise the ChatError that keeps `user` out of `room`, if any."""
    if room.archived:
        raise ChatError(ErrorCode.NOT_FOUND, f"No room '{room.slug}'.", room=room.slug)
    if room.private and not Membership.objects.filter(PRIVATE_ACCESS, room=room, user=user).exists():
        raise ChatError(
            ErrorCode.FORBIDDEN, f"'{room.slug}' is a private room you are not a member of.", room=room.slug
        )
    if Ban.objects.filter(room=room, user=user).exists():
        raise ChatError(ErrorCode.FORBIDDEN, f"You are banned from '{room.slug}'.", room=room.slug)


class RoomClosed:
    """Why a socket leaves a room it is in (the `reason` of a `room_closed` frame)."""

    ARCHIVED = "archived"
    DELETED = "deleted"
    REMOVED = "removed"
    BANNED = "banned"


def rooms_access_lost(*, pairs: set[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """Of the (user id, room id) pairs given, those whose user may no longer be in the room, with
    the reason: the room was deleted or archived, the user was banned, or the room is private and
    the user is not invited to it (any more). At most three queries, however many pairs."""
    if not pairs:
        return {}
    room_ids = {room_id for _, room_id in pairs}
    user_ids = {user_id for user_id, _ in pairs}
    rooms = {
        pk: (archived, private)
        for pk, archived, private in Room.objects.filter(pk__in=room_ids).values_list("pk", "archived", "private")
    }
    banned = set(Ban.objects.filter(room_id__in=room_ids, user_id__in=user_ids).values_list("user_id", "room_id"))
    private_ids = {pk for pk, (_, private) in rooms.items() if private}
    invited = (
        set(
            Membership.objects.filter(PRIVATE_ACCESS, room_id__in=private_ids, user_id__in=user_ids).values_list(
                "user_id", "room_id"
            )
        )
        if private_ids
        else set()
    )
    lost = {}
    for pair in pairs:
        user_id, room_id = pair
        room = rooms.get(room_id)
        if room is None:
            lost[pair] = RoomClosed.DELETED
        elif room[0]:
            lost[pair] = RoomClosed.ARCHIVED
        elif pair in banned:
            lost[pair] = RoomClosed.BANNED
        elif room[1] and pair not in invited:
            lost[pair] = RoomClosed.REMOVED
    return lost


def room_get_for(*, slug: str, user: User) -> Room:
    """The room `user` may enter, or ChatError(not_found | forbidden). A private room a user
    may not see is reported as forbidden to members of nothing: the contract names that code."""
    if len(slug) > MAX_SLUG_LENGTH or "\x00" in slug:
        # Never stored (and PostgreSQL refuses NUL in a query): not found, without asking.
        raise ChatError(ErrorCode.NOT_FOUND, "No such room.", room=None)
    try:
        room = Room.objects.get(slug=slug)
    except Room.DoesNotExist:
        raise ChatError(ErrorCode.NOT_FOUND, f"No room '{slug}'.", room=slug) from None
    room_access_check(room=room, user=user)
    return room


@dataclass(frozen=True)
class RoomSummary:
    slug: str
    name: str
    topic: str
    private: bool
    last_seq: int
    unread: int


def room_list_for(*, user: User) -> list[RoomSummary]:
    """Rooms `user` may enter (public ones, and private ones they belong to), not archived, not
    banned from, with the number of messages they have not read."""
    rooms = (
        Room.objects.filter(archived=False)
        .filter(Q(private=False) | Q(pk__in=Membership.objects.filter(PRIVATE_ACCESS, user=user).values("room_id")))
        .exclude(bans__user=user)
        .distinct()
        .order_by("name")
    )
    read = dict(Membership.objects.filter(user=user).values_list("room_id", "last_read_seq"))
    return [
        RoomSummary(
            slug=room.slug,
            name=room.name,
            topic=room.topic,
            private=room.private,
            last_seq=room.last_seq,
            unread=max(room.last_seq - read.get(room.pk, 0), 0),
        )
        for room in rooms
    ]


def messages_latest(*, room: Room, limit: int = 50) -> list[dict[str, Any]]:
    rows = _rows(Message.objects.filter(room=room).order_by("-seq")[:limit], room_slug=room.slug)
    rows.reverse()
    return rows


def messages_since(*, room: Room, since: int, limit: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Messages with seq > since, oldest first, at most `limit`; and whether that was all."""
    limit = limit or settings.CHAT_CATCHUP_LIMIT
    rows = _rows(Message.objects.filter(room=room, seq__gt=since).order_by("seq")[: limit + 1], room_slug=room.slug)
    return rows[:limit], len(rows) <= limit


def messages_before(*, room: Room, before: int | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` messages just before seq `before` (the newest if None), oldest first."""
    queryset = Message.objects.filter(room=room)
    if before is not None:
        queryset = queryset.filter(seq__lt=before)
    rows = _rows(queryset.order_by("-seq")[: limit + 1], room_slug=room.slug)
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return rows, has_more


def room_last_seqs(*, room_ids: list[int]) -> dict[int, int]:
    return dict(Room.objects.filter(pk__in=room_ids).values_list("pk", "last_seq"))


class SessionState:
    VALID = "valid"
    ENDED = "ended"  # logged out, expired, password changed, user deleted
    INACTIVE = "inactive"


def session_state(*, session: SessionBase, user_id: int | None = None) -> str:
    """Whether a stored session still authenticates its user, checked the way Django's
    `get_user` checks it: the session exists, names the user, and carries the current hash."""
    key = session.session_key
    if not key:  # never saved: nothing can authenticate
        return SessionState.ENDED
    return session_states(session_keys={key: user_id})[key]


def session_states(*, session_keys: dict[str, int | None]) -> dict[str, str]:
    """`session_state` for many sessions at once ({session key: expected user id or None}),
    in a few queries with the database session backend."""
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    data = _load_sessions(store_class, [key for key in session_keys if key])
    User = get_user_model()
    user_ids = {User._meta.pk.to_python(d[SESSION_KEY]) for d in data.values() if SESSION_KEY in d}
    users = {user.pk: user for user in User._default_manager.filter(pk__in=user_ids)}
    states = {}
    for key, expected_id in session_keys.items():
        session = data.get(key, {})
        stored_id = session.get(SESSION_KEY)
        user = users.get(User._meta.pk.to_python(stored_id)) if stored_id is not None else None
        if user is None or (expected_id is not None and user.pk != expected_id):
            states[key] = SessionState.ENDED
        elif not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
            states[key] = SessionState.ENDED
        else:
            states[key] = SessionState.VALID if user.is_active else SessionState.INACTIVE
    return states


def _load_sessions(store_class: type[SessionBase], keys: list[str]) -> dict[str, dict[str, Any]]:
    if issubclass(store_class, db_sessions.SessionStore):
        model = store_class.get_model_class()
        loaded = {}
        for start in range(0, len(keys), 500):
            rows = model.objects.filter(session_key__in=keys[start : start + 500], expire_date__gt=timezone.now())
            for row in rows:
                loaded[row.session_key] = store_class().decode(row.session_data)
        return loaded
    return {key: store_class(session_key=key).load() for key in keys}  # an empty dict when gone


def tokens_valid(*, token_ids: set[int]) -> set[int]:
    """Which of these tokens still authenticate (not revoked, not expired, user active)."""
    return set(
        ApiToken.objects.filter(pk__in=token_ids, revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .values_list("pk", flat=True)
    )
