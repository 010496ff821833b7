"""Writes. Each is keyword-only, runs in one transaction, and announces itself through
`chat.events` on commit. The consumer, views, admin and commands all come through here."""

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from chat import events
from chat.errors import ChatError, ErrorCode
from chat.models import ApiToken, Ban, Membership, Message, Room
from chat.selectors import RoomClosed, message_to_wire, room_access_check, room_get_for

# Rooms --------------------------------------------------------------------------------------


def room_create(
    *,
    slug: str,
    name: str,
    topic: str = "",
    private: bool = False,
    created_by: User | None = None,
    members: Iterable[User] = (),
) -> Room:
    """A new room. A private room's creator becomes its moderator; `members` are invited to it."""
    room = Room(slug=slug, name=name, topic=topic, private=private, created_by=created_by)
    room.full_clean()
    with transaction.atomic():
        room.save()
        if created_by is not None and private:
            Membership.objects.create(room=room, user=created_by, role=Membership.Role.MODERATOR, invited=True)
        for user in members:
            if user != created_by:
                Membership.objects.update_or_create(room=room, user=user, defaults={"invited": True})
    return room


def room_access_changed(*, room: Room) -> None:
    """The room's rules changed (it became private): every worker re-checks its sockets in the
    room at once, and those whose user may no longer be there get `room_closed` (`removed`).
    Moderators and invited members stay (Membership.invited). The periodic re-check
    (CHAT_ACCESS_SWEEP_SECONDS) does the same should this event be lost."""
    events.access_changed_on_commit(room_id=room.pk)


def room_archive(*, room: Room) -> Room:
    with transaction.atomic():
        Room.objects.filter(pk=room.pk).update(archived=True)
        room.archived = True
        events.room_closed_on_commit(room_id=room.pk, room_slug=room.slug, reason=RoomClosed.ARCHIVED)
    return room


def room_unarchive(*, room: Room) -> Room:
    Room.objects.filter(pk=room.pk).update(archived=False)
    room.archived = False
    return room


def room_delete(*, room: Room) -> None:
    with transaction.atomic():
        room_id, slug = room.pk, room.slug
        room.delete()
        events.room_closed_on_commit(room_id=room_id, room_slug=slug, reason=RoomClosed.DELETED)


# Membership and bans ------------------------------------------------------------------------


def room_enter(*, slug: str, user: User) -> Room:
    """Check that `user` may enter the room and record them as a member (which keeps their
    read marker). Raises ChatError(not_found | forbidden)."""
    room = room_get_for(slug=slug, user=user)
    # No surrounding transaction: get_or_create reads first, so a returning member's join
    # takes no write lock (SQLite's IMMEDIATE transactions would take one at BEGIN).
    Membership.objects.get_or_create(room=room, user=user)
    return room


def membership_add(*, room: Room, user: User, role: str = Membership.Role.MEMBER) -> Membership:
    """Invite `user` to the room (with `role`): they may enter it while it is private."""
    membership, created = Membership.objects.get_or_create(
        room=room, user=user, defaults={"role": role, "invited": True}
    )
    if not created and (membership.role != role or not membership.invited):
        membership.role, membership.invited = role, True
        membership.save(update_fields=["role", "invited"])
    return membership


def membership_changed(*, membership: Membership) -> None:
    """A membership was edited (staff unticked `invited`, or demoted a moderator): in a private
    room that may shut its user out, as removing it would."""
    room = membership.room
    if room.private and not membership.grants_private_access:
        events.room_closed_on_commit(
            room_id=room.pk, room_slug=room.slug, reason=RoomClosed.REMOVED, user_id=membership.user_id
        )


def membership_remove(*, room: Room, user: User) -> None:
    """Remove a member (and their read marker). In a private room that shuts them out: their
    sockets leave it."""
    with transaction.atomic():
        Membership.objects.filter(room=room, user=user).delete()
        if room.private:
            events.room_closed_on_commit(
                room_id=room.pk, room_slug=room.slug, reason=RoomClosed.REMOVED, user_id=user.pk
            )


def ban_create(*, room: Room, user: User, reason: str = "", by: User | None = None) -> Ban:
    with transaction.atomic():
        ban, _ = Ban.objects.update_or_create(room=room, user=user, defaults={"reason": reason, "by": by})
        events.room_closed_on_commit(room_id=room.pk, room_slug=room.slug, reason=RoomClosed.BANNED, user_id=user.pk)
    return ban


def ban_delete(*, ban: Ban) -> None:
    ban.delete()


# Messages -----------------------------------------------------------------------------------


def message_send(*, room: Room, author: User, body: str, client_id: str | None = None) -> tuple[dict[str, Any], bool]:
    """Store a message and announce it on commit. Returns (message as on the wire, created).

    `seq` comes from the room's counter, incremented by an UPDATE in the same transaction:
    the row lock (PostgreSQL) or the write lock (SQLite, IMMEDIATE transactions) serialises
    concurrent senders, and a rollback takes the increment back, so seqs have no gaps.
    A `client_id` this author already used in the room returns the first message instead: the
    unique constraint refuses the second insert (rolling the seq back), so a first send costs no
    extra query to look for one.
    """
    _check_body(body, room=room)
    try:
        with transaction.atomic():
            # The UPDATE takes the lock first; then the fresh row is checked (archived, bans).
            if not Room.objects.filter(pk=room.pk).update(last_seq=F("last_seq") + 1):
                raise ChatError(ErrorCode.NOT_FOUND, f"No room '{room.slug}'.", room=room.slug)
            room = Room.objects.get(pk=room.pk)
            room_access_check(room=room, user=author)
            seq = room.last_seq
            message = Message.objects.create(room=room, author=author, body=body, seq=seq, client_id=client_id)
            # Writing in a room means having read it: your own messages are never unread.
            Membership.objects.filter(room=room, user=author, last_read_seq__lt=seq).update(last_read_seq=seq)
            wire = message_to_wire(message, room_slug=room.slug)
            events.message_created_on_commit(room_id=room.pk, room_slug=room.slug, message=wire)
    except IntegrityError:
        # The same client_id raced in from another socket: the first one won.
        existing = client_id is not None and _message_by_client_id(room=room, author=author, client_id=client_id)
        if existing:
            return existing, False
        raise
    return wire, True


def _message_by_client_id(*, room: Room, author: User, client_id: str) -> dict[str, Any] | None:
    message = Message.objects.filter(room=room, author=author, client_id=client_id).select_related("author").first()
    return message_to_wire(message, room_slug=room.slug) if message else None


def _check_body(body: str, *, room: Room) -> None:
    if len(body) > settings.CHAT_MAX_BODY:
        raise ChatError(
            ErrorCode.TOO_LARGE, f"The message is longer than {settings.CHAT_MAX_BODY} characters.", room=room.slug
        )
    if not body.strip():
        raise ChatError(ErrorCode.BAD_REQUEST, "The message is empty.", room=room.slug)


def _own_message(*, room: Room, author: User, message_id: int) -> Message:
    """The author's live message in a room they may still write in, locked for the change."""
    fresh = Room.objects.filter(pk=room.pk).first()
    if fresh is None:
        raise ChatError(ErrorCode.NOT_FOUND, "That room no longer exists.")
    room = fresh
    room_access_check(room=room, user=author)
    message = Message.objects.select_for_update().select_related("author").filter(room=room, pk=message_id).first()
    if message is None or message.deleted:
        raise ChatError(ErrorCode.NOT_FOUND, f"No message {message_id} in '{room.slug}'.", room=room.slug)
    if message.author_id != author.pk:
        raise ChatError(ErrorCode.FORBIDDEN, "You can only change your own messages.", room=room.slug)
    message.room = room
    return message


def message_edit(*, room: Room, author: User, message_id: int, body: str, skip: str | None = None) -> dict[str, Any]:
    """Change the text of the author's own message; announce it (except to `skip`, the socket
    that asked, which gets the reply itself). Returns the message as on the wire."""
    _check_body(body, room=room)
    with transaction.atomic():
        message = _own_message(room=room, author=author, message_id=message_id)
        message.body = body
        message.edited_at = timezone.now()
        message.save(update_fields=["body", "edited_at"])
        wire = message_to_wire(message, room_slug=message.room.slug)
        events.message_edited_on_commit(room_id=message.room_id, room_slug=message.room.slug, message=wire, skip=skip)
    return wire


def message_delete_own(*, room: Room, author: User, message_id: int, skip: str | None = None) -> Message:
    """The author deletes their own message (staff delete any message in the admin)."""
    with transaction.atomic():
        message = _own_message(room=room, author=author, message_id=message_id)
        message_delete(message=message, skip=skip)
    return message


def message_delete(*, message: Message, skip: str | None = None) -> None:
    """Hide a message. It keeps its seq, so no client ever sees a gap."""
    with transaction.atomic():
        updated = Message.objects.filter(pk=message.pk, deleted=False).update(deleted=True)
        message.deleted = True
        if updated:
            room = Room.objects.only("slug").get(pk=message.room_id)
            events.message_deleted_on_commit(
                room_id=message.room_id, room_slug=room.slug, message_id=message.pk, seq=message.seq, skip=skip
            )


def read_mark(*, room: Room, user: User, seq: int) -> int:
    """Move the user's read marker forward (never back, never past the newest message)."""
    last_seq = Room.objects.filter(pk=room.pk).values_list("last_seq", flat=True).first()
    if last_seq is None:
        raise ChatError(ErrorCode.NOT_FOUND, "That room no longer exists.")
    seq = min(seq, last_seq)
    Membership.objects.filter(room=room, user=user, last_read_seq__lt=seq).update(last_read_seq=seq)
    return seq


# API tokens -----------------------------------------------------------------------------------

TOKEN_PREFIX = "chat_"


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def token_create(*, user: User, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`; returns it with the secret, which is never stored or shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name, key_hash=token_hash(raw), prefix=raw[:12], expires_at=expires_at)
    token.full_clean(exclude=["key_hash", "prefix"])
    token.save()
    return token, raw


def token_revoke(*, token: ApiToken) -> None:
    """Revoke a token; its open sockets close (4401) as soon as the event reaches them, and
    within CHAT_TOKEN_SWEEP_SECONDS otherwise."""
    with transaction.atomic():
        if ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            events.token_revoked_on_commit(user_id=token.user_id, token_id=token.pk)
    token.refresh_from_db(fields=["revoked_at"])


def token_authenticate(raw: str) -> tuple[User, int] | None:
    """The token's (user, token id), or None when it is unknown, revoked, expired or its user is
    inactive. Records when it was last used (at most once a minute, to spare the database)."""
    if not raw or len(raw) > 200:
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(raw), revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if token is None:
        return None
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token.pk


def token_of_inactive_user(raw: str) -> bool:
    """Whether `raw` is a live token (not revoked, not expired) of a deactivated user: such a
    handshake is closed with 4403, like a deactivated user's session, not 4401."""
    if not raw or len(raw) > 200:
        return False
    return (
        ApiToken.objects.filter(key_hash=token_hash(raw), revoked_at__isnull=True, user__is_active=False)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .exists()
    )
