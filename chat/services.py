"""Writes. Each is keyword-only, runs in one transaction, and announces itself through
`chat.events` on commit. The consumer, views, admin and commands all come through here."""

import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import emoji as emoji_library
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from chat import events, files, formatting, mentions, unread
from chat.errors import ChatError, ErrorCode
from chat.models import (
    MAX_DIRECT_MEMBERS,
    MAX_EMOJI_LENGTH,
    MAX_REACTIONS_PER_MESSAGE,
    MAX_ROOM_NAME_LENGTH,
    MAX_ROOM_TOPIC_LENGTH,
    PRIVATE_ACCESS,
    ApiToken,
    Ban,
    Membership,
    Message,
    Reaction,
    Room,
    Upload,
)
from chat.selectors import (
    DELETED_AUTHOR,
    RoomClosed,
    can_manage,
    message_to_wire,
    room_access_check,
    room_for_join,
    room_info,
    room_manage_check,
    room_members,
)

logger = logging.getLogger(__name__)

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
        # The room's row first, as every change to its messages takes it (see Messages below):
        # deleting locks the messages, and a writer holding the room would wait on them.
        list(Room.objects.select_for_update().filter(pk=room_id).values_list("pk"))
        room.delete()
        events.room_closed_on_commit(room_id=room_id, room_slug=slug, reason=RoomClosed.DELETED)


# Membership and bans ------------------------------------------------------------------------


def room_enter(*, slug: str, user: User) -> Room:
    """Check that `user` may enter the room and record them as a member (which keeps their
    read marker). Raises ChatError(not_found | forbidden)."""
    room, member = room_for_join(slug=slug, user=user)
    # A returning member's join writes nothing (and takes no write lock: SQLite's IMMEDIATE
    # transactions would take one at BEGIN); a first one inserts, once even when two race.
    if not member:
        Membership.objects.bulk_create([Membership(room=room, user=user)], ignore_conflicts=True)
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
        # The room's lock first, as a send takes it before checking bans: a send waiting for it
        # sees the ban once it commits, and one holding it is stored before the ban.
        list(Room.objects.select_for_update().filter(pk=room.pk).values_list("pk"))
        ban, _ = Ban.objects.update_or_create(room=room, user=user, defaults={"reason": reason, "by": by})
        events.room_closed_on_commit(room_id=room.pk, room_slug=room.slug, reason=RoomClosed.BANNED, user_id=user.pk)
        events.members_on_commit(room_id=room.pk, room_slug=room.slug, members=room_members(room=room))
    return ban


def ban_delete(*, ban: Ban) -> None:
    ban.delete()


# Messages -----------------------------------------------------------------------------------
#
# Every change to a room's messages takes the room's next rev(s) in its transaction: an UPDATE of
# the room's counters, which is also the lock that serialises the room's writers (the row lock on
# PostgreSQL, the write lock on SQLite, whose transactions are IMMEDIATE). Each change takes the
# room's lock before any message's, so two writers never wait on each other in opposite orders. A
# rollback takes the increment back, so revs, like seqs, have no gaps. Each changed message is
# announced on commit with the rev it took, one frame per rev, in rev order.


def _advance(*, room: Room, user: User, revs: int, seq: bool = False) -> Room:
    """Take `revs` revs (and, with `seq`, the next seq) of the room for a change by `user`, who
    must still be allowed in it: the fresh row, locked until the transaction ends."""
    counters: dict[str, Any] = {"last_rev": F("last_rev") + revs}
    if seq:
        counters["last_seq"] = F("last_seq") + 1
    if not Room.objects.filter(pk=room.pk).update(**counters):
        raise ChatError(ErrorCode.NOT_FOUND, f"No room '{room.slug}'.", room=room.slug)
    fresh = Room.objects.get(pk=room.pk)
    room_access_check(room=fresh, user=user)
    return fresh


def message_send(
    *,
    room: Room,
    author: User,
    body: str,
    client_id: str | None = None,
    reply_to: int | None = None,
    attachments: Sequence[int] = (),
) -> tuple[dict[str, Any], bool]:
    """Store a message (a reply in the thread of `reply_to`, given one) and announce it on commit.
    Returns (message as on the wire, created).

    `attachments` are ids of the author's pending uploads to this room (chat.files): taken under
    the room's lock, so no two messages take one; a message with files may have an empty body.

    `seq` and `rev` come from the room's counters (see above). A reply takes the rev after its
    own for its thread's first message, whose summary (reply count, latest repliers) changes.
    A `client_id` this author already used in the room returns the first message instead: the
    unique constraint refuses the second insert (rolling the counters back), so a first send costs
    no extra query to look for one.
    """
    _check_body(body, room=room, empty_allowed=bool(attachments))
    try:
        with transaction.atomic():
            room = _advance(room=room, user=author, revs=1 if reply_to is None else 2, seq=True)
            root = _thread_root(room=room, message_id=reply_to) if reply_to is not None else None
            uploads = files.attachments_take(room=room, author=author, ids=attachments) if attachments else []
            seq, rev = room.last_seq, room.last_rev - (1 if root is not None else 0)
            message = Message.objects.create(
                room=room,
                author=author,
                body=body,
                html=formatting.render(body),
                seq=seq,
                rev=rev,
                client_id=client_id,
                reply_to=root,
                attachments=[files.upload_wire(upload) for upload in uploads],
            )
            if uploads:
                Upload.objects.filter(pk__in=[upload.pk for upload in uploads]).update(message=message)
            # Writing in a room means having read it (your own messages are never unread); answering
            # in a thread does not: the room's flow may hold newer messages you have not seen.
            if root is None:
                Membership.objects.filter(room=room, user=author, last_read_seq__lt=seq).update(last_read_seq=seq)
            wire = _fitting_wire(message, room_slug=room.slug)
            events.message_created_on_commit(room_id=room.pk, message=wire)
            mentioned = mentions.mentions_record(message=message)
            events.activity_on_commit(
                room_id=room.pk, fields=unread.activity(message=wire, kind="message", mentions=mentioned)
            )
            if room.is_direct:
                _announce_direct(room=room, message=wire, author=author)
            if root is not None:
                root.reply_count += 1
                root.repliers = [author.username, *(name for name in root.repliers if name != author.username)][:3]
                root.last_reply_at = message.created_at
                root.rev = rev + 1
                root.save(update_fields=["reply_count", "repliers", "last_reply_at", "rev"])
                events.message_updated_on_commit(room_id=room.pk, message=message_to_wire(root, room_slug=room.slug))
    except IntegrityError:
        # The same client_id raced in from another socket: the first one won.
        existing = client_id is not None and _message_by_client_id(room=room, author=author, client_id=client_id)
        if existing:
            return existing, False
        raise
    except ChatError:
        # A retry of a send with files finds them taken, by its own first attempt: the same
        # answer as any retry, the first message.
        existing = (
            bool(attachments)
            and client_id is not None
            and _message_by_client_id(room=room, author=author, client_id=client_id)
        )
        if existing:
            return existing, False
        raise
    return wire, True


def _direct_members(*, room: Room) -> list[tuple[int, str]]:
    """(user id, username) of the people a direct conversation's messages are announced to."""
    return list(
        Membership.objects.filter(PRIVATE_ACCESS, room=room)
        .exclude(user__in=Ban.objects.filter(room=room).values("user_id"))
        .values_list("user_id", "user__username")
    )


def _announce_direct(
    *, room: Room, message: dict[str, Any], author: User, members: list[tuple[int, str]] | None = None
) -> None:
    """A direct conversation's other members hear of each message on any socket they have open,
    whether or not it joined the conversation: how one appears live in their sidebar. (`members`:
    `_direct_members`, read once for many messages.)"""
    if members is None:
        members = _direct_members(room=room)
    names = sorted(username for _, username in members)
    for user_id, username in members:
        if user_id != author.pk:
            info = room_info(room=room, viewer=username, members=names)
            events.direct_message_on_commit(user_id=user_id, room_slug=room.slug, info=info, message=message)


def _message_budget() -> int:
    """The most a message may weigh on the wire: it must fit in one frame (CHAT_MAX_FRAME_BYTES,
    Daphne's limit on what it sends too) with room to spare for the frame around it."""
    return settings.CHAT_MAX_FRAME_BYTES - 8 * 1024


def _wire_bytes(wire: dict[str, Any]) -> int:
    return len(json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def _fitting_wire(message: Message, *, room_slug: str) -> dict[str, Any]:
    """The message as on the wire, if it fits in a frame: its formatted HTML can be several times
    its text (a link is its address three times), so a message that only fits unformatted is kept
    as text; one that does not fit at all is refused (the transaction rolls back)."""
    wire = message_to_wire(message, room_slug=room_slug)
    if _wire_bytes(wire) <= _message_budget():
        return wire
    message.html = formatting.plain(message.body)
    Message.objects.filter(pk=message.pk).update(html=message.html)
    wire = message_to_wire(message, room_slug=room_slug)
    if _wire_bytes(wire) > _message_budget():
        raise ChatError(ErrorCode.TOO_LARGE, "This message is too large to send: shorten it.", room=room_slug)
    return wire


def _thread_root(*, room: Room, message_id: int) -> Message:
    """The message a reply answers, locked: a live message of the room that is not a reply."""
    root = (
        Message.objects.select_for_update(of=("self",))
        .select_related("author")
        .filter(room=room, pk=message_id)
        .first()
    )
    if root is None or root.deleted:
        raise ChatError(ErrorCode.NOT_FOUND, f"No message {message_id} in '{room.slug}' to reply to.", room=room.slug)
    if root.reply_to_id is not None:
        raise ChatError(ErrorCode.BAD_REQUEST, "That message is a reply: answer in its thread instead.", room=room.slug)
    return root


def _message_by_client_id(*, room: Room, author: User, client_id: str) -> dict[str, Any] | None:
    message = Message.objects.filter(room=room, author=author, client_id=client_id).select_related("author").first()
    return message_to_wire(message, room_slug=room.slug) if message else None


def _check_body(body: str, *, room: Room, empty_allowed: bool = False) -> None:
    if len(body) > settings.CHAT_MAX_BODY:
        raise ChatError(
            ErrorCode.TOO_LARGE, f"The message is longer than {settings.CHAT_MAX_BODY} characters.", room=room.slug
        )
    if not body.strip() and not empty_allowed:
        raise ChatError(ErrorCode.BAD_REQUEST, "The message is empty.", room=room.slug)


def _live_message(*, room: Room, message_id: int) -> Message:
    """A message of the room that is not deleted, locked for a change (the room's lock is held)."""
    message = (
        Message.objects.select_for_update(of=("self",))
        .select_related("author")
        .filter(room=room, pk=message_id)
        .first()
    )
    if message is None or message.deleted:
        raise ChatError(ErrorCode.NOT_FOUND, f"No message {message_id} in '{room.slug}'.", room=room.slug)
    message.room = room
    return message


def _own_message(*, room: Room, author: User, message_id: int) -> Message:
    """The author's live message, in a room they may still write in, locked for a change that
    takes one rev (room.last_rev)."""
    room = _advance(room=room, user=author, revs=1)
    message = _live_message(room=room, message_id=message_id)
    if message.author_id != author.pk:
        raise ChatError(ErrorCode.FORBIDDEN, "You can only change your own messages.", room=room.slug)
    return message


def message_edit(*, room: Room, author: User, message_id: int, body: str, skip: str | None = None) -> dict[str, Any]:
    """Change the text of the author's own message; announce it (except to `skip`, the socket
    that asked, which gets the reply itself). Returns the message as on the wire."""
    _check_body(body, room=room)
    with transaction.atomic():
        message = _own_message(room=room, author=author, message_id=message_id)
        message.body = body
        message.html = formatting.render(body)
        message.edited_at = timezone.now()
        message.rev = message.room.last_rev
        message.save(update_fields=["body", "html", "edited_at", "rev"])
        wire = _fitting_wire(message, room_slug=message.room.slug)
        events.message_edited_on_commit(room_id=message.room_id, message=wire, skip=skip)
        was = mentions.mentions_of(message_id=message.pk)
        mentioned = mentions.mentions_record(message=message)
        if mentioned != was:
            fields = unread.activity(message=wire, kind="edited", mentions=mentioned, was=was)
            events.activity_on_commit(room_id=message.room_id, fields=fields)
    return wire


def message_delete_own(*, room: Room, author: User, message_id: int, skip: str | None = None) -> dict[str, Any]:
    """The author deletes their own message (staff delete any message in the admin). Returns the
    tombstone as on the wire."""
    with transaction.atomic():
        message = _own_message(room=room, author=author, message_id=message_id)
        return _delete(message=message, room=message.room, rev=message.room.last_rev, skip=skip)


def message_delete(*, message: Message, skip: str | None = None) -> None:
    """Hide a message (staff, in the admin). It keeps its seq, so no client ever sees a gap."""
    with transaction.atomic():
        if not Room.objects.filter(pk=message.room_id).update(last_rev=F("last_rev") + 1):
            return
        room = Room.objects.get(pk=message.room_id)
        locked = Message.objects.select_for_update(of=("self",)).select_related("author").filter(pk=message.pk).first()
        if locked is None or locked.deleted:
            transaction.set_rollback(True)  # nothing changed: the rev is not taken
            message.deleted = True
            return
        _delete(message=locked, room=room, rev=room.last_rev, skip=skip)
        message.deleted = True


def _delete(*, message: Message, room: Room, rev: int, skip: str | None) -> dict[str, Any]:
    """Make `message` (locked, with room's lock held and `rev` taken for it) a tombstone; a reply
    also changes its thread's summary, which takes the next rev. Its files go with it: the
    Upload rows now, the stored files once this commits (chat.receivers)."""
    message.deleted = True
    message.rev = rev
    message.reactions = []
    message.attachments = []
    message.save(update_fields=["deleted", "rev", "reactions", "attachments"])
    Reaction.objects.filter(message=message).delete()
    Upload.objects.filter(message=message).delete()
    wire = message_to_wire(message, room_slug=room.slug)
    events.message_deleted_on_commit(room_id=room.pk, message=wire, skip=skip)
    fields = unread.activity(message=wire, kind="deleted", mentions=mentions.mentions_of(message_id=message.pk))
    events.activity_on_commit(room_id=room.pk, fields=fields)
    if message.reply_to_id is not None:
        Room.objects.filter(pk=room.pk).update(last_rev=F("last_rev") + 1)
        root = Message.objects.select_for_update(of=("self",)).select_related("author").get(pk=message.reply_to_id)
        _summarise_thread(root)
        root.rev = rev + 1
        root.save(update_fields=["reply_count", "repliers", "last_reply_at", "rev"])
        events.message_updated_on_commit(room_id=room.pk, message=message_to_wire(root, room_slug=room.slug))
    return wire


def upload_delete(*, upload: Upload) -> None:
    """Remove one uploaded file (staff, in the admin). A message that carries it loses it from its
    `attachments`, announced as an update with the rev that takes; the stored files go on commit."""
    with transaction.atomic():
        if upload.message_id is None:
            Upload.objects.filter(pk=upload.pk).delete()
            return
        if not Room.objects.filter(pk=upload.room_id).update(last_rev=F("last_rev") + 1):
            return
        room = Room.objects.get(pk=upload.room_id)
        message = Message.objects.select_for_update(of=("self",)).select_related("author").get(pk=upload.message_id)
        message.attachments = [item for item in message.attachments if item.get("id") != upload.pk]
        message.rev = room.last_rev
        message.save(update_fields=["attachments", "rev"])
        Upload.objects.filter(pk=upload.pk).delete()
        events.message_updated_on_commit(room_id=room.pk, message=message_to_wire(message, room_slug=room.slug))


def _summarise_thread(root: Message) -> None:
    """Count a thread's live replies again, with its latest three repliers and last reply."""
    replies = Message.objects.filter(reply_to=root, deleted=False)
    root.reply_count = replies.count()
    root.repliers = []
    root.last_reply_at = None
    for username, created_at in replies.order_by("-seq").values_list("author__username", "created_at")[:200]:
        root.last_reply_at = root.last_reply_at or created_at
        name = username or DELETED_AUTHOR
        if name not in root.repliers:
            root.repliers.append(name)
        if len(root.repliers) == 3:
            break


# Reactions ----------------------------------------------------------------------------------


def check_emoji(value: str) -> str:
    """`value` if it is exactly one emoji (skin tones and joined sequences count as one)."""
    value = value.strip()
    if not value or len(value) > MAX_EMOJI_LENGTH or not emoji_library.is_emoji(value):
        raise ChatError(ErrorCode.BAD_REQUEST, "'emoji' must be a single emoji.")
    return value


def reaction_set(
    *, room: Room, user: User, message_id: int, emoji: str, on: bool = True, skip: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Add (`on`) or remove the user's `emoji` on a message of a room they may read. Returns the
    message as on the wire and whether anything changed; a change takes a rev and is announced
    (except to `skip`), an add or remove that changes nothing is not."""
    try:
        emoji = check_emoji(emoji)
    except ChatError as error:
        error.room = room.slug
        raise
    with transaction.atomic():
        room = _advance(room=room, user=user, revs=1)
        message = _live_message(room=room, message_id=message_id)
        mine = Reaction.objects.filter(message=message, user=user, emoji=emoji)
        if mine.exists() == on:
            transaction.set_rollback(True)  # nothing changes: the rev is given back
            return message_to_wire(message, room_slug=room.slug), False
        if on:
            used = [name for name, _ in message.reactions]
            if emoji not in used and len(used) >= MAX_REACTIONS_PER_MESSAGE:
                raise ChatError(
                    ErrorCode.BAD_REQUEST,
                    f"A message has at most {MAX_REACTIONS_PER_MESSAGE} different reactions.",
                    room=room.slug,
                )
            Reaction.objects.create(message=message, user=user, emoji=emoji)
        else:
            mine.delete()
        reactions: dict[str, list[str]] = {}
        for name, username in Reaction.objects.filter(message=message).values_list("emoji", "user__username"):
            reactions.setdefault(name, []).append(username)
        message.reactions = [[name, usernames] for name, usernames in reactions.items()]
        message.rev = room.last_rev
        message.save(update_fields=["reactions", "rev"])
        wire = message_to_wire(message, room_slug=room.slug)
        if on and _wire_bytes(wire) > _message_budget():
            raise ChatError(ErrorCode.TOO_LARGE, "This message has too many reactions to add another.", room=room.slug)
        events.message_updated_on_commit(room_id=room.pk, message=wire, skip=skip)
    return wire, True


# Room management from the page, the socket and the API -------------------------------------
#
# Each checks `room_manage_check` (staff, the room's creator, its moderators) and then goes through
# the services the admin uses above, announcing the change to the room's open pages.


def room_update(
    *, room: Room, by: User, name: str | None = None, topic: str | None = None, private: bool | None = None
) -> Room:
    """Rename the room (its slug stays), change its topic, or make it private or public. Making it
    private keeps the creator and `by` in it; members who were not invited are shut out."""
    if name is None and topic is None and private is None:
        raise ChatError(ErrorCode.BAD_REQUEST, "Give a new 'name', 'topic' or 'private'.", room=room.slug)
    if name is not None:
        name = name.strip()
        if not name or len(name) > MAX_ROOM_NAME_LENGTH:
            raise ChatError(
                ErrorCode.BAD_REQUEST, f"'name' must be 1 to {MAX_ROOM_NAME_LENGTH} characters.", room=room.slug
            )
    if topic is not None:
        topic = topic.strip()
        if len(topic) > MAX_ROOM_TOPIC_LENGTH:
            raise ChatError(
                ErrorCode.BAD_REQUEST, f"'topic' must be at most {MAX_ROOM_TOPIC_LENGTH} characters.", room=room.slug
            )
    with transaction.atomic():
        fresh = Room.objects.select_for_update().filter(pk=room.pk).first()
        if fresh is None:
            raise ChatError(ErrorCode.NOT_FOUND, f"No room '{room.slug}'.", room=room.slug)
        room_manage_check(room=fresh, user=by)
        became_private = private is True and not fresh.private
        changed = private is not None and private != fresh.private
        fresh.name = name if name is not None else fresh.name
        fresh.topic = topic if topic is not None else fresh.topic
        fresh.private = private if private is not None else fresh.private
        fresh.save(update_fields=["name", "topic", "private"])
        if became_private:
            # Staff see every room without being in it; the creator and a manager stay in.
            keep = {fresh.created_by_id} if fresh.created_by_id is not None else set()
            if not by.is_staff or by.pk == fresh.created_by_id:
                keep.add(by.pk)
            for user_id in keep:
                Membership.objects.update_or_create(room=fresh, user_id=user_id, defaults={"invited": True})
            room_access_changed(room=fresh)
        events.room_updated_on_commit(room_id=fresh.pk, info=room_info(room=fresh))
        if changed:
            events.members_on_commit(room_id=fresh.pk, room_slug=fresh.slug, members=room_members(room=fresh))
    return fresh


def room_archive_by(*, room: Room, by: User) -> Room:
    """Archive the room for a manager: it closes for everyone in it."""
    with transaction.atomic():
        room_manage_check(room=room, user=by)
        return room_archive(room=room)


def member_invite(*, room: Room, user: User, by: User) -> Membership:
    """Invite `user` (add them as a member; in a private room, the only way in). Their open pages
    add the room to their sidebar."""
    with transaction.atomic():
        room_manage_check(room=room, user=by)
        if not user.is_active:
            raise ChatError(ErrorCode.NOT_FOUND, f"No user '{user.username}'.", room=room.slug)
        if Ban.objects.filter(room=room, user=user).exists():
            raise ChatError(
                ErrorCode.BAD_REQUEST,
                f"{user.username} is banned from this room: staff may lift the ban.",
                room=room.slug,
            )
        existing = Membership.objects.filter(room=room, user=user).first()
        role = existing.role if existing is not None else Membership.Role.MEMBER
        membership = membership_add(room=room, user=user, role=role)
        events.members_on_commit(room_id=room.pk, room_slug=room.slug, members=room_members(room=room))
        events.room_invited_on_commit(user_id=user.pk, room_slug=room.slug, info=room_info(room=room))
    return membership


def member_remove(*, room: Room, user: User, by: User) -> None:
    """Remove `user` from the room: their pages close it (`room_closed`, `removed`). A moderator or
    the creator is removed only by the creator or staff."""
    with transaction.atomic():
        room_manage_check(room=room, user=by)
        if user.pk == by.pk:
            raise ChatError(ErrorCode.BAD_REQUEST, "To leave the room yourself, leave it ('part').", room=room.slug)
        membership = Membership.objects.filter(room=room, user=user).first()
        if membership is None:
            raise ChatError(ErrorCode.NOT_FOUND, f"{user.username} is not a member of '{room.slug}'.", room=room.slug)
        senior = membership.role == Membership.Role.MODERATOR or user.pk == room.created_by_id
        if senior and not (by.is_staff or by.pk == room.created_by_id):
            raise ChatError(
                ErrorCode.FORBIDDEN, "Only the room's creator or staff may remove a moderator.", room=room.slug
            )
        membership_remove(room=room, user=user)
        if not room.private:  # membership_remove closes a private room itself
            events.room_closed_on_commit(
                room_id=room.pk, room_slug=room.slug, reason=RoomClosed.REMOVED, user_id=user.pk
            )
        events.members_on_commit(room_id=room.pk, room_slug=room.slug, members=room_members(room=room))


def room_part(*, room: Room, user: User) -> None:
    """`user` leaves the room for good: their membership goes (in a private room, with the
    invitation) and every page they have open closes it (`room_closed`, `left`)."""
    if room.is_direct:
        raise ChatError(ErrorCode.BAD_REQUEST, "A direct conversation cannot be left.", room=room.slug)
    with transaction.atomic():
        if not Membership.objects.filter(room=room, user=user).delete()[0]:
            raise ChatError(ErrorCode.NOT_FOUND, f"You are not a member of '{room.slug}'.", room=room.slug)
        events.room_closed_on_commit(room_id=room.pk, room_slug=room.slug, reason=RoomClosed.LEFT, user_id=user.pk)
        events.members_on_commit(room_id=room.pk, room_slug=room.slug, members=room_members(room=room))


def message_remove(*, room: Room, user: User, message_id: int, skip: str | None = None) -> dict[str, Any]:
    """Delete a message: one's own, or, for the room's managers, anyone's. Returns the tombstone."""
    with transaction.atomic():
        room = _advance(room=room, user=user, revs=1)
        message = _live_message(room=room, message_id=message_id)
        if message.author_id != user.pk and not can_manage(room=room, user=user):
            raise ChatError(ErrorCode.FORBIDDEN, "You can only change your own messages.", room=room.slug)
        return _delete(message=message, room=room, rev=room.last_rev, skip=skip)


# Direct conversations -----------------------------------------------------------------------

DIRECTS_PER_HOUR = 30  # new conversations a user may start: plenty for people, not for a script


def direct_open(*, user: User, usernames: Iterable[str]) -> tuple[Room, bool]:
    """The direct conversation of `user` with the people named (active accounts), made the first
    time: the same set of people always gets the same room. Returns (room, created)."""
    names = {name for name in usernames if name != user.username}
    if not names:
        raise ChatError(ErrorCode.BAD_REQUEST, "Name at least one other person.")
    if len(names) + 1 > MAX_DIRECT_MEMBERS:
        raise ChatError(
            ErrorCode.BAD_REQUEST, f"A direct conversation has at most {MAX_DIRECT_MEMBERS} people, you included."
        )
    others = list(User.objects.filter(username__in=names, is_active=True))
    missing = names - {other.username for other in others}
    if missing:
        raise ChatError(ErrorCode.NOT_FOUND, f"No user '{sorted(missing)[0]}'.")
    members = sorted([user, *others], key=lambda member: member.pk)
    key = ",".join(str(member.pk) for member in members)
    existing = Room.objects.filter(direct_key=key).first()
    if existing is not None:
        if existing.archived:
            raise ChatError(ErrorCode.FORBIDDEN, "Staff archived this conversation: it cannot be reopened.")
        return existing, False
    hour_ago = timezone.now() - timedelta(hours=1)
    if (
        Room.objects.filter(kind=Room.Kind.DIRECT, created_by=user, created_at__gte=hour_ago).count()
        >= DIRECTS_PER_HOUR
    ):
        raise ChatError(
            ErrorCode.RATE_LIMITED,
            f"You have started {DIRECTS_PER_HOUR} conversations in the last hour: try again later.",
        )
    room = Room(
        slug="dm-" + hashlib.sha256(key.encode()).hexdigest()[:16],
        name=", ".join(sorted(member.username for member in members))[:MAX_ROOM_NAME_LENGTH],
        private=True,
        kind=Room.Kind.DIRECT,
        direct_key=key,
        created_by=user,
    )
    try:
        with transaction.atomic():
            room.save()
            Membership.objects.bulk_create(Membership(room=room, user=member, invited=True) for member in members)
    except IntegrityError:  # the same people, started at the same moment elsewhere
        raced = Room.objects.filter(direct_key=key).first()
        if raced is None:  # the address is taken by something else (ordinary rooms cannot start with dm-)
            logger.error("The direct conversation %s cannot be made: its address %s is taken", key, room.slug)
            raise ChatError(ErrorCode.INTERNAL, "That conversation cannot be started; staff have been told.") from None
        return raced, False
    return room, True


def read_mark(*, room: Room, user: User, seq: int) -> int:
    """Move the user's read marker forward (never back, never past the newest message)."""
    last_seq = Room.objects.filter(pk=room.pk).values_list("last_seq", flat=True).first()
    if last_seq is None:
        raise ChatError(ErrorCode.NOT_FOUND, "That room no longer exists.")
    seq = min(seq, last_seq)
    with transaction.atomic():
        if Membership.objects.filter(room=room, user=user, last_read_seq__lt=seq).update(last_read_seq=seq):
            unread.counts_changed(user=user, room=room)  # the badge clears on the user's other pages
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
