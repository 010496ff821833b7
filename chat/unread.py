"""Unread state for the sidebar, the room list and the title: counts, live activity, settings.

A page watches the rooms of its sidebar without joining them (the `watch` frame): it gets each
room's counts (`room_counts`) once, then one small `activity` frame per stored message, edit
that changes who is mentioned, or deletion, sent once to the room's activity group
(chat.events.activity_group) whatever the number of its members, and counts by the same rules as
the server (docs/protocol.md, "Unread state"). A read marker that moves, or a setting that
changes, reaches the user's other sockets through their user group.
"""

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q

from chat import events, selectors
from chat.errors import ChatError, ErrorCode
from chat.mentions import mention_counts
from chat.models import PRIVATE_ACCESS, Ban, Membership, NotifyLevel, Room, RoomNotify

PREVIEW_LENGTH = 120  # characters of a message's text in its activity frame (for notifications)
MAX_WATCHED_ROOMS = 500  # rooms one socket watches


def room_counts(*, user: User, room_ids: list[int]) -> list[dict[str, Any]]:
    """Each room's unread state for `user`, as the `watching` and `unread` frames carry it:
    `room`, `kind`, `unread`, `mentions`, `last_seq`, `read` (the read marker) and `notify`.
    A few queries, however many rooms."""
    rows = list(
        Room.objects.filter(pk__in=room_ids)
        .annotate(unread=selectors._unread(user=user))
        .values("pk", "slug", "kind", "last_seq", "unread")
    )
    markers = dict(Membership.objects.filter(user=user, room_id__in=room_ids).values_list("room_id", "last_read_seq"))
    mentions = mention_counts(user=user, room_ids=room_ids)
    levels = selectors.notify_levels(user=user, room_ids=room_ids)
    counts = []
    for row in rows:
        pk = row["pk"]
        counted = mentions.get(pk)
        if row["kind"] == Room.Kind.DIRECT:
            mentioned = selectors.direct_mentions(unread=row["unread"], mentions=counted.in_threads if counted else 0)
        else:
            mentioned = counted.total if counted else 0
        counts.append(
            {
                "room": row["slug"],
                "kind": row["kind"],
                "unread": row["unread"],
                "mentions": mentioned,
                "last_seq": row["last_seq"],
                "read": markers.get(pk, 0),
                "notify": levels[pk],
            }
        )
    return counts


def watch_targets(*, user: User, slugs: list[str] | None) -> dict[int, str]:
    """The rooms a `watch` asks for ({id: slug}): those named, each checked as a join is
    (ChatError not_found | forbidden), or without names the user's sidebar: every room they may
    enter and their direct conversations."""
    if slugs is not None:
        rooms = [selectors.room_get_for(slug=slug, user=user) for slug in dict.fromkeys(slugs)]
        return {room.pk: room.slug for room in rooms}
    allowed = (
        Room.objects.filter(archived=False)
        .filter(
            Q(kind=Room.Kind.ROOM, private=False)
            | Q(pk__in=Membership.objects.filter(PRIVATE_ACCESS, user=user).values("room_id"))
        )
        .exclude(pk__in=Ban.objects.filter(user=user).values("room_id"))
        # As the sidebar: a direct conversation nobody wrote in yet is its starter's business only.
        .exclude(Q(kind=Room.Kind.DIRECT, last_seq=0) & ~Q(created_by=user))
        .order_by("kind", "name")
    )
    return dict(allowed.values_list("pk", "slug")[:MAX_WATCHED_ROOMS])


def activity(
    *, message: dict[str, Any], kind: str, mentions: list[str], was: list[str] | None = None
) -> dict[str, Any]:
    """An `activity` frame's fields for a message (as on the wire) that was stored (`message`),
    edited (`edited`: who it mentions changed; `was` lists who it mentioned before) or deleted."""
    fields: dict[str, Any] = {
        "room": message["room"],
        "kind": kind,
        "id": message["id"],
        "seq": message["seq"],
        "rev": message["rev"],
        "author": message["author"],
        "reply_to": message["reply_to"],
        "mentions": mentions,
    }
    if kind == "message":
        fields["preview"] = message["body"][:PREVIEW_LENGTH]
    if was is not None:
        fields["was"] = was
    return fields


def counts_changed(*, user: User, room: Room) -> None:
    """Tell the user's sockets a room's counts (after their read marker moved), on commit."""
    counts = room_counts(user=user, room_ids=[room.pk])
    if counts:
        events.unread_on_commit(user_id=user.pk, counts=counts[0])


def notify_set(*, user: User, room: Room, level: str) -> str:
    """Set the user's notification setting in a room they may enter (NotifyLevel); announced to
    their sockets on commit. Raises ChatError(bad_request) for another level."""
    if level not in NotifyLevel.values:
        choices = ", ".join(NotifyLevel.values)
        raise ChatError(ErrorCode.BAD_REQUEST, f"'level' must be one of {choices}.", room=room.slug)
    selectors.room_access_check(room=room, user=user)
    with transaction.atomic():
        RoomNotify.objects.update_or_create(user=user, room=room, defaults={"level": level})
        events.notify_on_commit(user_id=user.pk, room_slug=room.slug, level=level)
    return level
