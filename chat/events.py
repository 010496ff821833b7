"""The domain's one door to the real-time tier: every event to a group is sent from here.

The channel layer is also read by each worker's fan-out (chat.realtime.fanout), which receives
these events, and probed by /readyz (chat.ops.health); nothing else sends to it.

Writes announce themselves with the `*_on_commit` functions, so a rolled-back write is never
announced and a write from any entry point (socket, admin, HTTP, command) is announced the same
way. Ephemeral events (typing, presence) have async senders for the consumer.

Every event carries `group`, the group it was sent to: each worker's fan-out (chat.realtime.fanout) reads
the group's sockets from it. Channel-layer event types, each handled by a method of
`ChatConsumer` of the same name (dots become underscores; `chat.frame` goes to
`ChatConsumer.push_frame`):

- `chat.frame` {room_id, frame: str, skip: socket id|None}: a pre-encoded frame for every socket in a room
  group, encoded once per event rather than once per socket.
- `chat.user_frame` {frame: str}: a pre-encoded frame for every socket of a user, whatever rooms
  it joined (`direct_message`, `room_invited`).
- `chat.room_closed` {room_id, room, reason}: to a room group (archived, deleted) or a user group
  (banned, removed); the socket unsubscribes and forwards a `room_closed` frame.
- `chat.session_ended` {session_key}: to a user group, after a logout.
- `chat.token_revoked` {token_id}: to a user group; sockets opened with that token close (4401).
- `chat.access_changed` {room_id}: to a room group, after the room became private: each worker
  re-checks at once which of its sockets may still be in the room (chat.realtime.session_watch).
- `chat.frame` to an activity group (`activity.<room id>`): the room's `activity` frames, for the
  sockets that watch the room without joining it (chat.unread).
- `chat.revalidate` {}: to a user group, after the user changed (password, active flag, deleted):
  each socket checks that its session still authenticates it.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from chat.realtime import protocol

logger = logging.getLogger(__name__)


def channel_layer() -> BaseChannelLayer:
    """The default channel layer: settings.CHANNEL_LAYERS always names one."""
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("CHANNEL_LAYERS has no default layer.")
    return layer


def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def activity_group(room_id: int) -> str:
    return f"activity.{room_id}"


Send = tuple[str, dict[str, Any]]  # (group, event)


def _send_now(group: str, event: dict[str, Any]) -> None:
    # Delivery is at most once: a failure here loses only the live copy; clients catch up by seq.
    try:
        async_to_sync(channel_layer().group_send)(group, {**event, "group": group})
    except Exception:
        logger.exception("Could not send %s to %s", event.get("type"), group)


def _on_commit(group: str, event: dict[str, Any]) -> None:
    transaction.on_commit(lambda: _send_now(group, event))


# Announced after a write commits ------------------------------------------------------------


def _room_frame_on_commit(room_id: int, frame: str, skip: str | None = None) -> None:
    _on_commit(room_group(room_id), {"type": "chat.frame", "room_id": room_id, "frame": frame, "skip": skip})


# Each frame about a message carries the rev its change took (the message's own `rev`): clients
# notice a gap in them as they do in seqs.


def message_created_on_commit(*, room_id: int, message: dict[str, Any]) -> None:
    frame = protocol.encode("message", room=message["room"], message=message, rev=message["rev"])
    _room_frame_on_commit(room_id, frame)


def messages_created_on_commit(
    *, room_id: int, items: list[tuple[dict[str, Any], dict[str, Any]]], outbox: list[Send] | None = None
) -> None:
    """Many messages stored in one transaction (chat.group_commit), each as (message, its
    `activity` fields): their `message` frames to the room and `activity` frames to its watchers,
    in seq order. With `outbox`, the frames are put there once the transaction commits (and never
    if it rolls back), for the caller to `publish` from the event loop: the worker's one sync
    thread then does not wait for the channel layer. Without it, they are sent on commit."""
    sends: list[Send] = []
    for message, activity in items:
        frame = protocol.encode("message", room=message["room"], message=message, rev=message["rev"])
        sends.append((room_group(room_id), {"type": "chat.frame", "room_id": room_id, "frame": frame, "skip": None}))
        frame = protocol.encode("activity", **activity)
        sends.append(
            (activity_group(room_id), {"type": "chat.frame", "room_id": room_id, "frame": frame, "skip": None})
        )
    if outbox is None:
        transaction.on_commit(lambda: _send_all_now(sends))
    else:
        transaction.on_commit(lambda: outbox.extend(sends))


async def publish(sends: list[Send]) -> None:
    """Send events from the event loop, in order, each on its own (a failure loses only its live
    copy, as in `_send_now`)."""
    layer = channel_layer()
    for group, event in sends:
        try:
            await layer.group_send(group, {**event, "group": group})
        except Exception:
            logger.exception("Could not send %s to %s", event.get("type"), group)


def _send_all_now(sends: list[Send]) -> None:
    try:
        async_to_sync(publish)(sends)
    except Exception:
        logger.exception("Could not send %d events", len(sends))


def message_edited_on_commit(*, room_id: int, message: dict[str, Any], skip: str | None = None) -> None:
    frame = protocol.encode("message_edited", room=message["room"], message=message, rev=message["rev"])
    _room_frame_on_commit(room_id, frame, skip)


def message_updated_on_commit(*, room_id: int, message: dict[str, Any], skip: str | None = None) -> None:
    """Its reactions or its thread's summary changed."""
    frame = protocol.encode("message_updated", room=message["room"], message=message, rev=message["rev"])
    _room_frame_on_commit(room_id, frame, skip)


def message_deleted_on_commit(*, room_id: int, message: dict[str, Any], skip: str | None = None) -> None:
    """`message` is the tombstone."""
    frame = protocol.encode(
        "message_deleted",
        room=message["room"],
        id=message["id"],
        seq=message["seq"],
        rev=message["rev"],
        message=message,
    )
    _room_frame_on_commit(room_id, frame, skip)


def direct_message_on_commit(*, user_id: int, room_slug: str, info: dict[str, Any], message: dict[str, Any]) -> None:
    """To one member of a direct conversation, on every socket they have open."""
    frame = protocol.encode("direct_message", room=room_slug, info=info, message=message)
    _on_commit(user_group(user_id), {"type": "chat.user_frame", "frame": frame})


def activity_on_commit(*, room_id: int, fields: dict[str, Any]) -> None:
    """A message stored, edited or deleted, in short, to the sockets that watch the room."""
    frame = protocol.encode("activity", **fields)
    _on_commit(activity_group(room_id), {"type": "chat.frame", "room_id": room_id, "frame": frame, "skip": None})


def unread_on_commit(*, user_id: int, counts: dict[str, Any]) -> None:
    """A room's unread counts changed for this user (their read marker moved): every socket of theirs."""
    frame = protocol.encode("unread", **counts)
    _on_commit(user_group(user_id), {"type": "chat.user_frame", "frame": frame})


def notify_on_commit(*, user_id: int, room_slug: str, level: str) -> None:
    frame = protocol.encode("notify", room=room_slug, level=level)
    _on_commit(user_group(user_id), {"type": "chat.user_frame", "frame": frame})


def room_updated_on_commit(*, room_id: int, info: dict[str, Any]) -> None:
    """The room's name, topic or private flag changed: every open page of it shows the new ones,
    and so do the sidebars and room lists that watch it (its activity group)."""
    frame = protocol.encode("room_updated", room=info["slug"], info=info)
    _room_frame_on_commit(room_id, frame)
    _on_commit(activity_group(room_id), {"type": "chat.frame", "room_id": room_id, "frame": frame, "skip": None})


def members_on_commit(*, room_id: int, room_slug: str, members: list[dict[str, Any]]) -> None:
    """The room's members changed (invited, removed, left, banned): its open pages list them again."""
    _room_frame_on_commit(room_id, protocol.encode("members", room=room_slug, members=members))


def room_invited_on_commit(*, user_id: int, room_slug: str, info: dict[str, Any]) -> None:
    """`user_id` was invited to a room: every page they have open adds it to its sidebar."""
    frame = protocol.encode("room_invited", room=room_slug, info=info)
    _on_commit(user_group(user_id), {"type": "chat.user_frame", "frame": frame})


def token_revoked_on_commit(*, user_id: int, token_id: int) -> None:
    """Close the sockets a revoked token opened (they are in their user's group)."""
    _on_commit(user_group(user_id), {"type": "chat.token_revoked", "token_id": token_id})


def room_closed_on_commit(*, room_id: int, room_slug: str, reason: str, user_id: int | None = None) -> None:
    """Close a room for everyone in it, or (with `user_id`) for one user's sockets."""
    group = user_group(user_id) if user_id is not None else room_group(room_id)
    _on_commit(group, {"type": "chat.room_closed", "room_id": room_id, "room": room_slug, "reason": reason})


def access_changed_on_commit(*, room_id: int) -> None:
    _on_commit(room_group(room_id), {"type": "chat.access_changed", "room_id": room_id})
    _on_commit(activity_group(room_id), {"type": "chat.access_changed", "room_id": room_id})


def user_revalidate_on_commit(*, user_id: int) -> None:
    _on_commit(user_group(user_id), {"type": "chat.revalidate"})


def session_ended(*, user_id: int, session_key: str) -> None:
    """Sent at once: logout flushes the session right after announcing it."""
    _send_now(user_group(user_id), {"type": "chat.session_ended", "session_key": session_key})


# Ephemeral, from the consumer ---------------------------------------------------------------


async def _group_send(group: str, event: dict[str, Any]) -> None:
    await channel_layer().group_send(group, {**event, "group": group})


async def typing(*, room_id: int, room_slug: str, username: str, skip_socket: str) -> None:
    frame = protocol.encode("typing", room=room_slug, username=username)
    await _group_send(
        room_group(room_id), {"type": "chat.frame", "room_id": room_id, "frame": frame, "skip": skip_socket}
    )


async def presence(
    *,
    room_id: int,
    room_slug: str,
    users: list[str] | None = None,
    joined: list[str] | None = None,
    left: list[str] | None = None,
    online: int | None = None,
    version: int | None = None,
    skip_socket: str | None = None,
) -> None:
    """The whole list (`users`, with its snapshot's `version`), or the changes with the count
    (chat.realtime.presence.announce)."""
    if users is not None:
        frame = protocol.encode("presence", room=room_slug, users=users, version=version)
    else:
        changes: dict[str, Any] = {name: value for name, value in (("joined", joined), ("left", left)) if value}
        frame = protocol.encode("presence", room=room_slug, **changes, online=online)
    await _group_send(
        room_group(room_id), {"type": "chat.frame", "room_id": room_id, "frame": frame, "skip": skip_socket}
    )
