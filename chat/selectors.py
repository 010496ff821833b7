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
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from chat.errors import ChatError, ErrorCode
from chat.mentions import mention_counts
from chat.models import (
    MAX_SLUG_LENGTH,
    PRIVATE_ACCESS,
    ApiToken,
    Ban,
    Membership,
    Message,
    NotifyLevel,
    Room,
    RoomNotify,
)

DELETED_AUTHOR = "[deleted]"
_MESSAGE_COLUMNS = (
    "id",
    "seq",
    "rev",
    "body",
    "html",
    "created_at",
    "edited_at",
    "client_id",
    "deleted",
    "author__username",
    "reply_to_id",
    "reply_count",
    "repliers",
    "last_reply_at",
    "reactions",
    "attachments",
)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_wire(row: dict[str, Any], *, room_slug: str) -> dict[str, Any]:
    """A message as the protocol shows it. A deleted message keeps its seq (so clients see no
    gap) and loses its body: `deleted: true` is an addition to the contract."""
    deleted = row["deleted"]
    wire = {
        "id": row["id"],
        "seq": row["seq"],
        "rev": row["rev"],
        "room": room_slug,
        "author": row["author__username"] or DELETED_AUTHOR,
        "body": "" if deleted else row["body"],
        "html": "" if deleted else row["html"],
        "created_at": iso_utc(row["created_at"]),
        "edited_at": iso_utc(row["edited_at"]) if row["edited_at"] else None,
        "client_id": row["client_id"],
        "reply_to": row["reply_to_id"],
        "reply_count": row["reply_count"],
        "repliers": row["repliers"],
        "last_reply_at": iso_utc(row["last_reply_at"]) if row["last_reply_at"] else None,
        "reactions": {} if deleted else dict(row["reactions"]),
        "attachments": [] if deleted else row["attachments"],
    }
    if deleted:
        wire["deleted"] = True
    return wire


def message_to_wire(message: Message, *, room_slug: str) -> dict[str, Any]:
    author = message.author if message.author_id else None
    row = {column: getattr(message, column) for column in _MESSAGE_COLUMNS if "__" not in column}
    row["author__username"] = author.username if author is not None else None
    return message_wire(row, room_slug=room_slug)


def _rows(queryset: QuerySet[Message], *, room_slug: str) -> list[dict[str, Any]]:
    return [message_wire(row, room_slug=room_slug) for row in queryset.values(*_MESSAGE_COLUMNS)]


def last_read_seq(*, room: Room, user: User) -> int:
    """The user's read marker in a room (0 before they ever joined it)."""
    seq = Membership.objects.filter(room=room, user=user).values_list("last_read_seq", flat=True).first()
    return seq or 0


def room_info(*, room: Room, viewer: str | None = None, members: list[str] | None = None) -> dict[str, Any]:
    """The room as `joined.info` shows it. A direct conversation is named after its other members,
    as `viewer` (a username) sees it, and lists them all (`members`, read here when not given)."""
    info = {"slug": room.slug, "name": room.name, "topic": room.topic, "private": room.private, "kind": room.kind}
    if room.is_direct:
        if members is None:
            members = direct_members(room_ids=[room.pk]).get(room.pk, [])
        info["members"] = members
        info["name"] = direct_name(members=members, viewer=viewer)
    return info


def direct_members(*, room_ids: list[int]) -> dict[int, list[str]]:
    """The usernames of each direct conversation's members, sorted."""
    members: dict[int, list[str]] = {room_id: [] for room_id in room_ids}
    rows = Membership.objects.filter(room_id__in=room_ids).values_list("room_id", "user__username")
    for room_id, username in rows.order_by("user__username"):
        members[room_id].append(username)
    return members


def direct_name(*, members: list[str], viewer: str | None) -> str:
    """ "bob, carol" for alice; a conversation with nobody else left is named after its members."""
    others = [name for name in members if name != viewer]
    return ", ".join(others or members)


def room_access_check(*, room: Room, user: User) -> None:
    """Raise the ChatError that keeps `user` out of `room`, if any."""
    member, banned = True, False
    if not room.archived:
        member = not room.private or Membership.objects.filter(PRIVATE_ACCESS, room=room, user=user).exists()
        banned = member and Ban.objects.filter(room=room, user=user).exists()
    refusal = access_refusal(room=room, member=member, banned=banned)
    if refusal is not None:
        raise refusal


def access_refusal(*, room: Room, member: bool, banned: bool) -> ChatError | None:
    """The ChatError that keeps a user out of `room`, given whether they hold a private room's
    access (`member`) and are banned from it; None when they may be in it. Without a query: a
    caller that checks many users at once (chat.group_commit) reads both for all of them."""
    if room.archived:
        return ChatError(ErrorCode.NOT_FOUND, f"No room '{room.slug}'.", room=room.slug)
    if room.private and not member:
        if room.is_direct:
            return ChatError(ErrorCode.FORBIDDEN, "You are not in this direct conversation.", room=room.slug)
        return ChatError(
            ErrorCode.FORBIDDEN, f"'{room.slug}' is a private room you are not a member of.", room=room.slug
        )
    if banned:
        return ChatError(ErrorCode.FORBIDDEN, f"You are banned from '{room.slug}'.", room=room.slug)
    return None


class RoomClosed:
    """Why a socket leaves a room it is in (the `reason` of a `room_closed` frame)."""

    ARCHIVED = "archived"
    DELETED = "deleted"
    REMOVED = "removed"
    BANNED = "banned"
    LEFT = "left"  # the user left it for good (from another page, or the terminal)


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


def room_for_join(*, slug: str, user: User) -> tuple[Room, bool]:
    """`room_get_for` in one query: the room, with the user's ban and membership beside it; and
    whether the user is a member already. The room row carries its counters (`last_seq`,
    `last_rev`) as they were at this read."""
    if len(slug) > MAX_SLUG_LENGTH or "\x00" in slug:
        raise ChatError(ErrorCode.NOT_FOUND, "No such room.", room=None)
    mine = Membership.objects.filter(room=OuterRef("pk"), user=user)
    room = (
        Room.objects.filter(slug=slug)
        .annotate(
            banned=Exists(Ban.objects.filter(room=OuterRef("pk"), user=user)),
            invited=Exists(mine.filter(PRIVATE_ACCESS)),
            member=Exists(mine),
        )
        .first()
    )
    if room is None:
        raise ChatError(ErrorCode.NOT_FOUND, f"No room '{slug}'.", room=slug)
    # The checks of room_access_check, in its order, on what the query brought.
    if room.archived:
        raise ChatError(ErrorCode.NOT_FOUND, f"No room '{room.slug}'.", room=room.slug)
    if room.private and not room.invited:
        if room.is_direct:
            raise ChatError(ErrorCode.FORBIDDEN, "You are not in this direct conversation.", room=room.slug)
        raise ChatError(
            ErrorCode.FORBIDDEN, f"'{room.slug}' is a private room you are not a member of.", room=room.slug
        )
    if room.banned:
        raise ChatError(ErrorCode.FORBIDDEN, f"You are banned from '{room.slug}'.", room=room.slug)
    return room, room.member


@dataclass(frozen=True)
class RoomSummary:
    slug: str
    name: str
    topic: str
    private: bool
    last_seq: int
    unread: int
    kind: str = Room.Kind.ROOM
    members: tuple[str, ...] = ()
    last_message_at: datetime | None = None
    # Unread mentions of the user; in a direct conversation every unread message counts as one.
    mentions: int = 0
    notify: str = NotifyLevel.ALL


def _unread(*, user: User) -> Count:
    """A room's `unread` count: messages after the user's read marker that someone else wrote, that are
    not deleted and not replies in a thread (a thread's replies show in its panel, as in Slack,
    not in the room's flow)."""
    marker = Membership.objects.filter(room=OuterRef("pk"), user=user).values("last_read_seq")[:1]
    after_marker = Q(messages__seq__gt=Coalesce(Subquery(marker), Value(0)))
    unread = after_marker & Q(messages__reply_to__isnull=True, messages__deleted=False) & ~Q(messages__author=user)
    return Count("messages", filter=unread)


def room_list_for(*, user: User) -> list[RoomSummary]:
    """Rooms `user` may enter (public ones, and private ones they belong to), not archived, not
    banned from, with the number of messages they have not read."""
    rooms = (
        Room.objects.filter(archived=False, kind=Room.Kind.ROOM)
        .filter(Q(private=False) | Q(pk__in=Membership.objects.filter(PRIVATE_ACCESS, user=user).values("room_id")))
        .exclude(pk__in=Ban.objects.filter(user=user).values("room_id"))
        .order_by("name")
    )
    rows = list(
        rooms.annotate(unread=_unread(user=user)).values("pk", "slug", "name", "topic", "private", "last_seq", "unread")
    )
    ids = [row.pop("pk") for row in rows]
    mentions, levels = mention_counts(user=user, room_ids=ids), notify_levels(user=user, room_ids=ids)
    return [
        RoomSummary(**row, mentions=mentions[pk].total if pk in mentions else 0, notify=levels[pk])
        for pk, row in zip(ids, rows, strict=True)
    ]


def notify_levels(*, user: User, room_ids: list[int]) -> dict[int, str]:
    """The user's notification setting (NotifyLevel) in each of the rooms."""
    stored = dict(RoomNotify.objects.filter(user=user, room_id__in=room_ids).values_list("room_id", "level"))
    return {pk: stored.get(pk, NotifyLevel.ALL) for pk in room_ids}


def direct_mentions(*, unread: int, mentions: int) -> int:
    """A direct conversation's mention count: its unread messages, and the mentions in its threads
    (whose replies are not unread)."""
    return unread + mentions


def direct_list_for(*, user: User) -> list[RoomSummary]:
    """The user's direct conversations, the latest active first: those with a message, and those
    they started themselves (a conversation nobody wrote in yet is not someone else's business)."""
    rooms = (
        Room.objects.filter(archived=False, kind=Room.Kind.DIRECT, memberships__user=user)
        .filter(Q(last_seq__gt=0) | Q(created_by=user))
        .annotate(last_message_at=Max("messages__created_at"))
        .order_by(F("last_message_at").desc(nulls_first=True), "-pk")
    )
    listed = list(
        rooms.annotate(unread=_unread(user=user)).values("pk", "slug", "last_seq", "unread", "last_message_at")
    )
    ids = [row["pk"] for row in listed]
    members = direct_members(room_ids=ids)
    mentions, levels = mention_counts(user=user, room_ids=ids), notify_levels(user=user, room_ids=ids)
    return [
        RoomSummary(
            slug=row["slug"],
            name=direct_name(members=members[row["pk"]], viewer=user.username),
            topic="",
            private=True,
            last_seq=row["last_seq"],
            unread=row["unread"],
            kind=Room.Kind.DIRECT,
            members=tuple(members[row["pk"]]),
            last_message_at=row["last_message_at"],
            mentions=direct_mentions(
                unread=row["unread"], mentions=mentions[row["pk"]].in_threads if row["pk"] in mentions else 0
            ),
            notify=levels[row["pk"]],
        )
        for row in listed
    ]


DIRECT_CANDIDATES_LIMIT = 200  # people listed in the "New message" picker; others are typed by name


def direct_candidates(*, user: User, limit: int | None = None) -> tuple[list[str], bool]:
    """The usernames `user` may start a direct conversation with (every other active account),
    alphabetical, at most `limit` (DIRECT_CANDIDATES_LIMIT); and whether there are more."""
    limit = limit or DIRECT_CANDIDATES_LIMIT
    names = list(
        get_user_model()
        .objects.filter(is_active=True)
        .exclude(pk=user.pk)
        .order_by("username")
        .values_list("username", flat=True)[: limit + 1]
    )
    return names[:limit], len(names) > limit


def messages_latest(*, room: Room, limit: int = 50) -> list[dict[str, Any]]:
    rows = _rows(Message.objects.filter(room=room).order_by("-seq")[:limit], room_slug=room.slug)
    rows.reverse()
    return rows


def messages_changed(
    *, room: Room, rev: int, since: int | None = None, limit: int | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Every message changed after `rev` (and, given `since`, every message after seq `since`), in
    its current state, ordered by rev, at most `limit`; and whether that was all. A client that
    got only part joins again with the last rev and the highest seq it received."""
    limit = limit or settings.CHAT_CATCHUP_LIMIT
    changed = Q(rev__gt=rev) if since is None else Q(rev__gt=rev) | Q(seq__gt=since)
    queryset = Message.objects.filter(changed, room=room).order_by("rev")[: limit + 1]
    rows = _rows(queryset, room_slug=room.slug)
    return rows[:limit], len(rows) <= limit


def thread_page(
    *, room: Room, root_id: int, before: int | None, limit: int
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """A thread: its first message, up to `limit` of its replies just before seq `before` (the
    newest if None), oldest first, and whether older replies exist. ChatError(not_found) when
    `root_id` is no message of the room, bad_request when it is itself a reply."""
    root = _rows(Message.objects.filter(room=room, pk=root_id), room_slug=room.slug)
    if not root:
        raise ChatError(ErrorCode.NOT_FOUND, f"No message {root_id} in '{room.slug}'.", room=room.slug)
    if root[0]["reply_to"] is not None:
        raise ChatError(ErrorCode.BAD_REQUEST, f"Message {root_id} is a reply, not a thread.", room=room.slug)
    replies = Message.objects.filter(room=room, reply_to_id=root_id)
    if before is not None:
        replies = replies.filter(seq__lt=before)
    rows = _rows(replies.order_by("-seq")[: limit + 1], room_slug=room.slug)
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return root[0], rows, has_more


def message_get(*, room: Room, message_id: int) -> dict[str, Any]:
    """One message of the room as on the wire, or ChatError(not_found)."""
    rows = _rows(Message.objects.filter(room=room, pk=message_id), room_slug=room.slug)
    if not rows:
        raise ChatError(ErrorCode.NOT_FOUND, f"No message {message_id} in '{room.slug}'.", room=room.slug)
    return rows[0]


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


def messages_after(*, room: Room, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` messages just after seq `after`, oldest first; and whether newer ones exist."""
    rows = _rows(Message.objects.filter(room=room, seq__gt=after).order_by("seq")[: limit + 1], room_slug=room.slug)
    return rows[:limit], len(rows) > limit


def messages_around(*, room: Room, message_id: int, limit: int) -> tuple[list[dict[str, Any]], bool, bool]:
    """Up to `limit` messages around message `message_id` (a link to it): the message, about half
    of the rest before it and the others after, oldest first; and whether older and newer messages
    exist beyond them. ChatError(not_found) when `message_id` is no message of the room."""
    seq = Message.objects.filter(room=room, pk=message_id).values_list("seq", flat=True).first()
    if seq is None:
        raise ChatError(ErrorCode.NOT_FOUND, f"No message {message_id} in '{room.slug}'.", room=room.slug)
    older_count = (limit - 1) // 2
    older, has_before = messages_before(room=room, before=seq, limit=older_count)
    newer, has_after = messages_after(room=room, after=seq - 1, limit=limit - len(older))
    return older + newer, has_before, has_after


def room_counters(*, room_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Each room's newest (seq, rev)."""
    rows = Room.objects.filter(pk__in=room_ids).values_list("pk", "last_seq", "last_rev")
    return {pk: (seq, rev) for pk, seq, rev in rows}


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
        elif not session_hash_verified(session.get(HASH_SESSION_KEY), user):
            states[key] = SessionState.ENDED
        else:
            states[key] = SessionState.VALID if user.is_active else SessionState.INACTIVE
    return states


def session_hash_verified(stored: str | None, user: Any) -> bool:
    """Whether a session's auth hash is the user's, as Django's `get_user` decides it: made with
    SECRET_KEY, or with a key still in SECRET_KEY_FALLBACKS (which the handshake then rotates)."""
    if not stored:
        return False
    if constant_time_compare(stored, user.get_session_auth_hash()):
        return True
    fallback_hashes = getattr(user, "get_session_auth_fallback_hash", None)
    return fallback_hashes is not None and any(constant_time_compare(stored, h) for h in fallback_hashes())


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


# Room management ------------------------------------------------------------------------------


def room_named(*, slug: str) -> Room:
    """The room of that slug, whoever asks, or ChatError(not_found)."""
    room = Room.objects.filter(slug=slug).first() if "\x00" not in slug else None  # PostgreSQL refuses NUL
    if room is None:
        raise ChatError(ErrorCode.NOT_FOUND, f"No room '{slug}'.", room=slug)
    return room


def user_named(username: str, *, slug: str) -> User:
    """The active account of that username, or ChatError(not_found) about the room `slug`."""
    user = User.objects.filter(username=username, is_active=True).first() if "\x00" not in username else None
    if user is None:
        raise ChatError(ErrorCode.NOT_FOUND, f"No user '{username}'.", room=slug)
    return user


def readable_room(*, slug: str, user: User) -> Room:
    """The room, if `user` may read it (staff may read any room to manage it)."""
    room = room_named(slug=slug)
    if not user.is_staff:
        room_access_check(room=room, user=user)
    elif room.archived:
        raise ChatError(ErrorCode.NOT_FOUND, f"No room '{slug}'.", room=slug)
    return room


MEMBERS_SHOWN = 500  # members listed in one `members` frame or API page, the room's managers first


def can_manage(*, room: Room, user: User) -> bool:
    """Whether `user` may manage the room (members, settings, others' messages): staff, its
    creator, or one of its moderators. In a direct conversation only staff, and only to delete a
    message (as in the admin): nobody changes its settings or members (room_manage_check)."""
    if user.is_staff:
        return True
    if room.is_direct or not user.is_active:
        return False
    if room.created_by_id == user.pk:
        return True
    return Membership.objects.filter(room=room, user=user, role=Membership.Role.MODERATOR).exists()


def room_manage_check(*, room: Room, user: User) -> None:
    """Raise the ChatError that keeps `user` from managing `room`, if any: the one place both the
    socket and the HTTP API ask."""
    if not user.is_staff:
        room_access_check(room=room, user=user)
    if room.archived:
        raise ChatError(ErrorCode.NOT_FOUND, f"No room '{room.slug}'.", room=room.slug)
    if room.is_direct:
        # Staff included: made public or joined by a third person, its history would be read by
        # people it was not written to (the admin refuses the same; docs/security.md).
        raise ChatError(ErrorCode.FORBIDDEN, "A direct conversation has no settings or moderators.", room=room.slug)
    if not can_manage(room=room, user=user):
        raise ChatError(
            ErrorCode.FORBIDDEN, f"Only the moderators and the creator of '{room.slug}' may do that.", room=room.slug
        )


def room_members(*, room: Room) -> list[dict[str, Any]]:
    """The room's members as the `members` frame shows them: its moderators and creator first, then
    the others alphabetically; banned users are not listed. In a public room a member is anyone
    who joined it (or was invited); in a private one, those invited."""
    rows = (
        Membership.objects.filter(room=room)
        .exclude(user__in=Ban.objects.filter(room=room).values("user_id"))
        .filter(user__is_active=True)
    )
    if room.private:
        rows = rows.filter(PRIVATE_ACCESS)
    listed = [
        {
            "username": username,
            "role": role,
            "creator": user_id == room.created_by_id,
            "invited": invited,
        }
        for user_id, username, role, invited in rows.values_list("user_id", "user__username", "role", "invited")
    ]
    listed.sort(key=lambda m: (not (m["role"] == Membership.Role.MODERATOR or m["creator"]), m["username"]))
    return listed[:MEMBERS_SHOWN]


MENTION_LOOKUP_LIMIT = 10


def usernames_starting(*, prefix: str, limit: int = MENTION_LOOKUP_LIMIT) -> list[str]:
    """Active people whose username starts with `prefix` (any case), alphabetically, at most `limit`:
    what @mention autocomplete offers."""
    return list(
        get_user_model()
        .objects.filter(is_active=True, username__istartswith=prefix)
        .order_by(Lower("username"), "username")
        .values_list("username", flat=True)[:limit]
    )
